/**
 * The importer's view of a TensorFlow graph, shared by both readers (TF.js `model.json` and binary GraphDef): nodes
 * with plain-JS attributes, and constant tensors already decoded to typed arrays. Everything format-specific stops
 * here; the converter (convert.ts) only sees this.
 */

export type TfDtype = 'float32' | 'float64' | 'int32' | 'int64' | 'uint8' | 'int8' | 'int16' | 'uint16' | 'bool' | 'float16' | 'string';

export interface TfTensor {
  dtype: TfDtype;
  shape: number[];
  /** Floats as Float32Array (float16/float64 widened or narrowed), integers and bools as Int32Array or Float64Array for int64. */
  data: Float32Array | Int32Array | Float64Array;
}

/** A shape attribute: dims (-1 unknown), or null for an unknown rank. */
export type TfShape = number[] | null;
/** Shape attributes are wrapped, so that they cannot be mistaken for a list of ints. */
export type AttrValue = string | number | boolean | { dims: TfShape } | TfTensor | AttrValue[] | { dtype: TfDtype };

export interface TfNode {
  name: string;
  op: string;
  /** Input tensor names as written (`node`, `node:1`, `^control`); control inputs are dropped by the readers. */
  inputs: string[];
  attr: Record<string, AttrValue>;
}

export interface TfGraph {
  /** What the graph was read from, for error messages. */
  source: string;
  nodes: TfNode[];
}

/** A file the importer cannot turn into ONNX: always names the file, and the node and op where there is one. */
export class ImportError extends Error {
  readonly code = 'PTOON_IMPORT';
  constructor(
    readonly file: string,
    problem: string,
    readonly node?: { name: string; op: string },
  ) {
    super(node === undefined ? `${file}: ${problem}` : `${file}: node "${node.name}" (${node.op}): ${problem}`);
    this.name = 'ImportError';
  }
}

/** TF's DataType enum (types.proto), the part graphs of image models use. */
const DTYPE_BY_ENUM: Record<number, TfDtype> = {
  1: 'float32', 2: 'float64', 3: 'int32', 4: 'uint8', 5: 'int16', 6: 'int8', 7: 'string', 9: 'int64', 10: 'bool', 17: 'uint16', 19: 'float16',
};
const DTYPE_BY_NAME: Record<string, TfDtype> = {
  DT_FLOAT: 'float32', DT_DOUBLE: 'float64', DT_INT32: 'int32', DT_UINT8: 'uint8', DT_INT16: 'int16', DT_INT8: 'int8',
  DT_STRING: 'string', DT_INT64: 'int64', DT_BOOL: 'bool', DT_UINT16: 'uint16', DT_HALF: 'float16',
};
export const ENUM_BY_DTYPE: Record<TfDtype, number> = Object.fromEntries(
  Object.entries(DTYPE_BY_ENUM).map(([k, v]) => [v, Number(k)]),
) as Record<TfDtype, number>;

/** A DataType given as an enum number or as its name ("DT_FLOAT"), as protobuf's JSON mapping writes it. */
export function dtypeOf(value: unknown): TfDtype | undefined {
  if (typeof value === 'number') return DTYPE_BY_ENUM[value];
  if (typeof value === 'string') return DTYPE_BY_NAME[value] ?? DTYPE_BY_ENUM[Number(value)];
  return undefined;
}

export function sizeOf(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

/** Bytes as protobuf's JSON mapping writes them (base64), or as an array of byte values. */
function bytesOf(value: unknown): Uint8Array {
  if (typeof value === 'string') return Buffer.from(value, 'base64');
  if (value instanceof Uint8Array) return value;
  if (Array.isArray(value)) return Uint8Array.from(value as number[]);
  return new Uint8Array(0);
}

function intOf(value: unknown): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'string') return Number(value);
  if (typeof value === 'object' && value !== null && 'low' in value) return Number((value as { toString(): string }).toString());
  return 0;
}

