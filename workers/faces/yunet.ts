/**
 * The YuNet face detector family (libfacedetection, OpenCV's FaceDetectorYN): input packing, output decoding and
 * NMS, as the test models' README (../shared/models/README.md) specifies them. Pure code; the ONNX session is passed in by the caller.
 *
 * Face coordinates are continuous image coordinates: (0, 0) is the top-left corner of the top-left pixel.
 */
import type { Point } from './similarity.js';
import { wipeAndFree } from '../../wipe.js';

export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface Face {
  box: Box;
  /** sqrt(cls × obj), 0..1. */
  score: number;
  /** Right eye (on the image's left), left eye, nose tip, right and left mouth corners. */
  landmarks: [Point, Point, Point, Point, Point];
}

export interface OutputTensor {
  data: Float32Array;
  dims: readonly number[];
}

export interface YunetOptions {
  /** Faces scoring below this are dropped (OpenCV's default is 0.9; YuNet's own demos use 0.6). */
  scoreThreshold?: number;
  /** Two boxes overlapping by more than this IoU are one face: the lower-scoring one goes. */
  nmsIou?: number;
  /** At most this many faces are returned, best first. */
  topK?: number;
}

export const YUNET_STRIDES = [8, 16, 32] as const;
/** The 12 output tensors a YuNet model must have. */
export const YUNET_OUTPUTS: readonly string[] = Object.freeze(YUNET_STRIDES.flatMap((s) => [`cls_${s}`, `obj_${s}`, `bbox_${s}`, `kps_${s}`]));
/** Input sides must be multiples of this (the coarsest stride). */
export const YUNET_MULTIPLE = 32;
/**
 * The long side the image is shrunk to for detection. On the sample photos 384, 512 and 640 all give the expected
 * counts, but with different margins around the 0.6 threshold: at 384 the stage photo has a spurious candidate at
 * 0.55-0.57, at 640 one at 0.44-0.47; at 512 the nearest is 0.38-0.39 and the weakest real face (the child's, half
 * hidden) scores 0.89-0.90. About 10-20 ms on one thread (test/faces/yunet.test.ts checks the margin).
 */
export const DEFAULT_DETECT_SIDE = 512;
/** Candidates kept for NMS, best first: bounds the quadratic NMS on pathological outputs. */
const MAX_CANDIDATES = 5000;

/** Throws, naming every missing output, unless the model has all 12 YuNet outputs. Call once per session. */
export function checkYunetOutputs(outputNames: readonly string[]): void {
  const missing = YUNET_OUTPUTS.filter((name) => !outputNames.includes(name));
  if (missing.length > 0) {
    throw new Error(`not a YuNet detector: missing output${missing.length > 1 ? 's' : ''} ${missing.join(', ')} (the model has: ${outputNames.join(', ') || 'none'})`);
  }
}

/**
 * Decodes the 12 raw outputs of one image whose padded input tensor was `inputWidth` x `inputHeight`, then applies
 * the score threshold and NMS. Coordinates are in that input's pixels.
 */
export function decodeYunet(outputs: Record<string, OutputTensor>, inputWidth: number, inputHeight: number, opts: YunetOptions = {}): Face[] {
  const threshold = opts.scoreThreshold ?? 0.6;
  const nmsIou = opts.nmsIou ?? 0.3;
  const topK = opts.topK ?? 5000;
  if (inputWidth % YUNET_MULTIPLE !== 0 || inputHeight % YUNET_MULTIPLE !== 0 || inputWidth <= 0 || inputHeight <= 0) {
    throw new RangeError(`YuNet input ${inputWidth}x${inputHeight} is not a positive multiple of ${YUNET_MULTIPLE}`);
  }
  checkYunetOutputs(Object.keys(outputs));
  const candidates: Face[] = [];
  for (const s of YUNET_STRIDES) {
    const cols = inputWidth / s;
    const count = cols * (inputHeight / s);
    const cls = tensor(outputs, `cls_${s}`, count, 1);
    const obj = tensor(outputs, `obj_${s}`, count, 1);
    const bbox = tensor(outputs, `bbox_${s}`, count, 4);
    const kps = tensor(outputs, `kps_${s}`, count, 10);
    for (let i = 0; i < count; i++) {
      const score = Math.sqrt(clamp01(cls[i]!) * clamp01(obj[i]!));
      if (!(score >= threshold)) continue;
      const c = i % cols;
      const r = (i - c) / cols;
      const b = i * 4;
      const cx = (c + bbox[b]!) * s;
      const cy = (r + bbox[b + 1]!) * s;
      const width = Math.exp(bbox[b + 2]!) * s;
      const height = Math.exp(bbox[b + 3]!) * s;
      const k = i * 10;
      const landmarks = [0, 1, 2, 3, 4].map((j) => ({ x: (kps[k + 2 * j]! + c) * s, y: (kps[k + 2 * j + 1]! + r) * s }));
      const face: Face = { box: { x: cx - width / 2, y: cy - height / 2, width, height }, score, landmarks: landmarks as Face['landmarks'] };
      if ([cx, cy, width, height].every(Number.isFinite) && landmarks.every((p) => Number.isFinite(p.x) && Number.isFinite(p.y))) {
        candidates.push(face);
      }
    }
  }
  candidates.sort((a, b) => b.score - a.score);
  if (candidates.length > MAX_CANDIDATES) candidates.length = MAX_CANDIDATES;
  return nms(candidates, nmsIou, topK);
}

