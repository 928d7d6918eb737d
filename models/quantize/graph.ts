/**
 * An ONNX model opened for rewriting: the decoded protobuf plus the indexes the quantizer needs (who produces and
 * who consumes each tensor, the float initializers), and helpers that add typed initializers and nodes. Built on
 * onnx-proto, like the generator's GraphBuilder (models/generate/onnx-builder.ts), which writes graphs from scratch;
 * this one edits a graph that already exists.
 */
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;
export type NodeProto = onnxProto.onnx.INodeProto;
export type TensorProto = onnxProto.onnx.ITensorProto;

export const DataType = onnx.TensorProto.DataType;

/** The quantizer's error for a model it cannot work on; the CLI prints it as is. */
export class QuantizeError extends Error {
  readonly code = 'PTOON_QUANTIZE';
}

/** Where a tensor is read: the node and the index of the input. */
export interface Use {
  node: NodeProto;
  index: number;
}

export class ModelGraph {
  readonly model: onnxProto.onnx.ModelProto;
  readonly nodes: NodeProto[];
  readonly initializers = new Map<string, TensorProto>();
  readonly producer = new Map<string, NodeProto>();
  readonly consumers = new Map<string, Use[]>();
  readonly graphInputs: Set<string>;
  readonly graphOutputs: Set<string>;
  readonly opset: number;
  private counter = 0;

  constructor(bytes: Uint8Array) {
    try {
      this.model = onnx.ModelProto.decode(bytes);
    } catch (err) {
      throw new QuantizeError(`not an ONNX model: ${(err as Error).message}`);
    }
    const graph = this.model.graph;
    if (!graph) throw new QuantizeError('the ONNX file has no graph');
    this.nodes = graph.node ?? [];
    for (const t of graph.initializer ?? []) this.initializers.set(t.name!, t);
    this.graphInputs = new Set((graph.input ?? []).map((i) => i.name!).filter((n) => !this.initializers.has(n)));
    this.graphOutputs = new Set((graph.output ?? []).map((o) => o.name!));
    this.opset = Number((this.model.opsetImport ?? []).find((o) => (o.domain ?? '') === '')?.version ?? 0);
    // Reports and fresh names need a name on every node.
    this.nodes.forEach((n, i) => {
      if (!n.name) n.name = `${n.opType}_${i}`;
    });
    this.reindex();
  }

  reindex(): void {
    this.producer.clear();
    this.consumers.clear();
    for (const node of this.nodes) {
      for (const out of node.output ?? []) this.producer.set(out, node);
      (node.input ?? []).forEach((name, index) => {
        if (name === '') return;
        const uses = this.consumers.get(name) ?? [];
        uses.push({ node, index });
        this.consumers.set(name, uses);
      });
    }
  }

  attrInt(node: NodeProto, name: string, fallback: number): number {
    const a = (node.attribute ?? []).find((x) => x.name === name);
    return a?.i === undefined || a.i === null ? fallback : Number(a.i);
  }

  /** A float32 initializer's values and dims, or undefined when `name` is not a float initializer. */
  floatInitializer(name: string): { data: Float32Array; dims: number[] } | undefined {
    const t = this.initializers.get(name);
    if (t === undefined || t.dataType !== DataType.FLOAT) return undefined;
    const dims = (t.dims ?? []).map(Number);
    if (t.rawData && t.rawData.length > 0) {
      const view = new DataView(t.rawData.buffer, t.rawData.byteOffset, t.rawData.byteLength);
      const data = new Float32Array(t.rawData.byteLength / 4);
      for (let i = 0; i < data.length; i++) data[i] = view.getFloat32(i * 4, true);
      return { data, dims };
    }
    return { data: Float32Array.from(t.floatData ?? []), dims };
  }

  /** A fresh tensor name derived from `base`. */
  fresh(base: string, suffix: string): string {
    this.counter += 1;
    return `${base}_${suffix}${this.counter}`;
  }

  addInitializer(name: string, type: 'float32' | 'uint8' | 'int8' | 'int32' | 'int64', values: ArrayLike<number>, dims: readonly number[]): string {
    const raw = new Uint8Array(values.length * { float32: 4, int32: 4, int64: 8, int8: 1, uint8: 1 }[type]);
    const view = new DataView(raw.buffer);
    for (let i = 0; i < values.length; i++) {
      const v = values[i]!;
      if (type === 'float32') view.setFloat32(i * 4, v, true);
      else if (type === 'int32') view.setInt32(i * 4, v, true);
      else if (type === 'int64') view.setBigInt64(i * 8, BigInt(v), true);
      else if (type === 'int8') view.setInt8(i, v);
      else view.setUint8(i, v);
    }
    const dataType = { float32: DataType.FLOAT, uint8: DataType.UINT8, int8: DataType.INT8, int32: DataType.INT32, int64: DataType.INT64 }[type];
    const tensor: TensorProto = { name, dims: [...dims], dataType, rawData: raw };
    this.model.graph!.initializer!.push(tensor);
    this.initializers.set(name, tensor);
    return name;
  }

  node(opType: string, inputs: string[], output: string, axis?: number): NodeProto {
    const attribute = axis === undefined ? [] : [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: axis }];
    return { name: this.fresh(output, 'n'), opType, input: inputs, output: [output], attribute };
  }

  /** Adds a model output for a tensor (calibration reads intermediate tensors this way). */
  exposeFloat(name: string): void {
    const outputs = this.model.graph!.output!;
    if (outputs.some((o) => o.name === name)) return;
    outputs.push({ name, type: { tensorType: { elemType: DataType.FLOAT } } });
  }

  /** Drops initializers no node reads any more (the fp32 weights replaced by int8 ones). */
  pruneInitializers(): void {
    const used = new Set(this.nodes.flatMap((n) => n.input ?? []));
    const graph = this.model.graph!;
    graph.initializer = (graph.initializer ?? []).filter((t) => used.has(t.name!) || this.graphOutputs.has(t.name!));
    graph.input = (graph.input ?? []).filter((i) => !this.initializers.has(i.name!) || used.has(i.name!));
  }

  encode(): Uint8Array {
    this.model.graph!.node = this.nodes;
    return onnx.ModelProto.encode(this.model).finish();
  }
}
