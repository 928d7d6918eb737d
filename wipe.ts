/**
 * How bytes that held a photo or its cartoon are let go, on either side of the worker boundary: zero-filled, then,
 * when they are a whole ArrayBuffer of their own, freed at once instead of at the garbage collector's next pass.
 *
 * Why at once: V8 counts the array-buffer memory each thread allocates and collects when it piles up (a scavenge when
 * the young generation's buffers pass a threshold, a full mark-compact past the heap's external-memory limit), live
 * or dead. A worker drops a model output of 3 MiB a request at 512x512 (11 MiB for DCT-Net at 720x1280), the main
 * thread a result it has sent: left to the collector, they made the workers collect every few requests, on V8's
 * helper threads, which run at the event loop's priority and took its cores, and the main thread every second or so
 * under load, pausing every request and health check. `ArrayBuffer.prototype.transfer(0)` detaches the buffer; its
 * memory goes back to the allocator there and then (which scrubs it too, where GLIBC_TUNABLES asks for that).
 *
 * That needs `ArrayBuffer.prototype.transfer` (Node 22 and later; Node 20 has it only behind a V8 flag): without it
 * the bytes are zero-filled and left to the collector, as before. Memory that cannot be detached (a WebAssembly
 * memory such as the worker's scratch, a SharedArrayBuffer, memory native code lent to JavaScript) and views of part
 * of a buffer (a slice of Node's Buffer pool, of a codec's reused output) are zero-filled only.
 */

interface DetachableBuffer extends ArrayBuffer {
  transfer?: (newLength?: number) => ArrayBuffer;
}

/** Whether this runtime can free a buffer before the collector does. */
export const CAN_FREE_EARLY = typeof (ArrayBuffer.prototype as DetachableBuffer).transfer === 'function';

/** Node's Buffer pool slices are never the whole pool (allocations over half the pool size bypass it). */
export function isPoolBacked(bytes: ArrayBufferView): boolean {
  return Buffer.isBuffer(bytes) && bytes.buffer.byteLength === Buffer.poolSize && bytes.byteLength < Buffer.poolSize;
}

/**
 * Zero-fills `bytes` and, when they span a whole ArrayBuffer of their own, frees its memory now (the buffer, and
 * every view of it, is then empty). For bytes nothing will read again: a task's upload once the task is over, a
 * model's output once unpacked, a result once the socket has it. Safe to call twice on the same bytes.
 */
export function wipeAndFree(bytes: ArrayBufferView | ArrayBuffer): void {
  if (bytes.byteLength === 0) return; // empty, or already detached (a view over detached memory cannot be made)
  const view = ArrayBuffer.isView(bytes) ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : new Uint8Array(bytes);
  view.fill(0);
  const buffer = view.buffer as DetachableBuffer;
  if (!CAN_FREE_EARLY || !(buffer instanceof ArrayBuffer)) return;
  // Part of a buffer (a slice of Node's Buffer pool is always part of it: isPoolBacked) is only zero-filled.
  if (view.byteOffset !== 0 || view.byteLength !== buffer.byteLength) return;
  try {
    buffer.transfer!(0);
  } catch {
    // Not detachable (WebAssembly memory, native memory): wiped above, and left to its owner.
  }
}
