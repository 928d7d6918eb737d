/**
 * A multipart body's envelope is bounded (plugins/multipart-envelope.ts): a long preamble, an oversized part header
 * and too many header lines are refused with 400, where the parser alone read a 2 MB preamble, accepted a 200 KB part
 * header and silently dropped header lines beyond its limit. Ordinary forms pass.
 */
import { request as httpRequest } from 'node:http';
import t from 'tap';
import { build, fixtures, listen, post, writeKeys } from '../helper.js';

const images = await fixtures();
const { file, keys } = writeKeys(t, ['alice']);
const { app } = await build(t, { env: { API_KEYS_FILE: file, RATE_LIMIT_MAX: '1000' } });
const api = `${await listen(app)}/api/cartoonize`;
const BOUNDARY = 'privatoon-test-boundary';

function body(opts: { preamble?: string; extraHeaders?: string[]; headerPadding?: number } = {}): Buffer {
  const headers = [
    'Content-Disposition: form-data; name="image"; filename="me.jpg"',
    'Content-Type: image/jpeg',
    ...(opts.extraHeaders ?? []),
    ...(opts.headerPadding !== undefined ? [`X-Padding: ${'a'.repeat(opts.headerPadding)}`] : []),
  ];
  return Buffer.concat([
    Buffer.from(`${opts.preamble ?? ''}--${BOUNDARY}\r\n${headers.join('\r\n')}\r\n\r\n`),
    images.jpeg,
    Buffer.from(`\r\n--${BOUNDARY}--\r\n`),
  ]);
}

const send = (bytes: Buffer) => post(api, bytes, { 'x-api-key': keys['alice']!, 'content-type': `multipart/form-data; boundary=${BOUNDARY}` });

t.test('an ordinary form, and one with a short preamble, pass', async (t) => {
  t.equal((await send(body())).status, 200);
  t.equal((await send(body({ preamble: 'This is a multi-part message in MIME format.\r\n' }))).status, 200);
});

t.test('a preamble of 2 MB is refused', async (t) => {
  const answer = await send(body({ preamble: 'x'.repeat(2 * 1024 * 1024) + '\r\n' }));
  t.equal(answer.status, 400);
  t.match(answer.json(), { code: 'PTOON_BAD_REQUEST', detail: /bytes before its first boundary/ });
});

t.test('a part header of 200 KB is refused', async (t) => {
  const answer = await send(body({ headerPadding: 200 * 1024 }));
  t.equal(answer.status, 400);
  t.match(answer.json(), { code: 'PTOON_BAD_REQUEST', detail: /bytes of headers/ });
});

t.test('more header lines than allowed are refused, not silently dropped', async (t) => {
  const answer = await send(body({ extraHeaders: Array.from({ length: 20 }, (_, i) => `X-Extra-${i}: ${i}`) }));
  t.equal(answer.status, 400);
  t.match(answer.json(), { code: 'PTOON_BAD_REQUEST', detail: /header lines/ });
  t.equal((await send(body())).status, 200, 'and the next form is served');
});

/** Sends `parts` as separate writes (with pauses, so they arrive as separate reads), chunked. */
function sendInPieces(pieces: Buffer[], contentType: string): Promise<{ status: number; body: string; type: string | undefined }> {
  const url = new URL(api);
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'POST', headers: { 'x-api-key': keys['alice']!, 'content-type': contentType } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, type: res.headers['content-type'] }));
    });
    req.on('error', reject);
    void (async () => {
      for (const piece of pieces) {
        req.write(piece);
        await new Promise((r) => setTimeout(r, 40));
      }
      req.end();
    })();
  });
}

t.test('a boundary or blank line split over three reads is still found', async (t) => {
  const whole = body();
  const blank = whole.indexOf('\r\n\r\n');
  // "...\r" | "\n" | "\r\n<file>...": the blank line ending the part's headers spans three reads.
  const pieces = [whole.subarray(0, blank + 1), whole.subarray(blank + 1, blank + 2), whole.subarray(blank + 2)];
  const answer = await sendInPieces(pieces, `multipart/form-data; boundary=${BOUNDARY}`);
  t.equal(answer.status, 200, 'a valid form arriving in three reads is served');
});

