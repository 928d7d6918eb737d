/**
 * WebAssembly SIMD kernels for the two hot loops of every request: 8-bit pixels into a float tensor (pack) and a
 * float tensor back into 8-bit pixels (unpack). The JavaScript loops of tensor.ts did the same work one value at a
 * time; at 512x512 they were the largest cost the service added around a cheap model (about 3 ms of 12).
 *
 * The module is written here, instruction by instruction, and compiled when a worker starts: no toolchain, no binary
 * in the repository, nothing fetched. Its arithmetic is the JavaScript loops' own, in double precision, so the results
 * are identical bit for bit (test/workers/simd.test.ts checks every 8-bit level and awkward floats):
 *
 *   pack:   float32(level * scale + offset)                 (tensor.ts builds its level table the same way)
 *   unpack: clamp(roundHalfEven((value - offset) * inverse)) (what a Uint8ClampedArray store does; NaN -> 0)
 *
 * Each kernel handles whole blocks of 16 pixels (or 16 values); the caller does the rest of a row in JavaScript.
 * Addresses are byte offsets into the memory the caller passes in (workers/scratch.ts owns it).
 */

/** The exported functions, by their WebAssembly signatures; every address is a byte offset into the memory. */
export interface PixelKernels {
  /** dst f32[i] = src u8[i] * scale + offset, for `values` values (a multiple of 16). */
  widen(src: number, dst: number, values: number, scale: number, offset: number): void;
  /** dst u8[i] = clamp(round((src f32[i] - offset) * inverse)), for `values` values (a multiple of 16). */
  narrow(src: number, dst: number, values: number, offset: number, inverse: number): void;
  /** Interleaved RGB u8 into three float planes (pack, NCHW), `pixels` a multiple of 16. */
  deinterleave(src: number, dst0: number, dst1: number, dst2: number, pixels: number, scale: number, offset: number): void;
  /** Three float planes into interleaved RGB u8 (unpack, NCHW), `pixels` a multiple of 16. */
  interleave(src0: number, src1: number, src2: number, dst: number, pixels: number, offset: number, inverse: number): void;
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
} as const;

