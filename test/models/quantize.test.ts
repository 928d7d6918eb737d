/**
 * `privatoon quantize`: a small generated U-Net end to end (deterministic calibration, PSNR and SSIM asserted,
 * fused int8 kernels in onnxruntime's optimised graph), the refusal below the quality bar, and bad inputs.
 * White-box on the real photos: quantize-whitebox.test.ts.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import sharp from 'sharp';
import t, { type Test } from 'tap';
import { testConfig } from '../helper.js';
import { buildBadRankModel, buildInvertModel, buildQuantizeTestModel } from '../../models/generate/test-models.js';
import { parseManifest } from '../../models/manifest.js';
import { loadManifests } from '../../models/registry.js';
import { verifyModels } from '../../models/verify.js';
import { quantizeCommand } from '../../models/quantize/command.js';
import { uint8Params } from '../../models/quantize/qdq.js';
import * as ort from '../../workers/ort.js';
import { imageManifest } from '../fixtures/models.js';
import { folder, modelsDir, qualityRows } from '../fixtures/quantize.js';

const config = testConfig();
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** Photo-like pictures: smooth gradients, a bright oval, texture noise; each seed a different one. */
async function photo(seed: number, width = 96, height = 80): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * 3);
  let state = seed >>> 0;
  const noise = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) >>> 24) - 128;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const d = Math.hypot((x - width / 2) / (width * 0.25), (y - height / 2.2) / (height * 0.3));
      const base = d < 1 ? [220 - 30 * d, 170 + seed * 5, 140] : [40 + (150 * x) / width, 60 + seed * 20, 160 - (90 * y) / height];
      raw.set(base.map((v) => Math.max(0, Math.min(255, v + noise() * 0.1))), (y * width + x) * 3);
    }
  }
  return sharp(raw, { raw: { width, height, channels: 3 } }).png().toBuffer();
}

async function photosDir(t: Test, count: number): Promise<string> {
  const dir = folder(t);
  for (let i = 0; i < count; i++) writeFileSync(join(dir, `photo${i}.png`), await photo(i + 1));
  return dir;
}

function styleDir(t: Test, bytes: Uint8Array, extra: Record<string, unknown> = {}): string {
  return modelsDir(t, [{ manifest: { ...imageManifest('tiny', { layout: 'NCHW', range: '-1..1' }, { multiple: 2 }), ...extra }, bytes }]);
}

async function run(args: string[]): Promise<string[]> {
  const lines: string[] = [];
  await quantizeCommand([...args, '--threads', '1'], config, (l) => lines.push(l));
  return lines;
}

t.test('quantizes a small U-Net: a new style, within the quality bar, deterministic', async (t) => {
  const fp32 = buildQuantizeTestModel();
  const source = join(styleDir(t, fp32), 'tiny.json');
  const photos = await photosDir(t, 6);
  const out = folder(t);
  const lines = await run([source, '--calibrate', photos, '--out', out]);
  const rows = qualityRows(lines);
  t.same(rows.map((r) => r.set), ['calibration', 'calibration', 'calibration', 'calibration', 'held aside', 'held aside'], 'every third photo is held aside');
  t.same(rows.filter((r) => r.set === 'held aside').map((r) => r.name), ['photo2.png', 'photo5.png']);
  for (const r of rows) {
    t.ok(r.psnr >= 35, `${r.name}: PSNR ${r.psnr} dB against fp32`);
    t.ok(r.ssim >= 0.98, `${r.name}: SSIM ${r.ssim}`);
    t.ok(r.psnr < 80, `${r.name}: int8 differs from fp32 (it really is quantized)`);
  }
  t.match(lines.join('\n'), /speed on photo2\.png, session\.run best of 3: fp32 \d+ ms, int8 \d+ ms/);

  const manifestFile = join(out, 'tiny-int8.json');
  const manifest = parseManifest(manifestFile, readFileSync(manifestFile, 'utf8'));
  const bytes = readFileSync(join(out, 'tiny-int8.onnx'));
  t.same(manifest.quantizedFrom, { id: 'tiny', sha256: sha256(fp32) });
  t.equal(manifest.sha256, sha256(bytes));
  t.same([manifest.input, manifest.size.multiple, manifest.role], [{ name: 'input', layout: 'NCHW', channels: 'RGB', range: '-1..1' }, 2, 'whole']);
  // The registry accepts it as any other style: pinned hash, one image tensor in and out.
  await verifyModels(await loadManifests([out]));

  const again = folder(t);
  await run([source, '--calibrate', photos, '--out', again]);
  t.equal(sha256(readFileSync(join(again, 'tiny-int8.onnx'))), sha256(bytes), 'same photos, same bytes');
});

