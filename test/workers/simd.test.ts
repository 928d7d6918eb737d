/**
 * The WebAssembly SIMD kernels (workers/simd.ts) against the JavaScript loops they stand in for (workers/tensor.ts):
 * the same tensor and the same pixels, bit for bit, for every 8-bit level, every layout, channel order, value range
 * and padding, rows that are not whole blocks, and the floats where rounding and clamping are decided.
 */
import t from 'tap';
import type { TensorSpec } from '../../models/manifest.js';
import { Scratch } from '../../workers/scratch.js';
import { SIMD_BLOCK, kernelModuleBytes } from '../../workers/simd.js';
import { fromTensor, toTensor, type SimdRoom } from '../../workers/tensor.js';

type Spec = Pick<TensorSpec, 'layout' | 'channels' | 'range'>;
const SPECS: Spec[] = [];
for (const layout of ['NCHW', 'NHWC'] as const) {
  for (const channels of ['RGB', 'BGR'] as const) {
    for (const range of ['0..1', '-1..1', '0..255'] as const) SPECS.push({ layout, channels, range });
  }
}
/** Widths below, at and around a block, and a photo's; heights that leave a bottom margin. */
const SIZES: Array<[number, number]> = [[1, 1], [5, 3], [16, 2], [17, 4], [37, 23], [64, 16], [203, 157]];

let seed = 7;
const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;

function pixels(width: number, height: number): Uint8Array {
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = i < 256 ? i : Math.floor(random() * 256); // every level, then noise
  return rgb;
}

const same = (a: ArrayLike<number>, b: ArrayLike<number>): boolean => {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  return true;
};

const scratch = new Scratch();
const room = scratch.tensor(1024 * 1024)!;
const out = scratch.pixels(1024 * 1024)!;

/** The scratch, with its kernels counted: proof that they, not the JavaScript loops, did the work compared. */
const calls = { widen: 0, narrow: 0, deinterleave: 0, interleave: 0, widenSwapped: 0, narrowSwapped: 0 };
const kernels = scratch.kernels!;
const counted: SimdRoom = {
  buffer: scratch.buffer,
  kernels: {
    widen: (...args) => (calls.widen++, kernels.widen(...args)),
    narrow: (...args) => (calls.narrow++, kernels.narrow(...args)),
    deinterleave: (...args) => (calls.deinterleave++, kernels.deinterleave(...args)),
    interleave: (...args) => (calls.interleave++, kernels.interleave(...args)),
    widenSwapped: (...args) => (calls.widenSwapped++, kernels.widenSwapped(...args)),
    narrowSwapped: (...args) => (calls.narrowSwapped++, kernels.narrowSwapped(...args)),
  },
  stageBytes: (bytes) => scratch.stageBytes(bytes),
  stageFloats: (values) => scratch.stageFloats(values),
};

t.test('the kernels compile and run here (WebAssembly SIMD)', async (t) => {
  t.ok(WebAssembly.validate(kernelModuleBytes()), 'the module is valid');
  t.ok(scratch.kernels !== undefined, 'the scratch memory has its kernels');
});

t.test('pack: the kernels write the tensor the JavaScript loop writes, bit for bit', async (t) => {
  const different: string[] = [];
  let cases = 0;
  for (const spec of SPECS) {
    for (const [width, height] of SIZES) {
      for (const [multiple, pad] of [[1, 'edge'], [16, 'edge'], [16, 255], [8, 0]] as const) {
        const rgb = pixels(width, height);
        const plain = toTensor(rgb, width, height, spec, multiple, pad);
        const fast = toTensor(rgb, width, height, spec, multiple, pad, room, counted);
        cases++;
        if (!same(plain.data, fast.data) || !same(plain.dims, fast.dims)) different.push(`${spec.layout} ${spec.channels} ${spec.range} ${width}x${height} /${multiple} pad ${pad}`);
      }
    }
  }
  t.same(different, [], `${cases} combinations identical`);
  t.ok(calls.deinterleave > 0 && calls.widen > 0 && calls.widenSwapped > 0, `the kernels ran (deinterleave ${calls.deinterleave}, widen ${calls.widen}, widenSwapped ${calls.widenSwapped} calls)`);
});

