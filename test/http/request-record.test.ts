/**
 * One record per request (plugins/request-record.ts), over real HTTP with one worker:
 *  - an answered request gets exactly one frozen record, with what the log line and the metrics read from it;
 *  - a client that leaves while queued, or in the middle of its upload, gets exactly one record, `aborted`, 499,
 *    PTOON_ABORTED; its inference is cancelled and its upload place given back (both driven by the same end);
 *  - a request carries one 'close' listener on its response, whatever the route did;
 *  - a consumer that throws is logged and skipped: the others still get the record, and the server carries on;
 *  - a result that arrives after its client left is wiped at once (work asked for after the end runs at once).
 */
import { ServerResponse, request as httpRequest } from 'node:http';
import t from 'tap';
import type { RequestRecord } from '../../plugins/request-record.js';
import { ROOT, build, encodeForm, fakePool, fixtures, form, listen, post, sleep, startPool, waitUntilReady, writeKeys } from '../helper.js';
import { withFault } from '../fixtures/faults.js';
import { CAN_FREE_EARLY } from '../../wipe.js';

const added = new WeakMap<object, Map<string | symbol, number>>();
// Counts the end-of-response listeners ('close', 'finish') the project's own code adds to each server response
// (Fastify's and the multipart parser's own are theirs), from the caller's frame, before the app starts answering.
type On = (this: object, event: string | symbol, ...rest: unknown[]) => unknown;
const proto = ServerResponse.prototype as unknown as Record<'on' | 'addListener', On>;
const original = proto.on;
const ownCode = new RegExp(`${ROOT.replace(/\/?$/, '/').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?!node_modules/|test/)`);
function counting(this: object, event: string | symbol, ...rest: unknown[]): unknown {
  if ((event === 'close' || event === 'finish') && ownCode.test(new Error().stack ?? '')) {
    const counts = added.get(this) ?? new Map<string | symbol, number>();
    counts.set(event, (counts.get(event) ?? 0) + 1);
    added.set(this, counts);
  }
  return original.call(this, event, ...rest);
}
proto.on = counting;
proto.addListener = counting;
t.teardown(() => {
  delete (proto as Partial<typeof proto>).on;
  delete (proto as Partial<typeof proto>).addListener;
});

const pool = await startPool(t, { workers: 1, maxQueue: 1, faults: true });
const images = await fixtures();
const { file, keys } = writeKeys(t, ['alice']);
const key = { 'x-api-key': keys['alice']! };
const { app, logs } = await build(t, { pool, env: { API_KEYS_FILE: file, REQUEST_DEADLINE_MS: '1000', LOG_LEVEL: 'info' } });
const base = await listen(app);
const api = `${base}/api/cartoonize`;

const records: RequestRecord[] = [];
app.requestRecords.subscribe((record) => records.push(record));
const responses: ServerResponse[] = [];
app.server.on('request', (_req, res: ServerResponse) => responses.push(res));

async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** The records of the request with this id (X-Request-Id), once the server has written them. */
async function recordsOf(id: string): Promise<RequestRecord[]> {
  await until(() => records.some((r) => r.id === id), `the record of ${id}`);
  await sleep(20); // a second record would come within a tick or two
  return records.filter((r) => r.id === id);
}

/** Starts an upload under a chosen request id and returns the means to break it. */
async function startUpload(id: string, bytes: Buffer, sendAll: boolean) {
  const { payload, contentType } = await encodeForm(form(bytes));
  const req = httpRequest(api, { method: 'POST', headers: { ...key, 'x-request-id': id, 'content-type': contentType, 'content-length': payload.length } });
  req.on('error', () => {}); // we are about to break it
  if (sendAll) req.end(payload);
  else req.write(payload.subarray(0, payload.length >> 1));
  return req;
}

t.test('an answered request: one frozen record, one close listener', async (t) => {
  await waitUntilReady(pool);
  const answer = await post(api, form(images.jpeg), key);
  t.equal(answer.status, 200);
  const id = answer.headers.get('x-request-id')!;
  const [record, ...more] = await recordsOf(id);
  t.equal(more.length, 0, 'exactly one record');
  t.match(record, {
    route: '/api/cartoonize',
    method: 'POST',
    status: 200,
    outcome: 'answered',
    code: undefined,
    keyId: 'alice',
    reqBytes: Number,
    resBytes: Number(answer.headers.get('content-length')),
    inference: { style: 'toon', queueMs: Number, timings: { infer: Number }, faces: Number },
  });
  t.ok(record!.durationMs > 0, 'a duration');
  t.ok(Object.isFrozen(record) && Object.isFrozen(record!.inference) && Object.isFrozen(record!.inference!.timings), 'frozen, note included');
  t.throws(() => {
    (record as { status: number }).status = 500;
  }, 'a consumer cannot amend it');

  const counts = added.get(responses.at(-1)!)!;
  t.comment(`end-of-response listeners our code added: ${JSON.stringify(Object.fromEntries(counts))}`);
  t.equal(counts.get('close'), 1, "one 'close' listener (plugins/request-record.ts), though the upload budget and the route wait for the end too");
  t.equal(counts.get('finish'), 1, "one 'finish' listener (plugins/scrub.ts, which must run in the tick Node drops an unread body)");
});

t.test('an injected request (app.inject, no socket) is answered, once', async (t) => {
  const answer = await app.inject({ url: '/healthz', headers: { 'x-request-id': 'injected-1' } });
  t.equal(answer.statusCode, 200);
  t.match(await recordsOf('injected-1'), [{ route: '/healthz', method: 'GET', status: 200, outcome: 'answered', code: undefined }]);
  t.equal((await recordsOf('injected-1')).length, 1, 'one record, not an answered one and an aborted one');
});

