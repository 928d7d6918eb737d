import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import * as ort from '../../workers/ort.js';
import sharp from 'sharp';
import t from 'tap';
import { buildDctnetBenchModel, mulberry32 } from '../../models/generate/dctnet-bench.js';
import { buildNearfreeBenchModel } from '../../models/generate/nearfree-bench.js';
import { countParameters } from '../../models/generate/onnx-builder.js';
import {
  buildBadRankModel,
  buildChannel0Model,
  buildInvertModel,
  buildScaleModel,
  buildSlowModel,
} from '../../models/generate/test-models.js';
import { buildToonModel } from '../../models/generate/toon.js';
import { SHARED_DIR } from '../../paths.js';

/**
 * Pinned so that any change to a generator (or to the builder's encoding) is a deliberate one: update these
 * after checking the new model by eye (toon) or by cost (bench).
 */
const TOON_SHA256 = '3e08554ffd65698c4db38c83cc3ca6dda4d94b1e782e4e0f2a7aa9be31c9794d';
const BENCH_SHA256 = '8e263083d4cc5852c7b7d03edd310f77eab1b99151b666d4529f39b7ca1095b6';
const NEARFREE_SHA256 = '737accaf5397b033ab2013c568cac0f9cc2254f1624d416599609437ac736cc4';

const SHARED_IMAGES = join(SHARED_DIR, 'images');
/** Public-domain NASA portrait (see ../shared/images/README.md). */
const PHOTO = join(SHARED_IMAGES, 'astronaut_eileen_collins.png');

const SESSION_OPTIONS: ort.InferenceSession.SessionOptions = {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  executionMode: 'sequential',
};

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');
const open = (model: Uint8Array): Promise<ort.InferenceSession> => ort.InferenceSession.create(model, SESSION_OPTIONS);

/** Runs a single-input, single-output model. */
async function runOnce(session: ort.InferenceSession, data: Float32Array, dims: number[]): Promise<number[]> {
  const [inputName] = session.inputNames;
  const [outputName] = session.outputNames;
  if (inputName === undefined || outputName === undefined) throw new Error('model without input or output');
  const outputs = await session.run({ [inputName]: new ort.Tensor('float32', data, dims) });
  return Array.from(outputs[outputName]?.data as Float32Array);
}

/** An RGB image as planes in 0..1, the toon model's layout. */
interface Planes {
  width: number;
  height: number;
  data: Float32Array;
}

function imageFrom(width: number, height: number, rgbAt: (x: number, y: number) => readonly number[]): Planes {
  const data = new Float32Array(3 * width * height);
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      rgbAt(x, y).forEach((v, c) => (data[(c * height + y) * width + x] = v));
    }
  }
  return { width, height, data };
}

async function toon(session: ort.InferenceSession, image: Planes): Promise<Planes> {
  const input = new ort.Tensor('float32', image.data, [1, 3, image.height, image.width]);
  const { cartoon } = await session.run({ image: input });
  const expected = [1, 3, image.height, image.width];
  if (cartoon?.dims.join() !== expected.join()) throw new Error(`cartoon dims ${cartoon?.dims} for [${expected}]`);
  return { width: image.width, height: image.height, data: cartoon.data as Float32Array };
}

const channel = (image: Planes, c: number, x: number, y: number): number =>
  image.data[(c * image.height + y) * image.width + x] ?? Number.NaN;

const luma = (image: Planes, x: number, y: number): number =>
  0.299 * channel(image, 0, x, y) + 0.587 * channel(image, 1, x, y) + 0.114 * channel(image, 2, x, y);

/** Distinct colours after 8-bit quantisation, as an encoder would see them. */
function countColours(image: Planes): number {
  const colours = new Set<number>();
  const level = (v: number): number => Math.round(Math.min(1, Math.max(0, v)) * 255);
  for (let y = 0; y < image.height; y += 1) {
    for (let x = 0; x < image.width; x += 1) {
      const [r, g, b] = [0, 1, 2].map((c) => level(channel(image, c, x, y)));
      colours.add(((r ?? 0) << 16) | ((g ?? 0) << 8) | (b ?? 0));
    }
  }
  return colours.size;
}

