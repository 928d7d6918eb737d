/**
 * The memory budget a run's peak RSS is held to:
 *
 *   budget = base + HTTP allowance + workers x (model + image working set) + queued uploads
 *
 *  - model: RSS one session of the style adds when created and warmed (measured by the plain loop in a fresh process:
 *    session-memory.ts);
 *  - image working set: the peak RSS a session adds on top while it runs on the run's images, the largest of them
 *    included (decoded pixels, input and output tensors, onnxruntime's arena, codec buffers; plain loop again);
 *  - base: the service's RSS right after start-up less its workers' models: Node, Fastify, the libraries, the
 *    worker threads' isolates;
 *  - HTTP allowance: what the service adds under load beyond its sessions' own working set: the main thread's
 *    request and answer buffers and its V8 heap grown to match, and the allocator arenas of the threads that serve
 *    a worker (libuv's pool for the codecs) kept at their high-water mark: 96 MiB before the heap floor. Measured (2026-12-02, toon at
 *    320x320, 1 worker, capacity run then 4x overload, /proc/<pid>/smaps): the main arena +15 MiB, anonymous
 *    mappings (V8 spaces) +29 to 36 MiB, thread arenas 15 to 25 MiB more than the plain loop's working set on
 *    Node 24 (less on Node 20): up to 80 MiB in all, which 64 MiB (the earlier figure, from Node 20) did not cover.
 *    Then +64 MiB for the main thread's heap floor (`npm start`'s `--initial-old-space-size=96`: pool/worker-heap.ts),
 *    which lets its garbage (request and answer buffers among it) wait for a full collection that now comes every few
 *    seconds instead of every 45 to 110 requests: the near-free model's peak RSS rose 45 to 53 MiB at 150 to 190
 *    req/s, the overload test's (toon, 320x320) 10 to 25 MiB; the floor itself bounds it near 96 less the 16 MiB the
 *    heap holds live; 160 MiB in all;
 *  - queued uploads: the bodies of the requests the service may hold at once (workers running + MAX_QUEUE waiting).
 *
 * base + HTTP allowance is what the service needs with no model; the rest grows with the workers and the images.
 */

/**
 * Garbage the main thread's heap floor lets wait for a full collection (see above). A service left idle after load ran
 * none in 16 s (measured), so the overload run's end RSS may hold up to this much more than its start without anything
 * leaking.
 */
export const HEAP_FLOOR_GARBAGE_BYTES = 64 * 2 ** 20;
/** The main thread's growth under load (see above); the overload run reports the measured heap growth beside it. */
export const HTTP_ALLOWANCE_BYTES = 96 * 2 ** 20 + HEAP_FLOOR_GARBAGE_BYTES;
import { mib } from './stats.js';

export interface BudgetInputs {
  /** RSS of the service just after start-up (warm sessions, no request served yet). */
  coldRss: number;
  workers: number;
  modelBytes: number;
  workingSetBytes: number;
  maxQueue: number;
  largestUploadBytes: number;
}

export interface Budget extends BudgetInputs {
  base: number;
  httpAllowance: number;
  queuedUploads: number;
  bytes: number;
  /** The formula with its numbers, in MiB. */
  formula: string;
}

export function memoryBudget(inputs: BudgetInputs): Budget {
  const base = Math.max(0, inputs.coldRss - inputs.workers * inputs.modelBytes);
  const queuedUploads = (inputs.workers + inputs.maxQueue) * inputs.largestUploadBytes;
  const httpAllowance = HTTP_ALLOWANCE_BYTES;
  const bytes = base + httpAllowance + inputs.workers * (inputs.modelBytes + inputs.workingSetBytes) + queuedUploads;
  const formula =
    `base ${mib(base)} + HTTP allowance ${mib(httpAllowance)} + ${inputs.workers} workers x (model ${mib(inputs.modelBytes)} + image working set ${mib(inputs.workingSetBytes)})` +
    ` + queued uploads ${(queuedUploads / 2 ** 20).toFixed(1)} = ${mib(bytes)} MiB`;
  return { ...inputs, base, httpAllowance, queuedUploads, bytes, formula };
}
