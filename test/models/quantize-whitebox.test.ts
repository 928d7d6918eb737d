/**
 * `privatoon quantize` on White-box from ../shared against the real photos of ../shared/images, both read in place:
 * every photo not used for calibration must meet the quality bar. Its own file: on a busy 2-core machine it takes
 * minutes, more than the suite's per-file timeout.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { testConfig } from '../helper.js';
import { quantizeCommand } from '../../models/quantize/command.js';
import { SHARED } from '../fixtures/models.js';
import { folder, modelsDir, qualityRows } from '../fixtures/quantize.js';

t.setTimeout(900_000);
const config = testConfig();

const WHITEBOX = join(SHARED, 'models', 'whitebox_cartoon_nhwc.onnx');
const IMAGES = join(SHARED, 'images');
t.test('White-box (../shared): int8 within the bar on every held-aside photo', { skip: existsSync(WHITEBOX) ? false : 'needs ../shared/models/whitebox_cartoon_nhwc.onnx' }, async (t) => {
  // The model and photos are read in place; the int8 model (a derivative of non-commercial weights) only goes to
  // the test's own temporary folder.
  const dir = modelsDir(t, [
    { manifest: { id: 'whitebox', role: 'whole', file: WHITEBOX, input: { name: 'input_photo', layout: 'NHWC', channels: 'BGR', range: '-1..1' }, output: { name: 'final_output' }, size: { maxShortSide: 720, multiple: 8 } } },
  ]);
  const out = folder(t);
  const report: string[] = [];
  // Every third photo (by name) is held aside; its README is skipped.
  const error = await quantizeCommand([join(dir, 'whitebox.json'), '--calibrate', IMAGES, '--out', out, '--timing-runs', '0'], config, (l) => report.push(l)).then(
    () => undefined,
    (err: Error) => err.message,
  );
  t.comment(report.join('\n'));
  const held = qualityRows(report).filter((r) => r.set === 'held aside');
  t.equal(held.length, Math.floor(readdirSync(IMAGES).filter((n) => /\.(png|jpe?g)$/.test(n)).length / 3));
  for (const r of held) t.ok(r.psnr >= 35 && r.ssim >= 0.98, `${r.name}: PSNR ${r.psnr} dB, SSIM ${r.ssim}`);
  t.equal(error, undefined, 'written');
  t.ok(existsSync(join(out, 'whitebox-int8.onnx')));
});