t.test('generators are deterministic and pinned', async (t) => {
  const toonModel = buildToonModel();
  const benchModel = buildDctnetBenchModel();
  t.same(buildToonModel(), toonModel, 'toon: same bytes on every build');
  t.same(buildDctnetBenchModel(), benchModel, 'bench: same bytes on every build');
  t.equal(sha256(toonModel), TOON_SHA256, 'toon model matches the pinned sha256');
  t.equal(sha256(benchModel), BENCH_SHA256, 'bench model matches the pinned sha256');
  t.not(sha256(buildDctnetBenchModel(1)), BENCH_SHA256, 'the seed drives the weights');
  t.equal(sha256(buildNearfreeBenchModel()), NEARFREE_SHA256, 'near-free bench model matches the pinned sha256');
});

t.test('near-free bench model: a 3x3 blur per channel that keeps flat areas and the size', async (t) => {
  const session = await open(buildNearfreeBenchModel());
  t.same(session.inputMetadata, [{ name: 'image', isTensor: true, type: 'float32', shape: [1, 3, 'H', 'W'] }]);
  t.same(session.outputMetadata, [{ name: 'filtered', isTensor: true, type: 'float32', shape: [1, 3, 'H', 'W'] }]);
  const flat = imageFrom(9, 5, () => [0.2, 0.5, 0.9]);
  const out = await runOnce(session, flat.data, [1, 3, 5, 9]);
  t.equal(out.length, flat.data.length, 'same size out');
  // Inside, a flat image stays flat (the kernel sums to 1); borders are zero-padded, so they darken.
  for (let c = 0; c < 3; c++) t.ok(Math.abs(out[c * 45 + 2 * 9 + 4]! - flat.data[c * 45 + 2 * 9 + 4]!) < 1e-6, `channel ${c} kept inside`);
  const dot = imageFrom(3, 3, (x, y) => (x === 1 && y === 1 ? [1, 1, 1] : [0, 0, 0]));
  const spread = await runOnce(session, dot.data, [1, 3, 3, 3]);
  t.same(spread.slice(0, 9).map((v) => Math.round(v * 16)), [1, 2, 1, 2, 4, 2, 1, 2, 1], 'a single dot spreads as the binomial kernel');
});

t.test('toon model: I/O contract of models/builtin/toon.json', async (t) => {
  const session = await open(buildToonModel());
  t.same(session.inputMetadata, [{ name: 'image', isTensor: true, type: 'float32', shape: [1, 3, 'H', 'W'] }]);
  t.same(session.outputMetadata, [{ name: 'cartoon', isTensor: true, type: 'float32', shape: [1, 3, 'H', 'W'] }]);
  for (const [width, height] of [[1, 1], [7, 1], [2, 3], [17, 13]] as const) {
    const image = imageFrom(width, height, (x, y) => [x / width, y / height, 0.5]);
    const out = await toon(session, image);
    t.ok(out.data.every((v) => v >= 0 && v <= 1), `${width}x${height}: every value in [0, 1]`);
  }
});

