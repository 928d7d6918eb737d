import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
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

t.test('the default style and quality are the pool\'s, as for the HTTP API: toon even when another style is found first', async (t) => {
  const photo = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 90, g: 150, b: 200 } } }).jpeg().toBuffer();
  const dirs = `${join(ROOT, 'models', 'cartoongan')}:${join(ROOT, 'models', 'builtin')}`;
  const run = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'cli.ts'), 'cartoonize', '-', '-o', '-'], {
    input: photo,
    cwd: ROOT,
    env: { ...process.env, WORKERS: '1', MODELS_DIRS: dirs },
    maxBuffer: 64 << 20,
  });
  t.equal(run.status, 0, run.stderr.toString());
  t.match(run.stderr.toString(), /^toon: 64x48 jpeg/, 'not the first style found (hayao)');
});

t.test('bad input and bad options fail with a coded message and a non-zero exit', async (t) => {
  const svg = cli(['cartoonize', '-'], Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>'));
  t.equal(svg.status, 65, 'the input is at fault: EX_DATAERR');
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

t.test('--help, -h and --version, for the tool and each command, on stdout with status 0', async (t) => {
  for (const args of [['--help'], ['-h'], ['help'], ['cartoonize', '--help'], ['styles', '-h'], ['keygen', '--help'], ['help', 'keygen']]) {
    const run = cli(args);
    t.equal(run.status, 0, `${args.join(' ')}: exit 0`);
    t.match(run.stdout.toString(), /^usage: privatoon/, `${args.join(' ')}: usage on stdout`);
    t.match(run.stdout.toString(), /exit status:\n {2}0 {3}done/, `${args.join(' ')}: documents the exit codes`);
    t.equal(run.stderr.length, 0);
  }
  t.match(cli(['keygen', '--help']).stdout.toString(), /starting with a letter or a digit/);
  t.notMatch(cli(['keygen', '--help']).stdout.toString(), /ptk_/, 'keygen --help makes no key');
  const version = cli(['--version']);
  t.equal(version.status, 0);
  t.equal(version.stdout.toString(), `privatoon ${JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version}\n`);
});

t.test('usage errors exit 64 with a short usage on stderr, never a stack', async (t) => {
  const cases: [string[], RegExp][] = [
    [['frob'], /unknown command "frob"/],
    [[], /a command is needed/],
    [['cartoonize', '--bogus', 'x.jpg'], /Unknown option '--bogus'\n/],
    [['keygen', '--', '--help'], /the key id must be .* starting with a letter or a digit/],
    [['keygen', '-x'], /Unknown option '-x'/],
    [['keygen', 'a', 'b'], /keygen takes one key id/],
    [['cartoonize', '-', '--quality', '9x'], /--quality must be an integer from 1 to 100/],
  ];
  for (const [args, pattern] of cases) {
    const run = cli(args, Buffer.alloc(0));
    t.equal(run.status, 64, `${args.join(' ')}: exit 64`);
    t.match(run.stderr.toString(), pattern);
    t.match(run.stderr.toString(), /usage: privatoon/);
    t.notMatch(run.stderr.toString(), /\n\s+at /, 'no stack');
    t.equal(run.stdout.length, 0, 'nothing on stdout');
  }
});

t.test('a missing input file exits 66 and names it', async (t) => {
  const run = cli(['cartoonize', '/nonexistent/in.jpg', '-o', '-']);
  t.equal(run.status, 66);
  t.match(run.stderr.toString(), /cannot read \/nonexistent\/in\.jpg \(ENOENT\)/);
});

// util-linux's script(1) gives the tool a pseudo-terminal as stdout, as a person at a shell would.
const script = spawnSync('script', ['--version']).status === 0;
t.test('no image bytes are written to a terminal', { skip: !script && 'script(1) is not installed' }, async (t) => {
  const photo = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 200, g: 150, b: 120 } } }).jpeg().toBuffer();
  const dir = t.testdir({ 'in.jpg': photo });
  const command = [process.execPath, '--import', 'tsx', join(ROOT, 'cli.ts'), 'cartoonize', join(dir, 'in.jpg')].map((a) => `'${a}'`).join(' ');
  const run = spawnSync('script', ['-qec', command, '/dev/null'], { cwd: ROOT, env: { ...process.env, WORKERS: '1' } });
  const text = run.stdout.toString('latin1');
  t.equal(run.status, 64, 'usage error');
  t.match(text, /refusing to write an image to the terminal/);
  t.notOk(text.includes('\xff\xd8\xff'), 'no JPEG bytes reached the terminal');
});

t.test('quantize: a clear coded error and exit 1 for a calibration folder that is not there', async (t) => {
  const run = cli(['quantize', 'toon', '--calibrate', join(ROOT, 'no-such-folder')]);
  t.equal(run.status, 1);
  t.match(run.stderr.toString(), /^privatoon: PTOON_QUANTIZE: calibration folder .*no-such-folder cannot be read \(ENOENT\)/);
});
