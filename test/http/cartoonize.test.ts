/**
 * POST /api/cartoonize over real HTTP: multipart and raw bodies, formats (checked by magic bytes), headers, every
 * input error with its status and JSON body, and one end-to-end run on a real photo.
 */
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import sharp from 'sharp';
import t, { type Test } from 'tap';
import { bigJpeg, build, fixtures, form, listen, magic, post, sharedImage, startPool, writeKeys } from '../helper.js';

const MAX_UPLOAD = 64 * 1024;
const pool = await startPool(t);
const images = await fixtures();
const { file, keys } = writeKeys(t, ['alice']);
const key = { 'x-api-key': keys['alice']! };
const { app } = await build(t, {
  pool,
  env: { API_KEYS_FILE: file, MAX_UPLOAD_BYTES: String(MAX_UPLOAD), MAX_OUTPUT_SIDE: '2048', RATE_LIMIT_MAX: '1000' },
});
const base = await listen(app);
const api = `${base}/api/cartoonize`;

const raw = (bytes: Buffer, type: string, query = '') => post(`${api}${query}`, bytes, { ...key, 'content-type': type });

function isError(t: Test, answer: Awaited<ReturnType<typeof post>>, status: number, code: string, message?: RegExp) {
  t.equal(answer.status, status, `${code}: status ${status}`);
  t.match(answer.headers.get('content-type'), /^application\/problem\+json/);
  const body = answer.json();
  t.match(body, { statusCode: status, code, error: String, message: message ?? String }, code);
  t.notMatch(JSON.stringify(body), /at \/|node_modules|\.ts:\d/, 'no stack or path in the body');
}

t.test('multipart: each output format, with its headers', async (t) => {
  for (const [format, type] of [['jpeg', 'image/jpeg'], ['png', 'image/png'], ['webp', 'image/webp'], ['jpg', 'image/jpeg']] as const) {
    const res = await post(api, form(images.jpeg, { fields: { format, quality: '80' } }), key);
    t.equal(res.status, 200, format);
    t.equal(res.headers.get('content-type'), type);
    t.equal(magic(res.body), format === 'jpg' ? 'jpeg' : format, `${format}: magic bytes`);
    t.equal(res.headers.get('cache-control'), 'no-store');
    t.match(res.headers.get('server-timing'), /^queue;dur=[\d.]+, decode;dur=[\d.]+, (detect;dur=[\d.]+, )?infer;dur=[\d.]+, (pack;dur=[\d.]+, run;dur=[\d.]+, unpack;dur=[\d.]+, )?(head;dur=[\d.]+, )?encode;dur=[\d.]+$/);
    t.match(res.headers.get('x-faces'), /^\d+$/);
    t.equal(res.headers.get('x-content-type-options'), 'nosniff');
    t.equal(Number(res.headers.get('content-length')), res.body.length);
    const meta = await sharp(res.body).metadata();
    t.same([meta.width, meta.height], [320, 240], 'the size is kept');
  }
});

t.test('multipart: PNG and WebP inputs; options as fields or query; defaults', async (t) => {
  const fromPng = await post(api, form(images.png, { type: 'image/png', filename: 'a.png' }), key);
  t.equal(fromPng.status, 200);
  t.equal(magic(fromPng.body), 'jpeg', 'the default format is JPEG');
  const fromWebp = await post(`${api}?format=png`, form(images.webp, { type: 'image/webp' }), key);
  t.equal(magic(fromWebp.body), 'png', 'options in the query string apply to forms too');
  const sized = await post(api, form(images.jpeg, { fields: { max_size: '100', style: 'toon' } }), key);
  t.equal(sized.status, 200);
  const meta = await sharp(sized.body).metadata();
  t.equal(Math.max(meta.width ?? 0, meta.height ?? 0), 100, 'max_size caps the long side');
  const fieldAfterFile = new FormData();
  fieldAfterFile.append('image', new Blob([images.jpeg]), 'x.jpg');
  fieldAfterFile.append('format', 'webp');
  t.equal(magic((await post(api, fieldAfterFile, key)).body), 'webp', 'fields may come after the file');
  const mislabelled = await post(api, form(images.png, { type: 'image/jpeg', filename: 'lies.jpg' }), key);
  t.equal(mislabelled.status, 200, 'the bytes decide the format, not the part header');
});

t.test('raw body: each input type, options in the query string', async (t) => {
  for (const [bytes, type] of [[images.jpeg, 'image/jpeg'], [images.png, 'image/png'], [images.webp, 'image/webp']] as const) {
    const res = await raw(bytes, type, '?format=webp&quality=60');
    t.equal(res.status, 200, type);
    t.equal(res.headers.get('content-type'), 'image/webp');
    t.equal(magic(res.body), 'webp');
    t.equal(res.headers.get('cache-control'), 'no-store');
    t.ok(res.headers.get('server-timing'));
  }
  t.equal((await raw(images.jpeg, 'image/jpeg; charset=binary')).status, 200, 'parameters on the type are fine');
});

