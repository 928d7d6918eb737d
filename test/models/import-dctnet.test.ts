/**
 * `privatoon import --dctnet`: a folder laid out as ModelScope publishes DCT-Net (cartoon_bg.pb, cartoon_h.pb,
 * alpha.jpg; graph input `input_image` float32 [H, W, 3] 0..255, normalisation inside the graph, output
 * `output_image` uint8 [H, W, 3]) with seeded weights, since the real ones cannot be downloaded here. The graphs are
 * written as TF.js models (the reference runs those in TensorFlow.js) and as the frozen .pb files the folder holds.
 */
import { poolSettings } from '../../config.js';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { convertGraph } from '../../models/import/convert.js';
import { importDctnet } from '../../models/import/dctnet.js';
import { encodeGraphDef } from '../../models/import/graphdef.js';
import { readTfGraph } from '../../models/import/index.js';
import { readTfjsModel } from '../../models/import/tfjs.js';
import { loadManifests } from '../../models/registry.js';
import { verifyModels } from '../../models/verify.js';
import { InferencePool } from '../../pool/inference-pool.js';
import { SHARED } from '../fixtures/models.js';
import { attr, compare, constNode, node, placeholder, runOnnx, runTfjs, seeded, writeTfjsModel, type WeightFixture } from '../fixtures/tf-models.js';

const S = attr.s;
const conv = (name: string, input: string, filter: string, strides = 1) =>
  node(name, 'Conv2D', [input, filter], { T: attr.float, strides: attr.ints([1, strides, strides, 1]), padding: S('SAME'), data_format: S('NHWC'), dilations: attr.ints([1, 1, 1, 1]) });
const op = (name: string, type: string, inputs: string[], extra: Record<string, unknown> = {}) => node(name, type, inputs, { T: attr.float, ...extra });

/**
 * A small U-Net with DCT-Net's I/O: [H, W, 3] 0..255 in; batch axis and -1..1 inside; down, up by a run-time resize,
 * skip connection; clipped, mapped back to 0..255 and cast to uint8 out.
 */
function dctnetGraph(seed: number): { nodes: Record<string, unknown>[]; weights: WeightFixture[] } {
  const w = (name: string, shape: number[], k: number, scale = 0.3): WeightFixture => ({ name, shape, values: seeded(seed * 10 + k, shape.reduce((a, b) => a * b, 1), scale) });
  const f = (name: string, value: number): WeightFixture => ({ name, shape: [], values: [value] });
  const i = (name: string, values: number[], shape = [values.length]): WeightFixture => ({ name, shape, dtype: 'int32', values });
  return {
    nodes: [
      placeholder('input_image', [-1, -1, 3]),
      ...['e1', 'e2', 'd1', 'out_w', 'b1', 'b2', 'half', 'one', 'lo', 'hi', 'scale255'].map((n) => constNode(n)),
      ...['axis0', 'hw_begin', 'hw_end', 'step', 'cat_axis'].map((n) => constNode(n, 'int32')),
      node('ExpandDims', 'ExpandDims', ['input_image', 'axis0'], { T: attr.float, Tdim: attr.int }),
      op('truediv', 'RealDiv', ['ExpandDims', 'half']),
      op('sub', 'Sub', ['truediv', 'one']),
      conv('enc1/Conv2D', 'sub', 'e1'),
      op('enc1/BiasAdd', 'BiasAdd', ['enc1/Conv2D', 'b1'], { data_format: S('NHWC') }),
      op('enc1/LeakyRelu', 'LeakyRelu', ['enc1/BiasAdd'], { alpha: attr.f(0.2) }),
      conv('enc2/Conv2D', 'enc1/LeakyRelu', 'e2', 2),
      op('enc2/BiasAdd', 'BiasAdd', ['enc2/Conv2D', 'b2'], { data_format: S('NHWC') }),
      op('enc2/LeakyRelu', 'LeakyRelu', ['enc2/BiasAdd'], { alpha: attr.f(0.2) }),
      node('up/Shape', 'Shape', ['enc1/LeakyRelu'], { T: attr.float, out_type: attr.int }),
      node('up/size', 'StridedSlice', ['up/Shape', 'hw_begin', 'hw_end', 'step'], {
        T: attr.int, Index: attr.int, begin_mask: attr.i(0), end_mask: attr.i(0), ellipsis_mask: attr.i(0), new_axis_mask: attr.i(0), shrink_axis_mask: attr.i(0),
      }),
      op('up/ResizeBilinear', 'ResizeBilinear', ['enc2/LeakyRelu', 'up/size'], { align_corners: attr.b(false), half_pixel_centers: attr.b(true) }),
      node('up/concat', 'ConcatV2', ['up/ResizeBilinear', 'enc1/LeakyRelu', 'cat_axis'], { T: attr.float, Tidx: attr.int, N: attr.i(2) }),
      conv('dec1/Conv2D', 'up/concat', 'd1'),
      op('dec1/Relu', 'Relu', ['dec1/Conv2D']),
      conv('out/Conv2D', 'dec1/Relu', 'out_w'),
      op('clip', 'ClipByValue', ['out/Conv2D', 'lo', 'hi']),
      op('add', 'AddV2', ['clip', 'one']),
      op('mul', 'Mul', ['add', 'scale255']),
      node('Cast', 'Cast', ['mul'], { SrcT: attr.float, DstT: attr.type('DT_UINT8'), Truncate: attr.b(false) }),
      node('output_image', 'Squeeze', ['Cast'], { T: attr.type('DT_UINT8'), squeeze_dims: attr.ints([0]) }),
    ],
    weights: [
      w('e1', [3, 3, 3, 8], 1), w('e2', [3, 3, 8, 8], 2), w('d1', [3, 3, 16, 8], 3), w('out_w', [3, 3, 8, 3], 4), w('b1', [8], 5, 0.1), w('b2', [8], 6, 0.1),
      f('half', 127.5), f('one', 1), f('lo', -0.999999), f('hi', 0.999999), f('scale255', 127.5),
      i('axis0', [0], []), i('hw_begin', [1]), i('hw_end', [3]), i('step', [1]), i('cat_axis', [3], []),
    ],
  };
}

