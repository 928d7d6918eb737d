/**
 * TensorFlow graph -> ONNX, with the project's own builder (models/generate/onnx-builder.ts).
 *
 * Every TF value is one of three things while converting:
 *  - a constant, known now (weights, and everything computed only from weights: folded here, in JS);
 *  - a shape vector known up to the run-time sizes of the input (`Shape` -> `StridedSlice` -> `Mul`/`Add` -> `Pack`),
 *    kept as affine expressions of one tensor's axes, so that a transposed convolution's "output shape computed at
 *    run time" becomes fixed ONNX pads, and only materialised as ONNX ops where a tensor is really needed;
 *  - a run-time tensor, with its TF (logical) shape and the permutation it is stored in. Image tensors are NHWC in
 *    TF and NCHW in ONNX's Conv: the first convolution stores its output as NCHW and everything elementwise follows
 *    it, so the graph holds no transposes but the one after the input (and one before a reshape, if any).
 *
 * Patterns folded into one op: Pad before a VALID convolution (its pads), BiasAdd after a convolution (its bias), the
 * instance-norm chain (moments -> rsqrt -> scale/shift) into InstanceNormalization, FusedBatchNorm into the weights.
 * Nodes are converted in topological order (no recursion, whatever the depth), and only those the output needs.
 */
import { GraphBuilder, float, type Value } from '../generate/onnx-builder.js';
import { broadcastShapes, evalConst, isFloat, pickRange, sliceSpec, type SliceAxis } from './fold.js';
import { ImportError, sizeOf, splitInput, type AttrValue, type TfDtype, type TfGraph, type TfNode, type TfTensor } from './tf-graph.js';

const OPSET = 13;
/** ONNX TensorProto.DataType for the dtypes a converted graph holds at run time. */
const ONNX_TYPE = { float: 1, uint8: 2, int: 7, bool: 9 } as const;
type Kind = keyof typeof ONNX_TYPE;
const BIG = Number.MAX_SAFE_INTEGER;
const NCHW = [0, 3, 1, 2];

interface Const { k: 'const'; t: TfTensor }
/** An affine function of one run-time size: a * (size of `of` along logical `axis`) + b. */
interface SymDim { of: Dyn; axis: number; a: number; b: number }
type Dim = number | SymDim;
interface Dims { k: 'dims'; dims: Dim[]; scalar: boolean }
interface Dyn {
  k: 'dyn';
  v: Value;
  kind: Kind;
  /** TF's (logical) shape; null where only known at run time. */
  shape: (number | null)[];
  /** Physical axis i of the ONNX tensor holds logical axis perm[i]. */
  perm: number[];
}
type Val = Const | Dims | Dyn;
/** Stands for the input of a node that was folded into its consumer. */
const ABSORBED = { k: 'absorbed' } as unknown as Val;

export interface ConvertOptions {
  /** The graph output to export; default: the only node no other node reads. */
  output?: string | undefined;
  /** ONNX graph name. */
  name: string;
  /**
   * false: export any output as TF has it (a detector's boxes, a landmark vector). Default true: an image, with a
   * batch axis added to [H, W, C], as every model the service runs gives.
   */
  imageOutput?: boolean;
}

export interface ConvertedModel {
  onnx: Uint8Array;
  input: { name: string; layout: 'NHWC' };
  output: { name: string; layout: 'NHWC' | 'NCHW' };
  /** Ops of the TF graph that were converted (for the report), and of the ONNX graph. */
  tfOps: Record<string, number>;
  onnxOps: Record<string, number>;
}

const identityPerm = (rank: number) => Array.from({ length: rank }, (_, i) => i);
const isIdentity = (perm: readonly number[]) => perm.every((p, i) => p === i);
const inverse = (perm: readonly number[]) => {
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => (inv[p] = i));
  return inv;
};
const kindOf = (dtype: TfDtype): Kind =>
  isFloat(dtype) ? 'float' : dtype === 'uint8' ? 'uint8' : dtype === 'bool' ? 'bool' : 'int';

class NodeError extends Error {}

export function convertGraph(graph: TfGraph, options: ConvertOptions): ConvertedModel {
  return new Converter(graph, options).run();
}

class Converter {
  private readonly g: GraphBuilder;
  private readonly byName = new Map<string, TfNode>();
  private readonly consumers = new Map<string, TfNode[]>();
  private readonly values = new Map<string, Val>();
  /** Nodes folded into a later one (a Pad into its Conv, a Conv into its BiasAdd, instance-norm internals). */
  private readonly absorbed = new Set<string>();
  private readonly instanceNorms = new Map<string, { x: string; gamma: string | null; beta: string; eps: string }>();
  private readonly initializers = new Map<string, Value>();
  private readonly usedNames = new Set<string>();
  private readonly onnxOps: Record<string, number> = {};
  private inputName = '';

  constructor(
    private readonly graph: TfGraph,
    private readonly options: ConvertOptions,
  ) {
    this.g = new GraphBuilder(options.name);
    for (const node of graph.nodes) {
      if (this.byName.has(node.name)) throw new ImportError(graph.source, 'is defined twice', node);
      this.byName.set(node.name, node);
    }
    for (const node of graph.nodes) {
      for (const input of node.inputs) {
        const [name] = splitInput(input);
        if (!this.byName.has(name)) throw new ImportError(graph.source, `reads "${input}", which no node defines`, node);
        const list = this.consumers.get(name) ?? [];
        list.push(node);
        this.consumers.set(name, list);
      }
    }
  }

  run(): ConvertedModel {
    const output = this.outputNode();
    const order = this.topologicalOrder(output);
    this.findPatterns(order);
    this.absorbed.delete(output.name); // the exported node is converted as itself, whatever it would fold into
    const tfOps: Record<string, number> = {};
    for (const node of order) {
      tfOps[node.op] = (tfOps[node.op] ?? 0) + 1;
      if (this.absorbed.has(node.name)) continue;
      try {
        this.values.set(node.name, this.convert(node));
      } catch (err) {
        if (err instanceof ImportError) throw err;
        throw new ImportError(this.graph.source, (err as Error).message, node);
      }
    }
    const out = this.values.get(output.name)!;
    if (out.k !== 'dyn') throw new ImportError(this.graph.source, 'is constant: it does not depend on the input', output);
    if (this.options.imageOutput === false) {
      const native = this.native(out);
      let v = native.kind === 'float' ? native.v : this.op('Cast', [native.v], { to: ONNX_TYPE.float });
      if (v.name === this.inputName) v = this.op('Identity', [v]);
      this.g.output(v, output.name, 'float32', native.shape.map((d, i) => d ?? `d${i}`));
      return { onnx: this.g.build({ opset: OPSET }), input: { name: this.inputName, layout: 'NHWC' }, output: { name: output.name, layout: 'NHWC' }, tfOps, onnxOps: this.onnxOps };
    }
    let result = out;
    if (result.shape.length === 3) result = this.dyn(this.op('Unsqueeze', [this.native(result).v, this.i64([0])]), result.kind, [1, ...result.shape], identityPerm(4));
    if (result.shape.length !== 4) throw new ImportError(this.graph.source, `is the output, of rank ${result.shape.length}; an image model's output has rank 3 or 4`, output);
    const nchw = result.perm.join() === NCHW.join();
    if (!nchw) result = this.native(result);
    let v = result.v;
    if (result.kind !== 'float') v = this.op('Cast', [v], { to: ONNX_TYPE.float });
    else if (v.name === this.inputName) v = this.op('Identity', [v]); // a graph that returns its input unchanged
    const dims = nchw ? ['N', 'C', 'H', 'W'] : ['N', 'H', 'W', 'C'];
    this.g.output(v, output.name, 'float32', dims);
    return {
      onnx: this.g.build({ opset: OPSET }),
      input: { name: this.inputName, layout: 'NHWC' },
      output: { name: output.name, layout: nchw ? 'NCHW' : 'NHWC' },
      tfOps,
      onnxOps: this.onnxOps,
    };
  }

