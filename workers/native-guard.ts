/**
 * A task's guard against terminating this thread inside native code (worker side).
 *
 * Why: terminating a worker thread while onnxruntime-node (or libvips, through sharp) is inside a native call aborts
 * the whole process ("terminate called after throwing an instance of 'Napi::Error'"): the native code returns into an
 * environment that is being torn down. Yet a deadline must be able to end a task. So every task carries one Int32 of
 * GUARD flags in a SharedArrayBuffer, which both threads change only atomically:
 *
 *   worker: sets STARTED, then NATIVE around each native call (by compare-and-swap, refused once CANCELLED or
 *           KILLED is set), then DONE
 *   pool:   at the deadline sets CANCELLED: the task stops at its next native call (or before it starts); a task that
 *           is still running later, in JavaScript, gets KILLED by compare-and-swap and its thread is terminated
 *
 * NATIVE and KILLED are each set only by a compare-and-swap against a value that has neither, so at most one of them
 * wins: the pool never terminates a thread that is inside, or entering, native code.
 * The main-thread half is `stopRunning` in pool.ts; the flags are in contract.ts.
 */
import { GUARD } from '../contract.js';

/** Thrown where a task whose deadline has passed would start, or enter native code again. */
export class TaskCancelledError extends Error {
  constructor() {
    super('the task was cancelled by its deadline');
    this.name = 'TaskCancelledError';
  }
}

/** The running task's guard; a worker runs one task at a time. Undefined outside a task (warm-up, tools, tests). */
let slot: Int32Array | undefined;

/** Marks the task started; throws if its deadline passed while it waited for this thread. */
export function beginTask(guard: SharedArrayBuffer): void {
  slot = new Int32Array(guard);
  if ((Atomics.or(slot, 0, GUARD.STARTED) & GUARD.CANCELLED) !== 0) throw new TaskCancelledError();
}

/** The task is over: from now on the pool will not kill this thread for it. */
export function endTask(): void {
  if (slot !== undefined) Atomics.or(slot, 0, GUARD.DONE);
  slot = undefined;
}

/**
 * Runs `call` (anything that enters native code: a session run, a sharp pipeline) unless the task was stopped. If the
 * pool is terminating this thread, the call never starts and never settles: the thread ends.
 */
export async function native<T>(call: () => Promise<T>): Promise<T> {
  const guard = slot;
  if (guard === undefined) return call();
  for (;;) {
    const flags = Atomics.load(guard, 0);
    if ((flags & GUARD.KILLED) !== 0) return new Promise<never>(() => {});
    if ((flags & GUARD.CANCELLED) !== 0) throw new TaskCancelledError();
    if (Atomics.compareExchange(guard, 0, flags, flags | GUARD.NATIVE) === flags) break;
  }
  Atomics.add(guard, 1, 1); // native calls entered: the pool's watchdog tells "stuck in JavaScript" from "passing through"

  try {
    return await call();
  } finally {
    Atomics.and(guard, 0, ~GUARD.NATIVE);
  }
}