t.test('onnxruntime fuses every convolution into an int8 kernel', async (t) => {
  const source = join(styleDir(t, buildQuantizeTestModel()), 'tiny.json');
  const out = folder(t);
  await run([source, '--calibrate', await photosDir(t, 3), '--out', out]);
  const optimized = join(folder(t), 'optimized.onnx');
  // Only here, in a test's own folder: optimizedModelFilePath writes the optimised graph to disk.
  const session = await ort.InferenceSession.create(join(out, 'tiny-int8.onnx'), { graphOptimizationLevel: 'all', optimizedModelFilePath: optimized, logSeverityLevel: 3 });
  await session.release();
  const ops = (onnxProto.onnx.ModelProto.decode(readFileSync(optimized)).graph?.node ?? []).map((n) => n.opType!);
  const count = (op: string) => ops.filter((o) => o === op).length;
  t.equal(count('Conv'), 0, `no fp32 Conv left: ${ops.join(' ')}`);
  t.equal(count('QLinearConv'), 7, 'all 7 convolutions run as QLinearConv');
  t.equal(count('QLinearLeakyRelu'), 5, 'LeakyReLU between convolutions stays int8');
  t.equal(count('QLinearAdd'), 2, 'the residual and the skip Add stay int8');
  t.equal(count('LeakyRelu') + count('Add'), 0, 'no fp32 activation or Add in the hot path');
  // Each Q or DQ left is a boundary: image in, the bilinear Resize (fp32 in onnxruntime), the output before Tanh.
  t.ok(count('QuantizeLinear') <= 2 && count('DequantizeLinear') <= 2, `few boundaries: ${ops.join(' ')}`);
});

t.test('a ReLU after a convolution folds into QLinearConv', async (t) => {
  const source = join(styleDir(t, buildQuantizeTestModel({ relu: true })), 'tiny.json');
  const out = folder(t);
  const rows = qualityRows(await run([source, '--calibrate', await photosDir(t, 3), '--out', out]));
  t.ok(rows.every((r) => r.psnr >= 35), rows.map((r) => `${r.name} ${r.psnr} dB`).join(', '));
  const optimized = join(folder(t), 'optimized.onnx');
  const session = await ort.InferenceSession.create(join(out, 'tiny-int8.onnx'), { graphOptimizationLevel: 'all', optimizedModelFilePath: optimized, logSeverityLevel: 3 });
  await session.release();
  const ops = (onnxProto.onnx.ModelProto.decode(readFileSync(optimized)).graph?.node ?? []).map((n) => n.opType!);
  t.equal(ops.filter((o) => o === 'QLinearConv').length, 7, ops.join(' '));
  t.equal(ops.filter((o) => o === 'Relu' || o === 'Conv').length, 0, 'no Relu or fp32 Conv left');
});

t.test('a model below the quality bar is refused, and written only with --force', async (t) => {
  const source = join(styleDir(t, buildQuantizeTestModel({ outlier: true })), 'tiny.json');
  const photos = await photosDir(t, 3);
  const out = folder(t);
  const lines: string[] = [];
  await t.rejects(quantizeCommand([source, '--calibrate', photos, '--out', out, '--threads', '1'], config, (l) => lines.push(l)), {
    code: 'PTOON_QUANTIZE',
    message: /not written: the int8 model misses the quality bar/,
  });
  t.ok(qualityRows(lines).some((r) => r.set === 'held aside' && r.psnr < 35), 'the report shows why');
  t.match(lines.join('\n'), /below the bar/);
  t.same(readdirSync(out), [], 'nothing written');
  const forced = await run([source, '--calibrate', photos, '--out', out, '--force']);
  t.match(forced.at(-1), /^FORCED: below the quality bar; wrote /);
  t.ok(existsSync(join(out, 'tiny-int8.onnx')));
});

