/**
 * Static QDQ quantization of an image-to-image network: which nodes run in int8 (the plan) and the rewrite that
 * puts QuantizeLinear / DequantizeLinear pairs around them, so that onnxruntime's QDQ transformer fuses each
 * "DQ -> op -> Q" group into one integer kernel:
 *
 *   DQ -> Conv (-> Relu) -> Q   =>  QLinearConv (the Relu folds into the output's zero point)
 *   DQ -> LeakyRelu -> Q        =>  QLinearLeakyRelu (a 256-entry table; LeakyRelu cannot fold into QLinearConv)
 *   DQ, DQ -> Add -> Q          =>  QLinearAdd (residual blocks, skip connections)
 *   DQ -> Concat -> Q           =>  QLinearConcat
 *   DQ -> Resize -> Q           =>  Resize on uint8 (same scale and zero point in and out, so the pair is dropped)
 *
 * Every output of an int8 node goes through a Q and then one DQ per reader, so the tensors between convolutions stay
 * uint8 and each node sits between DQ and Q, as the fusion requires. Everything else (the pre-processing, Tanh,
 * a guided filter's box filters and divisions, the output) stays fp32, reading the int8 part through DQ.
 *
 * Number formats, the ones onnxruntime's x86 kernels are fastest with (U8S8; AVX-512 VNNI's vpdpbusd multiplies
 * unsigned by signed bytes): activations uint8 with an asymmetric range, weights int8 symmetric per output channel
 * (zero point 0, which selects MLAS's symmetric convolution kernels), biases int32 with scale = input scale x weight
 * scale, zero point 0, exactly as QLinearConv defines them.
 */
import { ModelGraph, QuantizeError, type NodeProto } from './graph.js';

export interface Range {
  min: number;
  max: number;
}

export interface QuantPlan {
  /** The nodes that run in int8. */
  int8: Set<NodeProto>;
  /** Activation tensors that get a Q/DQ pair, in graph order. */
  tensors: string[];
  /** Tensors whose scale and zero point must equal another's (a Resize's output shares its input's). */
  sameAs: Map<string, string>;
  /** Tensors left un-quantized because a Relu after their Conv folds into QLinearConv. */
  folded: Set<string>;
  /** Conv nodes left in fp32, with the reason, for the report. */
  skipped: string[];
}

const UNARY = new Set(['LeakyRelu']);
/** Activations that fold into the preceding QLinearConv when the Conv has no other reader. */
const FOLDABLE = new Set(['Relu']);
const BINARY = new Set(['Add']);
/** Ops that join the int8 region when their inputs come from it. */
const INT8_FOLLOWERS = new Set([...UNARY, ...FOLDABLE, ...BINARY, 'Concat', 'Resize']);

/** Per-channel weights need DequantizeLinear's `axis` (opset 13); QLinearConv needs 10. */
export const MIN_OPSET = 13;

function dataInputs(node: NodeProto): string[] {
  switch (node.opType) {
    case 'Conv':
    case 'Resize':
    case 'LeakyRelu':
    case 'Relu':
      return [node.input![0]!];
    default:
      return [...node.input!];
  }
}