function clamp01(v: number): number {
  return v > 1 ? 1 : v > 0 ? v : 0; // NaN -> 0
}

/** The first image's `count` x `width` values of one output, after checking its shape. */
function tensor(outputs: Record<string, OutputTensor>, name: string, count: number, width: number): Float32Array {
  const t = outputs[name]!;
  const dims = t.dims;
  const ok = dims.length === 3 && dims[1] === count && dims[2] === width && t.data.length >= count * width;
  if (!ok) throw new RangeError(`YuNet output ${name} has shape [${dims.join(', ')}]; expected [1, ${count}, ${width}] for this input size`);
  return t.data;
}

export function iou(a: Box, b: Box): number {
  const ix = Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x);
  const iy = Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y);
  if (ix <= 0 || iy <= 0) return 0;
  const inter = ix * iy;
  const union = a.width * a.height + b.width * b.height - inter;
  return union > 0 ? inter / union : 0;
}

/** Greedy NMS: best score first; a face is dropped when it overlaps a kept one by more than `threshold` IoU. */
export function nms(faces: readonly Face[], threshold: number, topK = Infinity): Face[] {
  const sorted = [...faces].sort((a, b) => b.score - a.score);
  const kept: Face[] = [];
  for (const face of sorted) {
    if (kept.length >= topK) break;
    if (kept.every((k) => iou(k.box, face.box) <= threshold)) kept.push(face);
  }
  return kept;
}

export interface YunetInput {
  /** NCHW, BGR, 0..255, padded right and bottom with zeros to multiples of 32. */
  data: Float32Array;
  dims: [1, 3, number, number];
  /** Detector pixels per image pixel (at most 1): divide the detector's coordinates by it. */
  scale: number;
  /** The shrunk image inside the padded tensor. */
  width: number;
  height: number;
}

/**
 * Builds the detector's input from interleaved RGB: shrunk (never enlarged) so that the long side is at most
 * `maxSide`, by area averaging, which keeps the cost bounded whatever the image's size.
 */
export function yunetInput(rgb: Uint8Array, width: number, height: number, maxSide = DEFAULT_DETECT_SIDE): YunetInput {
  if (rgb.length !== width * height * 3) throw new RangeError(`expected ${width * height * 3} bytes of RGB, got ${rgb.length}`);
  if (!(maxSide >= YUNET_MULTIPLE)) throw new RangeError(`detection size ${maxSide} is below ${YUNET_MULTIPLE}`);
  const scale = Math.min(1, maxSide / Math.max(width, height));
  const dw = Math.max(1, Math.min(maxSide, Math.round(width * scale)));
  const dh = Math.max(1, Math.min(maxSide, Math.round(height * scale)));
  const pw = Math.ceil(dw / YUNET_MULTIPLE) * YUNET_MULTIPLE;
  const ph = Math.ceil(dh / YUNET_MULTIPLE) * YUNET_MULTIPLE;
  const plane = pw * ph;
  const data = new Float32Array(3 * plane);
  if (scale === 1) {
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const s = (y * width + x) * 3;
        const p = y * pw + x;
        data[p] = rgb[s + 2]!; // B
        data[plane + p] = rgb[s + 1]!; // G
        data[2 * plane + p] = rgb[s]!; // R
      }
    }
  } else {
    const small = areaResize(rgb, width, height, dw, dh, scale);
    for (let y = 0; y < dh; y++) {
      for (let x = 0; x < dw; x++) {
        const s = (y * dw + x) * 3;
        const p = y * pw + x;
        data[p] = small[s + 2]!;
        data[plane + p] = small[s + 1]!;
        data[2 * plane + p] = small[s]!;
      }
    }
    small.fill(0);
  }
  return { data, dims: [1, 3, ph, pw], scale, width: dw, height: dh };
}

