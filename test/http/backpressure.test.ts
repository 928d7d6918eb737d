/**
 * Overload and faults over real HTTP, with one worker and room for one waiting task:
 *  - a client that disconnects while queued has its task dropped (abortedQueued rises, the queue empties);
 *  - a full queue answers 503 + Retry-After at once, before the upload is read, while /healthz answers quickly;
 *  - a task past the deadline is 504 (the deadline covers the wait too), a worker that throws or dies is 500, and
 *    the server carries on.
 * The pool runs the fault-injecting worker (test/fixtures/faults.ts): a worker is kept busy by an upload marked 'hang'.
 */
import { request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import t from 'tap';
import { withFault } from '../fixtures/faults.js';
import { build, encodeForm, fixtures, form, listen, post, sleep, startPool, waitUntilReady, writeKeys } from '../helper.js';

const DEADLINE_MS = 1500;
const pool = await startPool(t, { workers: 1, maxQueue: 1, faults: true });
const images = await fixtures();
const { file, keys } = writeKeys(t, ['alice']);
const key = { 'x-api-key': keys['alice']! };
const { app } = await build(t, {
  pool,
  env: { API_KEYS_FILE: file, REQUEST_DEADLINE_MS: String(DEADLINE_MS), RATE_LIMIT_MAX: '1000', UPLOADS_PER_CLIENT: '16' },
});
const base = await listen(app);
const api = `${base}/api/cartoonize`;

async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/**
 * Waits for a quiet, ready pool: a task answered 504 at its deadline may still hold its worker for a moment (it is
 * cancelled, and its thread ended only if it is found in JavaScript: pool/inference-pool.ts), then the worker is replaced.
 */
async function quiet(): Promise<void> {
  await until(() => pool.stats().busy === 0 && pool.stats().queued === 0, 'an idle pool');
  await waitUntilReady(pool);
}

/** Occupies the only worker until the deadline answers 504 and the hung task's thread is ended. */
function hang() {
  return post(api, form(withFault(images.jpeg, 'hang')), key);
}

t.test('a client that disconnects while queued has its task dropped', async (t) => {
  await quiet();
  const before = pool.stats();
  const busy = hang();
  await until(() => pool.stats().busy === 1, 'the worker to be busy');

  const { payload, contentType } = await encodeForm(form(images.jpeg));
  const req = httpRequest(api, { method: 'POST', headers: { ...key, 'content-type': contentType, 'content-length': payload.length } });
  req.on('error', () => {}); // we are about to break it
  req.end(payload);
  await until(() => pool.stats().queued === 1, 'the second task to be queued');
  req.destroy();

  await until(() => pool.stats().abortedQueued === before.abortedQueued + 1, 'the queued task to be dropped');
  t.equal(pool.stats().queued, 0, 'the queue is empty again');
  t.equal(pool.stats().busy, 1, 'the running task was not disturbed');

  const answer = await busy;
  t.equal(answer.status, 504, 'the hung task hits the deadline');
  t.match(answer.json(), { code: 'PTOON_DEADLINE', message: new RegExp(`${DEADLINE_MS} ms`) });
});

t.test('a full queue answers 503 + Retry-After at once, and health checks stay quick', async (t) => {
  await quiet();
  const rejectedBefore = pool.stats().rejectedBusy;
  const busy = hang();
  await until(() => pool.stats().busy === 1, 'the worker to be busy');
  const queued = post(api, form(images.jpeg), key);
  await until(() => pool.stats().queued === 1, 'the queue to be full');
  t.equal(pool.saturated, true);

  const started = Date.now();
  // A big body: it is refused before it is read, so the answer comes as fast as for a small one.
  const refused = await post(api, form(Buffer.concat([images.jpeg, Buffer.alloc(4 * 1024 * 1024)])), key);
  const refusedMs = Date.now() - started;
  t.equal(refused.status, 503);
  t.match(refused.json(), { statusCode: 503, code: 'PTOON_BUSY', error: 'Service Unavailable', message: /retry after \d+ s/ });
  const retryAfter = Number(refused.headers.get('retry-after'));
  t.ok(retryAfter >= 1, `Retry-After: ${retryAfter}`);
  t.equal(refused.json()['retryAfter'], retryAfter);
  t.ok(refusedMs < 1000, `refused in ${refusedMs} ms`);
  t.equal(refused.headers.get('connection'), 'close', 'the unread upload is not drained: the connection closes');
  t.equal(pool.stats().rejectedBusy, rejectedBefore + 1, 'refused when it asked the pool for a place, before its body was read');
  t.equal(app.uploadBudget.stats().uploads, 0, 'no upload place is left held by the refused request');

  const raw = await post(api, images.jpeg, { ...key, 'content-type': 'image/jpeg' });
  t.equal(raw.status, 503, 'raw bodies too');

  const healthStarted = Date.now();
  const health = await fetch(`${base}/healthz`);
  t.equal(health.status, 200);
  t.ok(Date.now() - healthStarted < 200, 'healthz answers at once');
  t.equal((await fetch(`${base}/readyz`)).status, 200, 'busy is not unready');
  t.equal((await fetch(`${base}/api/styles`)).status, 200, 'cheap routes keep answering');

  t.equal((await busy).status, 504);
  // The deadline bounds waiting and running together: the queued request, stuck behind the hung one, runs out too.
  const after = await queued;
  t.equal(after.status, 504, 'the queued request is answered (its deadline covers the wait)');
  await quiet();
  t.equal((await post(api, form(images.jpeg), key)).status, 200, 'and the next one is served');
});

t.test('worker faults are 500s and the server carries on', async (t) => {
  for (const fault of ['throw', 'exit'] as const) {
    await quiet();
    const crashesBefore = pool.stats().workerCrashes;
    const res = await post(api, form(withFault(images.jpeg, fault)), key);
    t.equal(res.status, 500, fault);
    t.match(res.json(), { status: 500, code: 'PTOON_WORKER_FAILED', title: 'Inference failed', detail: 'Inference failed', statusCode: 500, error: 'Internal Server Error', message: 'Inference failed' });
    if (fault === 'exit') t.equal(pool.stats().workerCrashes, crashesBefore + 1, 'the crash is counted');
    await waitUntilReady(pool);
    t.equal((await post(api, form(images.jpeg), key)).status, 200, `after ${fault}: served again`);
  }
});

t.test('uploads in flight take no inference place: stalled uploads beyond workers + queue leave the pool free', async (t) => {
  await quiet();
  const capacity = pool.stats().workers + pool.stats().maxQueue;
  // Open uploads that send headers and part of the body, then stall: each holds an upload place, not a pool place.
  const url = new URL(api);
  const sockets = await Promise.all(
    Array.from({ length: capacity + 2 }, () =>
      new Promise<Socket>((resolve) => {
        const socket = connect(Number(url.port), url.hostname, () => {
          socket.write(
            `POST ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nX-API-Key: ${key['x-api-key']}\r\n` +
              `Content-Type: image/jpeg\r\nContent-Length: ${images.jpeg.length}\r\n\r\n`,
          );
          socket.write(images.jpeg.subarray(0, 100));
          resolve(socket);
        });
        socket.on('error', () => {});
      }),
    ),
  );
  await until(() => app.uploadBudget.stats().uploads === capacity + 2, 'every stalled upload to hold an upload place');
  t.equal(pool.saturated, false, 'the stalled uploads hold no inference place');
  const served = await post(api, images.jpeg, { ...key, 'content-type': 'image/jpeg' });
  t.equal(served.status, 200, 'a complete upload is served meanwhile');
  for (const socket of sockets) socket.destroy();
  await until(() => app.uploadBudget.stats().uploads === 0, 'the upload places to be given back when the clients hang up');
});
