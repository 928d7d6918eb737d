/**
 * The only place that talks to onnxruntime in a worker: creates one session per model with the operator's thread
 * settings, checks it against its manifest (workers/model-check.ts), warms it, and runs it.
 */
import * as ort from './ort.js';
import { readFile } from 'node:fs/promises';
import type { ModelManifest } from '../models/manifest.js';
import { sha256 } from '../models/registry.js';
import sharp from 'sharp';
import { greyMask, type FaceMask } from './faces/mask.js';
import { checkIo, unloadable, unreadableMask } from './model-check.js';
import { native } from './native-guard.js';
import { padTo } from './tensor.js';

export interface ThreadSettings {
  intraOpThreads: number;
  interOpThreads: number;
  spinning: boolean;
}

export interface OutputTensor {
  data: Float32Array;
  dims: readonly number[];
}

export interface ModelSession {
  manifest: ModelManifest;
  /** Head models with a mask image: that mask at the crop size. */
  mask?: FaceMask | undefined;
  /** Runs the model and returns its image output (the manifest's `output.name`). */
  run(data: Float32Array, dims: readonly number[]): Promise<OutputTensor>;
  /** Runs the model and returns every output: detectors have many. */
  runAll(data: Float32Array, dims: readonly number[]): Promise<Record<string, OutputTensor>>;
  release(): Promise<void>;
}

export async function openSession(manifest: ModelManifest, threads: ThreadSettings): Promise<ModelSession> {
  // The bytes the registry pinned at start-up, or nothing: a file changed since then is refused, not loaded.
  const bytes = await readFile(manifest.file);
  if (manifest.sha256 !== undefined && sha256(bytes) !== manifest.sha256) {
    throw new Error(`${manifest.file} (${manifest.source}) changed since start-up; restart the service to check and load it`);
  }
  const session = await ort.InferenceSession.create(bytes, {
    // Parallelism comes from the pool's workers; each session gets a small, fixed share of the cores.
    intraOpNumThreads: threads.intraOpThreads,
    interOpNumThreads: threads.interOpThreads,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    // Never set optimizedModelFilePath: it makes onnxruntime write the optimised graph to disk.
    extra: { session: { intra_op: { allow_spinning: threads.spinning ? '1' : '0' }, inter_op: { allow_spinning: threads.spinning ? '1' : '0' } } },
  }).catch((err: unknown) => {
    throw unloadable(manifest, err);
  });
  let mask: FaceMask | undefined;
  try {
    checkIo(manifest, session);
    mask = manifest.mask === undefined ? undefined : await loadMask(manifest, manifest.mask, manifest.crop!);
  } catch (err) {
    await session.release();
    throw err;
  }
  const outputName = manifest.output.name;
  const float = (value: ort.OnnxValue | undefined, name: string): OutputTensor => {
    const tensor = value as ort.Tensor | undefined;
    if (tensor === undefined || tensor.type !== 'float32') throw new Error(`${manifest.id}: output "${name}" missing or not float32`);
    return { data: tensor.data as Float32Array, dims: tensor.dims };
  };
  return {
    manifest,
    mask,
    async run(data, dims) {
      const feeds = { [manifest.input.name]: new ort.Tensor('float32', data, dims) };
      const outputs = await native(() => session.run(feeds, [outputName]));
      return float(outputs[outputName], outputName);
    },
    async runAll(data, dims) {
      const feeds = { [manifest.input.name]: new ort.Tensor('float32', data, dims) };
      const outputs = await native(() => session.run(feeds));
      return Object.fromEntries(Object.keys(outputs).map((name) => [name, float(outputs[name], name)]));
    },
    release: () => session.release(),
  };
}

/** A head's mask image (a model file), as grey levels resized to the crop; one that does not decode names the manifest. */
async function loadMask(manifest: ModelManifest, file: string, crop: number): Promise<FaceMask> {
  let grey: Buffer;
  try {
    grey = await sharp(await readFile(file)).greyscale().resize(crop, crop, { fit: 'fill' }).raw().toBuffer();
  } catch (err) {
    throw unreadableMask(manifest, err);
  }
  return greyMask(new Uint8Array(grey.buffer, grey.byteOffset, grey.length), crop);
}

/** One inference on a small grey image, so the first real request does not pay for lazy initialisation. */
export async function warmUp(model: ModelSession): Promise<void> {
  const { layout } = model.manifest.input;
  const side = padTo(model.manifest.crop ?? 64, model.manifest.size.multiple);
  const dims = layout === 'NCHW' ? [1, 3, side, side] : [1, side, side, 3];
  const data = new Float32Array(side * side * 3);
  await (model.manifest.role === 'detector' ? model.runAll(data, dims) : model.run(data, dims));
}
