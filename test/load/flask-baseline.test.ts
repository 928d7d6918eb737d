/**
 * The Flask + OpenCV baseline of `npm run bench:flask` (bench/flask/app.py) does the work privatoon does: the same
 * model file and manifest rules on the same photos give the same picture, so a ratio of the two services' requests
 * per second compares designs, not workloads. It runs where a Python with cv2, flask and gunicorn is installed
 * (Debian 12: python3-opencv, python3-flask, gunicorn) and skips, saying what is missing, elsewhere.
 */
import sharp from 'sharp';
import t from 'tap';
import { findPython, startFlask } from '../../bench/lib/flask-service.js';
import { benchImages } from '../../bench/lib/images.js';
import { findManifest } from '../../bench/lib/plain.js';
import { startService } from '../../bench/lib/server.js';
import { psnr } from '../../models/quantize/metrics.js';
import { BENCH_MODELS_DIR } from '../../paths.js';

const { python, why } = findPython();

/** PSNR of two encoded images (dB), and whether their sizes match. */
async function compare(a: Buffer, b: Buffer): Promise<{ db: number; same: boolean }> {
  const [x, y] = await Promise.all([sharp(a).raw().toBuffer({ resolveWithObject: true }), sharp(b).raw().toBuffer({ resolveWithObject: true })]);
  const same = x.info.width === y.info.width && x.info.height === y.info.height && x.info.channels === y.info.channels;
  return { db: same ? psnr(x.data, y.data) : -Infinity, same };
}

t.test('the baseline answers what privatoon answers for the near-free model', { skip: python === undefined ? `no Python with cv2, flask and gunicorn: ${why.trim()}` : false }, async (t) => {
  const manifest = await findManifest([BENCH_MODELS_DIR], 'nearfree-bench');
  const { images } = await benchImages(512, 3);
  const privatoon = await startService({ models: 'builtin+bench', workers: 1 });
  t.teardown(() => privatoon.stop());
  const flask = await startFlask(python!, manifest, 1);
  t.teardown(() => flask.stop());
  for (const [i, image] of images.entries()) {
    const ours = await fetch(`${privatoon.base}/api/cartoonize?style=${manifest.id}&format=jpeg`, { method: 'POST', body: image.jpeg, headers: { 'content-type': 'image/jpeg', 'x-api-key': privatoon.key } });
    const theirs = await fetch(`${flask.base}/api/cartoonize`, { method: 'POST', body: image.jpeg, headers: { 'content-type': 'image/jpeg' } });
    t.equal(ours.status, 200, `photo ${i}: privatoon 200`);
    t.equal(theirs.status, 200, `photo ${i}: baseline 200`);
    t.equal(theirs.headers.get('content-type'), 'image/jpeg', `photo ${i}: a JPEG`);
    const { db, same } = await compare(Buffer.from(await ours.arrayBuffer()), Buffer.from(await theirs.arrayBuffer()));
    t.ok(same, `photo ${i}: the same size`);
    // JPEG q95 both, chroma 4:4:4 (privatoon) against 4:2:0 (OpenCV): 44 to 49 dB measured; a wrong range, channel
    // order or layout reads below 20.
    t.ok(db > 40, `photo ${i}: ${db.toFixed(1)} dB from privatoon's answer`);
  }
});
