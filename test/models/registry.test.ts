import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { parseManifest } from '../../models/manifest.js';
import { loadManifests } from '../../models/registry.js';
import { verifyModels } from '../../models/verify.js';
import { buildBadRankModel, buildInvertModel } from '../../models/generate/test-models.js';
import { imageManifest, modelsDir } from '../fixtures/models.js';

const valid = {
  id: 'dctnet',
  file: 'dctnet.onnx',
  input: { name: 'input_image', layout: 'NHWC', channels: 'BGR', range: '0..255' },
  output: { name: 'output_image' },
  size: { maxShortSide: 720, multiple: 16, pad: 255, resizeBack: true },
};

const parse = (value: unknown) => parseManifest('/models/x.json', JSON.stringify(value));

t.test('a DCT-Net export is described by a manifest alone', async (t) => {
  const m = parse(valid);
  t.match(m, {
    id: 'dctnet',
    role: 'whole',
    input: { layout: 'NHWC', channels: 'BGR', range: '0..255' },
    output: { name: 'output_image', layout: 'NHWC', channels: 'BGR', range: '0..255' },
    size: { maxShortSide: 720, multiple: 16, pad: 255, resizeBack: true },
  });
});

t.test('AnimeGAN-style exports too (RGB, -1..1, NHWC or NCHW, multiple of 8 or 32)', async (t) => {
  for (const [layout, multiple] of [['NHWC', 8], ['NCHW', 32]] as const) {
    const m = parse({ ...valid, input: { name: 'generator_input:0', layout, channels: 'RGB', range: '-1..1' }, size: { multiple, pad: 'edge' } });
    t.equal(m.input.range, '-1..1');
    t.equal(m.size.multiple, multiple);
    t.equal(m.size.pad, 'edge');
  }
});

t.test('errors name the file and the field', async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    [{ ...valid, id: undefined }, /x\.json: field "id" is required/],
    [{ ...valid, id: 'Bad Id' }, /field "id" must be lower-case/],
    [{ ...valid, input: { ...valid.input, layout: 'HWC' } }, /field "input\.layout" must be one of "NCHW", "NHWC"/],
    [{ ...valid, input: { ...valid.input, range: '0..2' } }, /field "input\.range"/],
    [{ ...valid, output: { channels: 'XYZ' } }, /field "output\.channels"/],
    [{ ...valid, size: { multiple: 0 } }, /field "size\.multiple" must be an integer from 1 to 256/],
    [{ ...valid, size: { multiple: 16, pad: 'white' } }, /field "size\.pad" must be "edge" or a grey level/],
    [{ ...valid, size: undefined }, /field "size" is required/],
    [{ ...valid, role: 'head' }, /field "crop" is required for a head model/],
    [{ ...valid, role: 'detector' }, /field "family" is required/],
    [{ ...valid, sha256: 'abc' }, /field "sha256"/],
  ];
  for (const [value, pattern] of cases) t.throws(() => parse(value), { message: pattern, code: 'PTOON_BAD_MANIFEST' });
  t.throws(() => parseManifest('/m/broken.json', '{ nope'), { message: /broken\.json: field "\(file\)" is not valid JSON/ });
});

t.test('the registry checks files, ids, references and the ONNX inputs and outputs', async (t) => {
  const invert = buildInvertModel({ layout: 'NCHW', range: '0..1' });
  const good = modelsDir(t, [{ manifest: imageManifest('good', { layout: 'NCHW' }), bytes: invert }]);
  const manifests = await loadManifests([good]);
  t.equal(manifests.length, 1);
  t.equal(manifests[0]!.file, join(good, 'good.onnx'), 'file resolved beside its manifest');
  await verifyModels(manifests);

  const missing = modelsDir(t, [{ manifest: imageManifest('ghost', { layout: 'NCHW' }) }]);
  await t.rejects(verifyModels(await loadManifests([missing])), { message: /ghost\.json: field "file" points to .*ghost\.onnx, which cannot be read \(ENOENT\)/ });

  const wrongName = modelsDir(t, [{ manifest: imageManifest('named', { layout: 'NCHW', inputName: 'pixels' }), bytes: invert }]);
  await t.rejects(verifyModels(await loadManifests([wrongName])), { message: /named\.json: field "input\.name" is "pixels" but the model's are: input/ });

  const wrongOut = modelsDir(t, [{ manifest: imageManifest('out', { layout: 'NCHW', outputName: 'result' }), bytes: invert }]);
  await t.rejects(verifyModels(await loadManifests([wrongOut])), { message: /out\.json: field "output\.name" is "result"/ });

  const rank = modelsDir(t, [{ manifest: imageManifest('rank', { layout: 'NCHW' }), bytes: buildBadRankModel() }]);
  await t.rejects(verifyModels(await loadManifests([rank])), { message: /rank\.json: field "input\.name" "input" has rank 2/ });

  const wrongLayout = modelsDir(t, [{ manifest: imageManifest('layout', { layout: 'NHWC' }), bytes: buildInvertModel({ layout: 'NCHW', range: '0..1' }) }]);
  await t.rejects(verifyModels(await loadManifests([wrongLayout])), /shape \[1, 3, H, W\], which does not have 3 on the NHWC channel axis/, "a fixed channel dim catches a wrong layout");

  const pinned = modelsDir(t, [{ manifest: { ...imageManifest('pinned', { layout: 'NCHW' }), sha256: '0'.repeat(64) }, bytes: invert }]);
  await t.rejects(verifyModels(await loadManifests([pinned])), { message: /pinned\.json: field "sha256" is 0+ but .* hashes to [0-9a-f]{64}/ });

  const garbage = modelsDir(t, [{ manifest: imageManifest('garbage', { layout: 'NCHW' }), bytes: new Uint8Array([1, 2, 3]) }]);
  await t.rejects(verifyModels(await loadManifests([garbage])), { message: /garbage\.json: field "file" .* onnxruntime cannot load/ });

  const dup = modelsDir(t, [{ manifest: imageManifest('good', { layout: 'NCHW' }), bytes: invert }]);
  await t.rejects(loadManifests([good, dup]), { message: /field "id" "good" is already used by/ });

  const dangling = modelsDir(t, [{ manifest: { ...imageManifest('styled', { layout: 'NCHW' }), head: 'nohead', detector: 'nodetector' }, bytes: invert }]);
  await t.rejects(loadManifests([dangling]), { message: /styled\.json: field "head" names "nohead", which no manifest defines/ });

  const dir = t.testdir({});
  writeFileSync(join(dir, 'notes.txt'), 'not a manifest');
  t.same(await loadManifests([dir]), [], 'only *.json files are manifests');
  await t.rejects(loadManifests([join(dir, 'absent')]), { message: /absent: field "\(folder\)" cannot be read: ENOENT/ });
});

t.test('face-path manifests: head and detector together, a detector size it can use', async (t) => {
  t.throws(() => parse({ ...valid, head: 'h' }), { message: /field "detector" must be given together with the other/ });
  t.throws(() => parse({ ...valid, detector: 'd' }), { message: /field "head" must be given together with the other/ });
  const detector = { ...valid, role: 'detector', family: 'yunet', size: { maxLongSide: 16, multiple: 32 } };
  t.throws(() => parse(detector), { message: /field "size\.maxLongSide" must be at least 32 for a detector/ });
});