/** A ModelScope-shaped folder: the two graphs as frozen .pb files, and a head mask image. Returns the TF.js twins. */
async function dctnetFolder(root: string, mask: 'ellipse' | 'black'): Promise<{ folder: string; bgJson: string; headJson: string }> {
  const folder = join(root, 'cv_unet_person-image-cartoon_compound-models');
  mkdirSync(folder, { recursive: true });
  const twins: string[] = [];
  for (const [name, seed] of [['cartoon_bg', 1], ['cartoon_h', 2]] as const) {
    const dir = join(root, `${name}-tfjs`);
    mkdirSync(dir, { recursive: true });
    const { nodes, weights } = dctnetGraph(seed);
    const json = writeTfjsModel(dir, nodes, weights);
    writeFileSync(join(folder, `${name}.pb`), encodeGraphDef(await readTfjsModel(json)));
    twins.push(json);
  }
  // Drawn from pixels: SVG input is blocked process-wide once the service's image module is loaded.
  const levels = Buffer.alloc(288 * 288);
  if (mask === 'ellipse') {
    for (let y = 0; y < 288; y++) for (let x = 0; x < 288; x++) if (((x - 144) / 110) ** 2 + ((y - 150) / 130) ** 2 < 1) levels[y * 288 + x] = 255;
  }
  await sharp(levels, { raw: { width: 288, height: 288, channels: 1 } }).blur(8).jpeg({ quality: 95 }).toFile(join(folder, 'alpha.jpg'));
  return { folder, bgJson: twins[0]!, headJson: twins[1]! };
}

