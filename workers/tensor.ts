/**
 * Pixels <-> tensors, as a manifest asks: layout, channel order, value range and padding. Pure functions on typed
 * arrays (no sharp, no onnxruntime), so every convention can be unit-tested alone.
 *
 * Pixels are always interleaved 8-bit RGB (HWC), as libvips hands them over.
 */
import type { PadMode, TensorSpec, ValueRange } from '../models/manifest.js';

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

/** Rounds up to a multiple; 1 means no padding. */
export function padTo(size: number, multiple: number): number {
  return Math.ceil(size / multiple) * multiple;
}

/**
 * Packs RGB pixels into a float tensor. The image sits at the top-left; the right and bottom margins up to the next
 * multiple are filled with a grey level or with the nearest border pixel ('edge').
 */
export function toTensor(
  rgb: Uint8Array,
  width: number,
  height: number,
  spec: Pick<TensorSpec, 'layout' | 'channels' | 'range'>,
  multiple = 1,
  pad: PadMode = 'edge',
): PackedTensor {
  if (rgb.length !== width * height * 3) throw new RangeError(`expected ${width * height * 3} bytes of RGB, got ${rgb.length}`);
  const pw = padTo(width, multiple);
  const ph = padTo(height, multiple);
  const [scale, offset] = affine(spec.range);
  // One float per 8-bit level: the hot loop is then a table look-up and a store, on the request path of every image.
  const level = new Float32Array(256);
  for (let v = 0; v < 256; v++) level[v] = v * scale + offset;
  const data = new Float32Array(pw * ph * 3);
  // Source channel for each tensor channel: BGR reads R from index 2.
  const [c0, c1, c2] = spec.channels === 'RGB' ? [0, 1, 2] : [2, 1, 0];
  const plane = pw * ph;
  const nchw = spec.layout === 'NCHW';

  for (let y = 0; y < ph; y++) {
    // Rows below the image repeat its last row (edge); a grey fill overwrites the margins afterwards.
    const src = (y < height ? y : height - 1) * width * 3;
    const row = y * pw;
    if (nchw) {
      for (let x = 0, i = src; x < pw; x++) {
        const p = row + x;
        data[p] = level[rgb[i + c0]!]!;
        data[plane + p] = level[rgb[i + c1]!]!;
        data[2 * plane + p] = level[rgb[i + c2]!]!;
        if (x < width - 1) i += 3; // columns right of the image repeat its last column
      }
    } else {
      for (let x = 0, i = src, d = row * 3; x < pw; x++, d += 3) {
        data[d] = level[rgb[i + c0]!]!;
        data[d + 1] = level[rgb[i + c1]!]!;
        data[d + 2] = level[rgb[i + c2]!]!;
        if (x < width - 1) i += 3;
      }
    }
  }
  if (pad !== 'edge' && (pw > width || ph > height)) fillMargins(data, width, height, pw, ph, nchw, pad * scale + offset);
  const dims: PackedTensor['dims'] = nchw ? [1, 3, ph, pw] : [1, ph, pw, 3];
  return { data, dims, width: pw, height: ph };
}

/** Sets the right and bottom margins (outside width x height) of a padded tensor to one value. */
function fillMargins(data: Float32Array, width: number, height: number, pw: number, ph: number, nchw: boolean, value: number): void {
  const plane = pw * ph;
  for (let y = 0; y < ph; y++) {
    for (let x = y < height ? width : 0; x < pw; x++) {
      const p = y * pw + x;
      if (nchw) {
        data[p] = value;
        data[plane + p] = value;
        data[2 * plane + p] = value;
      } else {
        data[p * 3] = value;
        data[p * 3 + 1] = value;
        data[p * 3 + 2] = value;
      }
    }
  }
}

/**
 * Reads the top-left width x height region of an output tensor back into RGB pixels, mapping the model's range to
 * 0..255, rounding and clamping (models such as White-box overshoot their nominal range).
 */
export function fromTensor(
  data: Float32Array,
  dims: readonly number[],
  spec: Pick<TensorSpec, 'layout' | 'channels' | 'range'>,
  width: number,
  height: number,
): Uint8Array {
  if (dims.length !== 4 || dims[0] !== 1) throw new RangeError(`expected an output of shape [1, ...], got [${dims.join(', ')}]`);
  const nchw = spec.layout === 'NCHW';
  const [channels, th, tw] = nchw ? [dims[1]!, dims[2]!, dims[3]!] : [dims[3]!, dims[1]!, dims[2]!];
  if (channels !== 3) throw new RangeError(`expected 3 output channels in ${spec.layout}, got shape [${dims.join(', ')}]`);
  if (tw < width || th < height) throw new RangeError(`output ${tw}x${th} is smaller than the image ${width}x${height}`);
  const [scale, offset] = affine(spec.range);
  const inverse = 1 / scale;
  const [c0, c1, c2] = spec.channels === 'RGB' ? [0, 1, 2] : [2, 1, 0];
  const plane = tw * th;
  const rgb = new Uint8Array(width * height * 3);
  // Uint8ClampedArray rounds half to even and clamps, and maps NaN to 0: exactly the conversion wanted, done by V8.
  const clamped = new Uint8ClampedArray(rgb.buffer, rgb.byteOffset, rgb.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0, dst = y * width * 3; x < width; x++, dst += 3) {
      const p = y * tw + x;
      if (nchw) {
        clamped[dst + c0] = (data[p]! - offset) * inverse;
        clamped[dst + c1] = (data[plane + p]! - offset) * inverse;
        clamped[dst + c2] = (data[2 * plane + p]! - offset) * inverse;
      } else {
        clamped[dst + c0] = (data[p * 3]! - offset) * inverse;
        clamped[dst + c1] = (data[p * 3 + 1]! - offset) * inverse;
        clamped[dst + c2] = (data[p * 3 + 2]! - offset) * inverse;
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
