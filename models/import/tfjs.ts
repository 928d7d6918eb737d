/**
 * Reads a TF.js graph model: `model.json` (a GraphDef in protobuf's JSON mapping, plus a weights manifest) and its
 * weight shards. Weights are the shards concatenated, in manifest order; `quantization` {uint8|uint16, min, scale}
 * means value = q * scale + min (rounded for int32), {float16} means IEEE half. Every weight becomes the `value` of
 * the Const node of the same name, so the converter sees one graph whatever the format.
 */
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { ImportError, decodeRaw, dtypeOf, readAttr, readShape, sizeOf, type AttrValue, type TfDtype, type TfGraph, type TfNode, type TfTensor } from './tf-graph.js';

interface WeightSpec {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: { dtype: string; min?: number; scale?: number };
}

const WIDTH: Record<string, number> = { float32: 4, int32: 4, bool: 1, uint8: 1, uint16: 2, float16: 2 };

export async function readTfjsModel(modelJson: string): Promise<TfGraph> {
  const file = resolve(modelJson);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new ImportError(file, `is not a readable JSON file: ${(err as Error).message}`);
  }
  const topology = json['modelTopology'] as { node?: unknown[] } | undefined;
  if (typeof topology !== 'object' || topology === null || !Array.isArray(topology.node)) {
    throw new ImportError(file, 'has no modelTopology.node: not a TF.js graph model (a layers model must be converted with --output_format=tfjs_graph_model)');
  }
  const groups = json['weightsManifest'];
  if (!Array.isArray(groups)) throw new ImportError(file, 'has no weightsManifest');

  const weights = new Map<string, TfTensor>();
  for (const [g, group] of (groups as { paths?: unknown; weights?: unknown }[]).entries()) {
    if (!Array.isArray(group.paths) || !Array.isArray(group.weights)) throw new ImportError(file, `weightsManifest[${g}] needs "paths" and "weights"`);
    const shards: Buffer[] = [];
    for (const path of group.paths as string[]) {
      if (typeof path !== 'string' || path.includes('\0')) throw new ImportError(file, `weightsManifest[${g}] has a bad path`);
      try {
        shards.push(await readFile(join(dirname(file), path)));
      } catch (err) {
        throw new ImportError(file, `weight shard ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
      }
    }
    const bytes = Buffer.concat(shards);
    let offset = 0;
    for (const spec of group.weights as WeightSpec[]) {
      const [tensor, used] = decodeWeight(file, spec, bytes, offset);
      weights.set(spec.name, tensor);
      offset += used;
    }
    if (offset !== bytes.length) throw new ImportError(file, `weightsManifest[${g}] describes ${offset} bytes but its shards hold ${bytes.length}`);
  }

  const nodes: TfNode[] = topology.node.map((raw, index) => {
    const n = raw as { name?: unknown; op?: unknown; input?: unknown; attr?: Record<string, Record<string, unknown>> };
    if (typeof n.name !== 'string' || typeof n.op !== 'string') throw new ImportError(file, `modelTopology.node[${index}] has no name or op`);
    const attr: Record<string, AttrValue> = {};
    for (const [key, value] of Object.entries(n.attr ?? {})) attr[key] = readAttr(value);
    if (n.op === 'Const') {
      const weight = weights.get(n.name) ?? inlineConst(file, n.name, n.attr?.['value']?.['tensor']);
      attr['value'] = weight;
    }
    const inputs = Array.isArray(n.input) ? (n.input as string[]).filter((i) => !i.startsWith('^')) : [];
    return { name: n.name, op: n.op, inputs, attr };
  });
  return { source: file, nodes };
}

/** A Const without a weight: the converter keeps scalars and tiny vectors in the topology itself. */
function inlineConst(file: string, name: string, tensor: unknown): TfTensor {
  const t = (tensor ?? {}) as Record<string, unknown>;
  const dtype = dtypeOf(t['dtype']);
  const shape = readShape(t['tensorShape']) ?? [];
  const vals = ['floatVal', 'intVal', 'int64Val', 'boolVal', 'halfVal', 'doubleVal']
    .map((k) => t[k] as unknown[] | undefined)
    .find((v) => v !== undefined && v.length > 0) ?? [];
  if (dtype === undefined || vals.length === 0) throw new ImportError(file, `Const "${name}" has no weight in the weights manifest`);
  const count = sizeOf(shape);
  const data = dtype === 'float32' ? new Float32Array(count) : new Int32Array(count);
  for (let i = 0; i < count; i += 1) data[i] = Number(vals[Math.min(i, vals.length - 1)]);
  return { dtype, shape, data };
}

function decodeWeight(file: string, spec: WeightSpec, bytes: Buffer, offset: number): [TfTensor, number] {
  const where = () => `${file}: weight "${spec.name}"`;
  const dtype = spec.dtype as TfDtype;
  const count = sizeOf(spec.shape);
  const q = spec.quantization;
  const storedAs = q?.dtype ?? spec.dtype;
  const width = WIDTH[storedAs];
  if (width === undefined) throw new ImportError(file, `weight "${spec.name}" is stored as ${storedAs}, which TF.js graph models do not use`);
  const used = count * width;
  if (offset + used > bytes.length) throw new ImportError(file, `weight "${spec.name}" runs past the end of its shards (truncated shard?)`);
  const raw = bytes.subarray(offset, offset + used);
  if (q === undefined) return [{ dtype, shape: spec.shape, data: decodeRaw(dtype, raw, count, where) }, used];
  if (q.dtype === 'float16') {
    if (dtype !== 'float32') throw new ImportError(file, `weight "${spec.name}": float16 quantization of ${dtype}`);
    return [{ dtype, shape: spec.shape, data: decodeRaw('float16', raw, count, where) }, used];
  }
  if ((q.dtype !== 'uint8' && q.dtype !== 'uint16') || typeof q.min !== 'number' || typeof q.scale !== 'number') {
    throw new ImportError(file, `weight "${spec.name}" has an unknown quantization ${JSON.stringify(q)}`);
  }
  const codes = decodeRaw(q.dtype, raw, count, where);
  // As tfjs-core decodes them: the affine map in double precision, then stored (float32) or rounded (int32).
  const data = dtype === 'int32' ? new Int32Array(count) : new Float32Array(count);
  for (let i = 0; i < count; i += 1) {
    const v = codes[i]! * q.scale + q.min;
    data[i] = dtype === 'int32' ? Math.round(v) : v;
  }
  return [{ dtype: dtype === 'int32' ? 'int32' : 'float32', shape: spec.shape, data }, used];
}
