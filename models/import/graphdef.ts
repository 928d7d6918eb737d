/**
 * Reads (and, for tests and fixtures, writes) a frozen TensorFlow GraphDef (`.pb`), with protobufjs against the part
 * of TensorFlow's graph.proto / node_def.proto / attr_value.proto / tensor.proto / tensor_shape.proto that frozen
 * inference graphs use. Field numbers are TensorFlow's; DataType is read as its enum number.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import protobuf from 'protobufjs';
import { ENUM_BY_DTYPE, ImportError, decodeRaw, dtypeOf, readAttr, readShape, sizeOf, type AttrValue, type TfGraph, type TfNode, type TfTensor } from './tf-graph.js';

const SCHEMA = `
syntax = "proto3";
package tensorflow;
message GraphDef { repeated NodeDef node = 1; VersionDef versions = 4; }
message VersionDef { int32 producer = 1; int32 min_consumer = 2; }
message NodeDef { string name = 1; string op = 2; repeated string input = 3; string device = 4; map<string, AttrValue> attr = 5; }
message AttrValue {
  message ListValue {
    repeated bytes s = 2; repeated int64 i = 3; repeated float f = 4; repeated bool b = 5; repeated int32 type = 6;
    repeated TensorShapeProto shape = 7; repeated TensorProto tensor = 8;
  }
  oneof value {
    bytes s = 2; int64 i = 3; float f = 4; bool b = 5; int32 type = 6; TensorShapeProto shape = 7; TensorProto tensor = 8;
    ListValue list = 1; string placeholder = 9;
  }
}
message TensorShapeProto { message Dim { int64 size = 1; string name = 2; } repeated Dim dim = 2; bool unknown_rank = 3; }
message TensorProto {
  int32 dtype = 1; TensorShapeProto tensor_shape = 2; int32 version_number = 3; bytes tensor_content = 4;
  repeated int32 half_val = 13; repeated float float_val = 5; repeated double double_val = 6; repeated int32 int_val = 7;
  repeated bytes string_val = 8; repeated int64 int64_val = 10; repeated bool bool_val = 11;
}
`;

const root = protobuf.parse(SCHEMA, { keepCase: false }).root;
const GraphDef = root.lookupType('tensorflow.GraphDef');

const TO_OBJECT = { longs: Number, bytes: Array, defaults: false, oneofs: false } as const;

export async function readGraphDef(path: string): Promise<TfGraph> {
  const file = resolve(path);
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw new ImportError(file, `cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  return decodeGraphDef(file, bytes);
}

export function decodeGraphDef(file: string, bytes: Uint8Array): TfGraph {
  let message: Record<string, unknown>;
  try {
    message = GraphDef.toObject(GraphDef.decode(bytes), TO_OBJECT) as Record<string, unknown>;
  } catch (err) {
    throw new ImportError(file, `is not a TensorFlow GraphDef (protobuf: ${(err as Error).message})`);
  }
  const rawNodes = (message['node'] ?? []) as { name?: string; op?: string; input?: string[]; attr?: Record<string, Record<string, unknown>> }[];
  if (rawNodes.length === 0) throw new ImportError(file, 'holds no nodes: not a frozen GraphDef');
  const nodes = rawNodes.map((n, index): TfNode => {
    if (!n.name || !n.op) throw new ImportError(file, `node[${index}] has no name or op`);
    const attr: Record<string, AttrValue> = {};
    for (const [key, value] of Object.entries(n.attr ?? {})) {
      try {
        attr[key] = readAttr(value, tensorOf);
      } catch (err) {
        throw new ImportError(file, `attribute "${key}": ${(err as Error).message}`, { name: n.name, op: n.op });
      }
    }
    return { name: n.name, op: n.op, inputs: (n.input ?? []).filter((i) => !i.startsWith('^')), attr };
  });
  return { source: file, nodes };
}

/** A TensorProto: packed raw content, or the typed *_val fields (one value means "fill the shape with it"). */
function tensorOf(t: Record<string, unknown>): TfTensor {
  const dtype = dtypeOf(t['dtype']);
  if (dtype === undefined) throw new Error(`tensor of unknown dtype ${String(t['dtype'])}`);
  const shape = readShape(t['tensorShape']) ?? [];
  const count = sizeOf(shape);
  const content = t['tensorContent'] as number[] | undefined;
  if (content !== undefined && content.length > 0) {
    return { dtype, shape, data: decodeRaw(dtype, Uint8Array.from(content), count, () => 'tensor_content') };
  }
  const key = { float32: 'floatVal', float64: 'doubleVal', float16: 'halfVal', int64: 'int64Val', bool: 'boolVal' }[dtype as string] ?? 'intVal';
  const vals = ((t[key] ?? []) as unknown[]).map(Number);
  const floating = dtype === 'float32' || dtype === 'float64' || dtype === 'float16';
  const data = floating ? new Float32Array(count) : dtype === 'int64' ? new Float64Array(count) : new Int32Array(count);
  if (vals.length > count) throw new Error(`${vals.length} values for shape [${shape.join(', ')}]`);
  for (let i = 0; i < count; i += 1) {
    const v = vals.length === 0 ? 0 : vals[Math.min(i, vals.length - 1)]!;
    data[i] = dtype === 'float16' ? halfBitsToFloat(v) : v;
  }
  return { dtype, shape, data };
}

