/**
 * The API key matrix: none 401, wrong 401 (invalid_token), right 200, both headers (same: fine; different: 400), other schemes 401,
 * no keys configured 503 (fail closed) while health checks, the style list and the web endpoint still answer;
 * reloads (good file swaps keys, bad file keeps the old ones); a bad file at start-up names the file and line.
 */
import { rmSync, writeFileSync } from 'node:fs';
import t from 'tap';
import { buildApp } from '../../app.js';
import { newApiKey } from '../../keys.js';
import { build, encodeForm, fixtures, form, startPool, testConfig, writeKeys } from '../helper.js';

const pool = await startPool(t);
const images = await fixtures();
const { file, keys } = writeKeys(t, ['alice', 'bob']);
const alice = keys['alice']!;
const bob = keys['bob']!;

/** A small valid upload as the raw body: the cheapest way through to the pool. */
const upload = (headers: Record<string, string>) => ({
  method: 'POST' as const,
  url: '/api/cartoonize',
  headers: { 'content-type': 'image/jpeg', ...headers },
  payload: images.jpeg,
});

t.test('the key matrix', async (t) => {
  const { app } = await build(t, { pool, env: { API_KEYS_FILE: file } });

  const none = await app.inject(upload({}));
  t.equal(none.statusCode, 401, 'no key: 401');
  t.match(none.json(), { statusCode: 401, code: 'PTOON_NO_KEY', error: 'Unauthorized', message: /X-API-Key/ });
  t.equal(none.headers['www-authenticate'], 'Bearer realm="privatoon"');

  const wrong = await app.inject(upload({ 'x-api-key': 'ptk_not-a-key' }));
  t.equal(wrong.statusCode, 401, 'wrong key: 401, the credentials are not valid (RFC 9110 15.5.2)');
  t.match(wrong.json(), { code: 'PTOON_BAD_KEY', error: 'Unauthorized', type: '/problems/PTOON_BAD_KEY' });
  t.equal(wrong.headers['www-authenticate'], 'Bearer realm="privatoon", error="invalid_token"', 'with the RFC 6750 challenge');

  const right = await app.inject(upload({ 'x-api-key': alice }));
  t.equal(right.statusCode, 200, 'right key in X-API-Key: 200');
  t.equal(right.headers['content-type'], 'image/jpeg');

  const bearer = await app.inject(upload({ authorization: `Bearer ${bob}` }));
  t.equal(bearer.statusCode, 200, 'right key as Bearer: 200');

  const lowerScheme = await app.inject(upload({ authorization: `bearer   ${bob}` }));
  t.equal(lowerScheme.statusCode, 200, 'the scheme is case-insensitive');

  const both = await app.inject(upload({ 'x-api-key': alice, authorization: `Bearer ${alice}` }));
  t.equal(both.statusCode, 200, 'both headers with the same key: 200');

  const conflict = await app.inject(upload({ 'x-api-key': alice, authorization: `Bearer ${bob}` }));
  t.equal(conflict.statusCode, 400, 'both headers with different keys: 400');
  t.match(conflict.json(), { code: 'PTOON_KEY_CONFLICT' });

  const basic = await app.inject(upload({ authorization: 'Basic YWxpY2U6cGFzcw==' }));
  t.equal(basic.statusCode, 401, 'another scheme: 401');
  t.match(basic.json(), { code: 'PTOON_NO_KEY', message: /Bearer/ });

  const emptyBearer = await app.inject(upload({ authorization: 'Bearer ' }));
  t.equal(emptyBearer.statusCode, 401);

  const inQuery = await app.inject({ ...upload({}), url: `/api/cartoonize?api_key=${alice}` });
  t.equal(inQuery.statusCode, 401, 'a key in the query string is not a key');

  const keyOfOther = await app.inject(upload({ 'x-api-key': alice.slice(0, -1) + (alice.endsWith('A') ? 'B' : 'A') }));
  t.equal(keyOfOther.statusCode, 401, 'one character off: 401');
});

t.test('the key is checked before the body is read', async (t) => {
  const { app } = await build(t, { pool, env: { API_KEYS_FILE: file, MAX_UPLOAD_BYTES: '1024' } });
  // Over the upload limit and unauthenticated: the auth answer comes first, the body is never parsed.
  const res = await app.inject({ ...upload({}), payload: Buffer.alloc(4096, 1) });
  t.equal(res.statusCode, 401);
});

t.test('public endpoints need no key', async (t) => {
  const { app } = await build(t, { pool, env: { API_KEYS_FILE: file } });
  for (const url of ['/healthz', '/readyz', '/api/styles', '/openapi.json']) {
    t.equal((await app.inject({ url })).statusCode, 200, url);
  }
  const { payload, contentType } = await encodeForm(form(images.jpeg));
  const ui = await app.inject({ method: 'POST', url: '/ui/cartoonize', headers: { 'content-type': contentType }, payload: Buffer.from(payload) });
  t.equal(ui.statusCode, 200, 'the web endpoint takes no key by default');
});

t.test('UI_REQUIRE_KEY puts the web endpoint behind keys', async (t) => {
  const { app } = await build(t, { pool, env: { API_KEYS_FILE: file, UI_REQUIRE_KEY: 'true' } });
  const { payload, contentType } = await encodeForm(form(images.jpeg));
  const request = (headers: Record<string, string>) =>
    app.inject({ method: 'POST', url: '/ui/cartoonize', headers: { 'content-type': contentType, ...headers }, payload: Buffer.from(payload) });
  t.equal((await request({})).statusCode, 401);
  t.equal((await request({ 'x-api-key': alice })).statusCode, 200);
});

