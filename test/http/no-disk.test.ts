/**
 * Nothing is written to disk while serving. The real server runs under strace, which records every call that could
 * create, change or remove a file; after the server starts listening it serves a mixed batch of valid and invalid
 * requests and is stopped with SIGTERM. From the listen() call on, no file may be opened for writing (O_WRONLY,
 * O_RDWR, O_CREAT, O_TRUNC), created, renamed, truncated or removed.
 *
 * Allowed: reads (V8, onnxruntime and libvips open libraries, /proc and /sys read-only), /dev/null, pipes, sockets,
 * and anonymous memory files (memfd), which live in RAM. Skipped, with a message, where strace is not installed
 * (Debian package `strace`).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import t from 'tap';
import { newApiKey } from '../../keys.js';
import { ROOT, fixtures, form, freePort, post, sharedImage, spawnServer } from '../helper.js';

const TRACED = ['open', 'openat', 'creat', 'rename', 'renameat', 'renameat2', 'unlink', 'unlinkat', 'mkdir', 'mkdirat', 'truncate', 'ftruncate', 'listen'];
const WRITE_FLAGS = /\b(O_WRONLY|O_RDWR|O_CREAT|O_TRUNC)\b/;
/** Not files on a disk. */
const HARMLESS = /^(\/dev\/null|\/dev\/urandom|\/proc\/|\/sys\/|pipe:|socket:|anon_inode:|\/memfd:)/;

/** The calls in strace lines (`pid call(args...) = result`) that wrote, made or removed a file. */
function diskWrites(lines: readonly string[]): string[] {
  const found: string[] = [];
  for (const line of lines) {
    const match = /^\d+\s+(?:<\.\.\. )?(\w+)\(/.exec(line);
    const call = match?.[1];
    if (call === undefined || call === 'listen' || line.includes(' resumed>')) continue;
    // Paths are quoted; with -y, strace also shows the file behind an fd argument as <path> (ftruncate has no other).
    const args = line.slice(0, line.lastIndexOf(') = ') === -1 ? undefined : line.lastIndexOf(') = '));
    const quoted = [...args.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1] ?? '');
    const targets = quoted.length > 0 ? quoted : [...args.matchAll(/<([^<>]+)>/g)].map((m) => m[1] ?? '');
    if (targets.length > 0 && targets.every((p) => HARMLESS.test(p))) continue;
    if (call === 'open' || call === 'openat') {
      if (WRITE_FLAGS.test(line)) found.push(line);
    } else {
      found.push(line); // creat, rename*, unlink*, mkdir*, truncate, ftruncate on a real file
    }
  }
  return found;
}


const hasStrace = spawnSync('strace', ['-V'], { stdio: 'ignore' }).status === 0;

