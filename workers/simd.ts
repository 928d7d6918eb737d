/**
 * WebAssembly SIMD kernels for the two hot loops of every request: 8-bit pixels into a float tensor (pack) and a
 * float tensor back into 8-bit pixels (unpack). The JavaScript loops of tensor.ts did the same work one value at a
 * time; at 512x512 they were the largest cost the service added around a cheap model (about 3 ms of 12).
 *
 * The module is written here, instruction by instruction, and compiled when a worker starts: no toolchain, no binary
 * in the repository, nothing fetched. Its results are the JavaScript loops' own, bit for bit
 * (test/workers/simd.test.ts checks every 8-bit level of every range, and the floats where rounding is decided):
 *
 *   pack:   (level - origin) / step in float32: one correctly rounded division of exact values, which gives the very
 *           float32 that tensor.ts's level table holds (level * scale + offset, in double, then rounded) for every
 *           level of the three value ranges; four lanes at a time, where double precision would take two
 *   unpack: clamp(roundHalfEven((value - offset) * inverse)) in double precision, as the JavaScript expression and
 *           a Uint8ClampedArray store compute it (NaN -> 0): model outputs are arbitrary floats, so no shortcut
 *
 * Each kernel handles whole blocks of 16 pixels (or 16 values); the caller does the rest of a row in JavaScript.
 * Addresses are byte offsets into the memory the caller passes in (workers/scratch.ts owns it).
 */

/** The exported functions, by their WebAssembly signatures; every address is a byte offset into the memory. */
export interface PixelKernels {
  /** dst f32[i] = (src u8[i] - origin) / step, for `values` values (a multiple of 16). */
  widen(src: number, dst: number, values: number, origin: number, step: number): void;
  /** dst u8[i] = clamp(round((src f32[i] - offset) * inverse)), for `values` values (a multiple of 16). */
  narrow(src: number, dst: number, values: number, offset: number, inverse: number): void;
  /** Interleaved RGB u8 into three float planes (pack, NCHW), `pixels` a multiple of 16. */
  deinterleave(src: number, dst0: number, dst1: number, dst2: number, pixels: number, origin: number, step: number): void;
  /** Three float planes into interleaved RGB u8 (unpack, NCHW), `pixels` a multiple of 16. */
  interleave(src0: number, src1: number, src2: number, dst: number, pixels: number, offset: number, inverse: number): void;
  /** As `widen`, over whole pixels, swapping each pixel's first and third channel (pack, NHWC BGR). */
  widenSwapped(src: number, dst: number, pixels: number, origin: number, step: number): void;
  /** As `narrow`, over whole pixels, swapping each pixel's first and third channel (unpack, NHWC BGR). */
  narrowSwapped(src: number, dst: number, pixels: number, offset: number, inverse: number): void;
}

/** Values (widen, narrow) or pixels (deinterleave, interleave) per block of a kernel's loop. */
export const SIMD_BLOCK = 16;

// ---- The binary encoding: just what these four functions need ----

const I32 = 0x7f;
const F64 = 0x7c;
const V128 = 0x7b;

const op = {
  block: 0x02,
  loop: 0x03,
  end: 0x0b,
  br: 0x0c,
  brIf: 0x0d,
  localGet: 0x20,
  localSet: 0x21,
  i32Const: 0x41,
  i32GeU: 0x4f,
  i32Add: 0x6a,
  i32Mul: 0x6c,
  f32DemoteF64: 0xb6,
} as const;

/** SIMD instructions: the 0xfd prefix and these numbers (the SIMD proposal's final opcode table). */
const simd = {
  load: 0,
  store: 11,
  shuffle: 13,
  f64x2Splat: 20,
  f32x4Splat: 19,
  f32x4Sub: 229,
  f32x4Div: 231,
  f32ConvertU32: 251, // f32x4.convert_i32x4_u
  promote: 95, // f64x2.promote_low_f32x4
  u8NarrowI16: 102, // i8x16.narrow_i16x8_u
  i16NarrowI32: 133, // i16x8.narrow_i32x4_s
  i16ExtendLowU8: 137,
  i16ExtendHighU8: 138,
  f64x2Nearest: 148,
  i32ExtendLowU16: 169,
  i32ExtendHighU16: 170,
  f64x2Sub: 241,
  f64x2Add: 240,
  f64x2Mul: 242,
  truncSatF64: 252, // i32x4.trunc_sat_f64x2_s_zero
} as const;

function uleb(value: number): number[] {
  const out: number[] = [];
  do {
    let byte = value & 0x7f;
    value >>>= 7;
    if (value !== 0) byte |= 0x80;
    out.push(byte);
  } while (value !== 0);
  return out;
}