/** SIMD instructions: the 0xfd prefix and these numbers (the SIMD proposal's final opcode table). */
const simd = {
  load: 0,
  store: 11,
  shuffle: 13,
  f64x2Splat: 20,
  demote: 94, // f32x4.demote_f64x2_zero
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
  convertLowU32: 255, // f64x2.convert_low_i32x4_u
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

/** Four i32 lanes (in `q`) to four floats: float32(q * scale + offset), on the stack. */
function intToFloat(f: Body, q: number, scale: number, offset: number): void {
  f.get(q).v(simd.convertLowU32).get(scale).v(simd.f64x2Mul).get(offset).v(simd.f64x2Add).v(simd.demote);
  f.get(q).get(q).shuffle(UPPER_DOWN).v(simd.convertLowU32).get(scale).v(simd.f64x2Mul).get(offset).v(simd.f64x2Add).v(simd.demote);
  f.shuffle(LOWER_HALVES);
}

/** Sixteen u8 lanes (in `bytes`) to sixteen floats stored at `dst` (+0, +16, +32, +48). */
function storeWidened(f: Body, bytes: number, dst: number, scale: number, offset: number, wide: number, quad: number): void {
  let k = 0;
  for (const half of [simd.i16ExtendLowU8, simd.i16ExtendHighU8]) {
    f.get(bytes).v(half).set(wide);
    for (const quarter of [simd.i32ExtendLowU16, simd.i32ExtendHighU16]) {
      f.get(wide).v(quarter).set(quad);
      f.get(dst);
      intToFloat(f, quad, scale, offset);
      f.mem(simd.store, 16 * k++);
    }
  }
}

/** Four floats (in `x`) to four i32 lanes: roundHalfEven((x - offset) * inverse), saturated; on the stack. */
function floatToInt(f: Body, x: number, offset: number, inverse: number): void {
  f.get(x).v(simd.promote).get(offset).v(simd.f64x2Sub).get(inverse).v(simd.f64x2Mul).v(simd.f64x2Nearest).v(simd.truncSatF64);
  f.get(x).get(x).shuffle(UPPER_DOWN).v(simd.promote).get(offset).v(simd.f64x2Sub).get(inverse).v(simd.f64x2Mul).v(simd.f64x2Nearest).v(simd.truncSatF64);
  f.shuffle(LOWER_HALVES);
}

/** Sixteen floats at `src` (+0 .. +48) to sixteen u8 lanes, clamped to 0..255; on the stack. */
function loadNarrowed(f: Body, src: number, offset: number, inverse: number, x: number): void {
  for (let pair = 0; pair < 2; pair++) {
    for (let k = 0; k < 2; k++) {
      f.get(src).mem(simd.load, 32 * pair + 16 * k).set(x);
      floatToInt(f, x, offset, inverse);
    }
    f.v(simd.i16NarrowI32);
  }
  f.v(simd.u8NarrowI16);
}

/** Lanes that pick channel `ch` of 16 interleaved pixels out of three vectors (a, b, c): two shuffles. */
function deinterleaveLanes(ch: number): [number[], number[]] {
  const first: number[] = [];
  const second: number[] = [];
  for (let k = 0; k < 16; k++) {
    const at = 3 * k + ch;
    first.push(at < 32 ? at : 0);
    second.push(at < 32 ? k : 16 + at - 32);
  }
  return [first, second];
}

/** Lanes that build output vector `v` (bytes 16v..16v+15) of interleaved RGB from channel vectors r, g, b. */
function interleaveLanes(v: number): [number[], number[]] {
  const first: number[] = [];
  const second: number[] = [];
  for (let j = 16 * v; j < 16 * v + 16; j++) {
    const pixel = Math.floor(j / 3);
    const ch = j % 3;
    first.push(ch === 0 ? pixel : ch === 1 ? 16 + pixel : 0);
    second.push(ch === 2 ? 16 + pixel : j - 16 * v);
  }
  return [first, second];
}

function widen(): number[] {
  const [src, dst, n, scale, offset] = [0, 1, 2, 3, 4];
  const f = new Body(5);
  const [end, sc, of] = [f.end(src, n, 1), f.splat(scale), f.splat(offset)];
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

function deinterleave(): number[] {
  const [src, d0, d1, d2, pixels, scale, offset] = [0, 1, 2, 3, 4, 5, 6];
  const f = new Body(7);
  const [end, sc, of] = [f.end(src, pixels, 3), f.splat(scale), f.splat(offset)];
  const [a, b, c] = [f.local(V128), f.local(V128), f.local(V128)];
  const [bytes, wide, quad] = [f.local(V128), f.local(V128), f.local(V128)];
  f.whileBelow(src, end, () => {
    f.get(src).mem(simd.load, 0).set(a).get(src).mem(simd.load, 16).set(b).get(src).mem(simd.load, 32).set(c);
    [d0, d1, d2].forEach((dst, ch) => {
      const [first, second] = deinterleaveLanes(ch);
      f.get(a).get(b).shuffle(first).get(c).shuffle(second).set(bytes);
      storeWidened(f, bytes, dst, sc, of, wide, quad);
    });
    f.advance(src, 48).advance(d0, 64).advance(d1, 64).advance(d2, 64);
  });
  return f.encode();
}

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
      const [first, second] = interleaveLanes(v);
      f.get(dst).get(r).get(g).shuffle(first).get(b).shuffle(second).mem(simd.store, 16 * v);
    }
    f.advance(s0, 64).advance(s1, 64).advance(s2, 64).advance(dst, 48);
  });
  return f.encode();
}

/** The module: imports its memory ("env", "memory"), exports the four kernels. */
export function kernelModuleBytes(): Uint8Array {
  const types = [
    [0x60, ...vec([[I32], [I32], [I32], [F64], [F64]]), 0], // widen, narrow
    [0x60, ...vec([[I32], [I32], [I32], [I32], [I32], [F64], [F64]]), 0], // deinterleave, interleave
  ];
  const bodies: Array<[string, number, number[]]> = [
    ['widen', 0, widen()],
    ['narrow', 0, narrow()],
    ['deinterleave', 1, deinterleave()],
    ['interleave', 1, interleave()],
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
