/**
 * The real server process (server.ts): graceful shutdown on SIGTERM (the request in flight still gets its 200, new
 * connections are refused, exit code 0), the grace period before it (readiness 503, requests still served), the
 * shutdown bound, key reload on SIGHUP, and start-up errors that name
 * the variable, the file and the line.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { dirname, join } from 'node:path';
import t, { type Test } from 'tap';
import { newApiKey } from '../../keys.js';
import { withFault } from '../fixtures/faults.js';
import { buildInvertModel } from '../../models/generate/test-models.js';
import { imageManifest, modelsDir } from '../fixtures/models.js';
import { encodeForm, fixtures, form, magic, post, sleep, spawnServer, type ServerProcess } from '../helper.js';

const images = await fixtures();

function keysFile(t: Test, ...lines: string[]): string {
  const path = join(t.testdir({}), 'keys.txt');
  writeFileSync(path, lines.join('\n') + '\n');
  return path;
}

async function stop(server: ServerProcess): Promise<void> {
  if (server.child.exitCode === null) server.child.kill('SIGKILL');
  await server.exited;
}

/** Starts a request whose body is sent in two halves; `finish()` sends the rest and resolves with the answer. */
function halfSentUpload(url: string, headers: Record<string, string>, body: Buffer, contentType: string) {
  let resolveAnswer: (a: { status: number; body: Buffer; headers: Record<string, unknown> }) => void = () => {};
  let rejectAnswer: (err: Error) => void = () => {};
  const answer = new Promise<{ status: number; body: Buffer; headers: Record<string, unknown> }>((resolve, reject) => {
    resolveAnswer = resolve;
    rejectAnswer = reject;
  });
  const req = httpRequest(url, { method: 'POST', headers: { ...headers, 'content-type': contentType, 'content-length': body.length } }, (res) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => resolveAnswer({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), headers: res.headers }));
  });
  req.on('error', rejectAnswer);
  const half = Math.floor(body.length / 2);
  req.write(body.subarray(0, half));
  return {
    answer,
    finish: () => {
      req.end(body.subarray(half));
      return answer;
    },
  };
}

t.test('SIGHUP reloads keys; SIGTERM drains and exits 0', async (t) => {
  const first = newApiKey('first');
  const second = newApiKey('second');
  const file = keysFile(t, first.line);
  const server = spawnServer({ API_KEYS_FILE: file, SHUTDOWN_TIMEOUT_MS: '10000' });
  t.teardown(() => stop(server));
  const base = await server.listening;
  const api = `${base}/api/cartoonize`;
  const upload = (key: string) => post(api, form(images.jpeg), { 'x-api-key': key });

  t.equal((await upload(first.key)).status, 200);
  writeFileSync(file, second.line + '\n');
  server.signal('SIGHUP');
  let status = 0;
  for (let i = 0; i < 100 && status !== 200; i++) {
    await sleep(50);
    status = (await upload(second.key)).status;
  }
  t.equal(status, 200, 'after SIGHUP the new key works');
  t.equal((await upload(first.key)).status, 401, 'and the old one does not');
  writeFileSync(file, 'garbage\n');
  server.signal('SIGHUP');
  for (let i = 0; i < 100 && !server.output().includes('API key reload failed'); i++) await sleep(50);
  t.match(server.output(), /keys\.txt:1: expected.*API key reload failed/, 'a bad file is reported with its line...');
  t.equal((await upload(second.key)).status, 200, '...and the keys in use stay');

  // A request in flight: half its body is sent before SIGTERM, the rest after.
  const { payload, contentType } = await encodeForm(form(images.jpeg, { fields: { format: 'png' } }));
  const inFlight = halfSentUpload(api, { 'x-api-key': second.key }, payload, contentType);
  await sleep(300);
  const signalled = Date.now();
  server.signal('SIGTERM');
  await sleep(300);
  await t.rejects(fetch(`${base}/healthz`), 'new connections are refused once draining');
  const answer = await inFlight.finish();
  t.equal(answer.status, 200, 'the request in flight is served');
  t.equal(magic(answer.body), 'png');
  t.equal(answer.headers['connection'], 'close', 'and asked to close its connection');
  const code = await server.exited;
  t.equal(code, 0, 'exit code 0');
  t.ok(Date.now() - signalled < 5000, 'promptly');
  t.match(server.output(), /shutting down/);
  t.match(server.output(), /"msg":"stopped"/);
});

