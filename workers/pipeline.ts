/**
 * One task's work inside a worker, from encoded bytes to an encoded cartoon: probe, decode, [detect faces,] pack,
 * run, unpack, [heads,] encode. Every intermediate is wiped whatever happens; the whole-image pass packs and
 * unpacks into the worker's reusable buffers (scratch.ts), which are wiped when the task ends.
 *
 * Kept apart from entry.ts (the thread's entry point) so that tests can run it in-process on real sessions.
 */
import { performance } from 'node:perf_hooks';
import type { CartoonizeReply, CartoonizeTask, StageTimings, WorkerConfig } from '../contract.js';
import { wipeAndFree } from '../wipe.js';
import { avatarSquare, cropRaster } from './faces/avatar.js';
import { selectFaces, stylizeFaces } from './faces/pipeline.js';
import { yunetDetector, type Face } from './faces/yunet.js';
import { decode, encode, ImageInputError, MIME, probe, type DecodedImage } from './image.js';
import type { Scratch } from './scratch.js';
import type { ModelSession, OutputTensor } from './session.js';
import { fitLongSide, fromTensor, modelSize, padTo, toTensor } from './tensor.js';

export type PipelineConfig = Pick<WorkerConfig, 'maxInputPixels' | 'maxOutputSide' | 'maxFaces' | 'minFaceSize'>;
type PipelineTask = Pick<CartoonizeTask, 'style' | 'format' | 'quality' | 'maxSize' | 'requireFace' | 'crop'>;

export async function pipeline(
  sessions: ReadonlyMap<string, ModelSession>,
  input: Uint8Array,
  task: PipelineTask,
  config: PipelineConfig,
  scratch: Scratch,
): Promise<CartoonizeReply> {
  const model = sessions.get(task.style);
  if (model === undefined || model.manifest.role !== 'whole') {
    // The message is the id alone: UnknownStyleError's own format quotes it.
    return { ok: false, code: 'PTOON_UNKNOWN_STYLE', message: task.style };
  }
  const { size } = model.manifest;
  const head = model.manifest.head === undefined ? undefined : sessions.get(model.manifest.head);
  const detector = model.manifest.detector === undefined ? undefined : sessions.get(model.manifest.detector);
  const faceAware = head !== undefined && detector !== undefined && config.maxFaces > 0;
  if ((task.requireFace || task.crop === 'face') && !faceAware) {
    const option = task.crop === 'face' ? 'crop=face' : 'require_face';
    return { ok: false, code: 'PTOON_BAD_OPTION', message: `The style "${task.style}" does not look for faces, so ${option} cannot apply` };
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
    image = await decode(input, probed, inner.width, inner.height, config.maxInputPixels, scratch.decoded(inner.width * inner.height));
    const t1 = performance.now();

    // Faces first: a request that requires one fails before the expensive whole-image pass.
    let faces: Face[] = [];
    if (faceAware) {
      const detect = yunetDetector((data, dims) => detector.runAll(data, dims), { maxSide: detector.manifest.size.maxLongSide });
      faces = selectFaces(await detect(image.rgb, image.width, image.height), config.maxFaces, config.minFaceSize);
      if (faces.length === 0 && (task.requireFace || task.crop === 'face')) return { ok: false, code: 'PTOON_NO_FACE', message: 'No face was found in the image' };
    }
    const t2 = performance.now();

    const stages = { pack: 0, run: 0, unpack: 0 };
    rgb = await runImageModel(model, image.rgb, image.width, image.height, scratch, stages);
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
    wipeAndFree(encoded);
    const timings: StageTimings = { decode: t1 - t0, infer: t3 - t2, ...stages, encode: t5 - t4 };
    if (faceAware) Object.assign(timings, { detect: t2 - t1, head: t4 - t3 });
    return { ok: true, output: output.buffer, mime: MIME[task.format], width: outSize.width, height: outSize.height, faces: faces.length, timings };
  } catch (err) {
    if (err instanceof ImageInputError) return { ok: false, code: err.code, message: err.message };
    throw err;
  } finally {
    // The worker's reusable buffers, and the decoded pixels of the upload and of its cartoon: wiped whatever happened.
    scratch.wipe();
    if (image !== undefined) wipeAndFree(image.rgb);
    if (image?.alpha !== undefined) wipeAndFree(image.alpha);
    if (rgb !== undefined) wipeAndFree(rgb);
  }
}

/**
 * RGB pixels through one image-to-image model, by its manifest's conventions. With `scratch` (the whole-image
 * pass), the tensor and the result's pixels live in the worker's reusable buffers, wiped when the task ends; the
 * result is then only valid until then. Without it (face crops), every array is the call's own. Anything else
 * (the model's output) is wiped and freed here (wipe.ts).
 */
async function runImageModel(
  model: ModelSession,
  rgb: Uint8Array,
  width: number,
  height: number,
  scratch?: Scratch,
  stages?: { pack: number; run: number; unpack: number },
): Promise<Uint8Array> {
  const { size, input, output } = model.manifest;
  const t0 = performance.now();
  const padded = padTo(width, size.multiple) * padTo(height, size.multiple);
  const room = scratch?.tensor(padded);
  const tensor = toTensor(rgb, width, height, input, size.multiple, size.pad, room, scratch);
  let result: OutputTensor | undefined;
  try {
    const t1 = performance.now();
    result = await model.run(tensor.data, tensor.dims);
    const t2 = performance.now();
    const pixels = fromTensor(result.data, result.dims, output, width, height, scratch?.pixels(width * height), scratch);
    if (stages !== undefined) Object.assign(stages, { pack: t1 - t0, run: t2 - t1, unpack: performance.now() - t2 });
    return pixels;
  } finally {
    if (room === undefined || tensor.data.buffer !== room.buffer) wipeAndFree(tensor.data); // scratch is wiped at the task's end
    // The model's output (3 MiB at 512x512): freed now, not left for this thread's collector (wipe.ts).
    if (result !== undefined) wipeAndFree(result.data);
  }
}