  private outputNode(): TfNode {
    if (this.options.output !== undefined) {
      const node = this.byName.get(splitInput(this.options.output)[0]);
      if (node === undefined) throw new ImportError(this.graph.source, `has no node "${this.options.output}" to export`);
      return node;
    }
    const sinks = this.graph.nodes.filter((n) => !this.consumers.has(n.name) && n.op !== 'Const' && n.op !== 'NoOp' && n.op !== 'Placeholder');
    if (sinks.length !== 1) {
      throw new ImportError(this.graph.source, `has ${sinks.length} possible outputs (${sinks.slice(0, 6).map((n) => n.name).join(', ')}); name one with --output`);
    }
    return sinks[0]!;
  }

  /** The nodes `output` depends on, inputs before users; iterative, so deep graphs cannot overflow the stack. */
  private topologicalOrder(output: TfNode): TfNode[] {
    const order: TfNode[] = [];
    const state = new Map<string, 1 | 2>();
    const stack: [TfNode, number][] = [[output, 0]];
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const [node, next] = top;
      if (next === 0) {
        if (state.get(node.name) === 2) { stack.pop(); continue; }
        state.set(node.name, 1);
      }
      if (next < node.inputs.length) {
        top[1] += 1;
        const child = this.byName.get(splitInput(node.inputs[next]!)[0])!;
        const s = state.get(child.name);
        if (s === 1) throw new ImportError(this.graph.source, 'is part of a cycle; only frozen inference graphs can be imported', child);
        if (s === undefined) stack.push([child, 0]);
        continue;
      }
      state.set(node.name, 2);
      order.push(node);
      stack.pop();
    }
    return order;
  }

  // ---- pattern detection (before conversion, so that absorbed nodes are never emitted) ----

  private producer(input: string): TfNode {
    let node = this.byName.get(splitInput(input)[0])!;
    while ((node.op === 'Identity' || node.op === 'StopGradient') && node.inputs.length === 1) node = this.byName.get(splitInput(node.inputs[0]!)[0])!;
    return node;
  }

  private onlyUsedBy(node: TfNode, users: ReadonlySet<string>): boolean {
    return (this.consumers.get(node.name) ?? []).every((c) => users.has(c.name));
  }

  private isConstNode(input: string): boolean {
    return this.producer(input).op === 'Const';
  }

  private findPatterns(order: readonly TfNode[]): void {
    for (const node of order) {
      if (node.op === 'Add' || node.op === 'AddV2') this.matchInstanceNorm(node);
    }
    for (const node of order) {
      if (this.absorbed.has(node.name)) continue;
      if (node.op === 'BiasAdd' || ((node.op === 'Add' || node.op === 'AddV2') && this.isConstNode(node.inputs[1]!))) {
        const conv = this.producer(node.inputs[0]!);
        const bias = this.constShape(node.inputs[1]!);
        if (CONV_OPS.has(conv.op) && bias?.length === 1 && this.onlyUsedBy(conv, new Set([node.name])) && !this.absorbed.has(conv.name)) {
          this.absorbed.add(conv.name);
        }
      }
      if (CONV_OPS.has(node.op) && node.op !== 'Conv2DBackpropInput' && attrString(node, 'padding') === 'VALID') {
        const pad = this.producer(node.inputs[0]!);
        if (pad.op === 'Pad' && this.foldablePad(pad) !== null) {
          const users = this.consumers.get(pad.name) ?? [];
          if (users.every((u) => CONV_OPS.has(u.op) && u.op !== 'Conv2DBackpropInput' && attrString(u, 'padding') === 'VALID')) this.absorbed.add(pad.name);
        }
      }
    }
  }

  /** Zero padding of H and W only: what a convolution's own pads can do. Returns [top, bottom, left, right]. */
  private foldablePad(pad: TfNode): number[] | null {
    const paddings = this.constOf(pad.inputs[1]!);
    if (paddings === null || paddings.shape.join() !== '4,2') return null;
    const p = Array.from(paddings.data);
    if (p[0] !== 0 || p[1] !== 0 || p[6] !== 0 || p[7] !== 0) return null;
    return [p[2]!, p[3]!, p[4]!, p[5]!];
  }

  /** A Const (through Identity) as it stands in the file; null for anything else. */
  private constOf(input: string): TfTensor | null {
    const node = this.producer(input);
    const value = node.op === 'Const' ? node.attr['value'] : undefined;
    return value !== undefined && typeof value === 'object' && value !== null && 'data' in value ? (value as TfTensor) : null;
  }

  private constShape(input: string): number[] | null {
    return this.constOf(input)?.shape ?? null;
  }

  /**
   * tf.contrib / Keras instance norm: mean = Mean(x, [1,2]); var = Mean(SquaredDifference(x, mean)); m = Rsqrt(var +
   * eps) [* gamma]; out = x * m + (beta - mean * m). Matched at its last Add.
   */
  private matchInstanceNorm(add: TfNode): void {
    const pair = (node: TfNode, op: string | string[]): [TfNode, TfNode] | null => {
      if (!(Array.isArray(op) ? op : [op]).includes(node.op) || node.inputs.length !== 2) return null;
      return [this.producer(node.inputs[0]!), this.producer(node.inputs[1]!)];
    };
    const inputs = pair(add, ['Add', 'AddV2']);
    if (inputs === null) return;
    for (const [mul1, sub] of [inputs, [inputs[1], inputs[0]] as [TfNode, TfNode]]) {
      const subIn = pair(sub, 'Sub');
      const mulIn = pair(mul1, 'Mul');
      if (subIn === null || mulIn === null) continue;
      const [beta, mul2] = subIn;
      const mul2In = pair(mul2, 'Mul');
      if (beta.op !== 'Const' || mul2In === null) continue;
      for (const [x, m] of [mulIn, [mulIn[1], mulIn[0]] as [TfNode, TfNode]]) {
        for (const [mean, m2] of [mul2In, [mul2In[1], mul2In[0]] as [TfNode, TfNode]]) {
          if (m2 !== m || mean.op !== 'Mean' || this.producer(mean.inputs[0]!) !== x || !this.spatialMean(mean)) continue;
          let rsqrt = m;
          let gamma: TfNode | null = null;
          const mIn = pair(m, 'Mul');
          if (mIn !== null) {
            const found = mIn[0].op === 'Rsqrt' ? mIn : mIn[1].op === 'Rsqrt' ? ([mIn[1], mIn[0]] as [TfNode, TfNode]) : null;
            if (found === null || found[1].op !== 'Const') continue;
            [rsqrt, gamma] = found;
          }
          if (rsqrt.op !== 'Rsqrt') continue;
          const epsAdd = this.producer(rsqrt.inputs[0]!);
          const epsIn = pair(epsAdd, ['Add', 'AddV2']);
          if (epsIn === null) continue;
          const [variance, eps] = epsIn[1].op === 'Const' ? epsIn : ([epsIn[1], epsIn[0]] as [TfNode, TfNode]);
          if (eps.op !== 'Const' || variance.op !== 'Mean' || !this.spatialMean(variance)) continue;
          const sqd = this.producer(variance.inputs[0]!);
          const sqdIn = pair(sqd, 'SquaredDifference');
          if (sqdIn === null || !((sqdIn[0] === x && sqdIn[1] === mean) || (sqdIn[1] === x && sqdIn[0] === mean))) continue;
          const epsValue = this.constOf(eps.name);
          if (epsValue === null || epsValue.data.length !== 1) continue;
          const inner = [mean, sqd, variance, epsAdd, rsqrt, m, mul1, mul2, sub];
          const names = new Set([...inner.map((n) => n.name), add.name]);
          if (!inner.every((n) => this.onlyUsedBy(n, names) || n === mean || n === m)) continue;
          if (!this.onlyUsedBy(mean, names) || !this.onlyUsedBy(m, names)) continue;
          for (const n of inner) this.absorbed.add(n.name);
          this.instanceNorms.set(add.name, { x: x.name, gamma: gamma?.name ?? null, beta: beta.name, eps: eps.name });
          return;
        }
      }
    }
  }

  private spatialMean(mean: TfNode): boolean {
    const axes = this.constOf(mean.inputs[1]!);
    return axes !== null && Array.from(axes.data).sort().join() === '1,2' && attrBool(mean, 'keep_dims', false);
  }

  // ---- values ----

  private get(input: string): Val {
    const [name, index] = splitInput(input);
    const value = this.values.get(index === 0 ? name : `${name}:${index}`);
    if (value === undefined) throw new NodeError(`input "${input}" has no converted value (its op has no output ${index})`);
    return value;
  }

  private dyn(v: Value, kind: Kind, shape: (number | null)[], perm: number[]): Dyn {
    return { k: 'dyn', v, kind, shape, perm };
  }

  private op(opType: string, inputs: (Value | null)[], attrs: Record<string, unknown> = {}): Value {
    this.onnxOps[opType] = (this.onnxOps[opType] ?? 0) + 1;
    return this.g.op(opType, inputs, attrs as never);
  }

  private i64(values: readonly number[], dims: number[] = [values.length]): Value {
    return this.g.initializer(this.freshName('shape'), BigInt64Array.from(values.map((v) => BigInt(Math.trunc(v)))), dims);
  }

  /** Initializer names: "@" + the TF name, so that they never meet the builder's own names (op_N, const_N). */
  private freshName(base: string): string {
    let name = `@${base}`;
    for (let i = 1; this.usedNames.has(name); i += 1) name = `@${base}_${i}`;
    this.usedNames.add(name);
    return name;
  }

  /** A constant as an ONNX initializer, in the given physical order (after right-aligning it to `rank`). */
  private initializer(t: TfTensor, rank = t.shape.length, perm: readonly number[] = identityPerm(rank), name = 'const'): Value {
    const shape = [...new Array<number>(Math.max(0, rank - t.shape.length)).fill(1), ...t.shape];
    const physical = perm.map((p) => shape[p]!);
    const data = isIdentity(perm) ? t.data : transposeData(t.data, shape, perm);
    if (kindOf(t.dtype) === 'float') return this.g.initializer(this.freshName(name), Float32Array.from(data), physical);
    return this.g.initializer(this.freshName(name), BigInt64Array.from(Array.from(data, (v) => BigInt(Math.trunc(v)))), physical);
  }

  private cachedInitializer(key: string, make: () => Value): Value {
    let value = this.initializers.get(key);
    if (value === undefined) this.initializers.set(key, (value = make()));
    return value;
  }

  /** The logical (TF) layout of a run-time tensor, transposing if it is stored otherwise. */
  private native(x: Dyn): Dyn {
    if (isIdentity(x.perm)) return x;
    return this.dyn(this.op('Transpose', [x.v], { perm: inverse(x.perm) }), x.kind, x.shape, identityPerm(x.shape.length));
  }

  /** A run-time tensor stored in the given permutation. */
  private inPerm(x: Dyn, perm: readonly number[]): Dyn {
    if (x.perm.join() === perm.join()) return x;
    const n = this.native(x);
    return this.dyn(this.op('Transpose', [n.v], { perm: [...perm] }), x.kind, x.shape, [...perm]);
  }

  /** A value as an ONNX tensor: shape vectors are materialised, constants become initializers. */
  private materialize(x: Val, rank?: number, perm?: readonly number[], name?: string): Value {
    if (x.k === 'dyn') {
      if (perm !== undefined && x.shape.length === perm.length) return this.inPerm(x, perm).v;
      return this.native(x).v;
    }
    if (x.k === 'const') return this.initializer(x.t, rank, perm ?? identityPerm(Math.max(rank ?? 0, x.t.shape.length)), name);
    return this.dimsTensor(x);
  }

  private dimsTensor(x: Dims): Value {
    if (x.dims.every((d) => typeof d === 'number')) return this.i64(x.dims as number[], x.scalar ? [] : [x.dims.length]);
    const parts = x.dims.map((d) => {
      if (typeof d === 'number') return this.i64([d]);
      const shape = this.op('Shape', [d.of.v]);
      let size = this.op('Gather', [shape, this.i64([d.of.perm.indexOf(d.axis)])], { axis: 0 });
      if (d.a !== 1) size = this.op('Mul', [size, this.i64([d.a])]);
      if (d.b !== 0) size = this.op('Add', [size, this.i64([d.b])]);
      return size;
    });
    const vector = parts.length === 1 ? parts[0]! : this.op('Concat', parts, { axis: 0 });
    return x.scalar ? this.op('Squeeze', [vector, this.i64([0])]) : vector;
  }

  private constTensor(input: string, what: string): TfTensor {
    const v = this.get(input);
    if (v.k === 'const') return v.t;
    if (v.k === 'dims' && v.dims.every((d) => typeof d === 'number')) {
      return { dtype: 'int32', shape: v.scalar ? [] : [v.dims.length], data: Int32Array.from(v.dims as number[]) };
    }
    throw new NodeError(`its ${what} must be known when importing (a constant), not computed at run time`);
  }

  // ---- conversion ----

  private convert(node: TfNode): Val {
    if (node.op === 'Const') {
      const t = this.constOf(node.name);
      if (t === null) throw new NodeError('has no value');
      // Graphs run in float32: half and double constants are widened or narrowed once, here.
      return { k: 'const', t: isFloat(t.dtype) ? { ...t, dtype: 'float32' } : t };
    }
    const handler = OPS[node.op];
    if (handler === undefined) {
      throw new NodeError(`op ${node.op} is not supported by the importer (supported: ${Object.keys(OPS).sort().join(', ')})`);
    }
    // Inputs folded into this node (its Conv, its Pad, an instance norm's internals) have no value of their own.
    const inputs = node.inputs.map((i) => (this.absorbed.has(splitInput(i)[0]) ? ABSORBED : this.get(i)));
    const folded = inputs.every((i) => i.k === 'const') && node.op !== 'Placeholder' ? evalConst(node, inputs.map((i) => (i as Const).t)) : null;
    if (folded !== null) return { k: 'const', t: folded };
    return handler.call(this, node, inputs);
  }

  placeholder(node: TfNode): Val {
    if (this.inputName !== '') throw new NodeError('is a second input; an image model has one');
    const dtype = attrDtype(node, 'dtype');
    if (!isFloat(dtype)) throw new NodeError(`is a ${dtype} input; only float image inputs are supported`);
    const shapeAttr = node.attr['shape'] as { dims: number[] | null } | undefined;
    const shape = shapeAttr?.dims ?? null;
    if (shape === null || (shape.length !== 4 && shape.length !== 3) || shape[shape.length - 1] !== 3) {
      throw new NodeError(`has shape ${JSON.stringify(shape)}; an image input is [N, H, W, 3] or [H, W, 3]`);
    }
    this.inputName = node.name;
    const [h, w] = shape.length === 4 ? [shape[1]!, shape[2]!] : [shape[0]!, shape[1]!];
    const dims = [shape.length === 4 && shape[0]! > 0 ? shape[0]! : 'N', h > 0 ? h : 'H', w > 0 ? w : 'W', 3];
    const input = this.g.input(node.name, 'float32', dims);
    const known = (d: number) => (d > 0 ? d : null);
    if (shape.length === 4) return this.dyn(input, 'float', shape.map(known), identityPerm(4));
    // A [H, W, 3] graph (DCT-Net) takes its image with a batch axis like every other model here.
    return this.dyn(this.op('Squeeze', [input, this.i64([0])]), 'float', shape.map(known), identityPerm(3));
  }

  identity(_node: TfNode, [x]: Val[]): Val {
    return x!;
  }

  shape(_node: TfNode, [x]: Val[]): Val {
    const d = x as Dyn;
    return { k: 'dims', scalar: false, dims: d.shape.map((size, axis) => size ?? { of: d, axis, a: 1, b: 0 }) };
  }

  /** Elementwise ops on two operands, in the first run-time operand's layout. */
  binary(node: TfNode, inputs: Val[]): Val {
    const [a, b] = inputs as [Val, Val];
    if (a.k !== 'dyn' && b.k !== 'dyn') return this.dimsArithmetic(node, a, b);
    const lead = (a.k === 'dyn' ? a : b) as Dyn;
    const other = a.k === 'dyn' ? b : a;
    const shapeOf = (v: Val) => (v.k === 'dyn' ? v.shape : v.k === 'const' ? v.t.shape : v.scalar ? [] : [v.dims.length]);
    const shape = broadcastShapes(shapeOf(a), shapeOf(b), () => node.name);
    let layout = lead;
    if (shape.length !== lead.shape.length || (other.k === 'dyn' && other.shape.length !== lead.shape.length)) layout = this.native(lead);
    const rank = shape.length;
    const perm = layout.shape.length === rank ? layout.perm : identityPerm(rank);
    const operand = (v: Val): Value => {
      if (v === lead) return layout.v;
      if (v.k === 'dyn') return v.shape.length === rank ? this.inPerm(v, perm).v : this.native(v).v;
      if (v.k === 'const') return this.initializer(v.t, rank, perm, constName(node, v));
      return this.dimsTensor(v);
    };
    const kind = (a.k === 'dyn' ? a : (b as Dyn)).kind;
    const [x, y] = [operand(a), operand(b)];
    const onnx = BINARY[node.op]!;
    let v: Value;
    if (node.op === 'SquaredDifference') {
      const d = this.op('Sub', [x, y]);
      v = this.op('Mul', [d, d]);
    } else {
      v = this.op(onnx, [x, y]);
      if (node.op === 'FloorDiv' && kind === 'float') v = this.op('Floor', [v]);
    }
    return this.dyn(v, kind, shape, [...perm]);
  }

  /** Integer arithmetic on shape vectors: stays symbolic while it is affine in one run-time size. */
  private dimsArithmetic(node: TfNode, a: Val, b: Val): Val {
    const scalarOf = (v: Val): number | null => (v.k === 'const' && v.t.data.length === 1 ? v.t.data[0]! : null);
    const dims = a.k === 'dims' ? a : (b as Dims);
    const c = scalarOf(a.k === 'dims' ? b : a);
    const lhs = a.k === 'dims';
    if (c !== null) {
      const map = (d: Dim): Dim | null => {
        const f = (n: number): number | null => {
          switch (node.op) {
            case 'Add': case 'AddV2': return n + c;
            case 'Sub': return lhs ? n - c : c - n;
            case 'Mul': return n * c;
            case 'FloorDiv': return lhs && c !== 0 ? Math.floor(n / c) : null;
            default: return null;
          }
        };
        if (typeof d === 'number') return f(d);
        switch (node.op) {
          case 'Add': case 'AddV2': return { ...d, b: d.b + c };
          case 'Sub': return lhs ? { ...d, b: d.b - c } : { ...d, a: -d.a, b: c - d.b };
          case 'Mul': return { ...d, a: d.a * c, b: d.b * c };
          default: return null;
        }
      };
      const out = dims.dims.map(map);
      if (out.every((d) => d !== null)) return { k: 'dims', dims: out as Dim[], scalar: dims.scalar };
    }
    // Not affine: compute it at run time, as int64 tensors.
    const toDyn = (v: Val): Dyn => {
      const shape = v.k === 'const' ? v.t.shape : (v as Dims).scalar ? [] : [(v as Dims).dims.length];
      return this.dyn(this.materialize(v), 'int', shape, identityPerm(shape.length));
    };
    return this.binary(node, [toDyn(a), b.k === 'dims' ? toDyn(b) : b]);
  }

  unary(node: TfNode, [x]: Val[]): Val {
    const d = this.requireDyn(x!);
    const v = this.activation(node.op, d.v, node);
    return { ...d, v };
  }

  private activation(op: string, x: Value, node: TfNode, alphaInput?: Value): Value {
    switch (op) {
      case 'Relu': return this.op('Relu', [x]);
      case 'Relu6': return this.op('Clip', [x, this.scalar(0), this.scalar(6)]);
      case 'LeakyRelu': return this.op('LeakyRelu', [x], { alpha: float(attrNumber(node, node.op === 'LeakyRelu' ? 'alpha' : 'leakyrelu_alpha', 0.2)) });
      case 'Elu': return this.op('Elu', [x]);
      case 'Selu': return this.op('Selu', [x]);
      case 'Sigmoid': return this.op('Sigmoid', [x]);
      case 'Tanh': return this.op('Tanh', [x]);
      case 'Softplus': return this.op('Softplus', [x]);
      case 'Exp': return this.op('Exp', [x]);
      case 'Log': return this.op('Log', [x]);
      case 'Sqrt': return this.op('Sqrt', [x]);
      case 'Rsqrt': return this.op('Reciprocal', [this.op('Sqrt', [x])]);
      case 'Reciprocal': case 'Inv': return this.op('Reciprocal', [x]);
      case 'Square': return this.op('Mul', [x, x]);
      case 'Neg': return this.op('Neg', [x]);
      case 'Abs': return this.op('Abs', [x]);
      case 'Floor': return this.op('Floor', [x]);
      case 'Round': return this.op('Round', [x]);
      case 'Prelu': if (alphaInput !== undefined) return this.op('PRelu', [x, alphaInput]); break;
    }
    throw new NodeError(`activation ${op} is not supported`);
  }

  private scalar(x: number): Value {
    return this.cachedInitializer(`scalar:${x}`, () => this.g.initializer(this.freshName('scalar'), Float32Array.of(x), []));
  }

  private requireDyn(x: Val): Dyn {
    if (x.k === 'dyn') return x;
    if (x.k === 'dims') return this.dyn(this.dimsTensor(x), 'int', x.scalar ? [] : [x.dims.length], x.scalar ? [] : [0]);
    return this.dyn(this.initializer(x.t), kindOf(x.t.dtype), x.t.shape, identityPerm(x.t.shape.length));
  }

  private requireImage(x: Val, what: string): Dyn {
    const d = this.requireDyn(x);
    if (d.shape.length !== 4) throw new NodeError(`${what} has rank ${d.shape.length}; NHWC images have rank 4`);
    return d;
  }

  cast(node: TfNode, [x]: Val[]): Val {
    const d = this.requireDyn(x!);
    const kind = kindOf(attrDtype(node, 'DstT'));
    if (kind === d.kind) return d;
    return { ...d, kind, v: this.op('Cast', [d.v], { to: ONNX_TYPE[kind] }) };
  }

  clip(node: TfNode, [x, lo, hi]: Val[]): Val {
    const d = this.requireDyn(x!);
    if (lo!.k === 'const' && hi!.k === 'const' && lo!.t.data.length === 1 && hi!.t.data.length === 1 && d.kind === 'float') {
      return { ...d, v: this.op('Clip', [d.v, this.scalar(lo!.t.data[0]!), this.scalar(hi!.t.data[0]!)]) };
    }
    const low = this.binary({ ...node, op: 'Maximum' }, [d, lo!]);
    return this.binary({ ...node, op: 'Minimum' }, [low, hi!]);
  }

  biasAdd(node: TfNode, [x, bias]: Val[]): Val {
    const conv = this.producer(node.inputs[0]!);
    if (this.absorbed.has(conv.name) && bias!.k === 'const') return this.convolution(conv, bias!.t);
    return this.binary({ ...node, op: 'Add' }, [x!, bias!]);
  }

  add(node: TfNode, inputs: Val[]): Val {
    const norm = this.instanceNorms.get(node.name);
    if (norm !== undefined) return this.instanceNorm(norm);
    const conv = this.producer(node.inputs[0]!);
    if (this.absorbed.has(conv.name) && CONV_OPS.has(conv.op)) return this.biasAdd(node, inputs);
    return this.binary(node, inputs);
  }

  private instanceNorm(norm: { x: string; gamma: string | null; beta: string; eps: string }): Val {
    const x = this.requireImage(this.get(norm.x), 'the normalised tensor');
    const nchw = this.inPerm(x, NCHW);
    const beta = this.constTensor(norm.beta, 'beta');
    const channels = beta.data.length;
    const gamma = norm.gamma === null ? { dtype: 'float32' as const, shape: [channels], data: new Float32Array(channels).fill(1) } : this.constTensor(norm.gamma, 'gamma');
    if (gamma.data.length !== channels) throw new NodeError('gamma and beta differ in size');
    const eps = this.constTensor(norm.eps, 'epsilon').data[0]!;
    const v = this.op('InstanceNormalization', [nchw.v, this.vector(gamma, norm.gamma ?? 'gamma'), this.vector(beta, norm.beta)], { epsilon: float(eps) });
    return this.dyn(v, 'float', x.shape, NCHW);
  }

  private vector(t: TfTensor, name: string): Value {
    return this.g.initializer(this.freshName(name), Float32Array.from(t.data), [t.data.length]);
  }

  /** Conv2D, DepthwiseConv2dNative and their TF.js fused forms; a following BiasAdd comes in as `bias`. */
  convolution(node: TfNode, bias?: TfTensor): Val {
    if (node.op === 'Conv2DBackpropInput') return this.transposedConvolution(node, bias);
    const padNode = this.producer(node.inputs[0]!);
    const padFolded = this.absorbed.has(padNode.name) && padNode.op === 'Pad';
    const x = this.requireImage(this.get(padFolded ? padNode.inputs[0]! : node.inputs[0]!), 'the input');
    const filter = this.constTensor(node.inputs[1]!, 'filter');
    if (filter.shape.length !== 4) throw new NodeError(`has a filter of shape [${filter.shape}]; expected [kh, kw, in, out]`);
    if (attrString(node, 'data_format', 'NHWC') !== 'NHWC') throw new NodeError('uses data_format NCHW; frozen CPU graphs are NHWC');
    const depthwise = node.op === 'DepthwiseConv2dNative' || node.op === 'FusedDepthwiseConv2dNative';
    const [kh, kw, cin, cm] = filter.shape as [number, number, number, number];
    // ONNX weights: [out, in/group, kh, kw]; depthwise output channel c*M + m reads input channel c.
    let weights = transposeData(filter.data, filter.shape, depthwise ? [2, 3, 0, 1] : [3, 2, 0, 1]);
    const outChannels = depthwise ? cin * cm : cm;
    let biasData = bias?.data;

    const fused = node.op.startsWith('_Fused') || node.op.startsWith('Fused') ? fusedOps(node) : [];
    const args = node.inputs.slice(2).map((i) => this.constTensor(i, 'fused argument'));
    let activation: string | undefined;
    let alpha: TfTensor | undefined;
    for (const [index, op] of fused.entries()) {
      if (op === 'BiasAdd' && index === 0) biasData = args[0]!.data;
      else if ((op === 'FusedBatchNorm' || op === 'FusedBatchNormV3') && index === 0) {
        const [scale, offset, mean, variance] = args as [TfTensor, TfTensor, TfTensor, TfTensor];
        const eps = attrNumber(node, 'epsilon', 0.001);
        const w = Float32Array.from(weights);
        const b = new Float32Array(outChannels);
        const per = w.length / outChannels;
        for (let c = 0; c < outChannels; c += 1) {
          const k = scale.data[c]! / Math.sqrt(variance.data[c]! + eps);
          for (let i = 0; i < per; i += 1) w[c * per + i] = w[c * per + i]! * k;
          b[c] = offset.data[c]! - mean.data[c]! * k;
        }
        weights = w;
        biasData = b;
      } else if (index === fused.length - 1 && index > 0) {
        activation = op;
        if (op === 'Prelu') alpha = args[1];
      } else throw new NodeError(`fuses ${fused.join(' + ')}, which the importer does not know`);
    }

    const strides = attrInts(node, 'strides', [1, 1, 1, 1]);
    const dilations = attrInts(node, 'dilations', [1, 1, 1, 1]);
    const attrs: Record<string, unknown> = {
      kernel_shape: [kh, kw],
      strides: [strides[1]!, strides[2]!],
      dilations: [dilations[1]!, dilations[2]!],
      group: depthwise ? cin : 1,
    };
    const padding = attrString(node, 'padding');
    if (padding === 'SAME') attrs['auto_pad'] = 'SAME_UPPER';
    else if (padding === 'VALID' && padFolded) {
      const [top, bottom, left, right] = this.foldablePad(padNode)!;
      attrs['pads'] = [top, left, bottom, right];
    } else if (padding === 'VALID') attrs['pads'] = [0, 0, 0, 0];
    else if (padding === 'EXPLICIT') {
      const p = attrInts(node, 'explicit_paddings', []);
      attrs['pads'] = [p[2] ?? 0, p[4] ?? 0, p[3] ?? 0, p[5] ?? 0];
    } else throw new NodeError(`has padding "${padding}"`);

    const w = this.g.initializer(this.freshName(node.inputs[1]!), Float32Array.from(weights), [outChannels, depthwise ? 1 : cin, kh, kw]);
    const inputs: Value[] = [this.inPerm(x, NCHW).v, w];
    if (biasData !== undefined) inputs.push(this.g.initializer(this.freshName(`${node.name}/bias`), Float32Array.from(biasData), [outChannels]));
    let v = this.op('Conv', inputs, attrs);
    if (activation !== undefined) {
      const alphaValue = alpha === undefined ? undefined : this.initializer(alpha, 4, NCHW, `${node.name}/alpha`);
      v = this.activation(activation, v, node, alphaValue);
    }
    const shape = [x.shape[0]!, null, null, outChannels];
    return this.dyn(v, 'float', shape, NCHW);
  }

  /**
   * Conv2DBackpropInput(output_shape, filter, x). ONNX's ConvTranspose gives s*(in-1) + k + output_padding - pads;
   * TF gives output_shape, usually computed from Shape(x) as s*in + b: b fixes the pads. VALID crops or extends at
   * the end; SAME pads as the forward SAME convolution of the output would (the extra pixel at the end).
   */
  private transposedConvolution(node: TfNode, bias?: TfTensor): Val {
    const sizes = this.get(node.inputs[0]!);
    const filter = this.constTensor(node.inputs[1]!, 'filter');
    const x = this.requireImage(this.get(node.inputs[2]!), 'the input');
    const [kh, kw, cout, cin] = filter.shape as [number, number, number, number];
    const strides = attrInts(node, 'strides', [1, 1, 1, 1]);
    const dilations = attrInts(node, 'dilations', [1, 1, 1, 1]);
    if (dilations.some((d) => d !== 1)) throw new NodeError('uses dilations, which transposed convolutions here do not');
    const padding = attrString(node, 'padding');
    const dims: Dim[] = sizes.k === 'dims' ? sizes.dims : sizes.k === 'const' ? Array.from(sizes.t.data) : [];
    if (dims.length !== 4) throw new NodeError('has an output shape that is neither constant nor derived from its input\'s shape');
    const begin: number[] = [];
    const end: number[] = [];
    const outputPadding: number[] = [];
    for (const axis of [1, 2]) {
      const s = strides[axis]!;
      const k = axis === 1 ? kh : kw;
      const d = dims[axis]!;
      let b: number;
      if (typeof d === 'number' && x.shape[axis] !== null) b = d - s * x.shape[axis]!;
      else if (typeof d !== 'number' && d.of === x && d.axis === axis && d.a === s) b = d.b;
      else throw new NodeError(`has an output size along axis ${axis} that is not ${s} x its input's size + a constant`);
      // ONNX: out = s*in + (k - s) + op - pb - pe; TF: out = s*in + b.
      let pb = 0;
      let pe = 0;
      let op = 0;
      if (padding === 'VALID') {
        const delta = b - (k - s);
        if (delta >= 0) op = delta;
        else pe = -delta;
      } else if (padding === 'SAME') {
        const total = k - s - b;
        if (total >= 0) { pb = Math.floor(total / 2); pe = total - pb; } else op = -total;
      } else throw new NodeError(`has padding "${padding}"`);
      if (op >= s) throw new NodeError(`has an output size ${op} pixels larger than its stride allows`);
      begin.push(pb);
      end.push(pe);
      outputPadding.push(op);
    }
    const weights = transposeData(filter.data, filter.shape, [3, 2, 0, 1]); // [in, out, kh, kw]
    const inputs: Value[] = [this.inPerm(x, NCHW).v, this.g.initializer(this.freshName(node.inputs[1]!), Float32Array.from(weights), [cin, cout, kh, kw])];
    if (bias !== undefined) inputs.push(this.g.initializer(this.freshName(`${node.name}/bias`), Float32Array.from(bias.data), [cout]));
    const attrs: Record<string, unknown> = { kernel_shape: [kh, kw], strides: [strides[1]!, strides[2]!], pads: [begin[0]!, begin[1]!, end[0]!, end[1]!] };
    if (outputPadding.some((p) => p !== 0)) attrs['output_padding'] = outputPadding;
    return this.dyn(this.op('ConvTranspose', inputs, attrs), 'float', [x.shape[0]!, null, null, cout], NCHW);
  }

  pad(node: TfNode, [x, , value]: Val[]): Val {
    const d = this.requireDyn(x!);
    const p = this.constTensor(node.inputs[1]!, 'paddings');
    const rank = d.shape.length;
    if (p.shape.join() !== `${rank},2`) throw new NodeError(`has paddings of shape [${p.shape}] for a rank-${rank} tensor`);
    const pads = [...d.perm.map((axis) => p.data[axis * 2]!), ...d.perm.map((axis) => p.data[axis * 2 + 1]!)];
    let mode = 'constant';
    if (node.op === 'MirrorPad') {
      const m = attrString(node, 'mode');
      if (m !== 'REFLECT') throw new NodeError(`uses mode ${m}; ONNX pads only by reflection (REFLECT) or repetition`);
      mode = 'reflect';
    }
    const inputs: Value[] = [d.v, this.i64(pads)];
    if (value !== undefined && mode === 'constant') inputs.push(this.scalar(this.constTensor(node.inputs[2]!, 'pad value').data[0]!));
    const shape = d.shape.map((s, axis) => (s === null ? null : s + p.data[axis * 2]! + p.data[axis * 2 + 1]!));
    return this.dyn(this.op('Pad', inputs, { mode }), d.kind, shape, d.perm);
  }

  reduce(node: TfNode, [x]: Val[]): Val {
    const d = this.requireDyn(x!);
    const rank = d.shape.length;
    const axes = Array.from(this.constTensor(node.inputs[1]!, 'axes').data, (a) => (a < 0 ? a + rank : a));
    const keep = attrBool(node, 'keep_dims', false);
    const physical = axes.map((a) => d.perm.indexOf(a)).sort((a, b) => a - b);
    const onnx = REDUCE[node.op]!;
    const v = onnx === 'ReduceSum'
      ? this.op(onnx, [d.v, this.i64(physical)], { keepdims: keep ? 1 : 0 })
      : this.op(onnx, [d.v], { axes: physical, keepdims: keep ? 1 : 0 });
    const shape = keep ? d.shape.map((s, i) => (axes.includes(i) ? 1 : s)) : d.shape.filter((_, i) => !axes.includes(i));
    let perm = d.perm;
    if (!keep) {
      const kept = d.perm.filter((p) => !axes.includes(p));
      const rankOf = (p: number) => p - axes.filter((a) => a < p).length;
      perm = kept.map(rankOf);
    }
    return this.dyn(v, d.kind, shape, perm);
  }

  /** StridedSlice on a run-time tensor: ONNX Slice in its own layout, then Squeeze / Unsqueeze in the logical one. */
  stridedSlice(node: TfNode, [x]: Val[]): Val {
    const begin = Array.from(this.constTensor(node.inputs[1]!, 'begin').data);
    const end = Array.from(this.constTensor(node.inputs[2]!, 'end').data);
    const strides = Array.from(this.constTensor(node.inputs[3]!, 'strides').data);
    const masks = {
      begin: attrNumber(node, 'begin_mask', 0), end: attrNumber(node, 'end_mask', 0), ellipsis: attrNumber(node, 'ellipsis_mask', 0),
      newAxis: attrNumber(node, 'new_axis_mask', 0), shrink: attrNumber(node, 'shrink_axis_mask', 0),
    };
    if (x!.k === 'dims') {
      const spec = sliceSpec(1, begin, end, strides, masks);
      const axis = spec.axes[0]!;
      const picked = pickRange(x!.dims, axis);
      return axis.shrink ? { k: 'dims', dims: picked, scalar: true } : { k: 'dims', dims: picked, scalar: false };
    }
    const d = this.requireDyn(x!);
    const rank = d.shape.length;
    const spec = sliceSpec(rank, begin, end, strides, masks);
    const sliced = spec.axes.filter((a) => !(a.start === 0 && a.end === BIG && a.step === 1 && !a.shrink));
    let v = d.v;
    if (sliced.length > 0) {
      v = this.op('Slice', [
        d.v,
        this.i64(sliced.map((a) => a.start)),
        this.i64(sliced.map((a) => (a.shrink ? (a.start === -1 ? BIG : a.start + 1) : a.end))),
        this.i64(sliced.map((a) => d.perm.indexOf(a.axis))),
        this.i64(sliced.map((a) => a.step)),
      ]);
    }
    const shape = spec.axes.map((a) => sliceLength(d.shape[a.axis]!, a));
    let out = this.dyn(v, d.kind, shape, d.perm);
    const shrink = spec.axes.filter((a) => a.shrink).map((a) => a.axis);
    if (shrink.length > 0 || spec.newAxes.length > 0) {
      out = this.native(out);
      if (shrink.length > 0) out = this.dyn(this.op('Squeeze', [out.v, this.i64(shrink)]), out.kind, shape.filter((_, i) => !shrink.includes(i)), identityPerm(rank - shrink.length));
      if (spec.newAxes.length > 0) {
        const newShape = [...out.shape];
        for (const a of spec.newAxes) newShape.splice(a, 0, 1);
        out = this.dyn(this.op('Unsqueeze', [out.v, this.i64(spec.newAxes)]), out.kind, newShape, identityPerm(newShape.length));
      }
    }
    return out;
  }

  expandDims(node: TfNode, [x]: Val[]): Val {
    const d = this.native(this.requireDyn(x!));
    let axis = this.constTensor(node.inputs[1]!, 'axis').data[0]!;
    if (axis < 0) axis += d.shape.length + 1;
    const shape = [...d.shape];
    shape.splice(axis, 0, 1);
    return this.dyn(this.op('Unsqueeze', [d.v, this.i64([axis])]), d.kind, shape, identityPerm(shape.length));
  }

  squeeze(node: TfNode, [x]: Val[]): Val {
    const d = this.native(this.requireDyn(x!));
    const rank = d.shape.length;
    let axes = attrInts(node, 'squeeze_dims', attrInts(node, 'axis', [])).map((a) => (a < 0 ? a + rank : a));
    if (axes.length === 0) axes = d.shape.flatMap((s, i) => (s === 1 ? [i] : []));
    if (axes.length === 0) throw new NodeError('squeezes axes whose sizes are only known at run time; name them (squeeze_dims)');
    const shape = d.shape.filter((_, i) => !axes.includes(i));
    return this.dyn(this.op('Squeeze', [d.v, this.i64(axes)]), d.kind, shape, identityPerm(shape.length));
  }

  reshape(_node: TfNode, [x, target]: Val[]): Val {
    const d = this.native(this.requireDyn(x!));
    let shape: (number | null)[];
    if (target!.k === 'const') {
      const t = Array.from(target!.t.data);
      if (t.includes(0)) throw new NodeError('reshapes to a zero-sized axis');
      const known = d.shape.every((s) => s !== null) ? sizeOf(d.shape as number[]) : null;
      const rest = t.filter((s) => s !== -1).reduce((n, s) => n * s, 1);
      shape = t.map((s) => (s === -1 ? (known === null ? null : known / rest) : s));
    } else if (target!.k === 'dims') shape = target!.dims.map((s) => (typeof s === 'number' && s >= 0 ? s : null));
    else shape = new Array<null>(target!.shape[0] ?? 0).fill(null);
    if (target!.k === 'dyn' && target!.shape[0] === null) throw new NodeError('reshapes to a shape of unknown rank');
    return this.dyn(this.op('Reshape', [d.v, this.materialize(target!)]), d.kind, shape, identityPerm(shape.length));
  }

  transpose(node: TfNode, [x]: Val[]): Val {
    const d = this.requireDyn(x!);
    const p = Array.from(this.constTensor(node.inputs[1]!, 'perm').data);
    const pinv = inverse(p);
    // No data moves: the logical axes are renamed, the physical order stays.
    return this.dyn(d.v, d.kind, p.map((a) => d.shape[a]!), d.perm.map((a) => pinv[a]!));
  }

  concat(node: TfNode, inputs: Val[]): Val {
    const parts = inputs.slice(0, -1);
    const axisTensor = this.constTensor(node.inputs[node.inputs.length - 1]!, 'axis');
    if (parts.every((p) => p.k !== 'dyn')) {
      // Shape vectors: still symbolic.
      const dims = parts.flatMap((p) => (p.k === 'dims' ? p.dims : Array.from((p as Const).t.data)));
      return { k: 'dims', dims, scalar: false };
    }
    const lead = parts.find((p): p is Dyn => p.k === 'dyn')!;
    const rank = lead.shape.length;
    let axis = axisTensor.data[0]!;
    if (axis < 0) axis += rank;
    const values = parts.map((p) => this.materialize(p, rank, lead.perm, constName(node, p)));
    const shape = lead.shape.map((s, i) => {
      if (i !== axis) return s;
      const sizes = parts.map((p) => (p.k === 'dyn' ? p.shape[i]! : p.k === 'const' ? p.t.shape[i]! : null));
      return sizes.every((z) => z !== null) ? sizes.reduce((n, z) => n! + z!, 0) : null;
    });
    return this.dyn(this.op('Concat', values, { axis: lead.perm.indexOf(axis) }), lead.kind, shape, lead.perm);
  }

  pack(node: TfNode, inputs: Val[]): Val {
    const axis = attrNumber(node, 'axis', 0);
    if (inputs.every((i) => i.k !== 'dyn' && (i.k === 'dims' ? i.scalar : i.t.shape.length === 0)) && axis === 0) {
      return { k: 'dims', scalar: false, dims: inputs.map((i) => (i.k === 'dims' ? i.dims[0]! : (i as Const).t.data[0]!)) };
    }
    const values = inputs.map((i) => this.native(this.requireDyn(i)));
    const rank = values[0]!.shape.length;
    const a = axis < 0 ? axis + rank + 1 : axis;
    const unsqueezed = values.map((v) => this.op('Unsqueeze', [v.v, this.i64([a])]));
    const shape = [...values[0]!.shape];
    shape.splice(a, 0, values.length);
    return this.dyn(this.op('Concat', unsqueezed, { axis: a }), values[0]!.kind, shape, identityPerm(rank + 1));
  }

  fill(node: TfNode, [dims, value]: Val[]): Val {
    if (value!.k !== 'const' || value!.t.data.length !== 1) throw new NodeError('fills with a value computed at run time');
    const v = this.initializer(value!.t, 0, [], constName(node, value!));
    const shape = dims!.k === 'dims' ? dims!.dims.map((d) => (typeof d === 'number' ? d : null)) : new Array<null>((dims as Dyn).shape[0] ?? 0).fill(null);
    return this.dyn(this.op('Expand', [v, this.materialize(dims!)]), kindOf(value!.t.dtype), shape, identityPerm(shape.length));
  }

  resizeBilinear(node: TfNode, [x, size]: Val[]): Val {
    const d = this.requireImage(x!, 'the input');
    const hw: Dim[] = size!.k === 'dims' ? size!.dims : size!.k === 'const' ? Array.from(size!.t.data) : [];
    if (hw.length !== 2) throw new NodeError('resizes to a size that is neither constant nor derived from a shape');
    const logical: Dim[] = [d.shape[0] ?? { of: d, axis: 0, a: 1, b: 0 }, hw[0]!, hw[1]!, d.shape[3] ?? { of: d, axis: 3, a: 1, b: 0 }];
    const sizes = this.dimsTensor({ k: 'dims', scalar: false, dims: d.perm.map((p) => logical[p]!) });
    const mode = attrBool(node, 'align_corners', false) ? 'align_corners' : attrBool(node, 'half_pixel_centers', false) ? 'half_pixel' : 'asymmetric';
    const v = this.op('Resize', [d.v, null, null, sizes], { mode: 'linear', coordinate_transformation_mode: mode });
    return this.dyn(v, 'float', [d.shape[0]!, typeof hw[0] === 'number' ? hw[0] : null, typeof hw[1] === 'number' ? hw[1] : null, d.shape[3]!], d.perm);
  }

  pool(node: TfNode, [x]: Val[]): Val {
    const d = this.inPerm(this.requireImage(x!, 'the input'), NCHW);
    const k = attrInts(node, 'ksize', [1, 1, 1, 1]);
    const s = attrInts(node, 'strides', [1, 1, 1, 1]);
    const padding = attrString(node, 'padding');
    const attrs: Record<string, unknown> = { kernel_shape: [k[1]!, k[2]!], strides: [s[1]!, s[2]!], auto_pad: padding === 'SAME' ? 'SAME_UPPER' : 'VALID' };
    if (node.op === 'AvgPool') attrs['count_include_pad'] = 0;
    const v = this.op(node.op === 'MaxPool' ? 'MaxPool' : 'AveragePool', [d.v], attrs);
    return this.dyn(v, 'float', [d.shape[0]!, null, null, d.shape[3]!], NCHW);
  }

  matMul(node: TfNode, [a]: Val[]): Val {
    const x = this.native(this.requireDyn(a!));
    if (x.shape.length !== 2) throw new NodeError('multiplies tensors of rank other than 2');
    let left = x.v;
    if (attrBool(node, 'transpose_a', false)) left = this.op('Transpose', [left], { perm: [1, 0] });
    const w = this.constTensor(node.inputs[1]!, 'weights');
    const [r, c] = w.shape as [number, number];
    const transposeB = attrBool(node, 'transpose_b', false);
    const weights = transposeB ? transposeData(w.data, [r, c], [1, 0]) : w.data;
    const out = transposeB ? r : c;
    let v = this.op('MatMul', [left, this.g.initializer(this.freshName(node.inputs[1]!), Float32Array.from(weights), transposeB ? [c, r] : [r, c])]);
    const fused = node.op === '_FusedMatMul' ? fusedOps(node) : [];
    const args = node.inputs.slice(2).map((i) => this.constTensor(i, 'fused argument'));
    for (const [index, op] of fused.entries()) {
      if (op === 'BiasAdd' && index === 0) v = this.op('Add', [v, this.g.initializer(this.freshName(`${node.name}/bias`), Float32Array.from(args[0]!.data), [out])]);
      else if (index === fused.length - 1) v = this.activation(op, v, node, op === 'Prelu' ? this.initializer(args[1]!) : undefined);
      else throw new NodeError(`fuses ${fused.join(' + ')}, which the importer does not know`);
    }
    return this.dyn(v, 'float', [x.shape[0]!, out], [0, 1]);
  }
}

