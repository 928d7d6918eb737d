/**
 * wipe.ts: bytes that held a photo are zero-filled, and a whole buffer of their own is freed at once (detached) where
 * the runtime can; anything shared with other bytes, or that cannot be detached, is zero-filled only and keeps its
 * size, so nothing else loses its data.
 */
import t from 'tap';
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
