/**
 * Rate limits: per key id on the API (two keys, two budgets), per IP without a key and on the web endpoint (stricter),
 * none on health checks, a cheap-route limit elsewhere (404s included). A 429 is JSON with the standard headers and
 * Retry-After. The client IP is the forwarded one only behind a trusted proxy: a forged X-Forwarded-For changes nothing.
 */
import t from 'tap';
import { build, encodeForm, fixtures, form, startPool, writeKeys } from '../helper.js';

const pool = await startPool(t);
const images = await fixtures();
const { file, keys } = writeKeys(t, ['alice', 'bob']);

const upload = (headers: Record<string, string>, remoteAddress = '127.0.0.1') => ({
  method: 'POST' as const,
  url: '/api/cartoonize',
  headers: { 'content-type': 'image/jpeg', ...headers },
  payload: images.jpeg,
  remoteAddress,
});

t.test('per key id, with headers, and a JSON 429', async (t) => {
  const { app } = await build(t, { pool, env: { API_KEYS_FILE: file, RATE_LIMIT_MAX: '2', RATE_LIMIT_WINDOW_MS: '60000' } });
  const first = await app.inject(upload({ 'x-api-key': keys['alice']! }));
  t.equal(first.statusCode, 200);
  t.equal(first.headers['ratelimit-limit'], '2');
  t.equal(first.headers['ratelimit-remaining'], '1');
  t.ok(Number(first.headers['ratelimit-reset']) > 0);
  t.equal((await app.inject(upload({ authorization: `Bearer ${keys['alice']!}` }))).statusCode, 200, 'either header counts against the same key');

  const limited = await app.inject(upload({ 'x-api-key': keys['alice']! }));
  t.equal(limited.statusCode, 429);
  t.match(limited.json(), { statusCode: 429, code: 'PTOON_RATE_LIMITED', error: 'Too Many Requests', message: /retry after \d+ s/ });
  const retryAfter = Number(limited.headers['retry-after']);
  t.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`);
  t.equal(limited.json()['retryAfter'], retryAfter, 'and in the body');
  t.equal(limited.headers['ratelimit-remaining'], '0');

  t.equal((await app.inject(upload({ 'x-api-key': keys['bob']! }))).statusCode, 200, 'another key has its own budget, from the same IP');
  t.equal((await app.inject({ url: '/healthz' })).statusCode, 200, 'health checks are never limited');
  t.notOk((await app.inject({ url: '/healthz' })).headers['ratelimit-limit'], 'and carry no limit headers');
});

t.test('without a key, attempts are counted per IP', async (t) => {
  const { app } = await build(t, { pool, env: { API_KEYS_FILE: file, RATE_LIMIT_MAX: '2' } });
  t.equal((await app.inject(upload({ 'x-api-key': 'ptk_guess1' }, '10.0.0.1'))).statusCode, 401);
  t.equal((await app.inject(upload({ 'x-api-key': 'ptk_guess2' }, '10.0.0.1'))).statusCode, 401);
  t.equal((await app.inject(upload({ 'x-api-key': 'ptk_guess3' }, '10.0.0.1'))).statusCode, 429, 'key guessing is bounded');
  t.equal((await app.inject(upload({}, '10.0.0.2'))).statusCode, 401, 'another IP is not affected');
  t.equal((await app.inject(upload({ 'x-api-key': keys['alice']! }, '10.0.0.1'))).statusCode, 200, 'a valid key is counted by its id, not the IP');
});

t.test('a forged X-Forwarded-For changes nothing without a trusted proxy', async (t) => {
  const { app } = await build(t, { pool, env: { API_KEYS_FILE: file, UI_RATE_LIMIT_MAX: '1' } });
  const { payload, contentType } = await encodeForm(form(images.jpeg));
  const ui = (headers: Record<string, string>, remoteAddress: string) =>
    app.inject({ method: 'POST', url: '/ui/cartoonize', headers: { 'content-type': contentType, ...headers }, payload: Buffer.from(payload), remoteAddress });
  t.equal((await ui({ 'x-forwarded-for': '1.1.1.1' }, '10.0.0.9')).statusCode, 200);
  t.equal((await ui({ 'x-forwarded-for': '2.2.2.2' }, '10.0.0.9')).statusCode, 429, 'same socket address, same budget');
});

t.test('behind a trusted proxy the forwarded client IP counts', async (t) => {
  const { app } = await build(t, { pool, env: { API_KEYS_FILE: file, UI_RATE_LIMIT_MAX: '1', TRUST_PROXY: '10.0.0.0/8', PUBLIC_ORIGIN: 'https://toon.example.org' } });
  const { payload, contentType } = await encodeForm(form(images.jpeg));
  const ui = (headers: Record<string, string>, remoteAddress: string) =>
    app.inject({ method: 'POST', url: '/ui/cartoonize', headers: { 'content-type': contentType, ...headers }, payload: Buffer.from(payload), remoteAddress });
  t.equal((await ui({ 'x-forwarded-for': '1.1.1.1' }, '10.0.0.9')).statusCode, 200);
  t.equal((await ui({ 'x-forwarded-for': '2.2.2.2' }, '10.0.0.9')).statusCode, 200, 'another client behind the proxy');
  t.equal((await ui({ 'x-forwarded-for': '1.1.1.1' }, '10.0.0.9')).statusCode, 429, 'the first client again');
  t.equal((await ui({ 'x-forwarded-for': '3.3.3.3' }, '192.0.2.7')).statusCode, 200, 'an untrusted peer...');
  t.equal((await ui({ 'x-forwarded-for': '4.4.4.4' }, '192.0.2.7')).statusCode, 429, '...is counted by its own address');
});

t.test('the web endpoint has its own, stricter, per-IP limit', async (t) => {
  const { app } = await build(t, { pool, env: { API_KEYS_FILE: file, UI_RATE_LIMIT_MAX: '1', RATE_LIMIT_MAX: '5' } });
  const { payload, contentType } = await encodeForm(form(images.jpeg));
  const ui = () => app.inject({ method: 'POST', url: '/ui/cartoonize', headers: { 'content-type': contentType }, payload: Buffer.from(payload) });
  const first = await ui();
  t.equal(first.statusCode, 200);
  t.equal(first.headers['ratelimit-limit'], '1');
  const second = await ui();
  t.equal(second.statusCode, 429);
  t.match(second.json(), { code: 'PTOON_RATE_LIMITED' });
  t.equal((await app.inject(upload({ 'x-api-key': keys['alice']! }))).statusCode, 200, 'the API budget is separate');
});

t.test('cheap routes and unknown URLs are limited too', async (t) => {
  const { app } = await build(t, { pool, env: { API_KEYS_FILE: file, RATE_LIMIT_CHEAP_MAX: '2' } });
  t.equal((await app.inject({ url: '/nope' })).statusCode, 404);
  t.equal((await app.inject({ url: '/nope/again' })).statusCode, 404);
  const third = await app.inject({ url: '/still/nope' });
  t.equal(third.statusCode, 429, 'a scanner gets 429s');
  t.ok(third.headers['retry-after']);
  const styles = await app.inject({ url: '/api/styles' });
  t.equal(styles.statusCode, 200);
  t.equal(styles.headers['ratelimit-limit'], '2');
});

t.test('several windows per key (RATE_LIMIT_WINDOWS): the tightest speaks in RateLimit-*, all in RateLimit-Policy', async (t) => {
  const { app } = await build(t, { pool, env: { API_KEYS_FILE: file, RATE_LIMIT_MAX: '5', RATE_LIMIT_WINDOW_MS: '60000', RATE_LIMIT_WINDOWS: '3 per hour, 100/day' } });
  const alice = { 'x-api-key': keys['alice']! };
  const answers = [];
  for (let i = 0; i < 4; i++) answers.push(await app.inject(upload(alice)));
  t.same(answers.map((a) => a.statusCode), [200, 200, 200, 429], 'the hourly window (3) bites before the minute (5)');
  t.equal(answers[0]!.headers['ratelimit-policy'], '5;w=60, 3;w=3600, 100;w=86400', 'every window, in the draft\'s notation');
  t.same([answers[0]!.headers['ratelimit-limit'], answers[0]!.headers['ratelimit-remaining']], ['3', '2'], 'the hourly window is the tightest');
  t.same([answers[2]!.headers['ratelimit-limit'], answers[2]!.headers['ratelimit-remaining']], ['3', '0']);
  const refused = answers[3]!;
  t.match(refused.json(), { code: 'PTOON_RATE_LIMITED', status: 429 });
  const retryAfter = Number(refused.headers['retry-after']);
  t.ok(retryAfter > 60 && retryAfter <= 3600, `Retry-After is the hour's (${retryAfter} s), not the minute's`);
  t.equal(refused.headers['ratelimit-policy'], '5;w=60, 3;w=3600, 100;w=86400', 'the 429 has the policy too');
  t.equal((await app.inject(upload({ 'x-api-key': keys['bob']! }))).statusCode, 200, 'bob has his own windows');
  t.equal((await app.inject({ url: '/api/styles' })).headers['ratelimit-policy'], '600;w=60', 'a cheap route: its one window');
  t.notOk((await app.inject({ url: '/healthz' })).headers['ratelimit-policy'], 'health checks: none');
});

t.test('several windows per IP on the web page (UI_RATE_LIMIT_WINDOWS)', async (t) => {
  const { app } = await build(t, { pool, env: { API_KEYS_FILE: file, UI_RATE_LIMIT_MAX: '10', UI_RATE_LIMIT_WINDOWS: '2 per day' } });
  const { payload, contentType } = await encodeForm(form(images.jpeg));
  const ui = () => app.inject({ method: 'POST', url: '/ui/cartoonize', headers: { 'content-type': contentType }, payload: Buffer.from(payload) });
  t.same([(await ui()).statusCode, (await ui()).statusCode, (await ui()).statusCode], [200, 200, 429]);
});
