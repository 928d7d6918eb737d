/**
 * The worker thread: one per core by default. At start it opens a session for every model, checks it against its
 * manifest (workers/model-check.ts) and warms it; then it runs one task at a time: encoded bytes in, encoded cartoon
 * out, all in memory.
 *
 * No fastify, no logger here: the worker returns timings and coded failures; the main thread decides what to log.
 */
import { parentPort, threadId, workerData } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { CartoonizeTask, WorkerConfig } from '../contract.js';
import { wipeAndFree } from '../wipe.js';
import { ManifestError } from '../models/manifest.js';
import { beginTask, endTask } from './native-guard.js';
import type { WorkerNotice } from '../contract.js';
import { pipeline } from './pipeline.js';
import { lowerThreadPriority } from './priority.js';
import { Scratch } from './scratch.js';
import { openSession, warmUp, type ModelSession } from './session.js';

const config = workerData as WorkerConfig;

function notify(notice: WorkerNotice): void {
  parentPort?.postMessage(notice);
}

async function init(): Promise<(task: CartoonizeTask) => Promise<unknown>> {
  // First: the onnxruntime threads the sessions create inherit this thread's priority.
  lowerThreadPriority(config.workerNice);
  const sessions = new Map<string, ModelSession>();
  try {
    for (const manifest of config.models) {
      const session = await openSession(manifest, config);
      await warmUp(session);
      sessions.set(manifest.id, session);
    }
  } catch (err) {
    // A bad model is the manifest's fault, not this worker's: its fields cross over, for the pool to rebuild the error.
    const manifest = err instanceof ManifestError ? { file: err.file, field: err.field, problem: err.problem } : undefined;
    notify({ privatoon: true, type: 'init-failed', threadId, message: `worker ${threadId}: ${(err as Error).message}`, manifest });
    throw err;
  }
  notify({ privatoon: true, type: 'ready', threadId });
  // This thread's reusable tensor and pixel buffers (one task at a time), wiped at the end of every task.
  const scratch = new Scratch();

  return async function cartoonize(task: CartoonizeTask): Promise<unknown> {
    const input = new Uint8Array(task.input);
    try {
      beginTask(task.guard);
      const reply = await pipeline(sessions, input, task, config, scratch);
      if (!reply.ok) return reply;
      // Hand the result's memory back to the main thread instead of copying it.
      return Piscina.move({ [Piscina.transferableSymbol]: [reply.output], [Piscina.valueSymbol]: reply } as never);
    } finally {
      endTask();
      // The upload is not needed any more: leave no copy of it in this thread's memory, and give the memory back.
      wipeAndFree(input);
    }
  };
}

export default init();
