/**
 * Quantizes one image-to-image style to int8 and measures what that costs in quality and gains in speed:
 * plan (qdq.ts) -> calibrate on photos through the model's own pre-processing (calibrate.ts) -> rewrite to QDQ ->
 * compare int8 with fp32 on every photo (metrics.ts) -> time both. A model tool: it runs in the CLI, never on the
 * request path, and writes nothing itself (models/quantize/command.ts writes the style the operator asked for).
 */
import { performance } from 'node:perf_hooks';
import type { ModelManifest } from '../manifest.js';
import * as ort from '../../workers/ort.js';
import { fromTensor } from '../../workers/tensor.js';
import { collectRanges, type CalibrationMethod, type Photo } from './calibrate.js';
import { ModelGraph } from './graph.js';
import { psnr, ssim } from './metrics.js';
import { padNarrowConvs, planQuantization, rewriteQdq } from './qdq.js';

export { QuantizeError } from './graph.js';

/** The quality bar against fp32 on every held-aside photo. */
export const MIN_PSNR = 35;
export const MIN_SSIM = 0.98;

export interface QuantizeOptions {
  calibration: readonly Photo[];
  check: readonly Photo[];
  method: CalibrationMethod;
  reduceRange: boolean;
  /** Node names to leave in fp32. */
  keepFp32?: ReadonlySet<string>;
  threads: number;
  /** Timed runs per model (after one warm-up); 0 skips timing. */
  timingRuns: number;
}

export interface PhotoQuality {
  name: string;
  set: 'calibration' | 'held aside';
  width: number;
  height: number;
  psnr: number;
  ssim: number;
}

export interface QuantizeResult {
  bytes: Uint8Array;
  photos: PhotoQuality[];
  /** True when every held-aside photo meets MIN_PSNR and MIN_SSIM. */
  passed: boolean;
  int8Nodes: Record<string, number>;
  /** What the quantizer changed besides Q/DQ, and the convolutions it left in fp32, with the reason. */
  notes: string[];
  /** Best-of-n session.run milliseconds on the first held-aside photo; undefined when not timed. */
  speed: { photo: string; fp32Ms: number; int8Ms: number } | undefined;
}

function sessionOptions(threads: number): ort.InferenceSession.SessionOptions {
  // The service's settings (workers/session.ts): the QDQ fusions run at this optimisation level.
  return {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
  };
}

async function outputPixels(session: ort.InferenceSession, manifest: ModelManifest, photo: Photo): Promise<Uint8Array> {
  const feeds = { [manifest.input.name]: new ort.Tensor('float32', photo.tensor.data, photo.tensor.dims) };
  const out = (await session.run(feeds, [manifest.output.name]))[manifest.output.name] as ort.Tensor;
  return fromTensor(out.data as Float32Array, out.dims, manifest.output, photo.width, photo.height);
}

async function bestMs(session: ort.InferenceSession, manifest: ModelManifest, photo: Photo, runs: number): Promise<number> {
  const feeds = { [manifest.input.name]: new ort.Tensor('float32', photo.tensor.data, photo.tensor.dims) };
  await session.run(feeds, [manifest.output.name]);
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await session.run(feeds, [manifest.output.name]);
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

export async function quantize(manifest: ModelManifest, fp32: Uint8Array, opts: QuantizeOptions): Promise<QuantizeResult> {
  // The fp32 graph with its narrow convolutions widened: same results, the graph that is calibrated and rewritten.
  const widened = new ModelGraph(fp32);
  const padded = padNarrowConvs(widened, opts.keepFp32);
  const base = widened.encode();
  const plan = planQuantization(new ModelGraph(base), opts.keepFp32);
  // Calibrate on a copy that exposes every tensor the plan quantizes.
  const instrumented = new ModelGraph(base);
  const calibrated = plan.tensors.filter((t) => !plan.sameAs.has(t));
  for (const t of calibrated) instrumented.exposeFloat(t);
  const ranges = await collectRanges(instrumented.encode(), manifest, opts.calibration, calibrated, opts.method, opts.threads);

  const graph = new ModelGraph(base);
  const graphPlan = planQuantization(graph, opts.keepFp32);
  rewriteQdq(graph, graphPlan, ranges, { reduceRange: opts.reduceRange });
  graph.model.producerName = 'privatoon quantize';
  const bytes = graph.encode();

  const int8Nodes: Record<string, number> = {};
  for (const n of graphPlan.int8) int8Nodes[n.opType!] = (int8Nodes[n.opType!] ?? 0) + 1;

  const fp32Session = await ort.InferenceSession.create(fp32, sessionOptions(opts.threads));
  const int8Session = await ort.InferenceSession.create(bytes, sessionOptions(opts.threads));
  try {
    const photos: PhotoQuality[] = [];
    for (const [set, list] of [['calibration', opts.calibration], ['held aside', opts.check]] as const) {
      for (const photo of list) {
        const reference = await outputPixels(fp32Session, manifest, photo);
        const result = await outputPixels(int8Session, manifest, photo);
        photos.push({ name: photo.name, set, width: photo.width, height: photo.height, psnr: psnr(reference, result), ssim: ssim(reference, result, photo.width, photo.height) });
      }
    }
    const passed = photos.filter((p) => p.set === 'held aside').every((p) => p.psnr >= MIN_PSNR && p.ssim >= MIN_SSIM);
    const timed = opts.check[0] ?? opts.calibration[0];
    const speed =
      opts.timingRuns > 0 && timed !== undefined
        ? { photo: timed.name, fp32Ms: await bestMs(fp32Session, manifest, timed, opts.timingRuns), int8Ms: await bestMs(int8Session, manifest, timed, opts.timingRuns) }
        : undefined;
    return { bytes, photos, passed, int8Nodes, notes: [...padded, ...graphPlan.skipped], speed };
  } finally {
    await fp32Session.release();
    await int8Session.release();
  }
}