/** Floats where the result is decided: the half-way points of every level in each range, floats 1 to 256 steps either side (where the float32 unpack must hand over to double precision), and the odd ones. */
function awkwardFloats(range: Spec['range']): Float32Array {
  const [scale, offset] = range === '0..1' ? [1 / 255, 0] : range === '-1..1' ? [2 / 255, -1] : [1, 0];
  const values: number[] = [NaN, Infinity, -Infinity, 0, -0, 1e-30, -1e-30, 3.4e38, -3.4e38];
  const bits = new Float32Array(1);
  const word = new Int32Array(bits.buffer);
  for (let level = -2; level <= 257; level++) {
    for (const frac of [0, 0.5, 0.25, 0.75]) {
      bits[0] = (level + frac) * scale + offset;
      const at = word[0]!;
      for (const step of [-256, -64, -16, -4, -2, -1, 0, 1, 2, 4, 16, 64, 256]) {
        word[0] = at + step;
        values.push(bits[0]!);
      }
    }
  }
  while (values.length % 48 !== 0 || values.length < 4096) values.push(Math.fround((random() * 1.4 - 0.2) / scale + offset));
  return Float32Array.from(values);
}

t.test('unpack: the kernels write the pixels the JavaScript loop writes, bit for bit, rounding and clamping included', async (t) => {
  const different: string[] = [];
  let cases = 0;
  for (const spec of SPECS) {
    const floats = awkwardFloats(spec.range);
    for (const [width, height] of [[floats.length / 3, 1], [37, 23], [16, 5], [203, 157]] as const) {
      for (const extra of [0, 3]) {
        // The tensor may be wider and taller than the image (padding): only the top-left region is read.
        const tw = width + extra;
        const th = height + extra;
        const data = new Float32Array(tw * th * 3);
        for (let i = 0; i < data.length; i++) data[i] = floats[i % floats.length]!;
        const dims = spec.layout === 'NCHW' ? [1, 3, th, tw] : [1, th, tw, 3];
        const plain = fromTensor(data, dims, spec, width, height);
        const fast = fromTensor(data, dims, spec, width, height, out, counted);
        cases++;
        if (!same(plain, fast)) different.push(`${spec.layout} ${spec.channels} ${spec.range} ${width}x${height} in ${tw}x${th}`);
      }
    }
  }
  t.same(different, [], `${cases} combinations identical`);
  t.ok(calls.interleave > 0 && calls.narrow > 0 && calls.narrowSwapped > 0, `the kernels ran (interleave ${calls.interleave}, narrow ${calls.narrow}, narrowSwapped ${calls.narrowSwapped} calls)`);
});

t.test("unpack: a million floats in every range, from a blur and from noise, give the JavaScript loop's pixels", async (t) => {
  // A 3x3 binomial blur of 8-bit levels (weights k/16) lands many outputs exactly on, or one rounding away from, a
  // half-way point: the float32 kernel must recover each product's rounding exactly to match double precision.
  const side = 512;
  const levels = pixels(side, side);
  const blur = new Float32Array(side * side * 3);
  const noise = new Float32Array(side * side * 3);
  for (const spec of SPECS.filter((s) => s.layout === 'NHWC' && s.channels === 'RGB')) {
    const [scale, offset] = spec.range === '0..1' ? [1 / 255, 0] : spec.range === '-1..1' ? [2 / 255, -1] : [1, 0];
    for (let i = 0; i < blur.length; i++) {
      const at = (d: number) => levels[(i + d * 3 + blur.length) % blur.length]!;
      const sum = (at(-side - 1) + 2 * at(-side) + at(-side + 1) + 2 * at(-1) + 4 * at(0) + 2 * at(1) + at(side - 1) + 2 * at(side) + at(side + 1)) / 16;
      blur[i] = Math.fround(Math.fround(sum * Math.fround(scale)) + offset);
      noise[i] = Math.fround((random() * 1.2 - 0.1) * 255 * scale + offset);
    }
    for (const [name, data] of [['blur', blur], ['noise', noise]] as const) {
      const dims = [1, side, side, 3];
      t.ok(same(fromTensor(data, dims, spec, side, side), fromTensor(data, dims, spec, side, side, out, counted)), `${spec.range} ${name}: identical`);
    }
  }
});

t.test('what the kernels staged is wiped with the rest', async (t) => {
  const rgb = pixels(64, 48);
  toTensor(rgb, 64, 48, SPECS[0]!, 16, 'edge', room, scratch);
  const { staging } = scratch.peek();
  t.ok(staging.subarray(0, rgb.length).some((v) => v !== 0), 'the pixels were staged');
  scratch.wipe();
  t.ok(scratch.peek().staging.every((v) => v === 0) && scratch.peek().tensor.every((v) => v === 0), 'all zero after wipe');
  t.equal(SIMD_BLOCK, 16);
});
