/**
 * The service around the inference route: health and readiness (including draining), security headers, the
 * OpenAPI document, the 404 and 500 shapes, and the web endpoint's same-origin rule. Most of it runs on a stand-in
 * pool (the HTTP layer alone); the closing pool's refusals and the web endpoint's successful calls use a real one.
 */
import { spawnSync } from 'node:child_process';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import t from 'tap';
import { build, encodeForm, fakePool, fixtures, form, startPool, writeKeys } from '../helper.js';

const images = await fixtures();
const { file, keys } = writeKeys(t, ['alice']);

t.test('healthz and readyz', async (t) => {
  const pool = fakePool();
  const { app } = await build(t, { pool, env: { API_KEYS_FILE: file } });
  const health = await app.inject({ url: '/healthz' });
  t.equal(health.statusCode, 200);
  t.same(health.json(), { status: 'ok' });
  t.match((await app.inject({ url: '/readyz' })).json(), { status: 'ready', workers: 1, readyWorkers: 1 });

  pool.ready = false;
  const notReady = await app.inject({ url: '/readyz' });
  t.equal(notReady.statusCode, 503, 'a worker is starting');
  t.match(notReady.json(), { statusCode: 503, code: 'PTOON_NOT_READY' });
  t.equal(notReady.headers['retry-after'], '7', 'Retry-After from the pool');
  t.equal((await app.inject({ url: '/healthz' })).statusCode, 200, 'alive all the same');
});

t.test('a closing pool (the real one): readiness 503, uploads refused, health still answers', async (t) => {
  const pool = await startPool(t);
  const { app } = await build(t, { pool, env: { API_KEYS_FILE: file } });
  const upload = () => app.inject({ method: 'POST', url: '/api/cartoonize', headers: { 'x-api-key': keys['alice']!, 'content-type': 'image/jpeg' }, payload: images.jpeg });
  t.equal((await upload()).statusCode, 200, 'served while open');
  t.equal((await app.inject({ url: '/readyz' })).statusCode, 200);

  const closed = pool.close();
  t.equal(pool.accepting, false);
  const ready = await app.inject({ url: '/readyz' });
  t.equal(ready.statusCode, 503, 'not ready once closing');
  t.match(ready.json(), { code: 'PTOON_NOT_READY' });
  const refused = await upload();
  t.equal(refused.statusCode, 503, 'uploads are refused while the pool is closing');
  t.match(refused.json(), { code: 'PTOON_NOT_READY' });
  t.ok(Number(refused.headers['retry-after']) >= 1, 'with Retry-After');
  t.equal((await app.inject({ url: '/healthz' })).statusCode, 200, 'alive all the same');
  await closed;
});

t.test('draining: readiness 503 at once, new work refused, health still answers', async (t) => {
  const { app } = await build(t, { pool: fakePool(), env: { API_KEYS_FILE: file } });
  app.drain();
  t.equal(app.draining, true);
  const ready = await app.inject({ url: '/readyz' });
  t.equal(ready.statusCode, 503);
  t.equal(ready.headers['connection'], 'close', 'clients are asked to go');
  t.equal((await app.inject({ url: '/healthz' })).statusCode, 200);
  const work = await app.inject({ method: 'POST', url: '/api/cartoonize', headers: { 'x-api-key': keys['alice']!, 'content-type': 'image/jpeg' }, payload: images.jpeg });
  t.equal(work.statusCode, 503);
  t.match(work.json(), { code: 'PTOON_NOT_READY' });
  t.ok(Number(work.headers['retry-after']) >= 1);
  t.equal((await app.inject({ url: '/api/styles' })).statusCode, 503);
});