t.test('unsupported media: 415', async (t) => {
  isError(t, await post(api, form(images.svg, { type: 'image/svg+xml', filename: 'x.svg' }), key), 415, 'PTOON_UNSUPPORTED_MEDIA', /SVG/);
  isError(t, await post(api, form(images.gif, { type: 'image/gif', filename: 'x.gif' }), key), 415, 'PTOON_UNSUPPORTED_MEDIA', /GIF/);
  isError(t, await post(api, form(images.text, { type: 'text/plain', filename: 'x.txt' }), key), 415, 'PTOON_UNSUPPORTED_MEDIA');
  isError(t, await raw(images.svg, 'image/svg+xml'), 415, 'PTOON_UNSUPPORTED_MEDIA', /multipart\/form-data/);
  isError(t, await raw(images.gif, 'image/gif'), 415, 'PTOON_UNSUPPORTED_MEDIA');
  isError(t, await raw(images.text, 'text/plain'), 415, 'PTOON_UNSUPPORTED_MEDIA');
  isError(t, await post(api, JSON.stringify({ image: 'x' }), { ...key, 'content-type': 'application/json' }), 415, 'PTOON_UNSUPPORTED_MEDIA');
  isError(t, await raw(images.gif, 'image/png'), 415, 'PTOON_UNSUPPORTED_MEDIA', /GIF/);
});

t.test('broken images: 422', async (t) => {
  isError(t, await post(api, form(images.corruptJpeg), key), 422, 'PTOON_BAD_IMAGE');
  isError(t, await post(api, form(images.truncatedJpeg), key), 422, 'PTOON_BAD_IMAGE');
  isError(t, await raw(images.truncatedJpeg, 'image/jpeg'), 422, 'PTOON_BAD_IMAGE');
});

t.test('too large: 413, in multipart and raw, at limit + 1 byte', async (t) => {
  const atLimit = Buffer.concat([images.jpeg, Buffer.alloc(MAX_UPLOAD - images.jpeg.length)]);
  const over = Buffer.concat([atLimit, Buffer.alloc(1)]);
  t.equal((await raw(atLimit, 'image/jpeg')).status, 200, 'exactly at the limit is fine (trailing bytes after the JPEG end)');
  isError(t, await post(api, form(over), key), 413, 'PTOON_TOO_LARGE', new RegExp(`${MAX_UPLOAD} bytes`));
  isError(t, await raw(over, 'image/jpeg'), 413, 'PTOON_TOO_LARGE');
  // Chunked, with no Content-Length to refuse early on: the limit still holds while reading.
  const chunked = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = httpRequest(api, { method: 'POST', headers: { ...key, 'content-type': 'image/jpeg', 'transfer-encoding': 'chunked' } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.write(over.subarray(0, 40_000));
    req.end(over.subarray(40_000));
  });
  t.equal(chunked.status, 413, 'chunked raw body over the limit');
  t.match(JSON.parse(chunked.body), { code: 'PTOON_TOO_LARGE' });
});

t.test('too many pixels: 413', async (t) => {
  // The pixel budget belongs to the pool (MAX_INPUT_PIXELS reaches it through the config in production).
  const small = await startPool(t, { maxInputPixels: 1000 * 1000 });
  const { app: smallApp } = await build(t, { pool: small, env: { API_KEYS_FILE: file } });
  const smallBase = await listen(smallApp);
  isError(t, await post(`${smallBase}/api/cartoonize`, form(await bigJpeg(1200, 1000)), key), 413, 'PTOON_TOO_MANY_PIXELS');
  t.equal((await post(`${smallBase}/api/cartoonize`, form(await bigJpeg(1000, 1000)), key)).status, 200, 'at the budget is fine');
});

