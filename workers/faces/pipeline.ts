/**
 * The face-aware path, after DCT-Net: the whole image is stylised by the whole-image model; then every face found
 * is aligned to the 5-point template in a square crop, stylised by the head model, warped back with the inverse
 * transform and blended in with a feathered elliptical mask warped the same way.
 *
 * Independent of the worker and of onnxruntime: detection and the head model are callbacks. Pixels outside every
 * warped mask are left bit-for-bit as the whole-image result has them.
 */
import { faceMask, type FaceMask } from './mask.js';
import { alignmentTemplate, applyAffine, composeAffine, estimateSimilarity, invertAffine, type Affine, type Point } from './similarity.js';
import { warpAffine } from './warp.js';
import type { Box, Face } from './yunet.js';
import { wipeAndFree } from '../../wipe.js';

export type DetectFaces = (rgb: Uint8Array, width: number, height: number) => Promise<Face[]>;
/**
 * Stylises one aligned crop: `size` x `size` interleaved RGB in, the same size of RGB out. The pipeline zeroes both
 * buffers once the head is blended, so the result must be a buffer of its own (or the crop itself).
 */
export type RunHead = (cropRgb: Uint8Array, size: number) => Promise<Uint8Array>;

export interface FaceOptions {
  /** At most this many faces are stylised: the largest (default 8). */
  maxFaces?: number;
  /** Faces whose box's longer side is below this many pixels are left to the whole-image result (default 48). */
  minFaceSize?: number;
  /** Side of the aligned crop the head model takes (DCT-Net: 288). */
  cropSize?: number;
  /** How far the template is shrunk towards the crop's centre (DCT-Net: 0.75). */
  faceRatio?: number;
}

export interface StylizeFacesArgs extends FaceOptions {
  /** The photo, interleaved RGB, at the size the whole-image model ran at. */
  original: Uint8Array;
  /** The whole-image model's result, same size. Not modified. */
  result: Uint8Array;
  width: number;
  height: number;
  /** Finds the faces on `original`; not called when `faces` is given. */
  detect?: DetectFaces | undefined;
  /**
   * Faces already found and selected on `original` (workers/pipeline.ts detects and selects them before the
   * whole-image model runs, to answer PTOON_NO_FACE early): used as given, not selected again.
   */
  faces?: readonly Face[] | undefined;
  runHead: RunHead;
  /** The head model's own blend mask at the crop size (DCT-Net's alpha.jpg); default: the feathered ellipse. */
  mask?: FaceMask | undefined;
}

export interface PlacedFace {
  face: Face;
  /** Image pixels -> crop pixels (pixel-index coordinates). */
  toCrop: Affine;
  /** The rectangle of the image the face's blend touched (the warped mask's support); empty when off-image. */
  region: Box;
}

export interface StylizeFacesResult {
  /** A new buffer: the whole-image result with the stylised heads blended in. */
  rgb: Uint8Array;
  /** The faces stylised, the largest first. */
  placed: PlacedFace[];
}

export const DEFAULT_FACE_OPTIONS: Readonly<Required<FaceOptions>> = Object.freeze({ maxFaces: 8, minFaceSize: 48, cropSize: 288, faceRatio: 0.75 });

/** The faces worth a head pass: big enough, the largest first (ties: the more confident), at most `maxFaces`. */
export function selectFaces(faces: readonly Face[], maxFaces: number, minFaceSize: number): Face[] {
  return faces
    .filter((f) => Math.max(f.box.width, f.box.height) >= minFaceSize)
    .sort((a, b) => b.box.width * b.box.height - a.box.width * a.box.height || b.score - a.score)
    .slice(0, Math.max(0, maxFaces));
}

/** Image -> crop similarity for a face: its landmarks (continuous coordinates) onto the template (pixel indices). */
export function faceToCrop(face: Face, cropSize: number, faceRatio: number): Affine {
  const src: Point[] = face.landmarks.map((p) => ({ x: p.x - 0.5, y: p.y - 0.5 }));
  return estimateSimilarity(src, alignmentTemplate(cropSize, faceRatio));
}

/**
 * The integer rectangle of a `width` x `height` image outside which the crop's mask, warped back with `toCrop`,
 * is exactly 0 (bilinear sampling reads at most one pixel past a non-zero pixel of the mask).
 */
export function maskRegion(toCrop: Affine, cropSize: number, width: number, height: number, mask: FaceMask = faceMask(cropSize)): Box {
  const { x0, y0, x1, y1 } = mask.bounds;
  const fromCrop = invertAffine(toCrop);
  const corners = [
    { x: x0 - 1, y: y0 - 1 },
    { x: x1 + 1, y: y0 - 1 },
    { x: x0 - 1, y: y1 + 1 },
    { x: x1 + 1, y: y1 + 1 },
  ].map((p) => applyAffine(fromCrop, p));
  const left = Math.max(0, Math.floor(Math.min(...corners.map((p) => p.x))));
  const top = Math.max(0, Math.floor(Math.min(...corners.map((p) => p.y))));
  const right = Math.min(width - 1, Math.ceil(Math.max(...corners.map((p) => p.x))));
  const bottom = Math.min(height - 1, Math.ceil(Math.max(...corners.map((p) => p.y))));
  if (!(right >= left && bottom >= top)) return { x: 0, y: 0, width: 0, height: 0 };
  return { x: left, y: top, width: right - left + 1, height: bottom - top + 1 };
}