t.test('withdrawn (the grace period after SIGTERM): readiness 503, everything else still served', async (t) => {
  const { app } = await build(t, { pool: fakePool(), env: { API_KEYS_FILE: file } });
  app.withdraw();
  t.equal(app.withdrawn, true);
  t.equal(app.draining, false, 'not draining yet');
  const ready = await app.inject({ url: '/readyz' });
  t.equal(ready.statusCode, 503, 'load balancers are told to stop sending');
  t.match(ready.json(), { code: 'PTOON_NOT_READY' });
  t.ok(Number(ready.headers['retry-after']) >= 1);
  t.equal((await app.inject({ url: '/healthz' })).statusCode, 200, 'alive: a liveness probe must not restart it');
  const styles = await app.inject({ url: '/api/styles' });
  t.equal(styles.statusCode, 200, 'requests are still served');
  t.not(styles.headers['connection'], 'close');
  app.drain();
  t.equal((await app.inject({ url: '/api/styles' })).statusCode, 503, 'until the drain begins');
});

t.test('security headers', async (t) => {
  const { app } = await build(t, { pool: fakePool(), env: { API_KEYS_FILE: file } });
  for (const url of ['/api/styles', '/nope']) {
    const res = await app.inject({ url });
    const csp = String(res.headers['content-security-policy']);
    t.match(csp, /default-src 'self'/, url);
    t.match(csp, /script-src 'self'(;|$)/);
    t.match(csp, /img-src 'self' blob: data:/);
    t.match(csp, /frame-ancestors 'none'/);
    t.match(csp, /object-src 'none'/);
    t.notMatch(csp, /unsafe-inline|unsafe-eval|https?:\/\//, 'no inline script, no third-party origin');
    t.equal(res.headers['x-content-type-options'], 'nosniff');
    t.equal(res.headers['referrer-policy'], 'no-referrer');
    t.equal(res.headers['x-frame-options'], 'DENY');
    t.notOk(res.headers['strict-transport-security'], 'no HSTS over plain HTTP');
    t.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/);
  }
});

t.test('security headers on every answer: a malformed URL, a rate-limited one, the shutdown 503', async (t) => {
  const { app } = await build(t, { pool: fakePool(), env: { API_KEYS_FILE: file, RATE_LIMIT_CHEAP_MAX: '1' } });
  const check = (res: { statusCode: number; headers: Record<string, unknown> }, what: string, status: number) => {
    t.equal(res.statusCode, status, what);
    t.match(String(res.headers['content-security-policy']), /default-src 'self'/, `${what}: CSP`);
    t.equal(res.headers['x-content-type-options'], 'nosniff', `${what}: nosniff`);
    t.equal(res.headers['x-frame-options'], 'DENY', `${what}: X-Frame-Options`);
  };
  check(await app.inject({ url: '/api/%' }), 'malformed URL', 400);
  await app.inject({ url: '/api/styles' });
  check(await app.inject({ url: '/api/styles' }), 'rate limited', 429);
  app.drain();
  check(await app.inject({ url: '/api/styles' }), 'shutting down', 503);
});

