/**
 * The face-aware path through the pool, with the real YuNet detector and White-box as both the whole-image and the
 * head model (read in place from ../shared; skipped where absent).
 */
import { poolSettings } from '../../config.js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { BUILTIN_MODELS_DIR } from '../../paths.js';
import { InferencePool } from '../../pool/inference-pool.js';
import { modelsDir, SHARED, whiteboxFaceModels } from '../fixtures/models.js';

const MODELS = join(SHARED, 'models');
const IMAGES = join(SHARED, 'images');
const DETECTOR = join(MODELS, 'face_detection_yunet_n_dynamic.onnx');
const WHITEBOX = join(MODELS, 'whitebox_cartoon_nhwc.onnx');

if (!existsSync(DETECTOR) || !existsSync(WHITEBOX) || !existsSync(IMAGES)) {
  t.test('faces through the pool', { skip: `${SHARED} (real models and photos) is not present` }, async () => {});
} else {
  const models = whiteboxFaceModels(DETECTOR, WHITEBOX);

  t.test('faces are found, stylised and counted; require_face refuses a photo without one', async (t) => {
    const pool = await InferencePool.start(poolSettings({ modelsDirs: [modelsDir(t, models), BUILTIN_MODELS_DIR], workers: 1, intraOpThreads: 2 }));
    t.teardown(() => pool.close());
    t.same(
      pool.styles.map((s) => [s.id, s.faceAware]),
      [['wb-faces', true], ['toon', false]],
      'only whole-image models are styles; the detector and head are not',
    );
    const expected: Record<string, number> = {
      'astronaut_eileen_collins.png': 1,
      'obama_halfbody.jpg': 1,
      'obama_biden_two_people.jpg': 2,
      'obama_biden_group_stage.jpg': 3,
      'coffee_no_person.png': 0,
    };
    for (const [name, count] of Object.entries(expected)) {
      const bytes = readFileSync(join(IMAGES, name));
      const result = await pool.run(Buffer.from(bytes), { style: 'wb-faces', format: 'jpeg', quality: 85 });
      const meta = await sharp(bytes).metadata();
      t.equal(result.faces, count, `${name}: ${count} face(s) stylised`);
      t.same([result.width, result.height], [meta.width, meta.height], `${name}: original size`);
      t.type(result.timings.detect, 'number', `${name}: detection timed`);
      t.type(result.timings.head, 'number', `${name}: head pass timed`);
    }
    const coffee = readFileSync(join(IMAGES, 'coffee_no_person.png'));
    await t.rejects(pool.run(Buffer.from(coffee), { style: 'wb-faces', format: 'jpeg', quality: 85, requireFace: true }), {
      code: 'PTOON_NO_FACE',
      statusCode: 422,
    });
    await t.rejects(pool.run(Buffer.from(coffee), { style: 'toon', format: 'jpeg', quality: 85, requireFace: true }), {
      code: 'PTOON_BAD_OPTION',
      statusCode: 400,
    });
  });

  t.test('an unknown detector family or a model that is no detector stops the start', async (t) => {
    const [detector] = models;
    const bad = modelsDir(t, [{ manifest: { ...detector!.manifest, family: 'retinaface' } }, ...models.slice(1)]);
    await t.rejects(InferencePool.start(poolSettings({ modelsDirs: [bad], workers: 1 })), { message: /yunet\.json: field "family" is "retinaface"; known detector families: yunet/ });
    const notDetector = modelsDir(t, [{ manifest: { ...detector!.manifest, file: WHITEBOX, input: models[1]!.manifest['input'] } }, ...models.slice(1)]);
    await t.rejects(InferencePool.start(poolSettings({ modelsDirs: [notDetector], workers: 1 })), { message: /yunet\.json: field "file" is not a yunet detector/ });
  });
}
