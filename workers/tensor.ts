/**
 * Pixels <-> tensors, as a manifest asks: layout, channel order, value range and padding. Pure functions on typed
 * arrays (no sharp, no onnxruntime), so every convention can be unit-tested alone.
 *
 * Pixels are always interleaved 8-bit RGB (HWC), as libvips hands them over.
 */
import type { PadMode, TensorSpec, ValueRange } from '../models/manifest.js';
import { SIMD_BLOCK, type PixelKernels } from './simd.js';

/**
 * Where the WebAssembly kernels can pack and unpack (workers/scratch.ts): their memory, and copies into it. Arrays
 * that already live in `buffer` are used in place; others are staged, or the JavaScript loops run.
 */
export interface SimdRoom {
  readonly kernels: PixelKernels | undefined;
  readonly buffer: ArrayBuffer | undefined;
  stageBytes(bytes: Uint8Array): number | undefined;
  stageFloats(values: Float32Array): number | undefined;
}

/** Byte addresses of the source and destination in the kernels' memory, or undefined where they cannot run. */
function kernelAddresses<S extends Uint8Array | Float32Array>(
  simd: SimdRoom | undefined,
  source: S,
  destination: Float32Array | Uint8Array,
  stage: (room: SimdRoom, source: S) => number | undefined,
): { kernels: PixelKernels; src: number; dst: number } | undefined {
  const kernels = simd?.kernels;
  if (simd === undefined || kernels === undefined || destination.buffer !== simd.buffer) return undefined;
  const src = source.buffer === simd.buffer ? source.byteOffset : stage(simd, source);
  return src === undefined ? undefined : { kernels, src, dst: destination.byteOffset };
}

/** The part of a row the kernels take: whole blocks. */
const blocks = (count: number): number => count - (count % SIMD_BLOCK);

export interface PackedTensor {
  data: Float32Array;
  dims: [number, number, number, number];
  /** The padded size the model sees. */
  width: number;
  height: number;
}

/** [scale, offset] such that value = level * scale + offset, for 8-bit levels 0..255. */
function affine(range: ValueRange): [number, number] {
  switch (range) {
    case '0..1':
      return [1 / 255, 0];
    case '-1..1':
      return [2 / 255, -1];
    case '0..255':
      return [1, 0];
  }
}

/**
 * The same mapping as (level - origin) / step, the form the SIMD kernels compute in float32 (simd.ts): for every level
 * of each range that division gives exactly the table's float32 (test/workers/simd.test.ts checks all 768).
 */
function divisorForm(range: ValueRange): [number, number] {
  switch (range) {
    case '0..1':
      return [0, 255];
    case '-1..1':
      return [127.5, 127.5];
    case '0..255':
      return [0, 1];
  }
}

/** One float per 8-bit level, per range: the hot loop is then a table look-up and a store. Built once. */
const LEVELS = new Map<ValueRange, Float32Array>();
function levels(range: ValueRange): Float32Array {
  let table = LEVELS.get(range);
  if (table === undefined) {
    const [scale, offset] = affine(range);
    table = new Float32Array(256);
    for (let v = 0; v < 256; v++) table[v] = v * scale + offset;
    LEVELS.set(range, table);
  }
  return table;
}

/** Rounds up to a multiple; 1 means no padding. */
export function padTo(size: number, multiple: number): number {
  return Math.ceil(size / multiple) * multiple;
}

/** The first `length` elements of `scratch` when it is large enough, else a fresh array (the caller wipes either). */
function region<T extends Float32Array | Uint8Array>(scratch: T | undefined, length: number, fresh: (n: number) => T): T {
  return scratch !== undefined && scratch.length >= length ? (scratch.subarray(0, length) as T) : fresh(length);
}

/**
 * Packs RGB pixels into a float tensor. The image sits at the top-left; the right and bottom margins up to the next
 * multiple are filled with a grey level or with the nearest border pixel ('edge').
 *
 * One pass, specialised by layout, with no per-pixel branches: this runs on the request path of every image. With
 * `scratch` (a worker's reusable buffer) the tensor is written into its first elements instead of a new array; with
 * `simd` too (the same worker's kernels, whose memory holds that buffer) the kernels take every row's whole blocks.
 */
