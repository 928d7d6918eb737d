/**
 * HTTP conventions integrators' tools expect: 405 with Allow (before any body byte), no `100 Continue` before a
 * refusal, and the output options: download, AVIF, format=auto from Accept, the default quality.
 */
import { connect } from 'node:net';
import t from 'tap';
import { DEFAULT_QUALITY } from '../../contract.js';
import { negotiateFormat } from '../../routes/cartoonize.js';
import { build, fixtures, form, listen, post, startPool, writeKeys } from '../helper.js';

const MAX_UPLOAD = 256 * 1024;
const pool = await startPool(t);
const images = await fixtures();
const { file, keys } = writeKeys(t, ['alice']);
const key = { 'x-api-key': keys['alice']! };
const { app } = await build(t, { pool, env: { API_KEYS_FILE: file, MAX_UPLOAD_BYTES: String(MAX_UPLOAD), RATE_LIMIT_MAX: '1000' } });
const base = await listen(app);
const port = Number(new URL(base).port);

/** Writes `head` on a fresh connection and collects what comes back until `until` matches or the socket ends. */
function exchange(head: string, until: RegExp, then?: (socket: ReturnType<typeof connect>, text: string) => void): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    let continued = false;
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(text);
    }, 5000);
    socket.on('data', (chunk) => {
      text += chunk.toString('latin1');
      if (!continued && then !== undefined && /^HTTP\/1\.1 100 Continue\r\n\r\n/.test(text)) {
        continued = true;
        then(socket, text);
      }
      if (until.test(text)) {
        clearTimeout(timer);
        socket.destroy();
        resolve(text);
      }
    });
    socket.on('end', () => {
      clearTimeout(timer);
      resolve(text);
    });
    socket.on('error', reject);
    socket.write(head);
  });
}

t.test('405 with Allow for a known path and a wrong method; 404 stays for unknown paths', async (t) => {
  const cases: [string, string, string][] = [
    ['GET', '/api/cartoonize', 'POST'],
    ['PUT', '/api/cartoonize', 'POST'],
    ['DELETE', '/healthz', 'GET, HEAD'],
    ['POST', '/api/styles/', 'GET, HEAD'],
    ['OPTIONS', '/problems/PTOON_BUSY', 'GET, HEAD'],
  ];
  for (const [method, url, allow] of cases) {
    const res = await app.inject({ method: method as 'GET', url });
    t.equal(res.statusCode, 405, `${method} ${url}`);
    t.equal(res.headers['allow'], allow, `Allow: ${allow}`);
    t.match(res.json(), { type: '/problems/PTOON_METHOD_NOT_ALLOWED', status: 405, code: 'PTOON_METHOD_NOT_ALLOWED', detail: new RegExp(`does not take ${method}`) });
  }
  t.equal((await app.inject({ method: 'GET', url: '/nothing' })).statusCode, 404);
  t.equal((await app.inject({ method: 'HEAD', url: '/healthz' })).statusCode, 200, 'HEAD comes with GET');
});

t.test('a 405 is decided before the body: a large PUT is refused without being read', async (t) => {
  const text = await exchange(`PUT /api/cartoonize HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 5000000\r\n\r\n`, /\r\n\r\n\{.*\}$/s);
  t.match(text, /^HTTP\/1\.1 405 /, 'answered with no body byte sent');
  t.match(text, /\r\nallow: POST\r\n/i);
  t.match(text, /\r\nconnection: close\r\n/i, 'and the connection is closed, not drained');
});

t.test('Expect: 100-continue gets no 100 before a refusal, and a 100 before an accepted upload', async (t) => {
  const tooBig = await exchange(
    `POST /api/cartoonize HTTP/1.1\r\nHost: x\r\nX-API-Key: ${keys['alice']}\r\nContent-Type: image/jpeg\r\nContent-Length: ${MAX_UPLOAD + 1}\r\nExpect: 100-continue\r\n\r\n`,
    /\r\n\r\n\{.*\}$/s,
  );
  t.match(tooBig, /^HTTP\/1\.1 413 /, 'over the limit: the final answer first');
  t.notMatch(tooBig, /100 Continue/);
  t.match(tooBig, /PTOON_TOO_LARGE/);

  const tooBigForm = await exchange(
    `POST /api/cartoonize HTTP/1.1\r\nHost: x\r\nX-API-Key: ${keys['alice']}\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: ${MAX_UPLOAD * 2}\r\nExpect: 100-continue\r\n\r\n`,
    /\r\n\r\n\{.*\}$/s,
  );
  t.match(tooBigForm, /^HTTP\/1\.1 413 /, 'a form far over the limit too');

  const noKey = await exchange(`POST /api/cartoonize HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n`, /\r\n\r\n\{.*\}$/s);
  t.match(noKey, /^HTTP\/1\.1 401 /, 'no key: 401 first');
  t.notMatch(noKey, /100 Continue/);

  const accepted = await exchange(
    `POST /api/cartoonize HTTP/1.1\r\nHost: x\r\nX-API-Key: ${keys['alice']}\r\nContent-Type: image/jpeg\r\nContent-Length: ${images.jpeg.length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`,
    /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 [\s\S]*\r\n\r\n/,
    (socket) => socket.write(images.jpeg),
  );
  t.match(accepted, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /, 'accepted: 100, then the cartoon');
});

