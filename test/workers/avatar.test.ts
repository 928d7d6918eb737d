/**
 * crop=face: the avatar square's geometry (centred on the face, clamped to the picture), and through the pool with
 * the real YuNet detector and White-box (read in place from ../shared; skipped, visibly, where absent).
 */
import { poolSettings } from '../../config.js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { BUILTIN_MODELS_DIR } from '../../paths.js';
import { avatarSquare, cropRaster } from '../../workers/faces/avatar.js';
import { InferencePool } from '../../pool/inference-pool.js';
import { modelsDir, SHARED, whiteboxFaceModels } from '../fixtures/models.js';

t.test('the square is centred on the face, twice its size, and stays inside the picture', async (t) => {
  t.same(avatarSquare({ x: 400, y: 300, width: 100, height: 120 }, 1000, 800), { x: 330, y: 240, side: 240 }, 'centred, 2x the longer side');
  t.same(avatarSquare({ x: 10, y: 20, width: 100, height: 100 }, 1000, 800), { x: 0, y: 0, side: 200 }, 'a face in the corner: moved inside, not padded');
  t.same(avatarSquare({ x: 900, y: 700, width: 100, height: 100 }, 1000, 800), { x: 800, y: 600, side: 200 });
  t.same(avatarSquare({ x: 100, y: 100, width: 400, height: 400 }, 1000, 600), { x: 0, y: 0, side: 600 }, 'shrunk to the shorter side');
  const rgb = new Uint8Array(4 * 3 * 3).map((_, i) => i);
  const cut = cropRaster({ rgb, alpha: undefined, width: 4, height: 3 }, { x: 1, y: 1, side: 2 });
  t.same([...cut.rgb], [15, 16, 17, 18, 19, 20, 27, 28, 29, 30, 31, 32], 'the rows of the square, copied');
  t.same([cut.width, cut.height], [2, 2]);
});

const MODELS = join(SHARED, 'models');
const IMAGES = join(SHARED, 'images');
const DETECTOR = join(MODELS, 'face_detection_yunet_n_dynamic.onnx');
const WHITEBOX = join(MODELS, 'whitebox_cartoon_nhwc.onnx');
const missing = [DETECTOR, WHITEBOX, IMAGES].find((p) => !existsSync(p));

t.test('crop=face through the pool: a square avatar holding the face; no face is 422; toon refuses it', { skip: missing !== undefined && `${missing} is not present (../shared)` }, async (t) => {
  const models = whiteboxFaceModels(DETECTOR, WHITEBOX);
  const pool = await InferencePool.start(poolSettings({ modelsDirs: [modelsDir(t, models), BUILTIN_MODELS_DIR], workers: 1, intraOpThreads: 2 }));
  t.teardown(() => pool.close());

  const bytes = readFileSync(join(IMAGES, 'obama_halfbody.jpg'));
  const meta = await sharp(bytes).metadata();
  const avatar = await pool.run(Buffer.from(bytes), { style: 'wb-faces', format: 'png', quality: 90, crop: 'face' });
  t.equal(avatar.width, avatar.height, `square (${avatar.width}x${avatar.height})`);
  t.ok(avatar.width < Math.min(meta.width!, meta.height!), 'smaller than the photo');
  const png = await sharp(Buffer.from(avatar.output)).metadata();
  t.same([png.width, png.height], [avatar.width, avatar.height], 'the image is that size');
  // The avatar itself holds a face, large: it was centred on one, at twice its size.
  const again = await pool.run(Buffer.from(avatar.output), { style: 'wb-faces', format: 'png', quality: 90, requireFace: true });
  t.equal(again.faces, 1, 'the avatar holds the face');

  const none = await pool.run(Buffer.from(readFileSync(join(IMAGES, 'coffee_no_person.png'))), { style: 'wb-faces', format: 'jpeg', quality: 90, crop: 'face' }).catch((err: Error & { code?: string }) => err);
  t.match(none, { code: 'PTOON_NO_FACE' }, 'no face: 422 PTOON_NO_FACE');
  const toon = await pool.run(Buffer.from(bytes), { style: 'toon', format: 'jpeg', quality: 90, crop: 'face' }).catch((err: Error & { code?: string }) => err);
  t.match(toon, { code: 'PTOON_BAD_OPTION', message: /crop=face cannot apply/ }, 'a style without faces refuses it');
});