t.test('toon model: a sharp step between two flat areas gets a dark line, the areas stay flat', async (t) => {
  const session = await open(buildToonModel());
  const width = 96;
  const height = 64;
  const edge = 48;
  const skin = [0.85, 0.65, 0.55];
  const cloth = [0.25, 0.35, 0.6];
  const out = await toon(session, imageFrom(width, height, (x) => (x < edge ? skin : cloth)));

  const flatLeft = { from: 0, to: edge - 10 };
  const flatRight = { from: edge + 10, to: width };
  for (const [name, area, colour] of [['left', flatLeft, skin], ['right', flatRight, cloth]] as const) {
    for (let c = 0; c < 3; c += 1) {
      const values: number[] = [];
      for (let y = 0; y < height; y += 1) {
        for (let x = area.from; x < area.to; x += 1) values.push(channel(out, c, x, y));
      }
      const mean = values.reduce((s, v) => s + v, 0) / values.length;
      const variance = values.reduce((s, v) => s + (v - mean) ** 2, 0) / values.length;
      t.ok(variance < 1e-6, `${name} area, channel ${c}: flat (variance ${variance.toExponential(1)})`);
      // No ink: the colour only moves by the quantisation steps, never towards black.
      t.ok(Math.abs(mean - (colour[c] ?? 0)) < 0.12, `${name} area, channel ${c}: ${mean.toFixed(3)} keeps its colour`);
    }
  }

  const leftLuma = luma(out, 0, 0);
  const rightLuma = luma(out, width - 1, 0);
  for (let y = 0; y < height; y += 1) {
    let darkest = Infinity;
    for (let x = edge - 4; x < edge + 4; x += 1) darkest = Math.min(darkest, luma(out, x, y));
    if (darkest > 0.3 * Math.min(leftLuma, rightLuma)) {
      const sides = `${leftLuma.toFixed(3)} / ${rightLuma.toFixed(3)}`;
      t.fail(`row ${y}: darkest pixel at the edge ${darkest.toFixed(3)}, sides ${sides}`);
      return;
    }
  }
  t.pass('every row has a dark line along the edge, much darker than both sides');
});

t.test('toon model: a noisy synthetic photo loses most of its colours', async (t) => {
  const session = await open(buildToonModel());
  const random = mulberry32(7);
  const size = 256;
  const image = imageFrom(size, size, (x, y) => {
    const shade = 0.35 + 0.5 * Math.sin((x + y) / 90) ** 2;
    return [shade, shade * 0.8 + 0.1 * (y / size), shade * 0.7].map((v) => v + 0.04 * (random() - 0.5));
  });
  const before = countColours(image);
  const after = countColours(await toon(session, image));
  t.ok(after < before / 5, `${before} colours → ${after}`);
});

const noPhoto = !existsSync(PHOTO) && `no reference photo: ${PHOTO} is absent (../shared is not part of the project)`;

t.test('toon model: real photo becomes a cartoon', { skip: noPhoto }, async (t) => {
  const { data: rgb, info } = await sharp(PHOTO)
    .removeAlpha()
    .resize(512, 512, { fit: 'inside', withoutEnlargement: true })
    .raw()
    .toBuffer({ resolveWithObject: true });
  const photo = imageFrom(info.width, info.height, (x, y) => {
    const i = (y * info.width + x) * 3;
    return [0, 1, 2].map((c) => (rgb[i + c] ?? 0) / 255);
  });
  const out = await toon(await open(buildToonModel()), photo);

  const before = countColours(photo);
  const after = countColours(out);
  t.ok(after < before / 5, `far fewer colours: ${before} → ${after}`);

  // Ink: pixels pushed far below the photo's own brightness. Some (outlines), but not everywhere (noise).
  let inked = 0;
  let change = 0;
  for (let y = 0; y < out.height; y += 1) {
    for (let x = 0; x < out.width; x += 1) {
      if (luma(out, x, y) < 0.5 * luma(photo, x, y) - 0.05) inked += 1;
      change += Math.abs(luma(out, x, y) - luma(photo, x, y));
    }
  }
  const pixels = out.width * out.height;
  const inkedShare = inked / pixels;
  t.ok(inkedShare > 0.01 && inkedShare < 0.15, `ink lines on ${(100 * inkedShare).toFixed(1)}% of pixels`);
  t.ok(change / pixels > 0.02, `visibly changed: mean luminance change ${(change / pixels).toFixed(3)}`);
});

