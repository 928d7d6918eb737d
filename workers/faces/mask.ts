/**
 * The blending mask of the aligned face crop: an ellipse over the head, 1 inside and falling smoothly to 0 over a
 * feather band at its edge (a smoothstep of the distance to the ellipse), exactly 0 outside the ellipse and so along
 * the crop's border. Generated in code (DCT-Net ships an image instead) and cached per crop size.
 */
import type { Raster } from './warp.js';

/** The ellipse, in fractions of the crop side. */
export interface MaskGeometry {
  /** Centre. */
  cx: number;
  cy: number;
  /** Outer semi-axes: where the mask reaches 0. */
  rx: number;
  ry: number;
  /** Width of the band over which the mask rises from 0 to 1, measured inwards from the outer ellipse. */
  feather: number;
}

/**
 * Fitted to the DCT-Net alignment (template ratio 0.75): in a 288 crop the eyes sit at y ≈ 136, the mouth at
 * y ≈ 214 and the eye centres 68 px apart, so the face with forehead, hair line and chin spans about y 20..275.
 * At 288 the mask is above 0 over x 29..258, y 6..281 (a few pixels' margin from the crop's border, so nothing
 * from outside the crop can leak in); it is 1 over x 63..224, y 40..247, and the feather band (35 px) between
 * hides the seam.
 */
export const FACE_MASK_GEOMETRY: Readonly<MaskGeometry> = Object.freeze({ cx: 0.5, cy: 0.5, rx: 0.4, ry: 0.48, feather: 0.12 });

export interface FaceMask extends Raster<Float32Array> {
  channels: 1;
  /** Inclusive bounds of the pixels where the mask is above 0. */
  bounds: { x0: number; y0: number; x1: number; y1: number };
}

const cache = new Map<number, FaceMask>();

/** The shared mask for a crop side (do not modify it). */
export function faceMask(cropSize: number): FaceMask {
  let mask = cache.get(cropSize);
  if (mask === undefined) {
    mask = ellipseMask(cropSize, FACE_MASK_GEOMETRY);
    Object.freeze(mask.bounds);
    cache.set(cropSize, mask);
  }
  return mask;
}

/** smoothstep(0, 1, t) with t clamped. */
function smoothstep(t: number): number {
  if (t <= 0) return 0;
  if (t >= 1) return 1;
  return t * t * (3 - 2 * t);
}

/**
 * Builds a feathered ellipse mask. The distance to the ellipse is the first-order estimate f / |∇f| for
 * f = 1 - r, r = sqrt((u/rx)² + (v/ry)²), which is exact on the boundary and smooth everywhere; the mask is
 * smoothstep(distance / feather).
 */
export function ellipseMask(size: number, g: MaskGeometry): FaceMask {
  if (!Number.isInteger(size) || size < 4) throw new RangeError(`bad mask size ${size}`);
  const cx = g.cx * size;
  const cy = g.cy * size;
  const rx = g.rx * size;
  const ry = g.ry * size;
  const feather = Math.max(g.feather * size, 1);
  if (!(rx > 0 && ry > 0)) throw new RangeError('the mask ellipse needs positive semi-axes');
  const data = new Float32Array(size * size);
  const rx2 = rx * rx;
  const ry2 = ry * ry;
  let x0 = size;
  let y0 = size;
  let x1 = -1;
  let y1 = -1;
  for (let y = 0; y < size; y++) {
    // Pixel centres: pixel i covers [i, i + 1) of the crop.
    const v = y + 0.5 - cy;
    for (let x = 0; x < size; x++) {
      const u = x + 0.5 - cx;
      const r = Math.sqrt((u * u) / rx2 + (v * v) / ry2);
      if (r >= 1) continue;
      // |∇r| = sqrt(u²/rx⁴ + v²/ry⁴) / r, so the distance (1 - r) / |∇r| = (1 - r) r / sqrt(u²/rx⁴ + v²/ry⁴).
      const grad = Math.sqrt((u * u) / (rx2 * rx2) + (v * v) / (ry2 * ry2));
      const distance = grad > 1e-12 ? ((1 - r) * r) / grad : Infinity;
      const m = smoothstep(distance / feather);
      if (m <= 0) continue;
      data[y * size + x] = m;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
    }
  }
  return { data, width: size, height: size, channels: 1, bounds: { x0, y0, x1, y1 } };
}

/**
 * A mask given as grey levels (DCT-Net's alpha.jpg, decoded and resized to the crop by the caller): 0..255 -> 0..1,
 * with its bounds. Levels up to 2 count as 0, so that JPEG noise around a black border does not blend the crop's edge.
 */
export function greyMask(levels: Uint8Array, size: number): FaceMask {
  if (levels.length !== size * size) throw new RangeError(`expected ${size * size} grey levels, got ${levels.length}`);
  const data = new Float32Array(size * size);
  let x0 = size;
  let y0 = size;
  let x1 = -1;
  let y1 = -1;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const level = levels[y * size + x]!;
      if (level <= 2) continue;
      data[y * size + x] = level / 255;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
    }
  }
  return { data, width: size, height: size, channels: 1, bounds: Object.freeze({ x0, y0, x1, y1 }) };
}