t.test('SHUTDOWN_GRACE_MS: after SIGTERM, readiness 503 while requests are still served, then the drain', async (t) => {
  const key = newApiKey('k');
  const graceMs = 1500;
  const server = spawnServer({ API_KEYS_FILE: keysFile(t, key.line), SHUTDOWN_GRACE_MS: String(graceMs), SHUTDOWN_TIMEOUT_MS: '10000' });
  t.teardown(() => stop(server));
  const base = await server.listening;
  const api = `${base}/api/cartoonize`;
  t.equal((await fetch(`${base}/readyz`)).status, 200, 'ready before the signal');

  // A request in flight at the signal, finished during the grace period.
  const { payload, contentType } = await encodeForm(form(images.jpeg));
  const inFlight = halfSentUpload(api, { 'x-api-key': key.key }, payload, contentType);
  await sleep(200);
  const signalled = Date.now();
  server.signal('SIGTERM');
  for (let i = 0; i < 40 && !server.output().includes('withdrawing'); i++) await sleep(25);
  const ready = await fetch(`${base}/readyz`);
  t.equal(ready.status, 503, 'readiness turns 503 at once');
  t.match(await ready.json(), { code: 'PTOON_NOT_READY' });
  t.equal((await fetch(`${base}/healthz`)).status, 200, 'liveness stays 200');
  const during = await post(api, form(images.jpeg), { 'x-api-key': key.key });
  t.equal(during.status, 200, 'a new request on a new connection is still served');
  t.equal(magic(during.body), 'jpeg');
  const finished = await inFlight.finish();
  t.equal(finished.status, 200, 'and so is the one in flight');
  t.ok(Date.now() - signalled < graceMs, 'all of that within the grace period');

  for (let i = 0; i < 200 && !server.output().includes('shutting down'); i++) await sleep(25);
  t.ok(Date.now() - signalled >= graceMs - 50, `the drain begins after the grace period (${Date.now() - signalled} ms)`);
  await sleep(200);
  await t.rejects(fetch(`${base}/healthz`), 'then new connections are refused');
  t.equal(await server.exited, 0, 'exit code 0');
  const lines = server.output();
  t.ok(lines.indexOf('withdrawing') < lines.indexOf('shutting down'), 'withdrawn, then drained');
  t.match(lines, new RegExp(`"graceMs":${graceMs}`));
});

t.test('the shutdown bound cuts what does not finish in time', async (t) => {
  const key = newApiKey('k');
  // server.ts's own process on the fault-injecting worker: a request that never finishes is an upload marked 'hang'.
  const server = spawnServer({ API_KEYS_FILE: keysFile(t, key.line), SHUTDOWN_TIMEOUT_MS: '1000', REQUEST_DEADLINE_MS: '60000' }, [], { faults: true });
  t.teardown(() => stop(server));
  const base = await server.listening;
  const stuck = post(`${base}/api/cartoonize`, form(withFault(images.jpeg, 'hang')), { 'x-api-key': key.key }).catch((err: Error) => err);
  await sleep(500);
  const signalled = Date.now();
  server.signal('SIGTERM');
  const code = await server.exited;
  const elapsed = Date.now() - signalled;
  t.equal(code, 0, 'still a clean exit');
  t.ok(elapsed >= 900 && elapsed < 5000, `after the bound (${elapsed} ms)`);
  t.match(server.output(), /shutdown timeout reached/);
  t.ok((await stuck) instanceof Error, 'the stuck request was cut');
});

