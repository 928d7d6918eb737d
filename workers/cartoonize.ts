/**
 * The worker thread: one per core by default. At start it opens a session for every model and warms it; then it
 * runs one task at a time: encoded bytes in, encoded cartoon out, all in memory.
 *
 * No fastify, no logger here: the worker returns timings and coded failures; the main thread decides what to log.
 */
import { performance } from 'node:perf_hooks';
import { parentPort, threadId, workerData } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { CartoonizeReply, CartoonizeTask, StageTimings, WorkerConfig } from './contract.js';
import { avatarSquare, cropRaster } from './faces/avatar.js';
import { selectFaces, stylizeFaces } from './faces/pipeline.js';
import { yunetDetector, type Face } from './faces/yunet.js';
import { decode, encode, ImageInputError, MIME, probe, type DecodedImage } from './image.js';
import { beginTask, endTask } from './native-guard.js';
import type { WorkerNotice } from './notice.js';
import { openSession, warmUp, type ModelSession, type OutputTensor } from './session.js';
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
      beginTask(task.guard);
      if (config.testHooks && task.testHook !== undefined) await runTestHook(task.testHook);
      const reply = await pipeline(sessions, input, task);
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

async function pipeline(sessions: Map<string, ModelSession>, input: Uint8Array, task: CartoonizeTask): Promise<CartoonizeReply> {
  const model = sessions.get(task.style);
  if (model === undefined || model.manifest.role !== 'whole') {
    return { ok: false, code: 'UNKNOWN_STYLE', message: task.style };
  }
  const { size } = model.manifest;
  const head = model.manifest.head === undefined ? undefined : sessions.get(model.manifest.head);
  const detector = model.manifest.detector === undefined ? undefined : sessions.get(model.manifest.detector);
  const faceAware = head !== undefined && detector !== undefined && config.maxFaces > 0;
  if ((task.requireFace || task.crop === 'face') && !faceAware) {
    const option = task.crop === 'face' ? 'crop=face' : 'require_face';
    return { ok: false, code: 'BAD_OPTION', message: `The style "${task.style}" does not look for faces, so ${option} cannot apply` };
  }
  const t0 = performance.now();
  let image: DecodedImage | undefined;
  let rgb: Uint8Array | undefined;
  try {
    const probed = await probe(input, config.maxInputPixels);
    // The result's size: the oriented original (or the model's size), capped by the request and the service.
    const outCap = Math.min(task.maxSize ?? config.maxOutputSide, config.maxOutputSide);
    const inner = modelSize(probed.width, probed.height, size, outCap);
    const out = size.resizeBack ? fitLongSide(probed.width, probed.height, outCap) : inner;
    image = await decode(input, probed, inner.width, inner.height, config.maxInputPixels);
    const t1 = performance.now();

    // Faces first: a request that requires one fails before the expensive whole-image pass.
    let faces: Face[] = [];
    if (faceAware) {
      const detect = yunetDetector((data, dims) => detector.runAll(data, dims), { maxSide: detector.manifest.size.maxLongSide });
      faces = selectFaces(await detect(image.rgb, image.width, image.height), config.maxFaces, config.minFaceSize);
      if (faces.length === 0 && (task.requireFace || task.crop === 'face')) return { ok: false, code: 'NO_FACE', message: 'No face was found in the image' };
    }
    const t2 = performance.now();

    rgb = await runImageModel(model, image.rgb, image.width, image.height);
    const t3 = performance.now();
    if (faces.length > 0) {
      const stylised = await stylizeFaces({
        original: image.rgb,
        result: rgb,
        width: image.width,
        height: image.height,
        faces,
        maxFaces: config.maxFaces,
        minFaceSize: config.minFaceSize,
        cropSize: head!.manifest.crop!,
        runHead: (crop, side) => runImageModel(head!, crop, side, side),
        mask: head!.mask,
      });
      rgb.fill(0);
      rgb = stylised.rgb;
    }
    const t4 = performance.now();

    let picture: DecodedImage = { ...image, rgb };
    let outSize = out;
    if (task.crop === 'face') {
      // The square around the largest face (selectFaces sorts them), at the scale the result would have had.
      const square = avatarSquare(faces[0]!.box, image.width, image.height);
      const cropped = cropRaster(picture, square);
      rgb.fill(0);
      rgb = cropped.rgb;
      picture = cropped;
      const side = Math.max(1, Math.min(Math.round((square.side * out.width) / image.width), outCap));
      outSize = { width: side, height: side };
    }
    const cropped = picture;
    const encoded = await encode(picture, outSize.width, outSize.height, task.format, task.quality).finally(() => {
      if (cropped.alpha !== image?.alpha) cropped.alpha?.fill(0); // the avatar's own copy of the alpha channel
    });
    const t5 = performance.now();

    // `encoded` may be a view into a larger allocation: copy into a buffer of its own, which is then moved.
    const output = new Uint8Array(encoded.byteLength);
    output.set(encoded);
    encoded.fill(0);
    const timings: StageTimings = { decode: t1 - t0, infer: t3 - t2, encode: t5 - t4 };
    if (faceAware) Object.assign(timings, { detect: t2 - t1, head: t4 - t3 });
    return { ok: true, output: output.buffer, mime: MIME[task.format], width: outSize.width, height: outSize.height, faces: faces.length, timings };
  } catch (err) {
    if (err instanceof ImageInputError) return { ok: false, code: err.code, message: err.message };
    throw err;
  } finally {
    // Decoded pixels of the upload and of its cartoon: wiped whatever happened.
    image?.rgb.fill(0);
    image?.alpha?.fill(0);
    rgb?.fill(0);
  }
}

/** RGB pixels through one image-to-image model, by its manifest's conventions; every intermediate is wiped. */
async function runImageModel(model: ModelSession, rgb: Uint8Array, width: number, height: number): Promise<Uint8Array> {
  const { size, input, output } = model.manifest;
  const tensor = toTensor(rgb, width, height, input, size.multiple, size.pad);
  let result: OutputTensor | undefined;
  try {
    result = await model.run(tensor.data, tensor.dims);
    return fromTensor(result.data, result.dims, output, width, height);
  } finally {
    tensor.data.fill(0);
    result?.data.fill(0);
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