t.test('the watched boundary is the one the parser uses (a look-alike parameter does not fool it)', async (t) => {
  const decoy = Buffer.concat([Buffer.from('--decoy\r\n\r\n'), Buffer.from('x'.repeat(20_000) + '\r\n'), body()]);
  const answer = await post(api, decoy, { 'x-api-key': keys['alice']!, 'content-type': `multipart/form-data; xboundary=decoy; boundary=${BOUNDARY}` });
  t.equal(answer.status, 400, 'the 20 KB preamble is seen');
});

t.test('a file ending in what looks like the start of a boundary, split there, arrives whole, and the fields after it', async (t) => {
  // The parser keeps "\r\n--<boundary minus its last byte>" in its own search buffer until the next read shows it is
  // not a boundary, then hands those bytes out as a view of that buffer, which it goes on using. Zero-filled by the
  // reader, they put zeros into the next field; freed, the parser's next read threw (a 400 on Node 24, a crash of the
  // process on Node 22).
  const near = `\r\n--${BOUNDARY.slice(0, -1)}`;
  const head = `--${BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="me.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`;
  const field = (name: string, value: string) => `\r\n--${BOUNDARY}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}`;
  const layouts = {
    // the closing boundary split again, right after the field
    'one field': [field('format', 'webp') + `\r\n--${BOUNDARY.slice(0, -4)}`, `${BOUNDARY.slice(-4)}--\r\n`],
    // a field arriving alone, then another whose closing boundary is split
    'two fields': [field('format', 'webp'), field('style', 'toon') + `\r\n--${BOUNDARY.slice(0, -4)}`, `${BOUNDARY.slice(-4)}--\r\n`],
  };
  for (const [layout, rest] of Object.entries(layouts)) {
    const pieces = [Buffer.concat([Buffer.from(head), images.jpeg, Buffer.from(near)]), ...rest.map((piece) => Buffer.from(piece))];
    for (const attempt of [1, 2]) {
      const answer = await sendInPieces(pieces, `multipart/form-data; boundary=${BOUNDARY}`);
      t.equal(answer.status, 200, `${layout}, attempt ${attempt}: served${answer.status === 200 ? '' : ` (${answer.body.slice(0, 120)})`}`);
      t.equal(answer.type, 'image/webp', `${layout}, attempt ${attempt}: the field after the file read intact`);
    }
  }
  t.equal((await send(body())).status, 200, 'and an ordinary form after them');
});

t.test('a boundary the parser could read differently is refused before the body is read; the ways clients write one pass', async (t) => {
  const withType = (contentType: string) => post(api, body(), { 'x-api-key': keys['alice']!, 'content-type': contentType });
  for (const contentType of [
    `multipart/form-data; boundary="${BOUNDARY}"`, // quoted, as .NET sends it
    `multipart/form-data;boundary=${BOUNDARY}`,
    `multipart/form-data; charset=utf-8; boundary=${BOUNDARY}`,
    `Multipart/Form-Data; BOUNDARY=${BOUNDARY}`,
    `multipart/form-data; boundary=${BOUNDARY};`,
  ]) {
    t.equal((await withType(contentType)).status, 200, contentType);
  }
  for (const contentType of [
    `multipart/form-data; boundary="${BOUNDARY}\\"x"`, // an escape: the parser unescapes it
    `multipart/form-data; x="; boundary=decoy"; boundary=${BOUNDARY}`, // a quoted look-alike
    `multipart/form-data; boundary=decoy; boundary=${BOUNDARY}`, // two
    `multipart/form-data; boundary*=utf-8''${BOUNDARY}`, // RFC 2231
    `multipart/form-data; boundary=${'b'.repeat(71)}`, // longer than RFC 2046 allows
    `multipart/form-data; boundary=${BOUNDARY}\u00e9`, // outside its characters
    'multipart/form-data',
  ]) {
    const answer = await withType(contentType);
    t.equal(answer.status, 400, contentType);
    t.match(answer.json(), { code: 'PTOON_BAD_REQUEST', detail: /boundary parameter/ }, `${contentType}: says why`);
  }
  t.equal((await send(body())).status, 200, 'and the next form is served');
});