/**
 * Warps a stylised crop back into `out` (interleaved RGB, `width` wide) over `region` and blends it with the warped
 * mask: out = out + m (head - out). Pixels where the warped mask is 0 are not written.
 */
export function blendHead(out: Uint8Array, width: number, head: Uint8Array, cropSize: number, toCrop: Affine, region: Box, cropMask: FaceMask = faceMask(cropSize)): void {
  if (region.width <= 0 || region.height <= 0) return;
  // Region pixels -> crop pixels: translate to image coordinates, then into the crop.
  const map = composeAffine(toCrop, [1, 0, region.x, 0, 1, region.y]);
  const mask = warpAffine(cropMask, map, region.width, region.height, 'zero').data;
  const back = warpAffine({ data: head, width: cropSize, height: cropSize, channels: 3 }, map, region.width, region.height, 'edge').data;
  try {
    for (let y = 0; y < region.height; y++) {
      let p = ((region.y + y) * width + region.x) * 3;
      let i = y * region.width;
      for (let x = 0; x < region.width; x++, p += 3, i++) {
        const m = mask[i]!;
        if (!(m > 0)) continue;
        const q = i * 3;
        if (m >= 1) {
          out[p] = back[q]!;
          out[p + 1] = back[q + 1]!;
          out[p + 2] = back[q + 2]!;
          continue;
        }
        for (let k = 0; k < 3; k++) {
          const w = out[p + k]!;
          out[p + k] = w + m * (back[q + k]! - w) + 0.5; // in 0..255.5: the assignment truncates, so this rounds
        }
      }
    }
  } finally {
    back.fill(0);
  }
}

/** Detects faces, stylises each with the head model and blends it into a copy of the whole-image result. */
export async function stylizeFaces(args: StylizeFacesArgs): Promise<StylizeFacesResult> {
  const { original, result, width, height } = args;
  const { maxFaces, minFaceSize, cropSize, faceRatio } = { ...DEFAULT_FACE_OPTIONS, ...definedOnly(args) };
  if (original.length !== width * height * 3 || result.length !== width * height * 3) {
    throw new RangeError(`expected ${width * height * 3} bytes of RGB for the original and the result, got ${original.length} and ${result.length}`);
  }
  if (!Number.isInteger(cropSize) || cropSize < 16) throw new RangeError(`bad crop size ${cropSize}`);
  const mask = args.mask ?? faceMask(cropSize);
  if (mask.width !== cropSize || mask.height !== cropSize) throw new RangeError(`the mask is ${mask.width}x${mask.height}; the crop is ${cropSize}`);

  // Faces handed in were selected by the caller (workers/pipeline.ts selects them once, before the whole-image pass).
  let faces = args.faces;
  if (faces === undefined) {
    if (args.detect === undefined) throw new TypeError('stylizeFaces needs either `faces` or `detect`');
    faces = selectFaces(await args.detect(original, width, height), maxFaces, minFaceSize);
  }

  const rgb = new Uint8Array(result);
  const placed: PlacedFace[] = [];
  try {
    // Smallest first, so that where two heads overlap the larger one ends on top.
    for (const face of [...faces].reverse()) await placeFace(face);
  } catch (err) {
    rgb.fill(0);
    throw err;
  }
  placed.reverse();
  return { rgb, placed };

  async function placeFace(face: Face): Promise<void> {
    let toCrop: Affine;
    let fromCrop: Affine;
    try {
      toCrop = faceToCrop(face, cropSize, faceRatio);
      fromCrop = invertAffine(toCrop);
    } catch {
      return; // degenerate landmarks (all on one point): no alignment exists; the whole-image result stays
    }
    const region = maskRegion(toCrop, cropSize, width, height, mask);
    if (region.width === 0 || region.height === 0) return;
    const crop = warpAffine({ data: original, width, height, channels: 3 }, fromCrop, cropSize, cropSize, 'edge').data;
    let head: Uint8Array | undefined;
    try {
      head = await args.runHead(crop, cropSize);
      if (head.length !== cropSize * cropSize * 3) {
        throw new RangeError(`the head model returned ${head.length} bytes; expected ${cropSize}x${cropSize} RGB`);
      }
      blendHead(rgb, width, head, cropSize, toCrop, region, mask);
    } finally {
      // No copy of the face is left behind (the head may hand back the crop's own buffer: wipeAndFree is safe twice).
      wipeAndFree(crop);
      if (head !== undefined) wipeAndFree(head);
    }
    placed.push({ face, toCrop, region });
  }
}

function definedOnly(options: FaceOptions): FaceOptions {
  const out: FaceOptions = {};
  if (options.maxFaces !== undefined) out.maxFaces = options.maxFaces;
  if (options.minFaceSize !== undefined) out.minFaceSize = options.minFaceSize;
  if (options.cropSize !== undefined) out.cropSize = options.cropSize;
  if (options.faceRatio !== undefined) out.faceRatio = options.faceRatio;
  return out;
}