export function toTensor(
  rgb: Uint8Array,
  width: number,
  height: number,
  spec: Pick<TensorSpec, 'layout' | 'channels' | 'range'>,
  multiple = 1,
  pad: PadMode = 'edge',
  scratch?: Float32Array,
  simd?: SimdRoom,
): PackedTensor {
  if (rgb.length !== width * height * 3) throw new RangeError(`expected ${width * height * 3} bytes of RGB, got ${rgb.length}`);
  const pw = padTo(width, multiple);
  const ph = padTo(height, multiple);
  const level = levels(spec.range);
  const data = region(scratch, pw * ph * 3, (n) => new Float32Array(n));
  const [scale, offset] = affine(spec.range);
  const grey = pad === 'edge' ? undefined : pad * scale + offset;
  const bgr = spec.channels === 'BGR';
  const fast = kernelAddresses(simd, rgb, data, (room, bytes) => room.stageBytes(bytes));
  const [origin, step] = divisorForm(spec.range);
  const job: Packing = { rgb, width, height, data, pw, ph, level, bgr, grey, simd: fast && { ...fast, origin, step } };
  if (spec.layout === 'NCHW') {
    packPlanar(job);
    return { data, dims: [1, 3, ph, pw], width: pw, height: ph };
  }
  packInterleaved(job);
  return { data, dims: [1, ph, pw, 3], width: pw, height: ph };
}

/** One packing job: pixels in; the tensor and its padded size; level table; channel order; margin fill (none: edge). */
interface Packing {
  rgb: Uint8Array;
  width: number;
  height: number;
  data: Float32Array;
  pw: number;
  ph: number;
  level: Float32Array;
  bgr: boolean;
  grey: number | undefined;
  /** The kernels and the byte addresses of `rgb` and `data` in their memory: they take each row's whole blocks. */
  simd: { kernels: PixelKernels; src: number; dst: number; origin: number; step: number } | undefined;
}

function packPlanar({ rgb, width, height, data, pw, ph, level, bgr, grey, simd }: Packing): void {
  const plane = pw * ph;
  // Where red, green and blue go: BGR puts red in the third plane.
  const r0 = bgr ? 2 * plane : 0;
  const g0 = plane;
  const b0 = bgr ? 0 : 2 * plane;
  const done = simd === undefined ? 0 : blocks(width);
  for (let y = 0; y < height; y++) {
    const row = y * pw;
    const end = row + width;
    if (simd !== undefined && done > 0) {
      const at = (index: number) => simd.dst + 4 * index;
      simd.kernels.deinterleave(simd.src + y * width * 3, at(r0 + row), at(g0 + row), at(b0 + row), done, simd.origin, simd.step);
    }
    for (let p = row + done, i = (y * width + done) * 3; p < end; p++, i += 3) {
      data[r0 + p] = level[rgb[i]!]!;
      data[g0 + p] = level[rgb[i + 1]!]!;
      data[b0 + p] = level[rgb[i + 2]!]!;
    }
    if (pw > width) {
      // Right margin: the row's last pixel (edge) or the grey level.
      for (const c of [r0, g0, b0]) data.fill(grey ?? data[c + end - 1]!, c + end, c + row + pw);
    }
  }
  for (const c of [r0, g0, b0]) {
    // Bottom margin: the last row repeated (edge) or the grey level, as whole rows.
    for (let y = height; y < ph; y++) {
      if (grey === undefined) data.copyWithin(c + y * pw, c + (height - 1) * pw, c + height * pw);
      else data.fill(grey, c + y * pw, c + (y + 1) * pw);
    }
  }
}

function packInterleaved({ rgb, width, height, data, pw, ph, level, bgr, grey, simd }: Packing): void {
  // Offsets of red and blue inside a pixel: BGR swaps them.
  const rc = bgr ? 2 : 0;
  const bc = bgr ? 0 : 2;
  for (let y = 0, i = 0; y < height; y++) {
    const row = y * pw * 3;
    const end = row + width * 3;
    if (simd !== undefined) {
      // Whole blocks of pixels by the kernels (BGR with red and blue swapped), then the row's rest.
      const done = blocks(width) * 3;
      if (bgr) simd.kernels.widenSwapped(simd.src + i, simd.dst + 4 * row, done / 3, simd.origin, simd.step);
      else simd.kernels.widen(simd.src + i, simd.dst + 4 * row, done, simd.origin, simd.step);
      for (let d = row + done, j = i + done; d < end; d += 3, j += 3) {
        data[d + rc] = level[rgb[j]!]!;
        data[d + 1] = level[rgb[j + 1]!]!;
        data[d + bc] = level[rgb[j + 2]!]!;
      }
      i += width * 3;
    } else {
      for (let d = row; d < end; d += 3, i += 3) {
        data[d + rc] = level[rgb[i]!]!;
        data[d + 1] = level[rgb[i + 1]!]!;
        data[d + bc] = level[rgb[i + 2]!]!;
      }
    }
    for (let d = end; d < row + pw * 3; d += 3) {
      if (grey === undefined) data.copyWithin(d, end - 3, end);
      else data.fill(grey, d, d + 3);
    }
  }
  for (let y = height; y < ph; y++) {
    if (grey === undefined) data.copyWithin(y * pw * 3, (height - 1) * pw * 3, height * pw * 3);
    else data.fill(grey, y * pw * 3, (y + 1) * pw * 3);
  }
}