const CONV_OPS = new Set(['Conv2D', 'DepthwiseConv2dNative', 'Conv2DBackpropInput']);
const BINARY: Record<string, string> = {
  Add: 'Add', AddV2: 'Add', Sub: 'Sub', Mul: 'Mul', RealDiv: 'Div', Div: 'Div', Maximum: 'Max', Minimum: 'Min',
  SquaredDifference: 'Sub', Pow: 'Pow', FloorDiv: 'Div', BiasAdd: 'Add', Prelu: 'PRelu',
};
const REDUCE: Record<string, string> = { Mean: 'ReduceMean', Sum: 'ReduceSum', Max: 'ReduceMax', Min: 'ReduceMin', Prod: 'ReduceProd' };
const UNARY = ['Relu', 'Relu6', 'LeakyRelu', 'Elu', 'Selu', 'Sigmoid', 'Tanh', 'Softplus', 'Exp', 'Log', 'Sqrt', 'Rsqrt', 'Reciprocal', 'Square', 'Neg', 'Abs', 'Floor', 'Round'];

type Handler = (this: Converter, node: TfNode, inputs: Val[]) => Val;
const P = Converter.prototype;
const OPS: Record<string, Handler> = {
  Placeholder: P.placeholder,
  Identity: P.identity, StopGradient: P.identity, Snapshot: P.identity,
  Shape: P.shape,
  Add: P.add, AddV2: P.add, Sub: P.binary, Mul: P.binary, RealDiv: P.binary, Div: P.binary, Maximum: P.binary, Minimum: P.binary,
  SquaredDifference: P.binary, Pow: P.binary, FloorDiv: P.binary, Prelu: P.binary,
  BiasAdd: P.biasAdd,
  ...Object.fromEntries(UNARY.map((op) => [op, P.unary])),
  Cast: P.cast, ClipByValue: P.clip,
  Conv2D: (function (this: Converter, node: TfNode) { return this.convolution(node); }) as Handler,
  DepthwiseConv2dNative: (function (this: Converter, node: TfNode) { return this.convolution(node); }) as Handler,
  _FusedConv2D: (function (this: Converter, node: TfNode) { return this.convolution(node); }) as Handler,
  FusedDepthwiseConv2dNative: (function (this: Converter, node: TfNode) { return this.convolution(node); }) as Handler,
  Conv2DBackpropInput: (function (this: Converter, node: TfNode) { return this.convolution(node); }) as Handler,
  Pad: P.pad, PadV2: P.pad, MirrorPad: P.pad,
  Mean: P.reduce, Sum: P.reduce, Max: P.reduce, Min: P.reduce, Prod: P.reduce,
  StridedSlice: P.stridedSlice, ExpandDims: P.expandDims, Squeeze: P.squeeze, Reshape: P.reshape, Transpose: P.transpose,
  ConcatV2: P.concat, Pack: P.pack, Fill: P.fill,
  ResizeBilinear: P.resizeBilinear, MaxPool: P.pool, AvgPool: P.pool,
  MatMul: P.matMul, _FusedMatMul: P.matMul,
};

