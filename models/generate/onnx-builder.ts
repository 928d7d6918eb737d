/**
 * A small, typed builder for ONNX graphs, so that the models this project ships can be generated from readable
 * TypeScript instead of being committed as opaque binaries.
 *
 * The output is byte-for-byte deterministic: names come from counters, the producer is fixed, and tensors are
 * written as little-endian raw data. A test pins the sha256 of every shipped model, so any change shows up.
 *
 *   const g = new GraphBuilder('invert');
 *   const x = g.input('input', 'float32', [1, 3, 'H', 'W']);
 *   const y = g.op('Sub', [g.scalar(1), x]);
 *   g.output(y, 'output', 'float32', [1, 3, 'H', 'W']);
 *   const bytes = g.build({ opset: 13 });
 */
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

export type ElementType = 'float32' | 'int64';
/** A fixed size, or a name for a size only known at run time (the same name means the same size). */
export type Dim = number | string;

/** A tensor in the graph: a graph input, an initializer or the output of a node. */
export class Value {
  /** `name` is only written by the builder: `output()` renames the node output it exposes. */
  constructor(
    readonly graph: GraphBuilder,
    public name: string,
  ) {}
}

/**
 * Attribute values. Plain numbers are ints, because most ONNX attributes are (pads, strides, axes, group):
 * a float must be asked for with `float()` / `floats()`, so that `alpha: 1` cannot silently become an int.
 */
export interface FloatAttr {
  readonly kind: 'float';
  readonly value: number;
}
export interface FloatsAttr {
  readonly kind: 'floats';
  readonly value: readonly number[];
}
export type AttrValue = number | readonly number[] | string | FloatAttr | FloatsAttr;
export type Attrs = Readonly<Record<string, AttrValue>>;

export const float = (value: number): FloatAttr => ({ kind: 'float', value });
export const floats = (value: readonly number[]): FloatsAttr => ({ kind: 'floats', value });

export interface BuildOptions {
  /** Version of the default ("ai.onnx") operator set. onnx-proto carries ONNX 1.10 protos: opset 15 at most. */
  opset: number;
}

interface Node {
  opType: string;
  inputs: readonly (Value | null)[];
  output: Value;
  attrs: Attrs;
}

interface Initializer {
  value: Value;
  dims: readonly number[];
  data: Float32Array | BigInt64Array;
}

interface Port {
  value: Value;
  type: ElementType;
  dims: readonly Dim[];
}

const PRODUCER_NAME = 'privatoon';
const PRODUCER_VERSION = '1';
/** IR version 8 goes with ONNX 1.10, the newest release whose protos onnx-proto bundles. */
const IR_VERSION = 8;
const MAX_OPSET = 15;

const ELEMENT_TYPES: Record<ElementType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  int64: onnx.TensorProto.DataType.INT64,
};

export class GraphBuilder {
  private readonly inputs: Port[] = [];
  private readonly outputs: Port[] = [];
  private readonly nodes: Node[] = [];
  private readonly initializers: Initializer[] = [];
  private readonly usedNames = new Set<string>();
  private nodeCount = 0;
  private constantCount = 0;

  constructor(readonly name: string) {}

  input(name: string, type: ElementType, dims: readonly Dim[]): Value {
    const value = this.newValue(name);
    this.inputs.push({ value, type, dims });
    return value;
  }

  /** A named weight tensor; `data` is stored as given, so its length must match `dims`. */
  initializer(name: string, data: Float32Array | BigInt64Array, dims: readonly number[]): Value {
    const expected = dims.reduce((n, d) => n * d, 1);
    if (data.length !== expected) {
      throw new Error(`initializer ${name}: ${data.length} values for dims [${dims.join(', ')}]`);
    }
    const value = this.newValue(name);
    this.initializers.push({ value, dims, data });
    return value;
  }

  /** A float32 scalar constant; it broadcasts against any tensor. */
  scalar(x: number): Value {
    return this.initializer(this.constantName(), Float32Array.of(x), []);
  }

  floats(values: readonly number[], dims: readonly number[] = [values.length]): Value {
    return this.initializer(this.constantName(), Float32Array.from(values), dims);
  }

  int64s(values: readonly number[]): Value {
    return this.initializer(this.constantName(), BigInt64Array.from(values.map(BigInt)), [values.length]);
  }

  /** Adds one node with a single output. `null` stands for an omitted optional input (e.g. Resize's roi). */
  op(opType: string, inputs: readonly (Value | null)[], attrs: Attrs = {}): Value {
    for (const input of inputs) {
      if (input !== null && input.graph !== this) throw new Error(`${opType}: input from another graph`);
    }
    const output = this.newValue(`${opType.toLowerCase()}_${this.nodeCount}`);
    this.nodes.push({ opType, inputs, output, attrs });
    this.nodeCount += 1;
    return output;
  }