/** Chooses the int8 nodes: every plain convolution, then whatever sits between int8 nodes and fuses. */
export function planQuantization(g: ModelGraph, keepFp32: ReadonlySet<string> = new Set()): QuantPlan {
  if (g.opset < MIN_OPSET) {
    throw new QuantizeError(`the model uses opset ${g.opset}; per-channel int8 weights need opset ${MIN_OPSET} or later (re-export it)`);
  }
  const int8 = new Set<NodeProto>();
  const skipped: string[] = [];
  const fromImage = imageDependent(g);
  for (const n of g.nodes) {
    if (n.opType !== 'Conv' || (n.domain ?? '') !== '') continue;
    const weight = g.floatInitializer(n.input![1]!);
    const bias = n.input![2];
    if (keepFp32.has(n.name!)) skipped.push(`${n.name}: kept in fp32 as asked`);
    else if (weight === undefined || weight.dims.length !== 4) skipped.push(`${n.name}: weights are not a constant 4-d float tensor`);
    else if (!fromImage.has(n.input![0]!)) skipped.push(`${n.name}: input does not depend on the image (a constant map), kept fp32`)
    else if (g.attrInt(n, 'group', 1) !== 1) skipped.push(`${n.name}: grouped (depthwise) convolution, kept fp32`);
    else if (bias !== undefined && bias !== '' && g.floatInitializer(bias) === undefined) skipped.push(`${n.name}: bias is not a constant`);
    else int8.add(n);
  }
  if (int8.size === 0) {
    throw new QuantizeError('the model has no convolution that can run in int8 (a Conv with constant weights, group 1): nothing to quantize');
  }
  const fromInt8 = (name: string) => {
    const p = g.producer.get(name);
    return p !== undefined && int8.has(p);
  };
  for (let changed = true; changed; ) {
    changed = false;
    for (const n of g.nodes) {
      if (int8.has(n) || (n.domain ?? '') !== '' || keepFp32.has(n.name!)) continue;
      const inputs = n.input ?? [];
      const constant = (name: string) => name === '' || g.initializers.has(name);
      const take =
        ((UNARY.has(n.opType!) || FOLDABLE.has(n.opType!)) && fromInt8(inputs[0]!)) ||
        (BINARY.has(n.opType!) && inputs.length === 2 && inputs.every(fromInt8)) ||
        (n.opType === 'Concat' && inputs.every(fromInt8)) ||
        (n.opType === 'Resize' && fromInt8(inputs[0]!) && inputs.slice(1).every(constant));
      if (take) {
        int8.add(n);
        changed = true;
      }
    }
  }
  // A Relu right after a Conv that nothing else reads: no Q between them, so QLinearConv absorbs it.
  const folded = new Set<string>();
  for (const n of int8) {
    if (!FOLDABLE.has(n.opType!)) continue;
    const x = n.input![0]!;
    const p = g.producer.get(x);
    if (p?.opType === 'Conv' && g.consumers.get(x)?.length === 1 && !g.graphOutputs.has(x)) folded.add(x);
  }
  const tensors: string[] = [];
  const seen = new Set<string>();
  const want = (name: string) => {
    if (name === '' || g.initializers.has(name) || folded.has(name) || seen.has(name)) return;
    seen.add(name);
    tensors.push(name);
  };
  const sameAs = new Map<string, string>();
  for (const n of g.nodes) {
    if (!int8.has(n)) continue;
    dataInputs(n).forEach(want);
    n.output!.forEach(want);
    if (n.opType === 'Resize') sameAs.set(n.output![0]!, n.input![0]!);
  }
  return { int8, tensors, sameAs, folded, skipped };
}

/**
 * Tensors whose values depend on the image's pixels. A Shape reads only the size, so what is built from it (a guided
 * filter's count map of ones) is a constant map: exact small integers that an 8-bit range would round.
 */
function imageDependent(g: ModelGraph): Set<string> {
  const dependent = new Set(g.graphInputs);
  for (const n of g.nodes) {
    if (n.opType === 'Shape' || n.opType === 'Size') continue;
    if ((n.input ?? []).some((i) => dependent.has(i))) for (const o of n.output ?? []) dependent.add(o);
  }
  return dependent;
}

/** Output channels of a Conv are padded up to a multiple of this; MLAS's int8 kernels work in such blocks. */
const CHANNEL_BLOCK = 16;

/**
 * An image model's output convolution has 3 output channels, which onnxruntime's int8 convolution runs several times
 * slower per multiply-add than a wide one (about half of White-box's whole int8 run). Padding its weights with zero
 * filters to a full block and slicing the 3 real channels back out gives the same result, much faster. Applied to
 * the fp32 graph before calibration, so the ranges are those of the padded tensor (the extra channels are 0).
 */
