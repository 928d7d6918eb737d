/**
 * Image quality of the int8 result against the fp32 one, on the 8-bit RGB pixels the service would encode.
 *  - PSNR over all channels, peak 255 (identical images: Infinity).
 *  - SSIM as Wang et al. (2004) define it: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, on each of R, G
 *    and B, averaged over pixels and channels.
 */

export function psnr(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) throw new RangeError('psnr: images differ in size');
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    sum += d * d;
  }
  const mse = sum / a.length;
  return mse === 0 ? Infinity : 10 * Math.log10((255 * 255) / mse);
}

const RADIUS = 5;
const KERNEL = (() => {
  const k = Array.from({ length: 2 * RADIUS + 1 }, (_, i) => Math.exp(-((i - RADIUS) ** 2) / (2 * 1.5 * 1.5)));
  const sum = k.reduce((s, v) => s + v, 0);
  return Float64Array.from(k, (v) => v / sum);
})();

/** Separable Gaussian blur of one plane, borders clamped. */
function blur(src: Float64Array, width: number, height: number): Float64Array {
  const tmp = new Float64Array(src.length);
  const out = new Float64Array(src.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let s = 0;
      for (let k = -RADIUS; k <= RADIUS; k++) s += KERNEL[k + RADIUS]! * src[y * width + Math.min(width - 1, Math.max(0, x + k))]!;
      tmp[y * width + x] = s;
    }
  }
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let s = 0;
      for (let k = -RADIUS; k <= RADIUS; k++) s += KERNEL[k + RADIUS]! * tmp[Math.min(height - 1, Math.max(0, y + k)) * width + x]!;
      out[y * width + x] = s;
    }
  }
  return out;
}

/** Mean SSIM of two interleaved RGB images of width x height. */
export function ssim(a: Uint8Array, b: Uint8Array, width: number, height: number): number {
  if (a.length !== b.length || a.length !== width * height * 3) throw new RangeError('ssim: images differ in size');
  const c1 = (0.01 * 255) ** 2;
  const c2 = (0.03 * 255) ** 2;
  const n = width * height;
  let total = 0;
  for (let c = 0; c < 3; c++) {
    const x = new Float64Array(n);
    const y = new Float64Array(n);
    const xx = new Float64Array(n);
    const yy = new Float64Array(n);
    const xy = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const p = a[i * 3 + c]!;
      const q = b[i * 3 + c]!;
      x[i] = p;
      y[i] = q;
      xx[i] = p * p;
      yy[i] = q * q;
      xy[i] = p * q;
    }
    const [mx, my, sxx, syy, sxy] = [x, y, xx, yy, xy].map((plane) => blur(plane, width, height)) as [Float64Array, Float64Array, Float64Array, Float64Array, Float64Array];
    for (let i = 0; i < n; i++) {
      const vx = sxx[i]! - mx[i]! * mx[i]!;
      const vy = syy[i]! - my[i]! * my[i]!;
      const cov = sxy[i]! - mx[i]! * my[i]!;
      total += ((2 * mx[i]! * my[i]! + c1) * (2 * cov + c2)) / ((mx[i]! ** 2 + my[i]! ** 2 + c1) * (vx + vy + c2));
    }
  }
  return total / (3 * n);
}
