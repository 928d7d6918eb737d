/**
 * The worker thread: one per core by default. At start it opens a session for every model and warms it; then it
 * runs one task at a time: encoded bytes in, encoded cartoon out, all in memory.
 *
 * No fastify, no logger here: the worker returns timings and coded failures; the main thread decides what to log.
 */
import { parentPort, threadId, workerData } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { CartoonizeTask, WorkerConfig } from '../contract.js';
import { beginTask, endTask } from './native-guard.js';
import type { WorkerNotice } from '../contract.js';
import { pipeline } from './pipeline.js';
import { Scratch } from './scratch.js';
import { openSession, warmUp, type ModelSession } from './session.js';

const config = workerData as WorkerConfig;

function notify(notice: WorkerNotice): void {
  parentPort?.postMessage(notice);
}

async function init(): Promise<(task: CartoonizeTask) => Promise<unknown>> {
  const sessions = new Map<string, ModelSession>();
  try {
    for (const manifest of config.models) {
      const session = await openSession(manifest, config);
      await warmUp(session);
      sessions.set(manifest.id, session);
    }
  } catch (err) {
    notify({ privatoon: true, type: 'init-failed', threadId, message: `worker ${threadId}: ${(err as Error).message}` });
    throw err;
  }
  notify({ privatoon: true, type: 'ready', threadId });
  // This thread's reusable tensor and pixel buffers (one task at a time), wiped at the end of every task.
  const scratch = new Scratch();

  return async function cartoonize(task: CartoonizeTask): Promise<unknown> {
    const input = new Uint8Array(task.input);
    try {
      beginTask(task.guard);
      if (config.testHooks && task.testHook !== undefined) await runTestHook(task.testHook);
      const reply = await pipeline(sessions, input, task, config, scratch);
      if (!reply.ok) return reply;
      // Hand the result's memory back to the main thread instead of copying it.
      return Piscina.move({ [Piscina.transferableSymbol]: [reply.output], [Piscina.valueSymbol]: reply } as never);
    } finally {
      endTask();
      // The upload is not needed any more: leave no copy of it in this thread's memory.
      input.fill(0);
    }
  };
}

/** Fault injection for the pool's recovery tests (enabled only by PoolConfig.testHooks). */
async function runTestHook(hook: NonNullable<CartoonizeTask['testHook']>): Promise<void> {
  switch (hook) {
    case 'throw':
      throw new Error('test hook: throw');
    case 'exit':
      return process.exit(70);
    case 'hang':
      await new Promise((resolve) => setTimeout(resolve, 60_000));
  }
}

export default init();