/**
 * Reads the top-left width x height region of an output tensor back into RGB pixels, mapping the model's range to
 * 0..255, rounding and clamping (models such as White-box overshoot their nominal range). With `scratch` (a worker's
 * reusable buffer) the pixels are written into its first bytes instead of a new array.
 */
export function fromTensor(
  data: Float32Array,
  dims: readonly number[],
  spec: Pick<TensorSpec, 'layout' | 'channels' | 'range'>,
  width: number,
  height: number,
  scratch?: Uint8Array,
  simd?: SimdRoom,
): Uint8Array {
  if (dims.length !== 4 || dims[0] !== 1) throw new RangeError(`expected an output of shape [1, ...], got [${dims.join(', ')}]`);
  const nchw = spec.layout === 'NCHW';
  const [channels, th, tw] = nchw ? [dims[1]!, dims[2]!, dims[3]!] : [dims[3]!, dims[1]!, dims[2]!];
  if (channels !== 3) throw new RangeError(`expected 3 output channels in ${spec.layout}, got shape [${dims.join(', ')}]`);
  if (tw < width || th < height) throw new RangeError(`output ${tw}x${th} is smaller than the image ${width}x${height}`);
  if (data.length < tw * th * 3) throw new RangeError(`output holds ${data.length} values, its shape [${dims.join(', ')}] needs ${tw * th * 3}`);
  const [scale, offset] = affine(spec.range);
  const inverse = 1 / scale;
  const bgr = spec.channels === 'BGR';
  const rgb = region(scratch, width * height * 3, (n) => new Uint8Array(n));
  // Uint8ClampedArray rounds half to even and clamps, and maps NaN to 0: exactly the conversion wanted, done by V8
  // (and by the kernels, simd.ts).
  const out = new Uint8ClampedArray(rgb.buffer, rgb.byteOffset, rgb.length);
  const fast = kernelAddresses(simd, data.subarray(0, tw * th * 3), rgb, (room, values) => room.stageFloats(values));
  if (nchw) {
    const plane = tw * th;
    const r0 = bgr ? 2 * plane : 0;
    const b0 = bgr ? 0 : 2 * plane;
    const done = fast === undefined ? 0 : blocks(width);
    for (let y = 0, dst = 0; y < height; y++) {
      const end = y * tw + width;
      if (fast !== undefined && done > 0) {
        const at = (index: number) => fast.src + 4 * (index + y * tw);
        fast.kernels.interleave(at(r0), at(plane), at(b0), fast.dst + dst, done, offset, inverse);
        dst += done * 3;
      }
      for (let p = y * tw + done; p < end; p++, dst += 3) {
        out[dst] = (data[r0 + p]! - offset) * inverse;
        out[dst + 1] = (data[plane + p]! - offset) * inverse;
        out[dst + 2] = (data[b0 + p]! - offset) * inverse;
      }
    }
  } else {
    const rc = bgr ? 2 : 0;
    const bc = bgr ? 0 : 2;
    for (let y = 0, dst = 0; y < height; y++) {
      const end = (y * tw + width) * 3;
      let from = y * tw * 3;
      if (fast !== undefined) {
        // Whole blocks of pixels by the kernels (BGR swapped back), then the row's rest.
        const done = blocks(width) * 3;
        if (bgr) fast.kernels.narrowSwapped(fast.src + 4 * from, fast.dst + dst, done / 3, offset, inverse);
        else fast.kernels.narrow(fast.src + 4 * from, fast.dst + dst, done, offset, inverse);
        from += done;
        dst += done;
      }
      for (let s = from; s < end; s += 3, dst += 3) {
        out[dst] = (data[s + rc]! - offset) * inverse;
        out[dst + 1] = (data[s + 1]! - offset) * inverse;
        out[dst + 2] = (data[s + bc]! - offset) * inverse;
      }
    }
  }
  return rgb;
}

/** The size the model runs at: shrink (never enlarge) to honour the manifest's caps and the output's own cap. */
export function modelSize(
  width: number,
  height: number,
  rules: { maxShortSide?: number | undefined; maxLongSide?: number | undefined },
  outputLongSide?: number,
): { width: number; height: number } {
  let factor = 1;
  const short = Math.min(width, height);
  const long = Math.max(width, height);
  if (rules.maxShortSide !== undefined && short > rules.maxShortSide) factor = Math.min(factor, rules.maxShortSide / short);
  if (rules.maxLongSide !== undefined && long > rules.maxLongSide) factor = Math.min(factor, rules.maxLongSide / long);
  if (outputLongSide !== undefined && long > outputLongSide) factor = Math.min(factor, outputLongSide / long);
  if (factor === 1) return { width, height };
  return { width: Math.max(1, Math.round(width * factor)), height: Math.max(1, Math.round(height * factor)) };
}

/** Scales so the long side is at most `maxLongSide`, keeping the aspect ratio. */
export function fitLongSide(width: number, height: number, maxLongSide: number): { width: number; height: number } {
  return modelSize(width, height, { maxLongSide });
}
