/**
 * The worker thread: one per core by default. At start it opens a session for every model and warms it; then it
 * runs one task at a time: encoded bytes in, encoded cartoon out, all in memory.
 *
 * No fastify, no logger here: the worker returns timings and coded failures; the main thread decides what to log.
 */
import { performance } from 'node:perf_hooks';
import { parentPort, threadId, workerData } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { CartoonizeReply, CartoonizeSuccess, CartoonizeTask, WorkerConfig } from './contract.js';
import { decode, encode, ImageInputError, MIME, probe } from './image.js';
import type { WorkerNotice } from './notice.js';
import { openSession, warmUp, type ModelSession } from './session.js';
import { fitLongSide, fromTensor, modelSize, toTensor } from './tensor.js';

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

  return async function cartoonize(task: CartoonizeTask): Promise<unknown> {
    const input = new Uint8Array(task.input);
    try {
      if (config.testHooks && task.testHook !== undefined) await runTestHook(task.testHook);
      const reply = await pipeline(sessions, input, task);
      if (!reply.ok) return reply;
      // Hand the result's memory back to the main thread instead of copying it.
      return Piscina.move({ [Piscina.transferableSymbol]: [reply.output], [Piscina.valueSymbol]: reply } as never);
    } finally {
      // The upload is not needed any more: leave no copy of it in this thread's memory.
      input.fill(0);
    }
  };
}

async function pipeline(sessions: Map<string, ModelSession>, input: Uint8Array, task: CartoonizeTask): Promise<CartoonizeReply> {
  const model = sessions.get(task.style);
  if (model === undefined || model.manifest.role !== 'whole') {
    return { ok: false, code: 'UNKNOWN_STYLE', message: task.style };
  }
  const { size, input: inSpec, output: outSpec } = model.manifest;
  const t0 = performance.now();
  try {
    const probed = await probe(input, config.maxInputPixels);
    // The result's size: the oriented original (or the model's size), capped by the request and the service.
    const outCap = Math.min(task.maxSize ?? config.maxOutputSide, config.maxOutputSide);
    const inner = modelSize(probed.width, probed.height, size, outCap);
    const out = size.resizeBack ? fitLongSide(probed.width, probed.height, outCap) : inner;

    const image = await decode(input, probed, inner.width, inner.height, config.maxInputPixels);
    const tensor = toTensor(image.rgb, image.width, image.height, inSpec, size.multiple, size.pad);
    image.rgb.fill(0);
    const t1 = performance.now();

    const result = await model.run(tensor.data, tensor.dims);
    tensor.data.fill(0);
    const t2 = performance.now();

    const rgb = fromTensor(result.data, result.dims, outSpec, image.width, image.height);
    result.data.fill(0);
    const encoded = await encode({ ...image, rgb }, out.width, out.height, task.format, task.quality);
    rgb.fill(0);
    image.alpha?.fill(0);
    const t3 = performance.now();

    // `encoded` may be a view into a larger allocation: copy into a buffer of its own, which is then moved.
    const output = new Uint8Array(encoded.byteLength);
    output.set(encoded);
    encoded.fill(0);
    const reply: CartoonizeSuccess = {
      ok: true,
      output: output.buffer,
      mime: MIME[task.format],
      width: out.width,
      height: out.height,
      faces: 0,
      timings: { decode: t1 - t0, infer: t2 - t1, encode: t3 - t2 },
    };
    return reply;
  } catch (err) {
    if (err instanceof ImageInputError) return { ok: false, code: err.code, message: err.message };
    throw err;
  }
}

/** Fault injection for the pool's recovery tests (enabled only by PoolConfig.testHooks). */
async function runTestHook(hook: NonNullable<CartoonizeTask['testHook']>): Promise<void> {
  switch (hook) {
    case 'throw':
      throw new Error('test hook: throw');
    case 'exit':
      process.exit(70);
    case 'hang':
      await new Promise((resolve) => setTimeout(resolve, 60_000));
  }
}

export default init();