t.test('download=true answers as an attachment named cartoon.<ext>', async (t) => {
  const inline = await post(`${base}/api/cartoonize`, form(images.jpeg), key);
  t.equal(inline.headers.get('content-disposition'), 'inline; filename="cartoon.jpg"');
  const download = await post(`${base}/api/cartoonize?download=true`, form(images.jpeg), key);
  t.equal(download.status, 200);
  t.equal(download.headers.get('content-disposition'), 'attachment; filename="cartoon.jpg"');
  const field = await post(`${base}/api/cartoonize`, form(images.jpeg, { fields: { download: 'true', format: 'png' } }), key);
  t.equal(field.headers.get('content-disposition'), 'attachment; filename="cartoon.png"', 'as a form field too');
  // A raw body (read whole before the options are checked): a refused form is cut mid-upload, by design.
  t.equal((await post(`${base}/api/cartoonize?download=maybe`, images.jpeg, { ...key, 'content-type': 'image/jpeg' })).status, 400);
});

t.test('AVIF output, without metadata', async (t) => {
  const res = await post(`${base}/api/cartoonize?format=avif`, form(images.jpeg), key);
  t.equal(res.status, 200);
  t.equal(res.headers.get('content-type'), 'image/avif');
  t.equal(res.headers.get('content-disposition'), 'inline; filename="cartoon.avif"');
  // Read from the boxes: the workers' sharp decodes JPEG, PNG and WebP only (process-wide, workers/image.ts).
  t.equal(res.body.subarray(4, 12).toString('latin1'), 'ftypavif', 'an AVIF file');
  const ispe = res.body.indexOf('ispe');
  t.ok(ispe > 0, 'with its image size box');
  t.same([res.body.readUInt32BE(ispe + 8), res.body.readUInt32BE(ispe + 12)], [320, 240]);
  for (const marker of ['Exif', 'xmpmeta', 'iptc']) t.equal(res.body.indexOf(marker), -1, `no ${marker}`);
});

t.test('format=auto picks from Accept and says Vary: Accept', async (t) => {
  const cases: [string | undefined, string][] = [
    ['image/avif,image/webp,image/apng,image/*,*/*;q=0.8', 'image/avif'], // Chromium's image Accept
    ['image/webp,*/*', 'image/webp'],
    ['image/avif;q=0, image/webp', 'image/webp'],
    ['*/*', 'image/jpeg'],
    [undefined, 'image/jpeg'],
  ];
  for (const [accept, type] of cases) {
    const res = await post(`${base}/api/cartoonize?format=auto`, form(images.jpeg), { ...key, ...(accept !== undefined ? { accept } : {}) });
    t.equal(res.status, 200);
    t.equal(res.headers.get('content-type'), type, `Accept: ${accept ?? '(none)'}`);
    t.equal(res.headers.get('vary'), 'Accept');
  }
  t.equal(negotiateFormat('image/*;q=0.5, image/avif;q=0'), 'jpeg', 'an explicit q=0 beats a wildcard');
  t.notOk((await post(`${base}/api/cartoonize?format=png`, form(images.jpeg), key)).headers.get('vary'), 'no Vary without auto');
});

t.test('the default JPEG quality is the original service\'s 95', async (t) => {
  t.equal(DEFAULT_QUALITY.jpeg, 95);
  const byDefault = await post(`${base}/api/cartoonize`, form(images.jpeg), key);
  const at95 = await post(`${base}/api/cartoonize?quality=95`, form(images.jpeg), key);
  const at85 = await post(`${base}/api/cartoonize?quality=85`, form(images.jpeg), key);
  t.equal(byDefault.body.length, at95.body.length, 'the default encodes as quality=95');
  t.ok(at85.body.length < byDefault.body.length, 'and not as 85');
});
