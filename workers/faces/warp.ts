/**
 * Affine warps with bilinear sampling on interleaved images (8-bit RGB crops and 1-channel float masks alike).
 * Plain typed-array loops, no allocation besides the output.
 *
 * Conventions as OpenCV's warpAffine with WARP_INVERSE_MAP: the map takes each destination pixel to the source point
 * it samples; pixel (i, j) sits at (i, j). To warp into a sub-rectangle of a large image, compose the map with a
 * translation (see `pipeline.ts`): only that rectangle is computed.
 */
import type { Affine } from './similarity.js';

export type Pixels = Uint8Array | Float32Array;

export interface Raster<T extends Pixels = Pixels> {
  data: T;
  width: number;
  height: number;
  /** Interleaved channels per pixel (1 or 3 here; any count works). */
  channels: number;
}

/** Outside the source: repeat the nearest border pixel ('edge', for image content) or read 0 ('zero', for masks). */
export type Border = 'edge' | 'zero';

/**
 * Samples `src` at `inverseMap(x, y)` for every pixel of an `outWidth` x `outHeight` destination. The output has the
 * source's element type; 8-bit results are rounded to the nearest level.
 */
export function warpAffine<T extends Pixels>(src: Raster<T>, inverseMap: Affine, outWidth: number, outHeight: number, border: Border = 'edge'): Raster<T> {
  const { width: w, height: h, channels: ch, data } = src;
  if (!Number.isInteger(w) || !Number.isInteger(h) || w < 1 || h < 1 || !Number.isInteger(ch) || ch < 1) {
    throw new RangeError(`bad source raster ${w}x${h}x${ch}`);
  }
  if (data.length !== w * h * ch) throw new RangeError(`expected ${w * h * ch} values in a ${w}x${h}x${ch} raster, got ${data.length}`);
  if (!Number.isInteger(outWidth) || !Number.isInteger(outHeight) || outWidth < 0 || outHeight < 0) {
    throw new RangeError(`bad output size ${outWidth}x${outHeight}`);
  }
  const bytes = data instanceof Uint8Array;
  const n = outWidth * outHeight * ch;
  const out = (bytes ? new Uint8Array(n) : new Float32Array(n)) as T;
  const [a, b, tx, c, d, ty] = inverseMap;
  const maxX = w - 1;
  const maxY = h - 1;
  const stride = w * ch;
  const edge = border === 'edge';

  for (let y = 0; y < outHeight; y++) {
    const rowX = b * y + tx;
    const rowY = d * y + ty;
    let o = y * outWidth * ch;
    for (let x = 0; x < outWidth; x++, o += ch) {
      const fx = a * x + rowX;
      const fy = c * x + rowY;
      if (!edge && (!(fx > -1) || !(fy > -1) || !(fx < w) || !(fy < h))) continue; // all four neighbours outside: 0
      const x0 = Math.floor(fx);
      const y0 = Math.floor(fy);
      const ax = fx - x0;
      const ay = fy - y0;
      const w00 = (1 - ax) * (1 - ay);
      const w01 = ax * (1 - ay);
      const w10 = (1 - ax) * ay;
      const w11 = ax * ay;
      if (x0 >= 0 && y0 >= 0 && x0 < maxX && y0 < maxY) {
        // Fast path: the 2x2 neighbourhood is inside the source.
        const p = y0 * stride + x0 * ch;
        for (let k = 0; k < ch; k++) {
          const v = w00 * data[p + k]! + w01 * data[p + ch + k]! + w10 * data[p + stride + k]! + w11 * data[p + stride + ch + k]!;
          out[o + k] = bytes ? v + 0.5 : v; // Uint8Array assignment truncates: +0.5 rounds (v >= 0)
        }
        continue;
      }
      if (!Number.isFinite(fx) || !Number.isFinite(fy)) continue;
      let xa = x0;
      let xb = x0 + 1;
      let ya = y0;
      let yb = y0 + 1;
      // Weights of neighbours outside the source: kept with clamped indices ('edge') or dropped ('zero').
      let v00 = w00;
      let v01 = w01;
      let v10 = w10;
      let v11 = w11;
      if (edge) {
        xa = xa < 0 ? 0 : xa > maxX ? maxX : xa;
        xb = xb < 0 ? 0 : xb > maxX ? maxX : xb;
        ya = ya < 0 ? 0 : ya > maxY ? maxY : ya;
        yb = yb < 0 ? 0 : yb > maxY ? maxY : yb;
      } else {
        const inXa = xa >= 0 && xa <= maxX;
        const inXb = xb >= 0 && xb <= maxX;
        const inYa = ya >= 0 && ya <= maxY;
        const inYb = yb >= 0 && yb <= maxY;
        if (!inXa || !inYa) v00 = 0;
        if (!inXb || !inYa) v01 = 0;
        if (!inXa || !inYb) v10 = 0;
        if (!inXb || !inYb) v11 = 0;
        xa = inXa ? xa : 0;
        xb = inXb ? xb : 0;
        ya = inYa ? ya : 0;
        yb = inYb ? yb : 0;
      }
      const pa = ya * stride;
      const pb = yb * stride;
      const qa = xa * ch;
      const qb = xb * ch;
      for (let k = 0; k < ch; k++) {
        const v = v00 * data[pa + qa + k]! + v01 * data[pa + qb + k]! + v10 * data[pb + qa + k]! + v11 * data[pb + qb + k]!;
        out[o + k] = bytes ? v + 0.5 : v;
      }
    }
  }
  return { data: out, width: outWidth, height: outHeight, channels: ch };
}
