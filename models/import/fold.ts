/**
 * Constant folding: ops whose inputs are all known at import time are computed here, in JS, so that the ONNX graph
 * holds their result as one initializer (TF graphs compute reduction axes, reshape targets and rescaled weights from
 * constants). Ops it does not know return null and are converted like any other (onnxruntime folds those itself).
 */
import { sizeOf, type TfDtype, type TfNode, type TfTensor } from './tf-graph.js';

export const isFloat = (dtype: TfDtype): boolean => dtype === 'float32' || dtype === 'float64' || dtype === 'float16';
const BIG = Number.MAX_SAFE_INTEGER;

export interface SliceAxis {
  axis: number;
  start: number;
  /** ±MAX_SAFE_INTEGER: to the end (or the start, stepping backwards). */
  end: number;
  step: number;
  shrink: boolean;
}

export interface SliceMasks { begin: number; end: number; ellipsis: number; newAxis: number; shrink: number }

/** TF's StridedSlice spec (masks, ellipsis, new axes) as one range per input axis, plus the new axes' positions. */
export function sliceSpec(rank: number, begin: number[], end: number[], strides: number[], masks: SliceMasks): { axes: SliceAxis[]; newAxes: number[] } {
  const n = begin.length;
  let consuming = 0;
  for (let i = 0; i < n; i += 1) if (!(masks.ellipsis & (1 << i)) && !(masks.newAxis & (1 << i))) consuming += 1;
  const axes: SliceAxis[] = [];
  const newAxes: number[] = [];
  const full = (axis: number): SliceAxis => ({ axis, start: 0, end: BIG, step: 1, shrink: false });
  let inAxis = 0;
  let outAxis = 0;
  for (let i = 0; i < n; i += 1) {
    const bit = 1 << i;
    if (masks.ellipsis & bit) {
      for (let k = 0; k < rank - consuming; k += 1) { axes.push(full(inAxis++)); outAxis += 1; }
      continue;
    }
    if (masks.newAxis & bit) { newAxes.push(outAxis++); continue; }
    const step = strides[i] ?? 1;
    if (step === 0) throw new Error('StridedSlice with a zero stride');
    if (masks.shrink & bit) {
      axes.push({ axis: inAxis++, start: begin[i]!, end: begin[i]! + 1, step: 1, shrink: true });
      continue;
    }
    const start = masks.begin & bit ? (step > 0 ? 0 : BIG) : begin[i]!;
    const stop = masks.end & bit ? (step > 0 ? BIG : -BIG) : end[i]!;
    axes.push({ axis: inAxis++, start, end: stop, step, shrink: false });
    outAxis += 1;
  }
  while (inAxis < rank) axes.push(full(inAxis++));
  if (axes.length !== rank) throw new Error(`StridedSlice spec of ${n} entries for a rank-${rank} tensor`);
  return { axes, newAxes };
}

/** The items one StridedSlice range selects from a vector (TF's clamping rules). */
export function pickRange<T>(items: readonly T[], s: SliceAxis): T[] {
  const n = items.length;
  const norm = (i: number) => (i < 0 ? i + n : i);
  if (s.shrink) return [items[norm(s.start)]!];
  const start = Math.min(Math.max(norm(s.start), s.step > 0 ? 0 : -1), s.step > 0 ? n : n - 1);
  const end = s.end === BIG ? n : s.end === -BIG ? -1 : Math.min(Math.max(norm(s.end), s.step > 0 ? 0 : -1), n);
  const out: T[] = [];
  for (let i = start; s.step > 0 ? i < end : i > end; i += s.step) out.push(items[i]!);
  return out;
}

export function broadcastShapes(a: readonly (number | null)[], b: readonly (number | null)[], where: () => string): (number | null)[] {
  const rank = Math.max(a.length, b.length);
  const out: (number | null)[] = [];
  for (let i = 0; i < rank; i += 1) {
    const x = a[a.length - rank + i] ?? 1;
    const y = b[b.length - rank + i] ?? 1;
    if (x === 1) out.push(y);
    else if (y === 1) out.push(x);
    else if (x === null || y === null) out.push(x ?? y);
    else if (x === y) out.push(x);
    else throw new Error(`${where()}: shapes [${a}] and [${b}] do not broadcast`);
  }
  return out;
}