t.test('the OpenAPI document comes from the route schemas', async (t) => {
  const { app } = await build(t, { pool: fakePool(), env: { API_KEYS_FILE: file } });
  const res = await app.inject({ url: '/openapi.json' });
  t.equal(res.statusCode, 200);
  const doc = res.json() as {
    openapi: string;
    paths: Record<string, Record<string, { parameters?: { name: string; schema: Record<string, unknown> }[]; requestBody?: { content: Record<string, unknown> }; responses: Record<string, unknown> }>>;
  };
  t.match(doc.openapi, /^3\./);
  const op = doc.paths['/api/cartoonize']?.['post'];
  t.ok(op, 'POST /api/cartoonize is documented');
  t.same(Object.keys(op?.requestBody?.content ?? {}).sort(), ['image/jpeg', 'image/png', 'image/webp', 'multipart/form-data']);
  t.match(op?.parameters?.find((p) => p.name === 'quality')?.schema, { type: 'integer', minimum: 1, maximum: 100 });
  t.match(op?.parameters?.find((p) => p.name === 'format')?.schema, { enum: ['jpeg', 'jpg', 'png', 'webp', 'avif', 'auto'] });
  t.ok(op?.responses['200'], 'the image answer');
  t.match(JSON.stringify(op?.responses['200']), /image\/webp/);
  for (const status of ['400', '401', '413', '415', '422', '429', '500', '503', '504']) t.ok(op?.responses[status], `the ${status} answers`);
  t.match(JSON.stringify(op?.responses['413']), /PTOON_TOO_LARGE.*PTOON_TOO_MANY_PIXELS/, 'each status lists its codes');
  t.match(op?.responses['429'], { headers: { 'Retry-After': {}, 'RateLimit-Limit': {}, 'RateLimit-Policy': {} }, content: { 'application/problem+json': {} } });
  t.match(op?.responses['200'], { headers: { 'Server-Timing': {}, 'X-Faces': {}, 'RateLimit-Remaining': {} } });
  t.match(JSON.stringify(doc), /"#\/components\/schemas\/PtoonError"/, 'the problem schema has its own name');
  t.notMatch(JSON.stringify(doc), /def-\d/, 'no anonymous def-N schemas');
  t.ok(doc.paths['/ui/cartoonize']?.['post']?.requestBody?.content['multipart/form-data']);
  t.notOk(doc.paths['/ui/cartoonize']?.['post']?.requestBody?.content['image/jpeg'], 'the web endpoint takes forms only');
  for (const path of ['/api/styles', '/healthz', '/readyz']) t.ok(doc.paths[path], path);
  t.equal((await app.inject({ url: '/documentation' })).statusCode, 404, 'no swagger-ui (third-party assets)');
});

/** The whole problem body an answer must have: RFC 9457's members (instance = its X-Request-Id), then ours. */
function problem(res: { headers: Record<string, unknown> }, status: number, code: string, title: string, error: string, detail: string) {
  return { type: `/problems/${code}`, title, status, detail, instance: res.headers['x-request-id'], code, statusCode: status, error, message: detail };
}

t.test('404 and unexpected errors have the common shape and say nothing more', async (t) => {
  const failing = fakePool({
    run: async () => {
      throw new TypeError('Cannot read properties of undefined (at /srv/privatoon/secret-face-name.jpg)');
    },
  });
  const { app, logs } = await build(t, { pool: failing, env: { API_KEYS_FILE: file, LOG_LEVEL: 'info' } });
  const missing = await app.inject({ url: '/api/nothing-here?api_key=x' });
  t.equal(missing.statusCode, 404);
  t.same(missing.json(), problem(missing, 404, 'PTOON_NOT_FOUND', 'No such endpoint', 'Not Found', 'No such endpoint; see /openapi.json'));

  const badUrl = await app.inject({ url: '/api/%zz-secret' });
  t.equal(badUrl.statusCode, 400);
  t.same(badUrl.json(), problem(badUrl, 400, 'PTOON_BAD_REQUEST', 'Bad request', 'Bad Request', 'The URL is not valid'));

  const boom = await app.inject({ method: 'POST', url: '/api/cartoonize', headers: { 'x-api-key': keys['alice']!, 'content-type': 'image/jpeg' }, payload: images.jpeg });
  t.equal(boom.statusCode, 500);
  t.same(boom.json(), problem(boom, 500, 'PTOON_INTERNAL', 'Internal error', 'Internal Server Error', 'Internal error'));
  t.match(logs.text, /"unexpected error"/, 'the operator sees that something broke');
  t.match(logs.text, /"type":"TypeError"/, 'with its kind and where it was thrown');
  t.notMatch(logs.text, /api_key/, 'the query string is not logged');
  t.notMatch(logs.text, /secret-face-name|Cannot read/, 'messages of errors we did not make are not logged (they may quote input)');
});