function sleb(value: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = value & 0x7f;
    value >>= 7;
    const done = (value === 0 && (byte & 0x40) === 0) || (value === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}

const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
const name = (text: string): number[] => [...uleb(text.length), ...[...text].map((c) => c.charCodeAt(0))];

/** Builds one function body; locals are numbered after the parameters. */
class Body {
  readonly code: number[] = [];
  private readonly locals: number[] = [];

  constructor(private readonly params: number) {}

  local(type: number): number {
    this.locals.push(type);
    return this.params + this.locals.length - 1;
  }

  get(index: number): this {
    this.code.push(op.localGet, ...uleb(index));
    return this;
  }

  set(index: number): this {
    this.code.push(op.localSet, ...uleb(index));
    return this;
  }

  i32(value: number): this {
    this.code.push(op.i32Const, ...sleb(value));
    return this;
  }

  raw(...bytes: number[]): this {
    this.code.push(...bytes);
    return this;
  }

  v(opcode: number): this {
    this.code.push(0xfd, ...uleb(opcode));
    return this;
  }

  /** v128.load / v128.store with a constant byte offset (alignment hint: 1 byte, the data need not be aligned). */
  mem(opcode: typeof simd.load | typeof simd.store, offset: number): this {
    return this.v(opcode).raw(0, ...uleb(offset));
  }

  shuffle(lanes: readonly number[]): this {
    return this.v(simd.shuffle).raw(...lanes);
  }

  /** A new v128 local holding a double parameter in both lanes. */
  splat(param: number): number {
    const local = this.local(V128);
    this.get(param).v(simd.f64x2Splat).set(local);
    return local;
  }

  /** A new v128 local holding a double parameter, rounded to float32, in all four lanes. */
  splat32(param: number): number {
    const local = this.local(V128);
    this.get(param).raw(op.f32DemoteF64).v(simd.f32x4Splat).set(local);
    return local;
  }

  /** A new i32 local: `base + count * size`, where a loop over `count` items of `size` bytes from `base` ends. */
  end(base: number, count: number, size: number): number {
    const local = this.local(I32);
    this.get(count).i32(size).raw(op.i32Mul).get(base).raw(op.i32Add).set(local);
    return local;
  }

  /** `local += step` for an i32 local. */
  advance(index: number, step: number): this {
    return this.get(index).i32(step).raw(op.i32Add).set(index);
  }

  /** `while (cursor < end) { body }` */
  whileBelow(cursor: number, end: number, body: () => void): this {
    this.raw(op.block, 0x40, op.loop, 0x40);
    this.get(cursor).get(end).raw(op.i32GeU, op.brIf, 1);
    body();
    this.raw(op.br, 0, op.end, op.end);
    return this;
  }

  encode(): number[] {
    const groups = this.locals.map((type) => [1, type]);
    const body = [...vec(groups), ...this.code, op.end];
    return [...uleb(body.length), ...body];
  }
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);
/** Lanes 8..15 then 0..7: the upper half of a vector moved down, for the conversions that read the lower half. */
const UPPER_DOWN = [...range(8, 16), ...range(0, 8)];
/** The lower halves of two vectors, side by side. */
const LOWER_HALVES = [...range(0, 8), ...range(16, 24)];

/** Four i32 lanes (in `q`) to four floats: (q - origin) / step in float32, on the stack. */
function intToFloat(f: Body, q: number, origin: number, step: number): void {
  f.get(q).v(simd.f32ConvertU32).get(origin).v(simd.f32x4Sub).get(step).v(simd.f32x4Div);
}

/** Sixteen u8 lanes (in `bytes`) to sixteen floats stored at `dst` + `base` (+0, +16, +32, +48). */
function storeWidened(f: Body, bytes: number, dst: number, origin: number, step: number, wide: number, quad: number, base = 0): void {
  let k = 0;
  for (const half of [simd.i16ExtendLowU8, simd.i16ExtendHighU8]) {
    f.get(bytes).v(half).set(wide);
    for (const quarter of [simd.i32ExtendLowU16, simd.i32ExtendHighU16]) {
      f.get(wide).v(quarter).set(quad);
      f.get(dst);
      intToFloat(f, quad, origin, step);
      f.mem(simd.store, base + 16 * k++);
    }
  }
}

/** Four floats (in `x`) to four i32 lanes: roundHalfEven((x - offset) * inverse), saturated; on the stack. */
function floatToInt(f: Body, x: number, offset: number, inverse: number): void {
  f.get(x).v(simd.promote).get(offset).v(simd.f64x2Sub).get(inverse).v(simd.f64x2Mul).v(simd.f64x2Nearest).v(simd.truncSatF64);
  f.get(x).get(x).shuffle(UPPER_DOWN).v(simd.promote).get(offset).v(simd.f64x2Sub).get(inverse).v(simd.f64x2Mul).v(simd.f64x2Nearest).v(simd.truncSatF64);
  f.shuffle(LOWER_HALVES);
}

/** Sixteen floats at `src` + `base` (+0 .. +48) to sixteen u8 lanes, clamped to 0..255; on the stack. */
function loadNarrowed(f: Body, src: number, offset: number, inverse: number, x: number, base = 0): void {
  for (let pair = 0; pair < 2; pair++) {
    for (let k = 0; k < 2; k++) {
      f.get(src).mem(simd.load, base + 32 * pair + 16 * k).set(x);
      floatToInt(f, x, offset, inverse);
    }
    f.v(simd.i16NarrowI32);
  }
  f.v(simd.u8NarrowI16);
}

/**
 * Pushes the vector whose 16 lanes are bytes `sources` (0..47) of the three vectors `from`, read as 48 consecutive
 * bytes: one shuffle when the bytes lie in two of them, two when they lie in all three.
 */
function gather(f: Body, from: readonly [number, number, number], sources: readonly number[]): void {
  const low = Math.min(...sources) >> 4;
  const high = Math.max(...sources) >> 4;
  if (high - low <= 1) {
    const second = Math.min(low + 1, 2);
    f.get(from[low]!).get(from[second]!).shuffle(sources.map((at) => at - 16 * low));
    return;
  }
  f.get(from[0]).get(from[1]).shuffle(sources.map((at) => (at < 32 ? at : 0)));
  f.get(from[2]).shuffle(sources.map((at, lane) => (at < 32 ? lane : at - 16)));
}

/** Channel `ch` of 16 interleaved RGB pixels: bytes 3k + ch. */
const channelOf = (ch: number): number[] => range(0, 16).map((k) => 3 * k + ch);
/** Output vector `v` of 16 interleaved pixels built from three channel vectors (r, g, b read as 48 bytes). */
const interleavedOf = (v: number): number[] => range(16 * v, 16 * v + 16).map((j) => 16 * (j % 3) + Math.floor(j / 3));
/** Vector `v` of 16 interleaved pixels with the first and third channel of each pixel swapped (RGB <-> BGR). */
const swappedOf = (v: number): number[] => range(16 * v, 16 * v + 16).map((j) => j - (j % 3) + 2 - (j % 3));

function widen(): number[] {
  const [src, dst, n, origin, step] = [0, 1, 2, 3, 4];
  const f = new Body(5);
  const [end, sc, of] = [f.end(src, n, 1), f.splat32(origin), f.splat32(step)];
  const [bytes, wide, quad] = [f.local(V128), f.local(V128), f.local(V128)];
  f.whileBelow(src, end, () => {
    f.get(src).mem(simd.load, 0).set(bytes);
    storeWidened(f, bytes, dst, sc, of, wide, quad);
    f.advance(src, 16).advance(dst, 64);
  });
  return f.encode();
}

function narrow(): number[] {
  const [src, dst, n, offset, inverse] = [0, 1, 2, 3, 4];
  const f = new Body(5);
  const [end, of, inv, x] = [f.end(dst, n, 1), f.splat(offset), f.splat(inverse), f.local(V128)];
  f.whileBelow(dst, end, () => {
    f.get(dst);
    loadNarrowed(f, src, of, inv, x);
    f.mem(simd.store, 0);
    f.advance(src, 64).advance(dst, 16);
  });
  return f.encode();
}

/**
 * 16 pixels at a time: 48 bytes in, three vectors gathered from them (`pattern`), each widened to floats and stored
 * where `target` says (a local holding the address, and a constant offset).
 */
function widenPixels(params: number, pattern: (v: number) => number[], target: (v: number) => [number, number], steps: Array<[number, number]>): number[] {
  const [src, pixels, origin, step] = [0, params - 3, params - 2, params - 1];
  const f = new Body(params);
  const [end, sc, of] = [f.end(src, pixels, 3), f.splat32(origin), f.splat32(step)];
  const input = [f.local(V128), f.local(V128), f.local(V128)] as const;
  const [bytes, wide, quad] = [f.local(V128), f.local(V128), f.local(V128)];
  f.whileBelow(src, end, () => {
    input.forEach((vector, v) => f.get(src).mem(simd.load, 16 * v).set(vector));
    for (let v = 0; v < 3; v++) {
      gather(f, input, pattern(v));
      f.set(bytes);
      const [dst, base] = target(v);
      storeWidened(f, bytes, dst, sc, of, wide, quad, base);
    }
    for (const [local, by] of [[src, 48], ...steps] as Array<[number, number]>) f.advance(local, by);
  });
  return f.encode();
}

/** (src, dst0, dst1, dst2, pixels, origin, step): each channel to its own plane. */
const deinterleave = (): number[] => widenPixels(7, channelOf, (v) => [1 + v, 0], [[1, 64], [2, 64], [3, 64]]);

/** (src, dst, pixels, origin, step): pixels stay interleaved, first and third channel swapped. */
const widenSwapped = (): number[] => widenPixels(5, swappedOf, (v) => [1, 64 * v], [[1, 192]]);

function interleave(): number[] {
  const [s0, s1, s2, dst, pixels, offset, inverse] = [0, 1, 2, 3, 4, 5, 6];
  const f = new Body(7);
  const [end, of, inv, x] = [f.end(dst, pixels, 3), f.splat(offset), f.splat(inverse), f.local(V128)];
  const channels = [f.local(V128), f.local(V128), f.local(V128)];
  f.whileBelow(dst, end, () => {
    [s0, s1, s2].forEach((src, ch) => {
      loadNarrowed(f, src, of, inv, x);
      f.set(channels[ch]!);
    });
    const [r, g, b] = channels as [number, number, number];
    for (let v = 0; v < 3; v++) {
      f.get(dst);
      gather(f, [r, g, b], interleavedOf(v));
      f.mem(simd.store, 16 * v);
    }
    f.advance(s0, 64).advance(s1, 64).advance(s2, 64).advance(dst, 48);
  });
  return f.encode();
}

function narrowSwapped(): number[] {
  const [src, dst, pixels, offset, inverse] = [0, 1, 2, 3, 4];
  const f = new Body(5);
  const [end, of, inv, x] = [f.end(dst, pixels, 3), f.splat(offset), f.splat(inverse), f.local(V128)];
  const narrowed = [f.local(V128), f.local(V128), f.local(V128)] as const;
  f.whileBelow(dst, end, () => {
    narrowed.forEach((vector, v) => {
      loadNarrowed(f, src, of, inv, x, 64 * v);
      f.set(vector);
    });
    for (let v = 0; v < 3; v++) {
      f.get(dst);
      gather(f, narrowed, swappedOf(v));
      f.mem(simd.store, 16 * v);
    }
    f.advance(src, 192).advance(dst, 48);
  });
  return f.encode();
}

/** The module: imports its memory ("env", "memory"), exports the four kernels. */
export function kernelModuleBytes(): Uint8Array {
  const types = [
    [0x60, ...vec([[I32], [I32], [I32], [F64], [F64]]), 0], // widen, narrow, widenSwapped, narrowSwapped
    [0x60, ...vec([[I32], [I32], [I32], [I32], [I32], [F64], [F64]]), 0], // deinterleave, interleave
  ];
  const bodies: Array<[string, number, number[]]> = [
    ['widen', 0, widen()],
    ['narrow', 0, narrow()],
    ['deinterleave', 1, deinterleave()],
    ['interleave', 1, interleave()],
    ['widenSwapped', 0, widenSwapped()],
    ['narrowSwapped', 0, narrowSwapped()],
  ];
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec(types)),
    ...section(2, vec([[...name('env'), ...name('memory'), 0x02, 0x00, 0x00]])),
    ...section(3, vec(bodies.map(([, type]) => uleb(type)))),
    ...section(7, vec(bodies.map(([id], index) => [...name(id), 0x00, ...uleb(index)]))),
    ...section(10, vec(bodies.map(([, , body]) => body))),
  ]);
}

let compiled: WebAssembly.Module | null | undefined;

/**
 * The kernels on `memory`, or undefined where this engine lacks WebAssembly SIMD (the JavaScript loops then run).
 * Compiled once per thread, instantiated per memory.
 */
export function pixelKernels(memory: WebAssembly.Memory): PixelKernels | undefined {
  if (compiled === undefined) {
    const bytes = kernelModuleBytes();
    compiled = WebAssembly.validate(bytes) ? new WebAssembly.Module(bytes) : null;
  }
  if (compiled === null) return undefined;
  const instance = new WebAssembly.Instance(compiled, { env: { memory } });
  return instance.exports as unknown as PixelKernels;
}
