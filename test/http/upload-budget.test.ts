/**
 * Uploads in flight have their own budget (plugins/upload-budget.ts): slow anonymous uploads cannot starve keyed
 * clients of inference, one client cannot take the budget, a trickling or stalled upload is cut with 408, and a
 * client that hangs up before its body was read gets no inference run. Real sockets against a real listening app.
 */
import { connect, type Socket } from 'node:net';
import sharp from 'sharp';
import t from 'tap';
import { withFault } from '../fixtures/faults.js';
import { build, encodeForm, fixtures, form, listen, post, sleep, startPool, writeKeys } from '../helper.js';

const images = await fixtures();
const { file, keys } = writeKeys(t, ['alice']);
const key = { 'x-api-key': keys['alice']! };

async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A JPEG of noise: large for its size in pixels (several MB). */
async function noisyJpeg(width: number, height: number): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * 3);
  let seed = 7;
  for (let i = 0; i < raw.length; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    raw[i] = seed >>> 24;
  }
  return sharp(raw, { raw: { width, height, channels: 3 } }).jpeg({ quality: 95 }).toBuffer();
}

interface Trickle {
  socket: Socket;
  /** The raw answer, once the server sends one (or '' when the connection closes without). */
  answer: Promise<string>;
}

/** Opens a request, sends its headers and the first `sent` bytes of its body, then stalls. */
async function trickle(base: string, path: string, headers: Record<string, string>, body: Buffer, sent = 200): Promise<Trickle> {
  const url = new URL(base);
  const socket = await new Promise<Socket>((resolve) => {
    const s = connect(Number(url.port), url.hostname, () => resolve(s));
  });
  socket.on('error', () => {});
  let text = '';
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
  const answer = new Promise<string>((resolve) => socket.on('close', () => resolve(text)));
  const head = Object.entries({ host: url.host, 'content-length': String(body.length), ...headers })
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  socket.write(`POST ${path} HTTP/1.1\r\n${head}\r\n`);
  socket.write(body.subarray(0, sent));
  return { socket, answer };
}

t.test('slow anonymous uploads (more than the pool holds) do not delay a keyed request', async (t) => {
  const pool = await startPool(t, { workers: 1, maxQueue: 4 });
  const { app } = await build(t, { pool, env: { API_KEYS_FILE: file, UPLOADS_PER_CLIENT: '100', UI_RATE_LIMIT_MAX: '1000', RATE_LIMIT_MAX: '1000' } });
  const base = await listen(app);
  const oldCapacity = pool.stats().workers + pool.stats().maxQueue; // the places uploads used to take
  const { payload, contentType } = await encodeForm(form(images.jpeg));
  const slow: Trickle[] = [];
  for (let i = 0; i < oldCapacity + 2; i++) slow.push(await trickle(base, '/ui/cartoonize', { 'content-type': contentType }, payload));
  t.teardown(() => slow.forEach((s) => s.socket.destroy()));
  await until(() => app.uploadBudget.stats().uploads === oldCapacity + 2, 'every slow upload to be admitted');

  const answer = await post(`${base}/api/cartoonize`, images.jpeg, { ...key, 'content-type': 'image/jpeg' });
  t.equal(answer.status, 200, 'the keyed request is served');
  const queued = Number(/queue;dur=([\d.]+)/.exec(answer.headers.get('server-timing') ?? '')?.[1]);
  t.ok(queued < 50, `it waited ${queued} ms for a worker: only its own work`);
  t.equal(pool.stats().busy + pool.stats().queued, 0, 'the slow uploads hold no inference place');
});