t.test('a DCT-Net folder imports to whole-image and head entries that match TensorFlow.js', async (t) => {
  const root = t.testdir({});
  const { folder, bgJson, headJson } = await dctnetFolder(root, 'ellipse');
  const out = join(root, 'models');
  const written = await importDctnet(folder, out, { id: 'dctnet-test', title: 'DCT-Net test' });
  t.same(written.map((m) => m.manifestFile.replace(/.*\//, '')), ['dctnet-test.json', 'dctnet-test-head.json']);
  t.ok(existsSync(join(out, 'dctnet-test-head-mask.jpg')), 'the mask travels with the head model');

  const whole = JSON.parse(readFileSync(join(out, 'dctnet-test.json'), 'utf8'));
  t.match(whole, {
    role: 'whole', head: 'dctnet-test-head', detector: 'yunet',
    input: { name: 'input_image', layout: 'NHWC', channels: 'BGR', range: '0..255' },
    output: { name: 'output_image', layout: 'NHWC' },
    size: { maxShortSide: 720, multiple: 16, pad: 255, resizeBack: true },
  }, 'the reference pipeline: short side 720 at most, padded with white to a multiple of 16');
  const head = JSON.parse(readFileSync(join(out, 'dctnet-test-head.json'), 'utf8'));
  t.match(head, { role: 'head', crop: 288, mask: 'dctnet-test-head-mask.jpg', input: { name: 'input_image' } });

  for (const [pb, json, dims] of [['cartoon_bg.pb', bgJson, [32, 48, 3]], ['cartoon_h.pb', headJson, [288, 288, 3]]] as const) {
    const graph = await readTfGraph(join(folder, pb));
    const input = Float32Array.from(seeded(5, dims[0] * dims[1] * 3, 1), (v) => (v + 1) * 127.5);
    // The float result before the cast to uint8: within 1e-3 of its range.
    const beforeCast = await runOnnx(convertGraph(graph, { name: 'm', output: 'mul' }), input, [...dims]);
    const reference = await runTfjs(json, input, [...dims], 'mul');
    const floats = compare(beforeCast.data, reference.data);
    t.ok(floats.maxDiff <= 1e-3 * floats.range, `${pb}: before the cast, max difference ${floats.maxDiff.toExponential(2)} within 1e-3 of ${floats.range.toFixed(1)}`);
    // The uint8 output: the same levels, but where a value a hair from an integer truncates to the other side.
    const model = convertGraph(graph, { name: 'm', output: 'output_image' });
    const expected = await runTfjs(json, input, [...dims]);
    const actual = await runOnnx(model, input, [...dims]);
    t.same(actual.dims, [1, ...expected.dims], `${pb}: [H, W, 3] out, with the pipeline's batch axis`);
    const { maxDiff, range } = compare(actual.data, expected.data);
    const off = expected.data.filter((v, i) => v !== actual.data[i]).length;
    t.ok(range > 50 && maxDiff <= 1 && off <= expected.data.length / 1000, `${pb}: uint8 output, ${off} of ${expected.data.length} values one level apart`);
  }

  const bad = join(root, 'incomplete');
  mkdirSync(bad);
  writeFileSync(join(bad, 'cartoon_bg.pb'), readFileSync(join(folder, 'cartoon_bg.pb')));
  await t.rejects(importDctnet(bad, join(root, 'x'), { id: 'x' }), { message: /cartoon_h\.pb: is missing/ });
});

t.test('manifests: a mask belongs to a head model, and must be an image', async (t) => {
  const root = t.testdir({});
  const { folder } = await dctnetFolder(root, 'ellipse');
  const out = join(root, 'models');
  await importDctnet(folder, out, { id: 'dn' });
  const whole = JSON.parse(readFileSync(join(out, 'dn.json'), 'utf8'));
  writeFileSync(join(out, 'dn.json'), JSON.stringify({ ...whole, mask: 'dn-head-mask.jpg' }));
  await t.rejects(loadManifests([out]), { message: /dn\.json: field "mask" applies to head models only/ });
  rmSync(join(out, 'dn.json')); // the head alone (the whole-image style would also need its detector)
  writeFileSync(join(out, 'dn-head-mask.jpg'), 'not an image');
  const manifests = await loadManifests([out]);
  await t.rejects(verifyModels(manifests.filter((m) => m.id === 'dn-head')), { message: /dn-head\.json: field "mask" points to .*dn-head-mask\.jpg, which is not a readable image/ });
});

const YUNET = join(SHARED, 'models', 'face_detection_yunet_n_dynamic.onnx');
const PHOTO = join(SHARED, 'images', 'astronaut_eileen_collins.png');

t.test('the full pipeline: faces aligned to 288, stylised by the head model, blended with alpha.jpg', { skip: !existsSync(YUNET) || !existsSync(PHOTO) ? `${YUNET} or ${PHOTO} is not present` : false }, async (t) => {
  const root = t.testdir({});
  const yunet = join(root, 'detector');
  mkdirSync(yunet);
  writeFileSync(join(yunet, 'yunet.json'), JSON.stringify({
    id: 'yunet', role: 'detector', family: 'yunet', file: YUNET,
    input: { name: 'input', layout: 'NCHW', channels: 'BGR', range: '0..255' },
    size: { maxLongSide: 512, multiple: 32, pad: 0, resizeBack: false },
  }));
  const photo = readFileSync(PHOTO);
  const results: Record<string, Buffer> = {};
  for (const mask of ['ellipse', 'black'] as const) {
    const { folder } = await dctnetFolder(join(root, mask), mask);
    const out = join(root, mask, 'models');
    await importDctnet(folder, out, { id: 'dctnet' });
    const pool = await InferencePool.start(poolSettings({ modelsDirs: [out, yunet], workers: 1, intraOpThreads: 2 }));
    try {
      t.same(pool.styles.map((s) => [s.id, s.faceAware]), [['dctnet', true]], 'one face-aware style');
      const result = await pool.run(Buffer.from(photo), { style: 'dctnet', format: 'png', quality: 90 });
      t.equal(result.faces, 1, `${mask} mask: the astronaut's face went through the head model`);
      results[mask] = (await sharp(Buffer.from(result.output)).raw().toBuffer());
    } finally {
      await pool.close();
    }
  }
  const { folder } = await dctnetFolder(join(root, 'plain'), 'ellipse');
  const plainOut = join(root, 'plain', 'models');
  await importDctnet(folder, plainOut, { id: 'dctnet' });
  const plain = await InferencePool.start(poolSettings({ modelsDirs: [plainOut, yunet], workers: 1, intraOpThreads: 2, maxFaces: 0 }));
  let wholeOnly: Buffer;
  try {
    wholeOnly = await sharp(Buffer.from((await plain.run(Buffer.from(photo), { style: 'dctnet', format: 'png', quality: 90 })).output)).raw().toBuffer();
  } finally {
    await plain.close();
  }
  t.ok(results['black']!.equals(wholeOnly), 'an all-black alpha.jpg blends nothing: the whole-image result, bit for bit');
  t.notOk(results['ellipse']!.equals(wholeOnly), 'the ellipse of alpha.jpg blends the head in');
});