function fusedOps(node: TfNode): string[] {
  const ops = node.attr['fused_ops'];
  return Array.isArray(ops) ? (ops as string[]) : [];
}

function constName(node: TfNode, v: Val): string {
  return v.k === 'const' ? `${node.name}/const` : `${node.name}/shape`;
}

function sliceLength(size: number | null, a: SliceAxis): number | null {
  if (a.shrink) return 1;
  if (size === null) return null;
  return pickRange(new Array<number>(size).fill(0), a).length;
}

function transposeData(data: TfTensor['data'], shape: readonly number[], perm: readonly number[]): Float32Array {
  const rank = shape.length;
  const out = new Float32Array(data.length);
  const outShape = perm.map((p) => shape[p]!);
  const inStrides = new Array<number>(rank);
  for (let i = rank - 1, s = 1; i >= 0; i -= 1) { inStrides[i] = s; s *= shape[i]!; }
  const strides = perm.map((p) => inStrides[p]!);
  const index = new Array<number>(rank).fill(0);
  for (let o = 0; o < out.length; o += 1) {
    let offset = 0;
    for (let i = 0; i < rank; i += 1) offset += index[i]! * strides[i]!;
    out[o] = data[offset]!;
    for (let i = rank - 1; i >= 0; i -= 1) {
      index[i] = index[i]! + 1;
      if (index[i]! < outShape[i]!) break;
      index[i] = 0;
    }
  }
  return out;
}

function attrString(node: TfNode, key: string, fallback?: string): string {
  const v = node.attr[key];
  if (typeof v === 'string') return v;
  if (fallback !== undefined) return fallback;
  throw new NodeError(`has no "${key}" attribute`);
}

function attrNumber(node: TfNode, key: string, fallback: number): number {
  const v = node.attr[key];
  return typeof v === 'number' ? v : fallback;
}

function attrBool(node: TfNode, key: string, fallback: boolean): boolean {
  const v = node.attr[key];
  return typeof v === 'boolean' ? v : fallback;
}

function attrInts(node: TfNode, key: string, fallback: number[]): number[] {
  const v = node.attr[key];
  return Array.isArray(v) && v.every((x) => typeof x === 'number') && v.length > 0 ? (v as number[]) : fallback;
}

function attrDtype(node: TfNode, key: string): TfDtype {
  const v = node.attr[key] as AttrValue | undefined;
  if (typeof v === 'object' && v !== null && 'dtype' in v) return v.dtype;
  throw new NodeError(`has no "${key}" type attribute`);
}

export { transposeData };
