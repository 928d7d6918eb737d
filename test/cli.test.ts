import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { ROOT } from './fixtures/models.js';

const cli = (args: string[], input?: Buffer) =>
  spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'cli.ts'), ...args], { input, cwd: ROOT, env: { ...process.env, WORKERS: '1' }, maxBuffer: 64 << 20 });

t.test('cartoonize reads stdin and writes stdout with the built-in style', async (t) => {
  const photo = await sharp({ create: { width: 160, height: 120, channels: 3, background: { r: 200, g: 150, b: 120 } } }).jpeg().toBuffer();
  const run = cli(['cartoonize', '-', '-o', '-', '--format', 'png', '--max-size', '80'], photo);
  t.equal(run.status, 0, run.stderr.toString());
  const meta = await sharp(run.stdout).metadata();
  t.same([meta.format, meta.width, meta.height], ['png', 80, 60]);
  t.match(run.stderr.toString(), /^toon: 80x60 png/);
});

t.test('bad input and bad options fail with a coded message and a non-zero exit', async (t) => {
  const svg = cli(['cartoonize', '-'], Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>'));
  t.equal(svg.status, 1);
  t.match(svg.stderr.toString(), /PTOON_UNSUPPORTED_MEDIA: The upload is SVG/);
  const usage = cli(['cartoonize', '-', '--format', 'gif'], Buffer.alloc(1));
  t.equal(usage.status, 64);
  t.match(usage.stderr.toString(), /--format must be one of jpeg, png, webp/);
});

t.test('keygen prints a key once and the matching hashed line', async (t) => {
  const run = cli(['keygen', 'acme-prod']);
  t.equal(run.status, 0);
  const out = run.stdout.toString();
  const key = /\n {2}(ptk_[A-Za-z0-9_-]{43})\n/.exec(out)?.[1];
  const line = /\n {2}(acme-prod:[0-9a-f]{64})\n/.exec(out)?.[1];
  t.ok(key && line, 'both are printed');
  t.equal(line, `acme-prod:${createHash('sha256').update(key!).digest('hex')}`, 'the line holds the sha256 of the key, not the key');
});

t.test('quantize: a clear coded error and exit 1 for a calibration folder that is not there', async (t) => {
  const run = cli(['quantize', 'toon', '--calibrate', join(ROOT, 'no-such-folder')]);
  t.equal(run.status, 1);
  t.match(run.stderr.toString(), /^privatoon: PTOON_QUANTIZE: calibration folder .*no-such-folder cannot be read \(ENOENT\)/);
});