t.test('bad options and forms: 400', async (t) => {
  isError(t, await post(`${api}?quality=0`, form(images.jpeg), key), 400, 'PTOON_BAD_OPTION', /quality must be >= 1/);
  isError(t, await post(api, form(images.jpeg, { fields: { quality: '101' } }), key), 400, 'PTOON_BAD_OPTION', /quality must be <= 100/);
  isError(t, await post(api, form(images.jpeg, { fields: { quality: 'high' } }), key), 400, 'PTOON_BAD_OPTION', /quality must be integer/);
  isError(t, await post(api, form(images.jpeg, { fields: { format: 'gif' } }), key), 400, 'PTOON_BAD_OPTION', /format must be equal to one of/);
  isError(t, await raw(images.jpeg, 'image/jpeg', '?format=bmp'), 400, 'PTOON_BAD_OPTION');
  isError(t, await post(api, form(images.jpeg, { fields: { max_size: '99999' } }), key), 400, 'PTOON_BAD_OPTION', /max_size must be <= 2048/);
  isError(t, await post(api, form(images.jpeg, { fields: { style: 'nope' } }), key), 400, 'PTOON_UNKNOWN_STYLE', /"nope"/);
  isError(t, await post(api, form(images.jpeg, { fields: { style: '../etc/passwd' } }), key), 400, 'PTOON_BAD_OPTION', /style must match pattern/);
  isError(t, await raw(images.jpeg, 'image/jpeg', '?qualty=5'), 400, 'PTOON_BAD_OPTION', /unknown option "qualty"/);
  isError(t, await post(`${api}?format=png`, form(images.jpeg, { fields: { format: 'webp' } }), key), 400, 'PTOON_BAD_REQUEST', /both in the query string and in the form/);

  const two = form(images.jpeg);
  two.append('image', new Blob([images.png]), 'second.png');
  const twoAnswer = await post(api, two, key);
  isError(t, twoAnswer, 400, 'PTOON_BAD_REQUEST', /exactly one file/);
  t.equal(twoAnswer.headers.get('connection'), 'keep-alive', 'a form refused half-read within the limits is drained (wiped), so the connection is kept');
  const otherFile = form(images.jpeg);
  otherFile.append('thumb', new Blob([images.png]), 'thumb.png');
  isError(t, await post(api, otherFile, key), 400, 'PTOON_BAD_REQUEST', /exactly one file/);
  isError(t, await post(api, form(images.jpeg, { field: 'photo' }), key), 400, 'PTOON_BAD_REQUEST', /field "image"/);
  isError(t, await post(api, form(null, { fields: { format: 'png' } }), key), 400, 'PTOON_BAD_REQUEST', /No image/);
  isError(t, await post(api, form(images.jpeg, { fields: { colour: 'red' } }), key), 400, 'PTOON_BAD_REQUEST', /Unknown form field "colour"/);
  const twice = form(images.jpeg, { fields: { format: 'png' } });
  twice.append('format', 'webp');
  isError(t, await post(api, twice, key), 400, 'PTOON_BAD_REQUEST', /given twice/);
  const textImage = new FormData();
  textImage.append('image', 'not a file');
  isError(t, await post(api, textImage, key), 400, 'PTOON_BAD_REQUEST', /must be a file part/);
  isError(t, await raw(Buffer.alloc(0), 'image/jpeg'), 400, 'PTOON_BAD_REQUEST', /empty/);
  const tooMany = form(images.jpeg, { fields: { style: 'toon', format: 'png', quality: '9', max_size: '99', require_face: 'false' } });
  for (let i = 0; i < 4; i++) tooMany.append(`x${i}`, 'y');
  const many = await post(api, tooMany, key);
  t.equal(many.status, 400, 'too many fields');
  const broken = await post(api, '--nope\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\nabc', {
    ...key,
    'content-type': 'multipart/form-data; boundary=nope',
  });
  isError(t, broken, 400, 'PTOON_BAD_REQUEST', /malformed|ended before/);
  t.equal((await fetch(`${base}/healthz`)).status, 200, 'the server carries on');
});

t.test('an oversize file in the middle of a form neither hangs nor leaks into the next request', async (t) => {
  const big = Buffer.alloc(MAX_UPLOAD * 3, 7);
  const body = form(big, { fields: { format: 'png' } });
  body.append('quality', '50');
  const started = Date.now();
  isError(t, await post(api, body, key), 413, 'PTOON_TOO_LARGE');
  t.ok(Date.now() - started < 5000, 'answered promptly');
  t.equal((await post(api, form(images.jpeg), key)).status, 200);
});

t.test('end to end on a real photo', async (t) => {
  // A camera JPEG with EXIF (a caption, the camera model): none of it may come back.
  const path = sharedImage('obama_halfbody.jpg') ?? sharedImage('dctnet_input_portrait.png');
  if (path === null) {
    t.plan(0, 'no photo in ../shared/images');
    return;
  }
  const photo = readFileSync(path);
  const { app: bigApp } = await build(t, { pool, env: { API_KEYS_FILE: file } });
  const bigBase = await listen(bigApp);
  const res = await post(`${bigBase}/api/cartoonize?format=webp&max_size=512`, form(photo, { filename: 'portrait.jpg' }), key);
  t.equal(res.status, 200);
  t.equal(magic(res.body), 'webp');
  const meta = await sharp(res.body).metadata();
  t.ok(Math.max(meta.width ?? 0, meta.height ?? 0) <= 512);
  t.notOk(meta.exif, 'no EXIF in the answer');
});