t.test('a client that leaves while queued: one aborted record, its task dropped', async (t) => {
  await waitUntilReady(pool);
  const abortedBefore = pool.stats().abortedQueued;
  const hung = post(api, form(withFault(images.jpeg, 'hang')), key);
  await until(() => pool.stats().busy === 1, 'the worker to be busy');
  const gone = await startUpload('left-while-queued', images.jpeg, true);
  await until(() => pool.stats().queued === 1, 'the task to be queued');
  gone.destroy();
  await until(() => pool.stats().abortedQueued === abortedBefore + 1, 'the queued task to be dropped (clientGone)');

  const [record, ...more] = await recordsOf('left-while-queued');
  t.equal(more.length, 0, 'exactly one record, though the handler went on to fail with PTOON_ABORTED');
  t.match(record, { route: '/api/cartoonize', status: 499, outcome: 'aborted', code: 'PTOON_ABORTED', keyId: 'alice', resBytes: 0, inference: undefined });
  t.equal((await hung).status, 504);
  const deadline = await recordsOf((await hung).headers.get('x-request-id')!);
  t.match(deadline, [{ status: 504, outcome: 'answered', code: 'PTOON_DEADLINE' }], 'an error answer is answered, not aborted');
  await until(() => pool.stats().busy === 0, 'the hung task to end');
  await waitUntilReady(pool);
});

t.test('a client that leaves mid-upload: one aborted record, its upload place given back', async (t) => {
  const gone = await startUpload('left-mid-upload', images.jpeg, false);
  await until(() => app.uploadBudget.stats().uploads === 1, 'the upload to be admitted');
  gone.destroy();
  await until(() => app.uploadBudget.stats().uploads === 0, 'the upload place to be given back');
  t.equal(app.uploadBudget.stats().bytes, 0);
  t.match(await recordsOf('left-mid-upload'), [{ status: 499, outcome: 'aborted', code: 'PTOON_ABORTED' }]);
});

t.test('a consumer that throws is logged and skipped', async (t) => {
  app.requestRecords.subscribe(() => {
    throw new Error('consumer bug');
  });
  const seen: RequestRecord[] = [];
  app.requestRecords.subscribe((record) => seen.push(record));
  const answer = await fetch(`${base}/healthz`);
  t.equal(answer.status, 200);
  const id = answer.headers.get('x-request-id')!;
  await until(() => seen.some((r) => r.id === id), 'the later consumer to get the record');
  t.ok(
    logs.records().some((l) => l['reqId'] === id && l['msg'] === 'request record consumer failed'),
    'the failure is logged against the request',
  );
  t.equal((await fetch(`${base}/healthz`)).status, 200, 'the server carries on');
});

t.test('a result that arrives after its client left is wiped at once', async (t) => {
  // A task that runs on after the hang-up (as a running one does: pool/inference-pool.ts), then hands back its result.
  const result = new ArrayBuffer(4096);
  new Uint8Array(result).fill(0xab);
  let running = false;
  let finished = false;
  const slow = fakePool({
    run: async (_bytes: Buffer, _task: unknown, opts: { signal: AbortSignal }) => {
      running = true;
      await new Promise((resolve) => opts.signal.addEventListener('abort', resolve, { once: true }));
      await sleep(20);
      finished = true;
      return { output: result, mime: 'image/jpeg', queueMs: 0, timings: { infer: 1 }, faces: 0 };
    },
  });
  const { app: other } = await build(t, { pool: slow, env: { API_KEYS_FILE: file } });
  const otherBase = await listen(other);
  const { payload, contentType } = await encodeForm(form(images.jpeg));
  const req = httpRequest(`${otherBase}/api/cartoonize`, { method: 'POST', headers: { ...key, 'content-type': contentType, 'content-length': payload.length } });
  req.on('error', () => {});
  req.end(payload);
  await until(() => running, 'the task to run');
  req.destroy();
  await until(() => finished, 'the task to hand back its result');
  // Zero-filled, or freed outright where the runtime can (wipe.ts): its buffer is then empty.
  const wiped = () => result.byteLength === 0 || new Uint8Array(result).every((b) => b === 0);
  for (let waited = 0; !wiped() && waited < 2000; waited += 10) await sleep(10);
  t.ok(wiped(), 'the result is zero-filled, though its client left before it existed');
});

t.test('a result is wiped and, where the runtime can, freed once the socket has the answer, and the answer is whole', async (t) => {
  const bytes = Buffer.alloc(200_000); // larger than a socket takes at once: the answer is written in several pieces
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7) & 0xff;
  const results: ArrayBuffer[] = [];
  const echo = fakePool({
    run: async () => {
      const output = new ArrayBuffer(bytes.length);
      new Uint8Array(output).set(bytes);
      results.push(output);
      return { output, mime: 'image/jpeg', queueMs: 0, timings: { infer: 1 }, faces: 0 };
    },
  });
  const { app: other } = await build(t, { pool: echo, env: { API_KEYS_FILE: file } });
  const otherBase = await listen(other);
  for (let i = 0; i < 3; i++) {
    const answer = await post(`${otherBase}/api/cartoonize`, images.jpeg, { ...key, 'content-type': 'image/jpeg' });
    t.equal(answer.status, 200);
    t.ok(answer.body.equals(bytes), `answer ${i + 1}: every byte arrived as it was`);
  }
  const gone = (output: ArrayBuffer) => (CAN_FREE_EARLY ? output.byteLength === 0 : new Uint8Array(output).every((b) => b === 0));
  for (let waited = 0; !results.every(gone) && waited < 2000; waited += 10) await sleep(10);
  t.equal(results.length, 3);
  t.ok(results.every(gone), CAN_FREE_EARLY ? 'each result was freed (detached) once answered' : 'each result was zero-filled once answered');
});