t.test('bench model: DCT-Net cost and I/O convention', async (t) => {
  const model = buildDctnetBenchModel();
  const parameters = countParameters(model);
  t.ok(parameters > 1.4e6 && parameters < 1.55e6, `${parameters} parameters, like DCT-Net's 1.47 M`);

  const session = await open(model);
  t.same(session.inputMetadata, [{ name: 'input_image', isTensor: true, type: 'float32', shape: [1, 'H', 'W', 3] }]);
  t.same(session.outputMetadata, [{ name: 'output_image', isTensor: true, type: 'float32', shape: [1, 'H', 'W', 3] }]);

  const side = 64;
  const input = Float32Array.from({ length: side * side * 3 }, (_, i) => (i * 37) % 256);
  const values = await runOnce(session, input, [1, side, side, 3]);
  t.equal(values.length, input.length, 'output has the input size');
  const min = Math.min(...values);
  const max = Math.max(...values);
  t.ok(min >= 0 && max <= 255, `output in [0, 255]: ${min.toFixed(1)}..${max.toFixed(1)}`);
  t.ok(max - min > 20, 'output is not constant');
});

t.test('invert model: (lo + hi) − x in every layout and range', async (t) => {
  for (const layout of ['NCHW', 'NHWC'] as const) {
    for (const [range, lo, hi] of [['0..1', 0, 1], ['-1..1', -1, 1], ['0..255', 0, 255]] as const) {
      const session = await open(buildInvertModel({ layout, range }));
      const [input] = session.inputMetadata;
      t.same(input?.isTensor && input.shape, layout === 'NCHW' ? [1, 3, 'H', 'W'] : [1, 'H', 'W', 3]);
      const x = Float32Array.from({ length: 12 }, (_, i) => lo + ((hi - lo) * i) / 11);
      const y = await runOnce(session, x, layout === 'NCHW' ? [1, 3, 2, 2] : [1, 2, 2, 3]);
      t.same(y, Array.from(Float32Array.from(x, (v) => lo + hi - v)), `invert ${layout} ${range}`);
    }
  }
  const spec = { layout: 'NHWC', range: '0..255', inputName: 'photo', outputName: 'toon' } as const;
  const named = await open(buildInvertModel(spec));
  t.same([named.inputNames, named.outputNames], [['photo'], ['toon']], 'custom tensor names');
});

t.test('channel0 model: channel 0 in all three channels', async (t) => {
  const nchw = await open(buildChannel0Model({ layout: 'NCHW' }));
  const planes = await runOnce(nchw, Float32Array.of(0.1, 0.1, 0.5, 0.5, 0.9, 0.9), [1, 3, 1, 2]);
  t.same(planes, new Array(6).fill(Math.fround(0.1)), 'NCHW');
  const nhwc = await open(buildChannel0Model({ layout: 'NHWC' }));
  const pixels = await runOnce(nhwc, Float32Array.of(10, 20, 30, 40, 50, 60), [1, 1, 2, 3]);
  t.same(pixels, [10, 10, 10, 40, 40, 40], 'NHWC');
});

t.test('scale model: input × factor', async (t) => {
  const session = await open(buildScaleModel(3));
  t.same(await runOnce(session, Float32Array.of(0.5, 1, -1), [1, 3, 1, 1]), [1.5, 3, -3]);
});

t.test('slow model: an expensive exact identity', async (t) => {
  const model = buildSlowModel();
  const convs = onnxProto.onnx.ModelProto.decode(model).graph?.node?.filter((n) => n.opType === 'Conv').length ?? 0;
  t.ok(convs >= 30, `a stack of ${convs} full-resolution convolutions`);
  const image = Float32Array.from({ length: 3 * 9 * 7 }, (_, i) => (i % 11) / 10);
  t.same(await runOnce(await open(model), image, [1, 3, 9, 7]), Array.from(image));
});

t.test('bad-rank model: a rank-2 input, for the registry to refuse', async (t) => {
  const [input] = (await open(buildBadRankModel())).inputMetadata;
  t.same(input?.isTensor && input.shape.length, 2);
});