/** Per output index: the source indices it covers and their weights (coverage of [i/scale, (i+1)/scale)). */
function areaTaps(srcSize: number, dstSize: number, scale: number): { start: Int32Array; count: Int32Array; weights: Float32Array; stride: number } {
  const span = 1 / scale;
  const stride = Math.ceil(span) + 1;
  const start = new Int32Array(dstSize);
  const count = new Int32Array(dstSize);
  const weights = new Float32Array(dstSize * stride);
  for (let i = 0; i < dstSize; i++) {
    const lo = i * span;
    const hi = Math.min((i + 1) * span, srcSize);
    const first = Math.min(Math.floor(lo), srcSize - 1);
    let total = 0;
    let n = 0;
    for (let j = first; j < hi && n < stride; j++, n++) {
      const w = Math.min(j + 1, hi) - Math.max(j, lo);
      weights[i * stride + n] = w;
      total += w;
    }
    // The last output pixel may overhang the image: normalise by what it covers.
    for (let k = 0; k < n; k++) weights[i * stride + k]! /= total > 0 ? total : 1;
    if (n === 0) {
      weights[i * stride] = 1;
      n = 1;
    }
    start[i] = first;
    count[i] = n;
  }
  return { start, count, weights, stride };
}

/** Separable area-average shrink of interleaved RGB to dw x dh (floats, 0..255). */
function areaResize(rgb: Uint8Array, width: number, height: number, dw: number, dh: number, scale: number): Float32Array {
  const tx = areaTaps(width, dw, scale);
  const ty = areaTaps(height, dh, scale);
  const rows = new Float32Array(height * dw * 3);
  for (let y = 0; y < height; y++) {
    const src = y * width * 3;
    const dst = y * dw * 3;
    for (let x = 0; x < dw; x++) {
      let r = 0;
      let g = 0;
      let b = 0;
      const base = x * tx.stride;
      let p = src + tx.start[x]! * 3;
      for (let k = 0; k < tx.count[x]!; k++, p += 3) {
        const w = tx.weights[base + k]!;
        r += w * rgb[p]!;
        g += w * rgb[p + 1]!;
        b += w * rgb[p + 2]!;
      }
      rows[dst + x * 3] = r;
      rows[dst + x * 3 + 1] = g;
      rows[dst + x * 3 + 2] = b;
    }
  }
  const out = new Float32Array(dh * dw * 3);
  const line = dw * 3;
  for (let y = 0; y < dh; y++) {
    const base = y * ty.stride;
    const dst = y * line;
    for (let k = 0; k < ty.count[y]!; k++) {
      const w = ty.weights[base + k]!;
      const src = (ty.start[y]! + k) * line;
      for (let i = 0; i < line; i++) out[dst + i]! += w * rows[src + i]!;
    }
  }
  rows.fill(0);
  return out;
}

/** Maps faces found on a copy shrunk by `scale` back to the image's own pixels. */
export function scaleFaces(faces: readonly Face[], scale: number): Face[] {
  if (scale === 1) return faces.map((f) => ({ ...f }));
  const k = 1 / scale;
  return faces.map((f) => ({
    score: f.score,
    box: { x: f.box.x * k, y: f.box.y * k, width: f.box.width * k, height: f.box.height * k },
    landmarks: f.landmarks.map((p) => ({ x: p.x * k, y: p.y * k })) as Face['landmarks'],
  }));
}

/** Runs a YuNet session on one padded NCHW input and returns its named outputs. */
export type YunetRun = (data: Float32Array, dims: readonly number[]) => Promise<Record<string, OutputTensor>>;

export interface YunetDetectorOptions extends YunetOptions {
  /** Long side of the copy the detector sees (default DEFAULT_DETECT_SIDE). */
  maxSide?: number;
}

/** A `detect(rgb, width, height)` for the face pipeline: pack, run, decode, map back to the image's pixels. */
export function yunetDetector(run: YunetRun, opts: YunetDetectorOptions = {}): (rgb: Uint8Array, width: number, height: number) => Promise<Face[]> {
  return async (rgb, width, height) => {
    const input = yunetInput(rgb, width, height, opts.maxSide);
    let outputs: Record<string, OutputTensor> | undefined;
    try {
      outputs = await run(input.data, input.dims);
      return scaleFaces(decodeYunet(outputs, input.dims[3], input.dims[2], opts), input.scale);
    } finally {
      // The photo as the detector saw it (3.7 MB at 640x480) and its score maps: wiped and freed now (wipe.ts).
      wipeAndFree(input.data);
      for (const output of Object.values(outputs ?? {})) wipeAndFree(output.data);
    }
  };
}
