/**
 * Requests the service has no route for are refused before a byte of their body is read: unknown URLs, known URLs
 * with another method, and bodies sent to GET routes (issue: a 3 MB body to /nope was read in full before the 404;
 * six parallel 9 MB bodies raised external memory from 9 to 111 MB). Raw sockets: the client sends the headers and a
 * little of a large declared body, and the answer must come without the rest.
 */
import { connect } from 'node:net';
import t from 'tap';
import { build, listen, writeKeys } from '../helper.js';

const { file } = writeKeys(t, ['alice']);

/** Sends headers declaring `declared` bytes and only the first 64 KiB of them; resolves with the answer's head. */
function partial(base: string, method: string, path: string, declared: number, type = 'image/jpeg'): Promise<string> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname, () => {
      socket.write(`${method} ${path} HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: ${type}\r\nContent-Length: ${declared}\r\n\r\n`);
      socket.write(Buffer.alloc(64 * 1024, 0x41));
    });
    let text = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer to ${method} ${path} within 3 s: the server is waiting for the rest of the body`));
    }, 3000);
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      if (text.includes('\r\n\r\n')) {
        clearTimeout(timer);
        socket.destroy();
        resolve(text.slice(0, text.indexOf('\r\n\r\n')).toLowerCase());
      }
    });
    socket.on('error', () => {});
  });
}

t.test('unknown URLs and methods are answered without reading the body', async (t) => {
  const { app } = await build(t, { env: { API_KEYS_FILE: file } });
  const base = await listen(app);
  const big = 9 * 1024 * 1024;
  const external = process.memoryUsage().external;
  const answers = await Promise.all([
    partial(base, 'POST', '/nope', big),
    partial(base, 'POST', '/nope', big, 'multipart/form-data; boundary=x'),
    partial(base, 'PUT', '/api/cartoonize', big),
    partial(base, 'DELETE', '/api/styles', big),
    partial(base, 'POST', '/api/styles', big),
    partial(base, 'POST', '/healthz', big),
  ]);
  for (const head of answers) {
    t.match(head, /^http\/1\.1 (404|405) /, head.split('\r\n')[0] ?? '');
    t.match(head, /connection: close/, 'and the connection is closed, not drained');
  }
  const grown = (process.memoryUsage().external - external) / 2 ** 20;
  t.ok(grown < 20, `external memory grew ${grown.toFixed(1)} MiB for six 9 MiB bodies`);
});

t.test('a body sent to a GET route is not read', async (t) => {
  const { app } = await build(t, { env: { API_KEYS_FILE: file } });
  const base = await listen(app);
  const head = await partial(base, 'GET', '/api/styles', 9 * 1024 * 1024, 'application/octet-stream');
  t.match(head, /^http\/1\.1 200 /);
  t.match(head, /connection: close/, 'answered, and the connection closed rather than drained');
});

t.test('404s are rate-limited at onRequest, before their body', async (t) => {
  const { app } = await build(t, { env: { API_KEYS_FILE: file, RATE_LIMIT_CHEAP_MAX: '2' } });
  const base = await listen(app);
  const heads = [];
  for (let i = 0; i < 3; i++) heads.push(await partial(base, 'POST', '/nope', 5 * 1024 * 1024));
  t.match(heads[0], /^http\/1\.1 404 /);
  t.match(heads[1], /^http\/1\.1 404 /);
  t.match(heads[2], /^http\/1\.1 429 /, 'the third is limited');
  t.match(heads[2], /retry-after: \d+/);
});