function stridesOf(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  for (let i = shape.length - 1, s = 1; i >= 0; i -= 1) { strides[i] = s; s *= shape[i]!; }
  return strides;
}

function like(dtype: TfDtype, count: number): TfTensor['data'] {
  return isFloat(dtype) ? new Float32Array(count) : dtype === 'int64' ? new Float64Array(count) : new Int32Array(count);
}

function binary(a: TfTensor, b: TfTensor, f: (x: number, y: number) => number, dtype = a.dtype): TfTensor {
  const shape = broadcastShapes(a.shape, b.shape, () => 'constant') as number[];
  const data = like(dtype, sizeOf(shape));
  const sa = stridesOf(a.shape);
  const sb = stridesOf(b.shape);
  const rank = shape.length;
  const index = new Array<number>(rank).fill(0);
  for (let o = 0; o < data.length; o += 1) {
    let ia = 0;
    let ib = 0;
    for (let i = 0; i < rank; i += 1) {
      const ai = i - (rank - a.shape.length);
      const bi = i - (rank - b.shape.length);
      if (ai >= 0 && a.shape[ai] !== 1) ia += index[i]! * sa[ai]!;
      if (bi >= 0 && b.shape[bi] !== 1) ib += index[i]! * sb[bi]!;
    }
    data[o] = f(a.data[ia]!, b.data[ib]!);
    for (let i = rank - 1; i >= 0; i -= 1) {
      index[i] = index[i]! + 1;
      if (index[i]! < shape[i]!) break;
      index[i] = 0;
    }
  }
  return { dtype, shape, data };
}

function unary(a: TfTensor, f: (x: number) => number, dtype = a.dtype): TfTensor {
  const data = like(dtype, a.data.length);
  for (let i = 0; i < data.length; i += 1) data[i] = f(a.data[i]!);
  return { dtype, shape: a.shape, data };
}

const intDiv = (x: number, y: number) => Math.floor(x / y);
const BINARY: Record<string, (x: number, y: number) => number> = {
  Add: (x, y) => x + y, AddV2: (x, y) => x + y, BiasAdd: (x, y) => x + y, Sub: (x, y) => x - y, Mul: (x, y) => x * y,
  RealDiv: (x, y) => x / y, Div: (x, y) => x / y, FloorDiv: intDiv, Maximum: Math.max, Minimum: Math.min,
  SquaredDifference: (x, y) => (x - y) * (x - y), Pow: (x, y) => x ** y,
};
const UNARY: Record<string, (x: number) => number> = {
  Neg: (x) => -x, Rsqrt: (x) => 1 / Math.sqrt(x), Sqrt: Math.sqrt, Square: (x) => x * x, Relu: (x) => Math.max(x, 0),
  Tanh: Math.tanh, Exp: Math.exp, Log: Math.log, Floor: Math.floor, Abs: Math.abs, Reciprocal: (x) => 1 / x,
};