t.test('anonymous uploads get half the budget; a client gets UPLOADS_PER_CLIENT; keyed clients still get in', async (t) => {
  const pool = await startPool(t, { workers: 1, maxQueue: 4 });
  const { app } = await build(t, { pool, env: { API_KEYS_FILE: file, MAX_UPLOADS: '6', UPLOADS_PER_CLIENT: '2', UI_RATE_LIMIT_MAX: '1000', RATE_LIMIT_MAX: '1000' } });
  const base = await listen(app);
  const { payload, contentType } = await encodeForm(form(images.jpeg));
  const held: Trickle[] = [];
  t.teardown(() => held.forEach((s) => s.socket.destroy()));
  // One IP: the per-client cap (2) answers the third with 429.
  held.push(await trickle(base, '/ui/cartoonize', { 'content-type': contentType }, payload));
  held.push(await trickle(base, '/ui/cartoonize', { 'content-type': contentType }, payload));
  await until(() => app.uploadBudget.stats().uploads === 2, 'two uploads in flight');
  const third = await post(`${base}/ui/cartoonize`, form(images.jpeg));
  t.equal(third.status, 429, 'a third upload from the same client is refused');
  t.match(third.json(), { code: 'PTOON_TOO_MANY_UPLOADS' });
  t.ok(Number(third.headers.get('retry-after')) >= 1, 'with Retry-After');

  // A keyed client has its own count; anonymous uploads could take at most 3 of the 6 places.
  held.push(await trickle(base, '/api/cartoonize', { ...key, 'content-type': 'image/jpeg' }, images.jpeg));
  await until(() => app.uploadBudget.stats().uploads === 3, 'the keyed upload in flight');
  const served = await post(`${base}/api/cartoonize`, images.jpeg, { ...key, 'content-type': 'image/jpeg' });
  t.equal(served.status, 200, 'the keyed client still gets its second upload in');
  t.equal(app.uploadBudget.stats().uploads, 3, 'and its place is given back once answered');
});

t.test('the anonymous half of the budget is full: 503 for the page, keyed clients still admitted', async (t) => {
  const pool = await startPool(t, { workers: 1, maxQueue: 4 });
  const { app } = await build(t, { pool, env: { API_KEYS_FILE: file, MAX_UPLOADS: '4', UPLOADS_PER_CLIENT: '100', UI_RATE_LIMIT_MAX: '1000', RATE_LIMIT_MAX: '1000' } });
  const base = await listen(app);
  const { payload, contentType } = await encodeForm(form(images.jpeg));
  const held = [
    await trickle(base, '/ui/cartoonize', { 'content-type': contentType }, payload),
    await trickle(base, '/ui/cartoonize', { 'content-type': contentType }, payload),
  ];
  t.teardown(() => held.forEach((s) => s.socket.destroy()));
  await until(() => app.uploadBudget.stats().uploads === 2, 'two anonymous uploads in flight');
  const refused = await post(`${base}/ui/cartoonize`, form(images.jpeg));
  t.equal(refused.status, 503, 'a third anonymous upload finds no room');
  t.match(refused.json(), { code: 'PTOON_BUSY' });
  t.ok(Number(refused.headers.get('retry-after')) >= 1);
  t.equal((await post(`${base}/api/cartoonize`, images.jpeg, { ...key, 'content-type': 'image/jpeg' })).status, 200, 'a keyed upload is admitted');
});

t.test('an upload slower than UPLOAD_MIN_BYTES_PER_S, or stalled, is cut with 408 and its connection closed', async (t) => {
  const pool = await startPool(t, { workers: 1, maxQueue: 4 });
  const { app } = await build(t, { pool, env: { API_KEYS_FILE: file, UPLOAD_MIN_BYTES_PER_S: '4096', UPLOAD_RATE_WINDOW_MS: '2000', RATE_LIMIT_MAX: '1000', UI_RATE_LIMIT_MAX: '1000' } });
  const base = await listen(app);
  const { payload, contentType } = await encodeForm(form(images.jpeg));
  const cases: [string, string, Record<string, string>, Buffer][] = [
    ['raw body', '/api/cartoonize', { ...key, 'content-type': 'image/jpeg' }, images.jpeg],
    ['multipart', '/api/cartoonize', { ...key, 'content-type': contentType }, payload],
    ['web page', '/ui/cartoonize', { 'content-type': contentType }, payload],
  ];
  for (const [name, path, headers, body] of cases) {
    const started = Date.now();
    const slow = await trickle(base, path, headers, body);
    const answer = await slow.answer;
    const took = Date.now() - started;
    t.match(answer, /^HTTP\/1\.1 408 /, `${name}: 408`);
    t.match(answer, /PTOON_UPLOAD_TOO_SLOW/, `${name}: coded`);
    t.match(answer.toLowerCase(), /connection: close/, `${name}: the connection is closed`);
    t.ok(took >= 2000 && took < 6000, `${name}: cut after ${took} ms (window 2 s)`);
  }
  t.equal(app.uploadBudget.stats().uploads, 0, 'no upload place is left held');
  t.equal(app.uploadBudget.stats().cutTooSlow, 3);
  t.equal(pool.stats().completed, 0, 'none of them reached the pool');

  // A steady upload above the rate is not cut, however long it takes.
  const steady = await trickle(base, '/api/cartoonize', { ...key, 'content-type': 'image/jpeg' }, images.jpeg, 0);
  for (let sent = 0; sent < images.jpeg.length; sent += 2048) {
    steady.socket.write(images.jpeg.subarray(sent, sent + 2048));
    await sleep(250); // 8 KiB/s, twice the minimum
  }
  t.match(await Promise.race([steady.answer, sleep(8000).then(() => 'still open')]), /still open|^HTTP\/1\.1 200 /);
  steady.socket.destroy();
});