t.test('start-up errors name what is wrong', async (t) => {
  const badKeys = keysFile(t, newApiKey('ok').line, 'broken:1234');
  const cases: [Record<string, string>, RegExp, string][] = [
    [{ PORT: 'eighty' }, /configuration error: PORT: must be an integer from 0 to 65535, got "eighty"/, 'a bad variable'],
    [{ API_KEYS_FILE: badKeys }, /keys\.txt:2: the hash must be 64 hexadecimal digits/, 'a bad key file'],
    [{ API_KEYS_FILE: '/nonexistent/keys.txt' }, /\/nonexistent\/keys\.txt: cannot be read \(ENOENT\)/, 'a missing key file'],
    [{ MODELS_DIRS: '/nonexistent-models' }, /\/nonexistent-models.*cannot be read/, 'a missing models folder'],
    [{ TLS_CERT_FILE: '/nonexistent/cert.pem', TLS_KEY_FILE: '/nonexistent/key.pem' }, /TLS_CERT_FILE: cannot read \/nonexistent\/cert\.pem/, 'a missing certificate'],
  ];
  if (process.getuid?.() === 0) {
    cases.push([{ ALLOW_ROOT: '', RUN_AS_USER: 'no-such-user' }, /refusing to run as root: .*there is no user "no-such-user"/, 'root, and no user to become']);
    cases.push([{ ALLOW_ROOT: '', RUN_AS_USER: 'root' }, /refusing to run as root: .*"root" is not an unprivileged user/, 'root, asked to become root']);
    // Readable by root only: the server reads it after becoming nobody, and must say why it cannot.
    const rootOnly = join(dirname(badKeys), 'root-only-keys.txt');
    writeFileSync(rootOnly, newApiKey('ok').line + '\n', { mode: 0o600 });
    cases.push([
      { ALLOW_ROOT: '', API_KEYS_FILE: rootOnly },
      /keys\.txt: cannot be read \(EACCES\): this process runs as nobody \(uid \d+\) and may not read it .*RUN_AS_USER/,
      'a keys file only root can read, after switching to nobody',
    ]);
  }
  await Promise.all(
    cases.map(async ([env, pattern, what]) => {
      const server = spawnServer(env);
      const code = await server.exited;
      t.equal(code, 1, `${what}: exit 1`);
      t.match(server.output(), pattern, what);
    }),
  );
});

t.test('a model the workers refuse stops the start with one error naming the manifest and field, with several workers', async (t) => {
  // The runtime's checks run in the workers: each of the three finds the fault, the operator reads it once, and no
  // worker is ended inside onnxruntime while the others are still opening their sessions (that aborts the process).
  const dir = modelsDir(t, [{ manifest: imageManifest('named', { layout: 'NCHW', inputName: 'pixels' }), bytes: buildInvertModel({ layout: 'NCHW', range: '0..1' }) }]);
  const server = spawnServer({ MODELS_DIRS: dir, WORKERS: '3' });
  t.equal(await server.exited, 1, 'exit 1');
  const said = server.output().match(/named\.json: field "input\.name" is "pixels" but the model's are: input/g) ?? [];
  t.equal(said.length, 1, 'said once', { output: server.output() });
  t.match(server.output(), /cannot start: \/.*named\.json: field "input\.name"/, 'as a start-up error');
  t.notMatch(server.output(), /terminate called|Aborted|worker \d+:/, 'no abort, no worker chatter');
});

t.test('started as root without ALLOW_ROOT, it becomes an unprivileged user before serving', { skip: process.getuid?.() !== 0 && 'not running as root' }, async (t) => {
  const server = spawnServer({ ALLOW_ROOT: '' });
  t.teardown(() => {
    if (server.child.exitCode === null) server.child.kill('SIGKILL');
  });
  const base = await server.listening;
  t.match(server.output(), /started as root; now running as nobody \(uid \d+/);
  const pid = /"pid":(\d+)/.exec(server.output())?.[1];
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const uids = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status)!.slice(1).map(Number);
  t.ok(uids.every((u) => u !== 0), `real, effective, saved and filesystem uids are not root (${uids.join(' ')})`);
  t.equal((await fetch(`${base}/readyz`)).status, 200, 'and it serves');
  server.signal('SIGTERM');
  t.equal(await server.exited, 0);
});