  /** Exposes a node's output as a graph output, renaming it so callers see `name`. */
  output(value: Value, name: string, type: ElementType, dims: readonly Dim[]): void {
    if (!this.nodes.some((node) => node.output === value)) {
      throw new Error(`output ${name}: only a node's output can be a graph output`);
    }
    if (this.outputs.some((port) => port.value === value)) throw new Error(`output ${name}: already an output`);
    const previous = value.name;
    value.name = this.claimName(name);
    this.usedNames.delete(previous);
    this.outputs.push({ value, type, dims });
  }

  build({ opset }: BuildOptions): Uint8Array {
    if (!Number.isInteger(opset) || opset < 1 || opset > MAX_OPSET) {
      throw new Error(`opset ${opset}: this builder writes opsets 1..${MAX_OPSET}`);
    }
    if (this.outputs.length === 0) throw new Error(`graph ${this.name} has no output`);
    const model = onnx.ModelProto.create({
      irVersion: IR_VERSION,
      producerName: PRODUCER_NAME,
      producerVersion: PRODUCER_VERSION,
      opsetImport: [{ domain: '', version: opset }],
      graph: {
        name: this.name,
        input: this.inputs.map(valueInfo),
        output: this.outputs.map(valueInfo),
        initializer: this.initializers.map(tensorProto),
        node: this.nodes.map((node, index) => ({
          name: `${node.opType}_${index}`,
          opType: node.opType,
          input: node.inputs.map((input) => input?.name ?? ''),
          output: [node.output.name],
          attribute: Object.entries(node.attrs).map(([name, value]) => attribute(node.opType, name, value)),
        })),
      },
    });
    return onnx.ModelProto.encode(model).finish();
  }

  private constantName(): string {
    this.constantCount += 1;
    return `const_${this.constantCount}`;
  }

  private newValue(name: string): Value {
    return new Value(this, this.claimName(name));
  }

  private claimName(name: string): string {
    if (name === '') throw new Error('tensor names must not be empty');
    if (this.usedNames.has(name)) throw new Error(`tensor name ${name} is already used`);
    this.usedNames.add(name);
    return name;
  }
}

/** Number of weights a model holds: the elements of all its initializers. */
export function countParameters(model: Uint8Array): number {
  const initializers = onnx.ModelProto.decode(model).graph?.initializer ?? [];
  return initializers.reduce((sum, tensor) => sum + (tensor.dims ?? []).reduce<number>((n, d) => n * Number(d), 1), 0);
}

function valueInfo({ value, type, dims }: Port): onnxProto.onnx.IValueInfoProto {
  return {
    name: value.name,
    type: {
      tensorType: {
        elemType: ELEMENT_TYPES[type],
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function tensorProto({ value, dims, data }: Initializer): onnxProto.onnx.ITensorProto {
  // raw_data is little-endian by definition; DataView makes that true on any host.
  const raw = new Uint8Array(data.byteLength);
  const view = new DataView(raw.buffer);
  if (data instanceof Float32Array) {
    data.forEach((x, i) => view.setFloat32(i * 4, x, true));
  } else {
    data.forEach((x, i) => view.setBigInt64(i * 8, x, true));
  }
  return {
    name: value.name,
    dims: [...dims],
    dataType: ELEMENT_TYPES[data instanceof Float32Array ? 'float32' : 'int64'],
    rawData: raw,
  };
}

function attribute(opType: string, name: string, value: AttrValue): onnxProto.onnx.IAttributeProto {
  const { AttributeType } = onnx.AttributeProto;
  const where = `${opType}.${name}`;
  if (typeof value === 'string') {
    return { name, type: AttributeType.STRING, s: new TextEncoder().encode(value) };
  }
  if (typeof value === 'number') {
    return { name, type: AttributeType.INT, i: checkedInt(where, value) };
  }
  if ('kind' in value) {
    return value.kind === 'float'
      ? { name, type: AttributeType.FLOAT, f: value.value }
      : { name, type: AttributeType.FLOATS, floats: [...value.value] };
  }
  return { name, type: AttributeType.INTS, ints: value.map((v) => checkedInt(where, v)) };
}

function checkedInt(where: string, value: number): number {
  if (!Number.isSafeInteger(value)) throw new Error(`${where}: ${value} is not an int (use float() for floats)`);
  return value;
}