t.test('a client that hangs up once its body is sent, while the pool is busy, gets no inference run', async (t) => {
  const pool = await startPool(t, { workers: 1, maxQueue: 8, faults: true });
  const { app } = await build(t, { pool, env: { API_KEYS_FILE: file, RATE_LIMIT_MAX: '1000', REQUEST_DEADLINE_MS: '1500' } });
  const base = await listen(app);
  const before = pool.stats().completed;
  // The only worker is held (the hang ends at the deadline, without completing), so every request below would queue.
  const busy = post(`${base}/api/cartoonize`, withFault(images.jpeg, 'hang'), { ...key, 'content-type': 'image/jpeg' });
  await until(() => pool.stats().busy === 1, 'the worker to be busy');
  // A large photo: reading its form takes many turns of the event loop, during which the hang-up arrives.
  const photo = await noisyJpeg(1600, 1200);
  const { payload, contentType } = await encodeForm(form(photo));
  for (let i = 0; i < 4; i++) {
    const [type, body] = i % 2 === 0 ? [contentType, payload] : ['image/jpeg', photo];
    const gone = await trickle(base, '/api/cartoonize', { ...key, 'content-type': type }, body, body.length);
    gone.socket.end(); // hang up at once: the server sees it while it reads the body, before the handler runs
  }
  t.equal((await busy).status, 504);
  await until(() => pool.stats().busy === 0 && pool.stats().queued === 0, 'the pool to be idle', 10_000);
  t.equal(pool.stats().completed, before, 'no inference was run for the clients that had gone');
  await until(() => pool.ready, 'the worker to be replaced', 10_000);
  t.equal((await post(`${base}/api/cartoonize`, images.jpeg, { ...key, 'content-type': 'image/jpeg' })).status, 200, 'the next client is served');
});

t.test('a form with three large files in "image" gets the documented 400, not a broken pipe', async (t) => {
  const pool = await startPool(t, { workers: 1, maxQueue: 4 });
  const { app } = await build(t, { pool, env: { API_KEYS_FILE: file, RATE_LIMIT_MAX: '1000' } });
  const base = await listen(app);
  const big = Buffer.concat([images.jpeg, Buffer.alloc(3_000_000, 7)]);
  const body = new FormData();
  for (let i = 0; i < 3; i++) body.append('image', new Blob([big], { type: 'image/jpeg' }), `photo${i}.jpg`);
  const answer = await post(`${base}/api/cartoonize`, body, key).catch((err: Error) => err);
  t.notOk(answer instanceof Error, `the client reads an answer (${answer instanceof Error ? String(answer.cause ?? answer) : 'ok'})`);
  if (answer instanceof Error) return;
  t.equal(answer.status, 400);
  t.match(answer.json(), { code: 'PTOON_BAD_REQUEST', message: /exactly one file/ });
  t.equal((await post(`${base}/api/cartoonize`, images.jpeg, { ...key, 'content-type': 'image/jpeg' })).status, 200, 'and the next request is served');
});

t.test('a fast upload is never cut, even with the shortest rate window', async (t) => {
  const pool = await startPool(t, { workers: 1, maxQueue: 4 });
  const { app } = await build(t, { pool, env: { API_KEYS_FILE: file, RATE_LIMIT_MAX: '1000', UPLOAD_MIN_BYTES_PER_S: '1024', UPLOAD_RATE_WINDOW_MS: '1000' } });
  const base = await listen(app);
  const big = Buffer.concat([images.jpeg, Buffer.alloc(2_000_000, 7)]); // a valid JPEG with trailing bytes: 2 MB
  const steady = await trickle(base, '/api/cartoonize', { ...key, 'content-type': 'image/jpeg' }, big, 0);
  for (let sent = 0; sent < big.length; sent += 256 * 1024) {
    steady.socket.write(big.subarray(sent, sent + 256 * 1024));
    await sleep(200); // about 1.3 MB/s, over about 1.6 s: more than one window
  }
  const answer = await steady.answer;
  t.notMatch(answer, /^HTTP\/1\.1 408/, 'not cut');
  t.equal(app.uploadBudget.stats().cutTooSlow, 0);
});
