/**
 * The main thread's heap floor stays on the main thread.
 *
 * `npm start`, the systemd units and the image start node with `--initial-old-space-size=96` (README, Performance).
 * V8 counts the array buffers a thread allocates (socket reads, upload bodies, the results coming back from the
 * workers: about 250 KB a request) toward its old generation until the next full collection. The main thread's heap
 * is small (about 16 MiB live), so its limit was reached every 45 to 110 requests: at 150 requests a second, a full
 * mark-compact every few hundred ms, with 5 to 15 ms pauses of the event loop that every request in flight and every
 * health check waited through, and workers left idle meanwhile (this thread hands them their next task). With the
 * floor, those buffers die in the young generation's short collections and a full one runs every few seconds.
 *
 * V8's flags belong to the process, and every isolate reads this one when it is created: the worker threads would get
 * the same floor, and their garbage (a tensor of several MiB a run) could then reach 96 MiB a worker before a full
 * collection, which the memory budget does not count. The pool clears it before it starts its threads, so they keep
 * V8's own sizing (whatever value node was given: this flag is the main thread's); the main thread, created earlier,
 * keeps its floor (test/workers/worker-heap.test.ts checks both).
 */
import { setFlagsFromString } from 'node:v8';

export function workersKeepDefaultHeapSizing(): void {
  setFlagsFromString('--initial-old-space-size=0');
}