t.test('the web endpoint: same origin only, forms only, no key', async (t) => {
  const pool = await startPool(t);
  const { payload, contentType } = await encodeForm(form(images.jpeg));
  const { app } = await build(t, { pool, env: { API_KEYS_FILE: file, UI_RATE_LIMIT_MAX: '100' } });
  const ui = (headers: Record<string, string>, body: Buffer = payload, type = contentType) =>
    app.inject({ method: 'POST', url: '/ui/cartoonize', headers: { host: 'toon.test:8080', 'content-type': type, ...headers }, payload: Buffer.from(body) });

  t.equal((await ui({})).statusCode, 200, 'no browser headers (curl): allowed, by the IP limit alone');
  const ok = await ui({ 'sec-fetch-site': 'same-origin', origin: 'http://toon.test:8080' });
  t.equal(ok.statusCode, 200, 'our own page');
  t.equal(ok.headers['content-type'], 'image/jpeg');
  t.equal(ok.headers['cache-control'], 'no-store');
  for (const [headers, why] of [
    [{ 'sec-fetch-site': 'cross-site' }, 'another site'],
    [{ 'sec-fetch-site': 'same-site' }, 'a sibling subdomain'],
    [{ 'sec-fetch-site': 'none' }, 'typed or bookmarked'],
    [{ origin: 'http://evil.example' }, 'a foreign Origin'],
    [{ origin: 'https://toon.test:8080' }, 'another scheme'],
    [{ origin: 'null' }, 'an opaque origin'],
    [{ 'sec-fetch-site': 'same-origin', origin: 'http://evil.example' }, 'headers that disagree'],
  ] as const) {
    const res = await ui(headers);
    t.equal(res.statusCode, 403, why);
    t.match(res.json(), { code: 'PTOON_CROSS_ORIGIN' });
  }
  const rawBody = await ui({}, images.jpeg, 'image/jpeg');
  t.equal(rawBody.statusCode, 415, 'raw bodies are for the API');

  const { app: behindProxy } = await build(t, { pool, env: { API_KEYS_FILE: file, PUBLIC_ORIGIN: 'https://toon.example.org' } });
  const proxied = (origin: string) =>
    behindProxy.inject({ method: 'POST', url: '/ui/cartoonize', headers: { host: '127.0.0.1:8080', origin, 'content-type': contentType }, payload: Buffer.from(payload) });
  t.equal((await proxied('https://toon.example.org')).statusCode, 200, 'PUBLIC_ORIGIN is our origin');
  t.equal((await proxied('http://127.0.0.1:8080')).statusCode, 403, 'and the only one');

  const page = await app.inject({ url: '/' });
  t.equal(page.statusCode, 200, 'the page itself is served');
  t.match(page.headers['content-type'], /^text\/html/);
  t.match(page.headers['content-security-policy'], /default-src 'self'/, 'under the strict CSP');

  const { app: noUi } = await build(t, { pool, env: { API_KEYS_FILE: file, UI_ENABLED: 'false' } });
  t.equal((await noUi.inject({ url: '/' })).statusCode, 404, 'UI_ENABLED=false: no page');
  t.equal((await noUi.inject({ method: 'POST', url: '/ui/cartoonize', headers: { 'content-type': contentType }, payload: Buffer.from(payload) })).statusCode, 404, 'UI_ENABLED=false');
});

const hasOpenssl = spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0;

t.test('native HTTPS from TLS_CERT_FILE and TLS_KEY_FILE', { skip: hasOpenssl ? false : 'openssl is not installed' }, async (t) => {
  const dir = t.testdir({});
  const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
  t.equal(made.status, 0, 'a self-signed certificate');
  const { app } = await build(t, { pool: fakePool(), env: { API_KEYS_FILE: file, TLS_CERT_FILE: join(dir, 'cert.pem'), TLS_KEY_FILE: join(dir, 'key.pem') } });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  const answer = await new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path: '/healthz', rejectUnauthorized: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
  t.equal(answer.status, 200);
  t.same(JSON.parse(answer.body), { status: 'ok' });
  t.match(answer.headers['strict-transport-security'], /max-age=\d+/, 'HSTS when we serve TLS ourselves');
});