t.test('no keys configured: the API is closed, the rest works', async (t) => {
  for (const env of [{}, { API_KEYS_FILE: t.testdir({ 'empty.txt': '# nobody yet\n' }) + '/empty.txt' }] as Record<string, string>[]) {
    const { app, logs } = await build(t, { pool, env: { ...env, LOG_LEVEL: 'info' } });
    const res = await app.inject(upload({ 'x-api-key': alice }));
    t.equal(res.statusCode, 503, 'fail closed, even with a key that is valid elsewhere');
    t.match(res.json(), { code: 'PTOON_AUTH_DISABLED', message: /No API keys are configured/ });
    t.equal(res.headers['retry-after'], '60', 'a 503 carries Retry-After');
    t.equal((await app.inject({ url: '/healthz' })).statusCode, 200);
    t.equal((await app.inject({ url: '/readyz' })).statusCode, 200, 'still ready: the web page works');
    t.match(logs.text, /refuses every call/, 'the operator is told at start-up');
  }
});

t.test('reload swaps keys; a bad file keeps the old ones', async (t) => {
  const dir = t.testdir({});
  const path = `${dir}/keys.txt`;
  const first = newApiKey('first');
  const second = newApiKey('second');
  writeFileSync(path, first.line + '\n');
  const { app, logs } = await build(t, { pool, env: { API_KEYS_FILE: path, LOG_LEVEL: 'info' } });
  t.equal((await app.inject(upload({ 'x-api-key': first.key }))).statusCode, 200);
  t.equal((await app.inject(upload({ 'x-api-key': second.key }))).statusCode, 401);

  writeFileSync(path, second.line + '\n');
  t.equal(await app.apiKeys.reload(), true);
  t.equal((await app.inject(upload({ 'x-api-key': second.key }))).statusCode, 200, 'the new key works');
  t.equal((await app.inject(upload({ 'x-api-key': first.key }))).statusCode, 401, 'the removed key does not');

  writeFileSync(path, `${second.line}\nhalf-written-line\n`);
  t.equal(await app.apiKeys.reload(), false, 'a bad file is refused');
  t.equal((await app.inject(upload({ 'x-api-key': second.key }))).statusCode, 200, 'the old keys stay in use');
  const error = logs.records().find((r) => r['msg'] === 'API key reload failed; the keys loaded before stay in use');
  t.ok(error, 'the failure is logged');
  t.match(JSON.stringify(error), /keys\.txt:2: expected/, 'naming the file and the line');
});

t.test('revocation: the reload log names what was revoked; a removed file revokes every key', async (t) => {
  const dir = t.testdir({});
  const path = `${dir}/keys.txt`;
  const keep = newApiKey('keep');
  const leaked = newApiKey('leaked');
  writeFileSync(path, `${keep.line}\n${leaked.line}\n`);
  const { app, logs } = await build(t, { pool, env: { API_KEYS_FILE: path, LOG_LEVEL: 'info' } });
  writeFileSync(path, `${keep.line}\n`);
  t.equal(await app.apiKeys.reload(), true);
  t.match(logs.records().find((r) => r['msg'] === 'API keys reloaded'), { revoked: ['leaked'], added: [] }, 'the log says which key was revoked');
  t.equal((await app.inject(upload({ 'x-api-key': leaked.key }))).statusCode, 401, 'the revoked key is refused');

  rmSync(path);
  t.equal(await app.apiKeys.reload(), true, 'a missing file is not "keep the old keys"');
  t.equal(app.apiKeys.size, 0, 'every key is revoked');
  t.equal((await app.inject(upload({ 'x-api-key': keep.key }))).statusCode, 503, 'the API is closed until the file is back');
  t.match(logs.records().find((r) => /API_KEYS_FILE is gone/.test(String(r['msg']))), { revoked: ['keep'] });
});

t.test('a reload of a systemd credential says it cannot apply changes, instead of "reloaded"', async (t) => {
  const dir = t.testdir({});
  const path = `${dir}/api-keys`;
  const key = newApiKey('ops');
  writeFileSync(path, `${key.line}\n`);
  const before = process.env['CREDENTIALS_DIRECTORY'];
  process.env['CREDENTIALS_DIRECTORY'] = dir; // as systemd sets it for LoadCredential=
  t.teardown(() => {
    if (before === undefined) delete process.env['CREDENTIALS_DIRECTORY'];
    else process.env['CREDENTIALS_DIRECTORY'] = before;
  });
  const { app, logs } = await build(t, { pool, env: { API_KEYS_FILE: path, LOG_LEVEL: 'info' } });
  t.equal(await app.apiKeys.reload(), false);
  t.notOk(logs.records().some((r) => r['msg'] === 'API keys reloaded'), 'no claim of a reload');
  t.ok(logs.records().some((r) => /systemd credential.*restart the service/.test(String(r['msg']))), 'it says to restart');
});

t.test('a bad key file stops start-up, naming the file and the line', async (t) => {
  const dir = t.testdir({ 'keys.txt': `# ok\n${newApiKey('a').line}\nb:not-a-hash\n` });
  const app = buildApp(testConfig({ API_KEYS_FILE: `${dir}/keys.txt` }), { pool });
  t.teardown(() => app.close());
  await t.rejects(Promise.resolve(app.ready()), /keys\.txt:3: the hash must be 64 hexadecimal digits/);
});