t.test('bad inputs get clear errors', async (t) => {
  const photos = await photosDir(t, 3);
  const tiny = join(styleDir(t, buildQuantizeTestModel()), 'tiny.json');
  const reject = (args: string[], message: RegExp, what: string) => t.rejects(run(args), { message }, what);

  const notImage = modelsDir(t, [{ manifest: imageManifest('flat', { layout: 'NCHW' }), bytes: buildBadRankModel() }]);
  await reject([join(notImage, 'flat.json'), '--calibrate', photos], /field "input.name" "input" has rank 2; a NCHW image tensor has rank 4/, 'a model that is not image-to-image');
  const detector = modelsDir(t, [
    { manifest: { id: 'det', role: 'detector', family: 'yunet', input: { name: 'input', layout: 'NCHW', channels: 'BGR', range: '0..255' }, size: {} }, bytes: buildInvertModel({ layout: 'NCHW', range: '0..255' }) },
  ]);
  await reject([join(detector, 'det.json'), '--calibrate', photos], /is a yunet detector, not an image-to-image model/, 'a detector');
  const noConv = modelsDir(t, [{ manifest: imageManifest('invert', { layout: 'NCHW' }), bytes: buildInvertModel({ layout: 'NCHW', range: '0..1' }) }]);
  await reject([join(noConv, 'invert.json'), '--calibrate', photos], /no convolution that can run in int8/, 'nothing to quantize');

  const empty = folder(t);
  await reject([tiny, '--calibrate', empty], /calibration folder .* holds no photos/, 'an empty calibration folder');
  const mixed = await photosDir(t, 3);
  writeFileSync(join(mixed, 'notes.jpg'), 'not a photo');
  await reject([tiny, '--calibrate', mixed], /notes\.jpg is not a usable photo: The upload is/, 'a non-image file names the file');
  const readme = folder(t, { 'README.md': '# photos' });
  await reject([tiny, '--calibrate', readme], /holds no photos/, 'a folder of other files holds no photos');
  await reject([tiny, '--calibrate', join(empty, 'missing')], /calibration folder .*missing cannot be read \(ENOENT\)/, 'a missing folder');
  await reject([tiny], /--calibrate DIR is required/, 'no calibration folder');
  await reject(['no-such-style', '--calibrate', photos], /no style "no-such-style"/, 'an unknown style');
  await reject([tiny, '--calibrate', photos, '--id', '../escape', '--out', folder(t)], /field "id" must be lower-case letters/, 'an --id that is not a style id');
  await reject([tiny, '--calibrate', photos, '--calibration', 'entropy'], /--calibration must be one of minmax, percentile/, 'an unknown method');
});

t.test('uint8 ranges always hold an exact zero', async (t) => {
  const relu = uint8Params({ min: 0, max: 2.55 });
  t.ok(Math.abs(relu.scale - 0.01) < 1e-12 && relu.zeroPoint === 0);
  t.same(uint8Params({ min: 0.5, max: 2.55 }), relu, 'the range is stretched down to 0');
  const p = uint8Params({ min: -1, max: 1 });
  t.equal(p.zeroPoint, 128);
  t.equal(uint8Params({ min: 0, max: 0 }).scale, 1, 'a constant-zero tensor gets a usable scale');
});


t.test('a manifest\'s quantizedFrom is checked, naming the file and the field', async (t) => {
  const base = { id: 'x', file: 'x.onnx', input: { name: 'input', layout: 'NCHW', channels: 'RGB', range: '0..1' }, size: {} };
  const parse = (quantizedFrom: unknown) => parseManifest('/styles/x.json', JSON.stringify({ ...base, quantizedFrom }));
  t.same(parse({ id: 'toon', sha256: 'a'.repeat(64) }).quantizedFrom, { id: 'toon', sha256: 'a'.repeat(64) });
  t.throws(() => parse({ id: 'toon', sha256: 'xyz' }), { code: 'PTOON_BAD_MANIFEST', message: '/styles/x.json: field "quantizedFrom.sha256" must be 64 lower-case hex digits' });
  t.throws(() => parse({ sha256: 'a'.repeat(64) }), { message: /field "quantizedFrom.id" is required/ });
  t.throws(() => parse('toon'), { message: /field "quantizedFrom" is required and must be an object/ });
});
