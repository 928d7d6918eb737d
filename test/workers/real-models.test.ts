/**
 * The pipeline on real pretrained models and real photos from ../shared (read in place; skipped where absent).
 */
import { poolSettings } from '../../config.js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { BUILTIN_MODELS_DIR } from '../../paths.js';
import { InferencePool } from '../../pool/inference-pool.js';
import { modelsDir, SHARED } from '../fixtures/models.js';

const MODELS = join(SHARED, 'models');
const IMAGES = join(SHARED, 'images');

if (!existsSync(join(MODELS, 'whitebox_cartoon_nhwc.onnx')) || !existsSync(IMAGES)) {
  t.test('real models and photos', { skip: `${SHARED} (real models and photos) is not present` }, async () => {});
} else {
  // White-box cartoonization, as its README describes it: BGR, -1..1, sides a multiple of 4 (we pad to 8 as the
  // original pipeline crops to 8), short side at most 720.
  const whitebox = (layout: 'NHWC' | 'NCHW') => ({
    manifest: {
      id: `whitebox-${layout.toLowerCase()}`,
      file: join(MODELS, `whitebox_cartoon_${layout.toLowerCase()}.onnx`),
      input: { name: 'input_photo', layout, channels: 'BGR', range: '-1..1' },
      output: { name: 'final_output' },
      size: { maxShortSide: 720, multiple: 8, pad: 'edge', resizeBack: true },
    },
  });

  t.test('White-box (NHWC and NCHW) and the built-in style on every real photo', async (t) => {
    const dir = modelsDir(t, [whitebox('NHWC'), whitebox('NCHW')]);
    const pool = await InferencePool.start(poolSettings({ modelsDirs: [dir, BUILTIN_MODELS_DIR], workers: 2, intraOpThreads: 1 }));
    t.teardown(() => pool.close());
    const photos = ['astronaut_eileen_collins.png', 'obama_biden_two_people.jpg', 'coffee_no_person.png'];
    for (const name of photos) {
      const bytes = readFileSync(join(IMAGES, name));
      const { width, height } = await sharp(bytes).metadata();
      const inputStats = await sharp(bytes).stats();
      const outputs: Record<string, Buffer> = {};
      for (const style of ['whitebox-nhwc', 'whitebox-nchw', 'toon']) {
        const result = await pool.run(Buffer.from(bytes), { style, format: 'png', quality: 90 });
        t.same([result.width, result.height], [width, height], `${name} / ${style}: original size`);
        const out = Buffer.from(result.output);
        const stats = await sharp(out).stats();
        // Plausible: not blank, not saturated, colours in the same neighbourhood as the photo's.
        for (let c = 0; c < 3; c++) {
          const mean = stats.channels[c]!.mean;
          t.ok(stats.channels[c]!.stdev > 10, `${name} / ${style}: channel ${c} has structure`);
          t.ok(Math.abs(mean - inputStats.channels[c]!.mean) < 45, `${name} / ${style}: channel ${c} mean ${mean.toFixed(0)} near the photo's`);
        }
        outputs[style] = await sharp(out).raw().toBuffer();
      }
      // The same network in both layouts must agree closely (layout handling is exact; only float order differs).
      const a = outputs['whitebox-nhwc']!;
      const b = outputs['whitebox-nchw']!;
      let worst = 0;
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
      t.ok(worst <= 3, `${name}: NHWC and NCHW exports agree (max difference ${worst})`);
    }
  });
}
