/**
 * Errors as RFC 9457 problems, request ids, and the caching headers of JSON answers: the shape of every error, the
 * problem-type catalogue against the error classes, X-Request-Id in and out, and GET /problems/<code>.
 */
import t from 'tap';
import * as errors from '../../errors.js';
import { ERROR_CLASSES, ERROR_CODES, inputError, PROBLEMS } from '../../errors.js';
import { build, fakePool, fixtures, listen, writeKeys } from '../helper.js';

const images = await fixtures();
const { file, keys } = writeKeys(t, ['alice']);

t.test('every code in the table has its class, with its status, and every class its row', async (t) => {
  type ErrorClass = new (...args: unknown[]) => Error & { code: string; statusCode: number };
  // Every coded class errors.ts exports, found by making one: none may be left out of ERROR_CLASSES.
  const exported = (Object.values(errors) as unknown[]).filter((value): value is ErrorClass => {
    if (typeof value !== 'function') return false;
    try {
      const made = new (value as ErrorClass)('x');
      return made instanceof Error && typeof made.code === 'string' && made.code.startsWith('PTOON_');
    } catch {
      return false; // not an error class
    }
  });
  const classes = new Set<unknown>(Object.values(ERROR_CLASSES));
  for (const Class of exported) t.ok(classes.has(Class), `${new Class('x').code}'s class is in ERROR_CLASSES`);
  t.same(Object.keys(ERROR_CLASSES).sort(), Object.keys(ERROR_CODES).sort(), 'a class for every code, a code for every class');
  for (const [code, Class] of Object.entries(ERROR_CLASSES)) {
    const made = new Class('x');
    t.equal(made.code, code, `${code}: the class makes its own code`);
    t.equal(made.statusCode, ERROR_CODES[code as keyof typeof ERROR_CODES].status, `${code}: the status of its row`);
  }
  t.equal(classes.size, Object.keys(ERROR_CLASSES).length, 'no class serves two codes');
});

t.test('the problem catalogue is every code a client can be answered with', async (t) => {
  const unanswered = Object.keys(ERROR_CODES).filter((code) => !Object.hasOwn(PROBLEMS, code));
  t.same(unanswered, ['PTOON_ABORTED'], 'only the client-gone code is not a problem type');
  for (const [code, problem] of Object.entries(PROBLEMS)) {
    t.ok(problem.status >= 400 && problem.status < 600, `${code}: an error status`);
    t.ok(problem.title.length > 0 && problem.description.length > 0, `${code}: a title and a description`);
  }
});

t.test("a worker's code is the public one: the pool builds its class from it, keeping the worker's message", async (t) => {
  const bad = inputError('PTOON_BAD_IMAGE', 'The JPEG image could not be read: it is damaged or truncated');
  t.ok(bad instanceof ERROR_CLASSES.PTOON_BAD_IMAGE);
  t.match(bad, { code: 'PTOON_BAD_IMAGE', statusCode: 422, message: 'The JPEG image could not be read: it is damaged or truncated' });
  t.match(inputError('PTOON_UNSUPPORTED_MEDIA', 'The upload is SVG'), { code: 'PTOON_UNSUPPORTED_MEDIA', statusCode: 415 });
  t.match(inputError('PTOON_UNKNOWN_STYLE', 'nope'), { code: 'PTOON_UNKNOWN_STYLE', statusCode: 400, message: 'Unknown style "nope"' }, 'the style id fills the class\'s message');
});