export function padNarrowConvs(g: ModelGraph, keepFp32: ReadonlySet<string> = new Set()): string[] {
  const padded: string[] = [];
  const fromImage = imageDependent(g);
  for (const conv of [...g.nodes]) {
    if (conv.opType !== 'Conv' || (conv.domain ?? '') !== '' || keepFp32.has(conv.name!)) continue;
    if (g.attrInt(conv, 'group', 1) !== 1 || !fromImage.has(conv.input![0]!)) continue;
    const weight = g.floatInitializer(conv.input![1]!);
    if (weight === undefined || weight.dims.length !== 4) continue;
    const out = weight.dims[0]!;
    if (out % CHANNEL_BLOCK === 0 || out > 4 * CHANNEL_BLOCK) continue;
    // Only an output convolution: a Slice between a Conv and its activation would break the int8 chain.
    const readers = g.consumers.get(conv.output![0]!) ?? [];
    if (readers.some(({ node }) => INT8_FOLLOWERS.has(node.opType!))) continue;
    const biasName = conv.input![2];
    const bias = biasName === undefined || biasName === '' ? undefined : g.floatInitializer(biasName);
    if (bias === undefined && biasName !== undefined && biasName !== '') continue; // not a constant: stays fp32
    const wide = Math.ceil(out / CHANNEL_BLOCK) * CHANNEL_BLOCK;
    const per = weight.data.length / out;
    const w = new Float32Array(wide * per);
    w.set(weight.data);
    conv.input![1] = g.addInitializer(g.fresh(`${conv.name}.weight`, 'padded'), 'float32', w, [wide, ...weight.dims.slice(1)]);
    if (bias !== undefined) {
      const b = new Float32Array(wide);
      b.set(bias.data);
      conv.input![2] = g.addInitializer(g.fresh(`${conv.name}.bias`, 'padded'), 'float32', b, [wide]);
    }
    const result = conv.output![0]!;
    const wideOut = g.fresh(result, 'padded');
    conv.output = [wideOut];
    const range = (what: string, value: number) => g.addInitializer(g.fresh(result, what), 'int64', [value], [1]);
    const slice = g.node('Slice', [wideOut, range('starts', 0), range('ends', out), range('axes', 1)], result);
    g.nodes.splice(g.nodes.indexOf(conv) + 1, 0, slice);
    padded.push(`${conv.name}: ${out} output channels padded to ${wide}`);
  }
  g.pruneInitializers();
  g.reindex();
  return padded;
}

export interface QParams {
  scale: number;
  zeroPoint: number;
}

/** uint8 asymmetric: the range always holds 0 (padding and ReLU zeros must be exact). */
export function uint8Params({ min, max }: Range): QParams {
  const lo = Math.min(min, 0);
  const hi = Math.max(max, 0);
  const scale = hi - lo > 1e-12 ? (hi - lo) / 255 : 1;
  return { scale, zeroPoint: Math.min(255, Math.max(0, Math.round(-lo / scale))) };
}

export interface RewriteOptions {
  /** 7-bit weights (-63..63): avoids the int16 saturation of vpmaddubsw on x86 CPUs without VNNI. */
  reduceRange: boolean;
}

/** Rewrites the graph in place into QDQ form. `ranges` must hold every tensor of the plan (sameAs ones excepted). */
export function rewriteQdq(g: ModelGraph, plan: QuantPlan, ranges: ReadonlyMap<string, Range>, opts: RewriteOptions): void {
  const params = new Map<string, { scale: string; zeroPoint: string; value: QParams }>();
  const paramsOf = (t: string) => {
    const root = plan.sameAs.get(t) ?? t;
    const existing = params.get(root);
    if (existing) return existing;
    const range = ranges.get(root);
    if (range === undefined) throw new Error(`no calibration range for ${root}`);
    const value = uint8Params(range);
    const entry = {
      value,
      scale: g.addInitializer(g.fresh(root, 'scale'), 'float32', [value.scale], []),
      zeroPoint: g.addInitializer(g.fresh(root, 'zero_point'), 'uint8', [value.zeroPoint], []),
    };
    params.set(root, entry);
    return entry;
  };

  // Weights and biases first: the bias scale depends on the input's activation scale.
  const before = new Map<NodeProto, NodeProto[]>();
  const after = new Map<NodeProto, NodeProto[]>();
  const push = (map: Map<NodeProto, NodeProto[]>, at: NodeProto, n: NodeProto) => map.set(at, [...(map.get(at) ?? []), n]);
  for (const conv of plan.int8) {
    if (conv.opType !== 'Conv') continue;
    const inputScale = paramsOf(conv.input![0]!).value.scale;
    for (const n of quantizeConvConstants(g, conv, inputScale, opts)) push(before, conv, n);
  }

  const startNodes: NodeProto[] = [];
  for (const t of plan.tensors) {
    const p = params.get(plan.sameAs.get(t) ?? t) ?? paramsOf(t);
    const producer = g.producer.get(t);
    const producedInt8 = producer !== undefined && plan.int8.has(producer);
    let raw = t;
    if (producedInt8 && g.graphOutputs.has(t)) {
      // The graph output keeps its name; the int8 node writes a new tensor that Q reads.
      raw = g.fresh(t, 'float');
      producer.output = producer.output!.map((o) => (o === t ? raw : o));
    }
    const quantized = g.fresh(t, 'quantized');
    const q = g.node('QuantizeLinear', [raw, p.scale, p.zeroPoint], quantized);
    if (producer) push(after, producer, q);
    else startNodes.push(q);
    const uses = (g.consumers.get(t) ?? []).filter((u) => producedInt8 || plan.int8.has(u.node));
    for (const use of uses) {
      const dq = g.node('DequantizeLinear', [quantized, p.scale, p.zeroPoint], g.fresh(t, 'dequantized'));
      use.node.input![use.index] = dq.output![0]!;
      push(before, use.node, dq);
    }
    if (producedInt8 && g.graphOutputs.has(t)) push(after, q, g.node('DequantizeLinear', [quantized, p.scale, p.zeroPoint], t));
  }

  // Keep the node list topologically sorted: each DQ right before its reader, each Q right after its writer.
  const ordered: NodeProto[] = [...startNodes];
  const emit = (n: NodeProto) => {
    ordered.push(n);
    for (const next of after.get(n) ?? []) emit(next);
  };
  for (const n of g.nodes) {
    for (const dq of before.get(n) ?? []) ordered.push(dq);
    emit(n);
  }
  g.nodes.splice(0, g.nodes.length, ...ordered);
  g.pruneInitializers();
  g.reindex();
}