export function readShape(value: unknown): TfShape {
  const shape = (value ?? {}) as { dim?: { size?: unknown }[]; unknownRank?: boolean };
  if (shape.unknownRank === true) return null;
  return (shape.dim ?? []).map((d) => intOf(d.size));
}

const textDecoder = new TextDecoder();

/**
 * One attribute value in protobuf's JSON mapping (TF.js) or as protobufjs decodes it (GraphDef): whichever oneof
 * field is set. Strings come back decoded; lists as arrays.
 */
export function readAttr(raw: Record<string, unknown>, tensorContent?: (t: Record<string, unknown>) => TfTensor): AttrValue {
  if (raw['list'] !== undefined) {
    const list = raw['list'] as Record<string, unknown[] | undefined>;
    for (const key of ['s', 'i', 'f', 'b', 'type', 'shape', 'tensor'] as const) {
      const items = list[key];
      if (items === undefined || items.length === 0) continue;
      return items.map((item) => readAttr({ [key]: item }, tensorContent));
    }
    return [];
  }
  if (raw['s'] !== undefined) return textDecoder.decode(bytesOf(raw['s']));
  if (raw['i'] !== undefined) return intOf(raw['i']);
  if (raw['f'] !== undefined) return Number(raw['f']);
  if (raw['b'] !== undefined) return Boolean(raw['b']);
  if (raw['type'] !== undefined) return { dtype: dtypeOf(raw['type']) ?? 'string' };
  if (raw['shape'] !== undefined) return { dims: readShape(raw['shape']) };
  if (raw['tensor'] !== undefined) {
    const t = raw['tensor'] as Record<string, unknown>;
    return tensorContent !== undefined ? tensorContent(t) : { dtype: dtypeOf(t['dtype']) ?? 'float32', shape: readShape(t['tensorShape']) ?? [], data: new Float32Array(0) };
  }
  return [];
}

/** `node:1` -> [node, 1]; `node` -> [node, 0]. */
export function splitInput(input: string): [string, number] {
  const colon = input.lastIndexOf(':');
  if (colon > 0 && /^\d+$/.test(input.slice(colon + 1))) return [input.slice(0, colon), Number(input.slice(colon + 1))];
  return [input, 0];
}

/** IEEE half to float: the TF.js converter's float16 weights, and GraphDef half_val. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 0x1f) return fraction === 0 ? sign * Infinity : NaN;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

/** Little-endian raw bytes of one dtype to the importer's typed arrays. */
export function decodeRaw(dtype: TfDtype, bytes: Uint8Array, count: number, where: () => string): TfTensor['data'] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const width = { float32: 4, float64: 8, int32: 4, int64: 8, uint8: 1, int8: 1, int16: 2, uint16: 2, bool: 1, float16: 2, string: 0 }[dtype];
  if (width === 0) throw new Error(`${where()}: string tensors are not supported`);
  if (bytes.byteLength !== count * width) throw new Error(`${where()}: ${bytes.byteLength} bytes for ${count} ${dtype} values`);
  const isFloat = dtype === 'float32' || dtype === 'float64' || dtype === 'float16';
  const out = isFloat ? new Float32Array(count) : dtype === 'int64' ? new Float64Array(count) : new Int32Array(count);
  for (let i = 0; i < count; i += 1) {
    const o = i * width;
    switch (dtype) {
      case 'float32': out[i] = view.getFloat32(o, true); break;
      case 'float64': out[i] = view.getFloat64(o, true); break;
      case 'float16': out[i] = halfToFloat(view.getUint16(o, true)); break;
      case 'int32': out[i] = view.getInt32(o, true); break;
      case 'int64': out[i] = Number(view.getBigInt64(o, true)); break;
      case 'int16': out[i] = view.getInt16(o, true); break;
      case 'uint16': out[i] = view.getUint16(o, true); break;
      case 'int8': out[i] = view.getInt8(o); break;
      default: out[i] = view.getUint8(o); break;
    }
  }
  return out;
}