function halfBitsToFloat(bits: number): number {
  const buffer = new DataView(new ArrayBuffer(2));
  buffer.setUint16(0, bits, true);
  return decodeRaw('float16', new Uint8Array(buffer.buffer), 1, () => 'half_val')[0]!;
}

/**
 * Writes a graph as a binary GraphDef (constants as little-endian tensor_content). Used by the tests to turn a TF.js
 * model into the `.pb` a TensorFlow freeze would have written, and to build DCT-Net-shaped fixture folders.
 */
export function encodeGraphDef(graph: TfGraph): Uint8Array {
  const node = graph.nodes.map((n) => ({
    name: n.name,
    op: n.op,
    input: n.inputs,
    attr: Object.fromEntries(Object.entries(n.attr).map(([k, v]) => [k, attrToProto(v)])),
  }));
  return GraphDef.encode(GraphDef.fromObject({ node, versions: { producer: 27 } })).finish();
}

function attrToProto(value: AttrValue): Record<string, unknown> {
  if (typeof value === 'string') return { s: Buffer.from(value) };
  if (typeof value === 'number') return Number.isInteger(value) ? { i: value } : { f: value };
  if (typeof value === 'boolean') return { b: value };
  if (Array.isArray(value)) {
    if (value.every((v) => typeof v === 'number')) return { list: { i: value } };
    if (value.every((v) => typeof v === 'string')) return { list: { s: value.map((v) => Buffer.from(v as string)) } };
    return { list: { f: value } };
  }
  if ('dims' in value) return { shape: value.dims === null ? { unknownRank: true } : { dim: value.dims.map((size) => ({ size })) } };
  if ('data' in value) return { tensor: tensorToProto(value) };
  return { type: ENUM_BY_DTYPE[value.dtype] };
}

function tensorToProto(t: TfTensor): Record<string, unknown> {
  const count = sizeOf(t.shape);
  const width = t.dtype === 'float32' || t.dtype === 'int32' ? 4 : t.dtype === 'int64' ? 8 : 1;
  const bytes = Buffer.alloc(count * width);
  for (let i = 0; i < count; i += 1) {
    const v = t.data[i]!;
    if (t.dtype === 'float32') bytes.writeFloatLE(v, i * 4);
    else if (t.dtype === 'int32') bytes.writeInt32LE(v, i * 4);
    else if (t.dtype === 'int64') bytes.writeBigInt64LE(BigInt(v), i * 8);
    else bytes.writeUInt8(v, i);
  }
  return { dtype: ENUM_BY_DTYPE[t.dtype], tensorShape: { dim: t.shape.map((size) => ({ size })) }, tensorContent: bytes };
}
