/**
 * wipe.ts: bytes that held a photo are zero-filled, and a whole buffer of their own is freed at once (detached) where
 * the runtime can; anything shared with other bytes, or that cannot be detached, is zero-filled only and keeps its
 * size, so nothing else loses its data.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { collectWiping } from '../../plugins/uploads.js';
import { CAN_FREE_EARLY, wipeAndFree } from '../../wipe.js';

const filled = (n: number, value = 7) => new Uint8Array(n).fill(value);
const allZero = (bytes: Uint8Array) => bytes.every((b) => b === 0);

t.test('a whole buffer of its own is freed where the runtime can, zero-filled where it cannot', async (t) => {
  for (const make of [() => filled(4096), () => new Float32Array(1024).fill(0.5), () => Buffer.alloc(65536, 9)]) {
    const bytes = make();
    const buffer = bytes.buffer;
    wipeAndFree(bytes);
    if (CAN_FREE_EARLY) t.equal(buffer.byteLength, 0, `${bytes.constructor.name}: detached, its memory given back`);
    else t.ok(buffer.byteLength > 0 && allZero(new Uint8Array(buffer)), `${bytes.constructor.name}: zero-filled`);
  }
  const raw = filled(100).buffer;
  wipeAndFree(raw);
  t.ok(CAN_FREE_EARLY ? raw.byteLength === 0 : allZero(new Uint8Array(raw)), 'an ArrayBuffer itself');
  t.doesNotThrow(() => wipeAndFree(new Uint8Array(0)), 'an empty one');
  const twice = filled(64);
  wipeAndFree(twice);
  t.doesNotThrow(() => wipeAndFree(twice), 'the same bytes twice (a head model may hand back its crop): no throw');
  t.doesNotThrow(() => wipeAndFree(twice.buffer), 'its buffer, detached or not: no throw');
  t.ok(CAN_FREE_EARLY ? twice.byteLength === 0 : allZero(twice), 'still nothing in it');
});

t.test('part of a buffer is zero-filled and the rest is left alone', async (t) => {
  const whole = filled(300);
  wipeAndFree(whole.subarray(100, 200));
  t.equal(whole.buffer.byteLength, 300, 'not detached');
  t.ok(allZero(whole.subarray(100, 200)), 'the part is zero');
  t.ok(whole.subarray(0, 100).every((b) => b === 7) && whole.subarray(200).every((b) => b === 7), 'the rest untouched');
  // The first bytes of a larger buffer are part of it too, though they start at 0.
  const head = filled(300);
  wipeAndFree(head.subarray(0, 100));
  t.equal(head.buffer.byteLength, 300, 'a leading part: not detached');
});

t.test("a slice of Node's Buffer pool is zero-filled, and the pool keeps its other slices", async (t) => {
  const a = Buffer.from('the first secret');
  const b = Buffer.from('the second one');
  t.equal(a.buffer, b.buffer, 'both from the pool');
  wipeAndFree(a);
  t.ok(allZero(a), 'zero');
  t.equal(b.toString(), 'the second one', 'the neighbour is intact');
  t.equal(a.buffer.byteLength, Buffer.poolSize, 'the pool is not detached');
});

t.test('memory that cannot be detached is zero-filled and keeps working', async (t) => {
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 1 });
  const view = new Uint8Array(memory.buffer);
  view.fill(5);
  t.doesNotThrow(() => wipeAndFree(view), 'a WebAssembly memory (the worker scratch) cannot be detached: no throw');
  t.ok(allZero(new Uint8Array(memory.buffer)) && memory.buffer.byteLength === 65536, 'zero, and the memory still usable');
  const shared = new Uint8Array(new SharedArrayBuffer(64)).fill(3);
  wipeAndFree(shared);
  t.ok(allZero(shared) && shared.length === 64, 'a SharedArrayBuffer: zero, not detached');
});

t.test('a body reader frees each chunk it has copied (Node hands out every piece of a body as a buffer of its own)', async (t) => {
  // As Node's HTTP parser hands a body out: each piece a copy of its own; then a piece that shares its buffer (here a
  // slice of Node's Buffer pool).
  const own = [filled(65316, 1), filled(14684, 2)].map((bytes) => Buffer.from(bytes.buffer));
  const shared = Buffer.from('tail of the body');
  async function* chunks() {
    yield* own;
    yield shared;
  }
  const owners = own.map((chunk) => chunk.buffer);
  const body = await collectWiping(chunks(), 1 << 20, { expected: 65316 + 14684 + shared.length });
  t.equal(body.length, 80000 + 16, 'the whole body');
  t.ok(body.subarray(0, 65316).every((b) => b === 1) && body.subarray(65316, 80000).every((b) => b === 2), 'in order, intact');
  t.equal(body.subarray(80000).toString(), 'tail of the body', 'the shared piece copied before it was wiped');
  for (const [i, buffer] of owners.entries()) {
    if (CAN_FREE_EARLY) t.equal(buffer.byteLength, 0, `chunk ${i + 1}: freed once copied`);
    else t.ok(allZero(new Uint8Array(buffer)), `chunk ${i + 1}: zero-filled (this runtime cannot free early)`);
  }
  t.ok(shared.length === 16 && allZero(shared), 'the piece that shares its buffer: zero-filled in place, not freed');
});

t.test('a body over the limit: the chunk that crossed it and the bytes read so far are wiped', async (t) => {
  const first = Buffer.from(filled(600, 3).buffer);
  const second = Buffer.from(filled(600, 4).buffer);
  const [a, b] = [first.buffer, second.buffer];
  async function* chunks() {
    yield first;
    yield second;
  }
  await t.rejects(collectWiping(chunks(), 1000), { code: 'PTOON_TOO_LARGE' });
  for (const [name, buffer] of [['first', a], ['second', b]] as const) {
    if (CAN_FREE_EARLY) t.equal(buffer.byteLength, 0, `${name} chunk: freed`);
    else t.ok(allZero(new Uint8Array(buffer)), `${name} chunk: zero-filled`);
  }
});

t.test('over a real socket, every piece of a body Node hands out is a buffer of its own, and is freed once read', { skip: CAN_FREE_EARLY ? false : 'this runtime cannot free early (Node 20): the pieces are zero-filled only' }, async (t) => {
  const seen: ArrayBuffer[] = [];
  const server = createServer((req, res) => {
    async function* recording() {
      for await (const chunk of req as AsyncIterable<Buffer>) {
        seen.push(chunk.buffer as ArrayBuffer);
        yield chunk;
      }
    }
    collectWiping(recording(), 1 << 20).then(
      (body) => res.end(String(body.length)),
      () => res.writeHead(500).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const answer = await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', body: new Uint8Array(200_000).fill(5) });
    t.equal(await answer.text(), '200000', 'the whole body read');
    t.ok(seen.length >= 2, `${seen.length} pieces`);
    t.same(seen.map((buffer) => buffer.byteLength), seen.map(() => 0), 'each one freed (detached)');
  } finally {
    server.close();
  }
});

t.test('a multipart file: bytes that all occur in the part delimiter are copied but never written to', async (t) => {
  // @fastify/busboy hands out bytes that looked like the start of a boundary as views of its own search buffer, which
  // it keeps using; they are the boundary's bytes (sent in the clear in Content-Type), never the photo's.
  const delimiter = Buffer.from('\r\n--form-boundary');
  const lookbehind = Buffer.from(new Uint8Array(delimiter.length - 1).fill(0).buffer);
  delimiter.copy(lookbehind, 0, 0, 9); // "\r\n--form-" as the parser keeps it
  const photo = Buffer.from(filled(4096, 9).buffer);
  async function* chunks() {
    yield photo;
    yield lookbehind.subarray(0, 9); // the prefix, from offset 0
    yield lookbehind.subarray(2, 9); // a piece of it from further in ("--form-")
  }
  const photoBuffer = photo.buffer;
  const body = await collectWiping(chunks(), 1 << 20, { delimiter });
  t.equal(body.subarray(4096).toString('latin1'), '\r\n--form---form-', 'every byte arrives');
  t.equal(lookbehind.byteLength, delimiter.length - 1, "the parser's buffer is neither freed...");
  t.equal(lookbehind.subarray(0, 9).toString('latin1'), '\r\n--form-', '...nor zero-filled');
  if (CAN_FREE_EARLY) t.equal(photoBuffer.byteLength, 0, "the photo's piece: freed");
  else t.ok(allZero(new Uint8Array(photoBuffer)), "the photo's piece: zero-filled");
});