/** Per-channel symmetric int8 weights and int32 bias for one Conv; returns the DequantizeLinear nodes to add. */
function quantizeConvConstants(g: ModelGraph, conv: NodeProto, inputScale: number, opts: RewriteOptions): NodeProto[] {
  const weightName = conv.input![1]!;
  const { data, dims } = g.floatInitializer(weightName)!;
  const channels = dims[0]!;
  const per = data.length / channels;
  const qmax = opts.reduceRange ? 63 : 127;
  const scales = new Float32Array(channels);
  const q = new Int8Array(data.length);
  for (let c = 0; c < channels; c++) {
    let maxAbs = 0;
    for (let i = c * per; i < (c + 1) * per; i++) maxAbs = Math.max(maxAbs, Math.abs(data[i]!));
    // Math.fround: the scale the kernel sees is a float32; round the weights with that same value.
    const scale = Math.fround(maxAbs > 0 ? maxAbs / qmax : 1);
    scales[c] = scale;
    for (let i = c * per; i < (c + 1) * per; i++) q[i] = Math.max(-qmax, Math.min(qmax, Math.round(data[i]! / scale)));
  }
  const base = `${conv.name}.weight`;
  const wq = g.addInitializer(g.fresh(base, 'int8'), 'int8', q, dims);
  const ws = g.addInitializer(g.fresh(base, 'scale'), 'float32', scales, [channels]);
  const wz = g.addInitializer(g.fresh(base, 'zero_point'), 'int8', new Int8Array(channels), [channels]);
  const wdq = g.node('DequantizeLinear', [wq, ws, wz], g.fresh(base, 'dequantized'), 0);
  conv.input![1] = wdq.output![0]!;
  const nodes = [wdq];
  const biasName = conv.input![2];
  if (biasName !== undefined && biasName !== '') {
    const bias = g.floatInitializer(biasName)!.data;
    const bs = scales.map((s) => Math.fround(s * inputScale));
    const bq = Int32Array.from(bias, (b, c) => Math.max(-(2 ** 31), Math.min(2 ** 31 - 1, Math.round(b / bs[c]!))));
    const bBase = `${conv.name}.bias`;
    const bqName = g.addInitializer(g.fresh(bBase, 'int32'), 'int32', bq, [channels]);
    const bsName = g.addInitializer(g.fresh(bBase, 'scale'), 'float32', bs, [channels]);
    const bzName = g.addInitializer(g.fresh(bBase, 'zero_point'), 'int32', new Int32Array(channels), [channels]);
    const bdq = g.node('DequantizeLinear', [bqName, bsName, bzName], g.fresh(bBase, 'dequantized'), 0);
    conv.input![2] = bdq.output![0]!;
    nodes.push(bdq);
  }
  return nodes;
}