t.test('serving writes nothing to disk', { skip: hasStrace ? false : 'strace is not installed (apt-get install strace)' }, async (t) => {
  const images = await fixtures();
  const key = newApiKey('alice');
  const dir = t.testdir({ 'keys.txt': key.line + '\n' });
  const traceFile = join(dir, 'trace.txt');
  const metricsPort = await freePort();
  const server = spawnServer(
    { API_KEYS_FILE: join(dir, 'keys.txt'), METRICS_PORT: String(metricsPort), MAX_UPLOAD_BYTES: String(512 * 1024), LOG_LEVEL: 'info' },
    ['strace', '-f', '-qq', '-y', '-o', traceFile, '-e', `trace=${TRACED.join(',')}`],
  );
  t.teardown(() => {
    if (server.child.exitCode === null) server.child.kill('SIGKILL');
  });
  const base = await server.listening;
  const api = `${base}/api/cartoonize`;
  const auth = { 'x-api-key': key.key };

  const statuses: number[] = [];
  const send = async (...args: Parameters<typeof post>) => statuses.push((await post(...args)).status);
  for (const format of ['jpeg', 'png', 'webp']) await send(`${api}?format=${format}`, form(images.jpeg, { filename: 'secret-face-name.jpg' }), auth);
  await send(api, images.png, { ...auth, 'content-type': 'image/png' });
  await send(api, form(images.svg, { type: 'image/svg+xml' }), auth);
  await send(api, form(images.truncatedJpeg), auth);
  await send(api, form(images.corruptJpeg), auth);
  await send(api, form(Buffer.concat([images.jpeg, Buffer.alloc(600 * 1024)])), auth);
  await send(api, Buffer.concat([images.jpeg, Buffer.alloc(600 * 1024)]), { ...auth, 'content-type': 'image/jpeg' });
  await send(`${api}?quality=0`, form(images.jpeg), auth);
  await send(api, form(images.jpeg), {});
  const photo = sharedImage('obama_halfbody.jpg');
  if (photo !== null) await send(`${api}?max_size=256`, form(readFileSync(photo)), auth);
  statuses.push((await fetch(`${base}/readyz`)).status, (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).status);
  t.same(statuses, [200, 200, 200, 200, 415, 422, 422, 413, 413, 400, 401, ...(photo !== null ? [200] : []), 200, 200], 'a mixed batch was served');

  server.signal('SIGTERM');
  t.equal(await server.exited, 0, 'clean exit');

  const lines = readFileSync(traceFile, 'utf8').split('\n');
  let listenedAt = -1;
  lines.forEach((line, index) => {
    if (/^\d+\s+listen\(/.test(line)) listenedAt = index;
  });
  t.ok(listenedAt > 0, 'the listen() call was traced');
  t.ok(lines.slice(0, listenedAt).some((l) => /openat\(.*\.onnx/.test(l)), 'the trace sees the start-up reads (models)');
  const writes = diskWrites(lines.slice(listenedAt + 1));
  t.same(writes, [], 'no file was written, created, renamed, truncated or removed after listening');
});

t.test('the trace reader recognises writes', async (t) => {
  const sample = [
    '10 openat(AT_FDCWD</srv>, "/usr/lib/libvips.so", O_RDONLY|O_CLOEXEC) = 3</usr/lib/libvips.so>',
    '10 openat(AT_FDCWD</srv>, "/tmp/upload-1.jpg", O_WRONLY|O_CREAT|O_TRUNC, 0644) = 5</tmp/upload-1.jpg>',
    '11 openat(AT_FDCWD</srv>, "/dev/null", O_RDWR) = 6</dev/null>',
    '12 unlinkat(AT_FDCWD</srv>, "/tmp/upload-1.jpg", 0) = 0',
    '12 rename("/srv/a", "/srv/b") = 0',
    '13 ftruncate(7</memfd:v8 (deleted)>, 4096) = 0',
    '13 ftruncate(8</var/cache/x>, 0) = 0',
    '14 openat(AT_FDCWD</srv>, "/proc/self/status", O_RDONLY) = 9</proc/self/status>',
  ];
  t.same(diskWrites(sample), [sample[1], sample[3], sample[4], sample[6]]);
});

/** Every TypeScript file of the service's folders and the root, recursively (workers/faces/, models/import/, ...). */
function sourceFiles(): string[] {
  const roots = readdirSync(ROOT).filter((f) => f.endsWith('.ts'));
  const nested = ['plugins', 'routes', 'pool', 'workers', 'models'].flatMap((dir) =>
    (readdirSync(join(ROOT, dir), { recursive: true }) as string[]).filter((f) => f.endsWith('.ts')).map((f) => `${dir}/${f}`),
  );
  return [...roots, ...nested].sort();
}

/** The project files the entries load, following relative imports (static, dynamic and `export ... from`). */
function importClosure(...entries: string[]): Set<string> {
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const source = readFileSync(join(ROOT, file), 'utf8');
    for (const m of source.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*)'(\.{1,2}\/[^']+)'/g)) {
      const target = relative(ROOT, resolve(ROOT, dirname(file), m[1]!)).replace(/\.js$/, '.ts');
      if (target.endsWith('.ts')) visit(target);
    }
  };
  entries.forEach(visit);
  return seen;
}

/** Code that writes files by design: offline tools an operator runs, never loaded by the server. */
const OFFLINE_WRITERS: Record<string, string> = {
  'cli.ts': '`privatoon cartoonize -o FILE` writes the file the operator named',
  'models/generate/index.ts': 'the build step that writes the generated test models',
  'models/import/index.ts': '`privatoon import` writes a converted model where the operator says',
  'models/quantize/command.ts': '`privatoon quantize` writes the quantized model where the operator says',
};
const WRITES = /saveRequestFiles\(|createWriteStream|writeFile|appendFile|mkdtemp|tmpdir\(\)|optimizedModelFilePath/;

t.test('no code path of the service can write a file', async (t) => {
  // A cheap guard beside the strace run: the calls that write files appear nowhere in the code the server loads.
  // The server's main thread, and the worker threads' entry (Piscina loads it by URL, not by import).
  const served = importClosure('server.ts', 'workers/entry.ts');
  t.ok(served.has('pool/inference-pool.ts') && served.has('workers/faces/pipeline.ts') && served.has('models/registry.ts'), 'the closure reaches the pool, faces and models code');
  const files = sourceFiles();
  t.ok(files.includes('workers/faces/yunet.ts') && files.includes('models/import/tfjs.ts'), 'nested folders are scanned');
  const writers: string[] = [];
  for (const file of files) {
    // Comments may name what is banned (to say why); code may not.
    const source = readFileSync(join(ROOT, file), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
    if (!WRITES.test(source)) continue;
    writers.push(file);
    t.notOk(served.has(file), `${file} writes files and must stay out of the server's imports`);
  }
  t.same(writers, Object.keys(OFFLINE_WRITERS).sort(), 'the only code that writes files is the offline tools listed here');
});