/** The value of `node` given constant inputs, or null where this module does not compute that op. */
export function evalConst(node: TfNode, inputs: TfTensor[]): TfTensor | null {
  const [a, b] = inputs;
  if (node.op === 'Const') return null;
  if (node.op === 'Identity' || node.op === 'StopGradient' || node.op === 'Snapshot') return a!;
  if (BINARY[node.op] !== undefined && a && b) {
    const f = BINARY[node.op]!;
    if (!isFloat(a.dtype) && (node.op === 'RealDiv' || node.op === 'Div')) return binary(a, b, (x, y) => Math.trunc(x / y));
    return binary(a, b, f);
  }
  if (UNARY[node.op] !== undefined && a) return unary(a, UNARY[node.op]!);
  const ints = (t: TfTensor | undefined) => Array.from(t?.data ?? []);
  switch (node.op) {
    case 'Cast': {
      const to = (node.attr['DstT'] as { dtype: TfDtype } | undefined)?.dtype ?? 'float32';
      return unary(a!, isFloat(to) ? (x) => x : to === 'bool' ? (x) => (x !== 0 ? 1 : 0) : to === 'uint8' ? (x) => Math.trunc(x) & 255 : Math.trunc, to);
    }
    case 'Shape':
      return { dtype: 'int32', shape: [a!.shape.length], data: Int32Array.from(a!.shape) };
    case 'Reshape': {
      const target = ints(b);
      const known = target.filter((d) => d !== -1).reduce((n, d) => n * d, 1);
      return { ...a!, shape: target.map((d) => (d === -1 ? a!.data.length / known : d)) };
    }
    case 'ExpandDims': {
      let axis = ints(b)[0]!;
      if (axis < 0) axis += a!.shape.length + 1;
      const shape = [...a!.shape];
      shape.splice(axis, 0, 1);
      return { ...a!, shape };
    }
    case 'Squeeze': {
      const raw = node.attr['squeeze_dims'] ?? node.attr['axis'];
      const axes = (Array.isArray(raw) && raw.length > 0 ? (raw as number[]) : a!.shape.flatMap((s, i) => (s === 1 ? [i] : []))).map((x) => (x < 0 ? x + a!.shape.length : x));
      return { ...a!, shape: a!.shape.filter((_, i) => !axes.includes(i)) };
    }
    case 'Pack': {
      const axis = typeof node.attr['axis'] === 'number' ? node.attr['axis'] : 0;
      if (axis !== 0) return null;
      const data = like(a!.dtype, inputs.reduce((n, t) => n + t.data.length, 0));
      let o = 0;
      for (const t of inputs) { data.set(t.data as never, o); o += t.data.length; }
      return { dtype: a!.dtype, shape: [inputs.length, ...a!.shape], data };
    }
    case 'ConcatV2': {
      const parts = inputs.slice(0, -1);
      let axis = ints(inputs[inputs.length - 1])[0]!;
      const rank = parts[0]!.shape.length;
      if (axis < 0) axis += rank;
      const outer = sizeOf(parts[0]!.shape.slice(0, axis));
      const shape = [...parts[0]!.shape];
      shape[axis] = parts.reduce((n, t) => n + t.shape[axis]!, 0);
      const data = like(parts[0]!.dtype, sizeOf(shape));
      let o = 0;
      for (let i = 0; i < outer; i += 1) {
        for (const t of parts) {
          const inner = sizeOf(t.shape.slice(axis));
          data.set(t.data.subarray(i * inner, (i + 1) * inner) as never, o);
          o += inner;
        }
      }
      return { dtype: parts[0]!.dtype, shape, data };
    }
    case 'Fill': {
      const shape = ints(a);
      if (sizeOf(shape) > 1 << 16) return null; // a big constant image is cheaper as Expand at run time
      const data = like(b!.dtype, sizeOf(shape)).fill(b!.data[0]!);
      return { dtype: b!.dtype, shape, data };
    }
    case 'StridedSlice': {
      if (a!.shape.length !== 1) return null;
      const num = (k: string) => (typeof node.attr[k] === 'number' ? (node.attr[k] as number) : 0);
      const spec = sliceSpec(1, ints(inputs[1]), ints(inputs[2]), ints(inputs[3]), {
        begin: num('begin_mask'), end: num('end_mask'), ellipsis: num('ellipsis_mask'), newAxis: num('new_axis_mask'), shrink: num('shrink_axis_mask'),
      });
      if (spec.newAxes.length > 0) return null;
      const s = spec.axes[0]!;
      const picked = pickRange(Array.from(a!.data), s);
      const data = like(a!.dtype, picked.length);
      data.set(picked);
      return { dtype: a!.dtype, shape: s.shrink ? [] : [picked.length], data };
    }
    default:
      return null;
  }
}