t.test('errors are application/problem+json with instance = X-Request-Id, no-store, and the old members kept', async (t) => {
  const { app } = await build(t, { pool: fakePool(), env: { API_KEYS_FILE: file } });
  const res = await app.inject({ method: 'POST', url: '/api/cartoonize?quality=500', headers: { 'x-api-key': keys['alice']!, 'content-type': 'image/jpeg' }, payload: images.jpeg });
  t.equal(res.statusCode, 400);
  t.match(res.headers['content-type'], /^application\/problem\+json(; charset=utf-8)?$/);
  t.equal(res.headers['cache-control'], 'no-store');
  const body = res.json();
  t.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/, 'an id of ours');
  t.same(body, {
    type: '/problems/PTOON_BAD_OPTION',
    title: 'Bad option',
    status: 400,
    detail: 'quality must be <= 100',
    instance: res.headers['x-request-id'],
    code: 'PTOON_BAD_OPTION',
    statusCode: 400,
    error: 'Bad Request',
    message: 'quality must be <= 100',
  });

  const busy = await app.inject({ method: 'POST', url: '/api/cartoonize', headers: { 'x-api-key': 'ptk_nope', 'content-type': 'image/jpeg' }, payload: images.jpeg });
  t.equal(busy.statusCode, 401);
  t.match(busy.json(), { type: '/problems/PTOON_BAD_KEY', title: 'API key not valid', status: 401 });
});

t.test('X-Request-Id: a plain token is kept, anything else replaced; the bad-URL answer has one too', async (t) => {
  const { app } = await build(t, { pool: fakePool(), env: { API_KEYS_FILE: file } });
  const nginxId = '0123456789abcdef0123456789abcdef';
  const kept = await app.inject({ url: '/nope', headers: { 'x-request-id': nginxId } });
  t.equal(kept.headers['x-request-id'], nginxId, "nginx's $request_id is kept");
  t.equal(kept.json().instance, nginxId, 'and is the problem instance');
  for (const bad of ['a'.repeat(129), 'bad id', 'x"y', '-starts-with-dash', 'ü', 'a\tb', '../etc']) {
    const res = await app.inject({ url: '/healthz', headers: { 'x-request-id': bad } });
    t.not(res.headers['x-request-id'], bad, `${JSON.stringify(bad.slice(0, 20))} is replaced`);
    t.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/);
  }
  t.equal((await app.inject({ url: '/healthz', headers: { 'x-request-id': 'a'.repeat(128) } })).headers['x-request-id'], 'a'.repeat(128), '128 characters is the bound');
  const badUrl = await app.inject({ url: '/api/%zz', headers: { 'x-request-id': 'req-42' } });
  t.equal(badUrl.statusCode, 400);
  t.equal(badUrl.headers['x-request-id'], 'req-42', 'errors raised before routing carry the id too');
  t.equal(badUrl.json().instance, 'req-42');
});

t.test('the request id is in the log line, so proxy and service logs join', async (t) => {
  const { app, logs } = await build(t, { pool: fakePool(), env: { API_KEYS_FILE: file, LOG_LEVEL: 'info' } });
  await app.inject({ url: '/api/styles', headers: { 'x-request-id': 'join-me-7' } });
  t.ok(logs.records().some((r) => r['reqId'] === 'join-me-7' && r['msg'] === 'request'), 'reqId in the request line');
});

t.test('GET /problems/<code> describes each type; JSON answers say how to cache them', async (t) => {
  const { app } = await build(t, { pool: fakePool(), env: { API_KEYS_FILE: file } });
  const base = await listen(app);
  // Resolve `type` as a client would, against the URL that answered.
  const answer = await fetch(`${base}/api/cartoonize`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: images.jpeg });
  const type = new URL(((await answer.json()) as { type: string }).type, answer.url);
  const res = await fetch(type);
  t.equal(res.status, 200);
  t.equal(res.headers.get('cache-control'), 'public, max-age=86400');
  t.same(await res.json(), { type: '/problems/PTOON_NO_KEY', code: 'PTOON_NO_KEY', status: 401, title: PROBLEMS.PTOON_NO_KEY.title, description: PROBLEMS.PTOON_NO_KEY.description });
  t.equal((await fetch(`${base}/problems/PTOON_NOPE`)).status, 404);
  t.equal((await fetch(`${base}/api/styles`)).headers.get('cache-control'), 'no-cache', 'styles: revalidate');
  for (const path of ['/healthz', '/readyz', '/openapi.json']) {
    t.equal((await fetch(`${base}${path}`)).headers.get('cache-control'), 'no-store', `${path}: no-store`);
  }
});
