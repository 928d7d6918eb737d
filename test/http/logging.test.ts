/**
 * Log redaction: every line written during a run at the most verbose level (trace), with real keys, cookies, query
 * strings and a distinctive upload file name, must hold none of them, nor any image bytes (raw, base64 or hex);
 * the key's id must be there, in one line per request.
 */
import t from 'tap';
import { build, fixtures, form, listen, post, startPool, writeKeys } from '../helper.js';

const FILE_NAME = 'secret-face-name.jpg';
const pool = await startPool(t);
const images = await fixtures();
const { file, keys } = writeKeys(t, ['alice-laptop']);
const key = keys['alice-laptop']!;
const { app, logs } = await build(t, { pool, env: { API_KEYS_FILE: file, LOG_LEVEL: 'trace', MAX_UPLOAD_BYTES: String(64 * 1024) } });
const base = await listen(app);
const api = `${base}/api/cartoonize`;

t.test('nothing secret or personal reaches the logs', async (t) => {
  const answers = [
    await post(api, form(images.jpeg, { filename: FILE_NAME }), { 'x-api-key': key, cookie: 'session=cookie-secret-value' }),
    await post(`${api}?format=png`, form(images.png, { filename: FILE_NAME, type: 'image/png' }), { authorization: `Bearer ${key}` }),
    await post(`${api}?style=toon&note=secret-query-value`, images.jpeg, { 'x-api-key': key, 'content-type': 'image/jpeg' }),
    await post(`${api}?api_key=${key}`, images.jpeg, { 'content-type': 'image/jpeg' }),
    await post(api, form(images.jpeg, { filename: FILE_NAME }), { 'x-api-key': 'ptk_wrong-distinctive-guess' }),
    await post(api, form(images.svg, { filename: 'secret-face-name.svg', type: 'image/svg+xml' }), { 'x-api-key': key }),
    await post(api, form(images.truncatedJpeg, { filename: FILE_NAME }), { 'x-api-key': key }),
    await post(api, form(Buffer.concat([images.jpeg, Buffer.alloc(70 * 1024)]), { filename: FILE_NAME }), { 'x-api-key': key }),
    await post(api, form(images.jpeg, { filename: FILE_NAME, field: 'secret-field-name' }), { 'x-api-key': key }),
  ];
  t.same(
    answers.map((a) => a.status),
    [200, 200, 400, 401, 401, 415, 422, 413, 400],
    'the run covered successes and each kind of failure',
  );
  await new Promise((resolve) => setImmediate(resolve));
  const text = logs.text;
  t.ok(logs.lines.length > answers.length, `${logs.lines.length} lines captured`);

  for (const [secret, what] of [
    [key, 'the API key'],
    [key.slice(4, 24), 'any part of the API key'],
    ['ptk_wrong-distinctive-guess', 'a wrong key'],
    ['cookie-secret-value', 'a cookie'],
    ['secret-face', 'the upload file name'],
    ['secret-field-name', 'a form field name'],
    ['secret-query-value', 'a query string'],
    ['api_key', 'a query string parameter'],
    ['?', 'any query string at all'],
  ] as const) {
    t.notOk(text.includes(secret), `no ${what}`);
  }
  for (const image of [images.jpeg, images.png]) {
    for (const offset of [0, 200, Math.floor(image.length / 2)]) {
      const slice = image.subarray(offset, offset + 48);
      t.notOk(text.includes(slice.toString('base64')), `no base64 image bytes at ${offset}`);
      t.notOk(text.includes(slice.toString('hex')), `no hex image bytes at ${offset}`);
      t.notOk(text.includes(slice.toString('latin1')), `no raw image bytes at ${offset}`);
    }
  }
  t.notMatch(text, /\\u00[01]|\ufffd|JFIF|Exif/, 'no binary junk');
  t.notMatch(text, /"headers"|"authorization"|"x-api-key"|"cookie"/i, 'no header objects');

  const records = logs.records();
  const requestLines = records.filter((r) => r['msg'] === 'request');
  t.equal(requestLines.length, answers.length, 'one line per request');
  for (const line of requestLines) {
    t.equal(line['route'], '/api/cartoonize', 'the route pattern, not the URL');
    t.notOk('url' in line);
  }
  t.equal(requestLines.filter((r) => r['keyId'] === 'alice-laptop').length, 7, 'the key id is logged (for each request that had a valid key)');
  t.match(requestLines[0], { status: 200, method: 'POST', style: 'toon', queueMs: Number, inferMs: Number, resBytes: Number, reqBytes: Number });
  t.match(requestLines.map((r) => r['code']), [undefined, undefined, 'PTOON_BAD_OPTION', 'PTOON_NO_KEY', 'PTOON_BAD_KEY', 'PTOON_UNSUPPORTED_MEDIA', 'PTOON_BAD_IMAGE', 'PTOON_TOO_LARGE', 'PTOON_BAD_REQUEST']);
});
