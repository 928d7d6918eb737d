/**
 * Learned styles out of the box: the server as `npm ci && npm start` leaves it (no MODELS_DIRS) offers the built-in
 * `toon` as its default and the four CartoonGAN styles the build converted, with their titles and licence, and
 * answers a cartoonize call in one of them.
 */
import sharp from 'sharp';
import t from 'tap';
import { newApiKey } from '../../keys.js';
import { magic, post, spawnServer } from '../helper.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

t.test('the default folders serve toon first and the learned styles, over HTTP', async (t) => {
  const key = newApiKey('learned');
  const keys = join(t.testdir({}), 'keys.txt');
  writeFileSync(keys, `${key.line}\n`);
  // An empty MODELS_DIRS is the default: the built-in and the learned styles' folders.
  const server = spawnServer({ MODELS_DIRS: '', API_KEYS_FILE: keys, WORKERS: '1' });
  t.teardown(async () => {
    server.child.kill('SIGTERM');
    await server.exited;
  });
  const base = await server.listening;

  const styles = (await (await fetch(`${base}/api/styles`)).json()) as { default: string; styles: { id: string; title: string; licence?: string }[] };
  t.equal(styles.default, 'toon', 'toon stays the default');
  t.same(styles.styles.map((s) => s.id), ['toon', 'hayao', 'hosoda', 'paprika', 'shinkai']);
  const hayao = styles.styles.find((s) => s.id === 'hayao')!;
  t.match(hayao, { title: /CartoonGAN Hayao/, licence: /Apache-2\.0.*CartoonGAN-Test-Pytorch-Torch, whose own terms are not stated/ });

  const photo = await sharp({ create: { width: 96, height: 72, channels: 3, background: { r: 200, g: 120, b: 80 } } })
    .composite([{ input: { create: { width: 40, height: 30, channels: 3, background: { r: 20, g: 60, b: 160 } } }, left: 20, top: 20 }])
    .jpeg()
    .toBuffer();
  const res = await post(`${base}/api/cartoonize?style=hayao&format=png`, photo, { 'x-api-key': key.key, 'content-type': 'image/jpeg' });
  t.equal(res.status, 200, 'a learned style answers');
  t.equal(magic(res.body), 'png');
  const meta = await sharp(res.body).metadata();
  t.same([meta.width, meta.height], [96, 72], 'at the photo size');
});
