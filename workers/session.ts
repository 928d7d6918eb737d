/**
 * The only place that talks to onnxruntime in a worker: creates one session per model with the operator's thread
 * settings, warms it, and runs it.
 */
import * as ort from 'onnxruntime-node';
import type { ModelManifest } from '../models/manifest.js';
import { padTo } from './tensor.js';

export interface ThreadSettings {
  intraOpThreads: number;
  interOpThreads: number;
  spinning: boolean;
}

export interface ModelSession {
  manifest: ModelManifest;
  run(data: Float32Array, dims: readonly number[]): Promise<{ data: Float32Array; dims: readonly number[] }>;
  release(): Promise<void>;
}

export async function openSession(manifest: ModelManifest, threads: ThreadSettings): Promise<ModelSession> {
  const session = await ort.InferenceSession.create(manifest.file, {
    // Parallelism comes from the pool's workers; each session gets a small, fixed share of the cores.
    intraOpNumThreads: threads.intraOpThreads,
    interOpNumThreads: threads.interOpThreads,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    // Never set optimizedModelFilePath: it makes onnxruntime write the optimised graph to disk.
    extra: { session: { intra_op: { allow_spinning: threads.spinning ? '1' : '0' }, inter_op: { allow_spinning: threads.spinning ? '1' : '0' } } },
  });
  const outputName = manifest.output.name;
  return {
    manifest,
    async run(data, dims) {
      const input = new ort.Tensor('float32', data, dims);
      const outputs = await session.run({ [manifest.input.name]: input }, [outputName]);
      const output = outputs[outputName] as ort.Tensor | undefined;
      if (output === undefined || output.type !== 'float32') throw new Error(`${manifest.id}: output "${outputName}" missing or not float32`);
      return { data: output.data as Float32Array, dims: output.dims };
    },
    release: () => session.release(),
  };
}

/** One inference on a small grey image, so the first real request does not pay for lazy initialisation. */
export async function warmUp(model: ModelSession): Promise<void> {
  const { layout } = model.manifest.input;
  const side = padTo(model.manifest.crop ?? 64, model.manifest.size.multiple);
  const dims = layout === 'NCHW' ? [1, 3, side, side] : [1, side, side, 3];
  await model.run(new Float32Array(side * side * 3), dims);
}
