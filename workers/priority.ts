/**
 * Lowers this worker thread's scheduling priority (its niceness), so that when inference and the main thread both
 * want a core, the main thread gets it: health checks, admission (503 before an upload is read) and uploads stay
 * prompt while every worker is busy. Measured with the near-free model saturating 2 cores (README, Performance):
 * `/healthz` p99 28 -> 11 ms at nice 10, throughput unchanged within noise. Inference loses nothing when the main
 * thread is idle: niceness only orders threads that compete.
 *
 * Linux keeps a niceness per thread: setpriority(PRIO_PROCESS, tid) changes this thread alone, and the threads it
 * starts afterwards (onnxruntime's) inherit it. Raising one's own niceness needs no privilege; where it is refused
 * (a seccomp filter without `setpriority`, another system) the worker carries on at the process's priority.
 */
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';

/** True when this thread now runs at `nice` (0 changes nothing and answers false). */
export function lowerThreadPriority(nice: number): boolean {
  if (nice === 0 || process.platform !== 'linux') return false;
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop()); // "<pid>/task/<tid>"
    if (!Number.isInteger(tid) || tid <= 0) return false;
    setPriority(tid, nice);
    return true;
  } catch {
    return false;
  }
}
