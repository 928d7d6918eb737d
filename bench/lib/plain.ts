/**
 * The plain in-process onnxruntime loop: the ceiling the service is measured against, on the same model and the
 * same images as the load run (the same method as bench/pool.ts, with the manifest's own tensor conventions so it
 * serves any style).
 *  - `ort`: session.run back to back on tensors prepared from the images beforehand: the model alone.
 *  - `pipeline`: what a worker does per image, in this thread: probe, decode, tensor, run, pixels, encode.
 * It also measures, in this process, what one session costs in memory: RSS after creating it (the model) and the
 * highest RSS while running it on these images (the image working set); the overload run's budget uses both.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import * as ort from '../../workers/ort.js';
import { loadManifests } from '../../models/registry.js';
import type { ModelManifest } from '../../models/manifest.js';
import { decode, encode, probe } from '../../workers/image.js';
import { Scratch } from '../../workers/scratch.js';
import { fromTensor, modelSize, padTo, toTensor, type PackedTensor } from '../../workers/tensor.js';
import type { BenchImage } from './images.js';
import { summarize, type LatencySummary } from './stats.js';

export interface PlainResult {
  kind: 'ort' | 'pipeline';
  threads: number;
  perSecond: number;
  latency: LatencySummary;
  /** CPU time of this process per run, ms (all its threads: onnxruntime's intra-op threads, libvips). */
  cpuPerRun: number;
  /** RSS growth from creating and warming the session (weights, pre-packed kernels). */
  modelBytes: number;
  /** RSS growth above that while running on these images (tensors, ORT arena, codec buffers). */
  workingSetBytes: number;
}

const MAX_PIXELS = 4096 * 4096;

export async function findManifest(dirs: readonly string[], style: string): Promise<ModelManifest> {
  const manifest = (await loadManifests(dirs)).find((m) => m.id === style);
  if (manifest === undefined) throw new Error(`no style "${style}" in ${dirs.join(', ')}`);
  return manifest;
}

async function tensorOf(manifest: ModelManifest, image: BenchImage): Promise<PackedTensor> {
  const probed = await probe(image.jpeg, MAX_PIXELS);
  const inner = modelSize(probed.width, probed.height, manifest.size);
  const decoded = await decode(image.jpeg, probed, inner.width, inner.height, MAX_PIXELS);
  return toTensor(decoded.rgb, decoded.width, decoded.height, manifest.input, manifest.size.multiple, manifest.size.pad);
}

/** Resets this process's peak RSS (Linux: `5` to /proc/self/clear_refs); false where that is not possible. */
function resetPeakRss(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

/** This process's peak RSS since the last reset (VmHWM), in bytes; 0 where it cannot be read. */
function peakRss(): number {
  try {
    const match = /^VmHWM:\s+(\d+)\s+kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return match?.[1] === undefined ? 0 : Number(match[1]) * 1024;
  } catch {
    return 0;
  }
}

export async function plainLoop(
  manifest: ModelManifest,
  images: readonly BenchImage[],
  opts: { kind: 'ort' | 'pipeline'; threads: number; seconds: number },
): Promise<PlainResult> {
  const tensors = opts.kind === 'ort' ? await Promise.all(images.map((img) => tensorOf(manifest, img))) : [];
  global.gc?.();
  const rssBefore = process.memoryUsage.rss();
  const session = await ort.InferenceSession.create(manifest.file, {
    // The service's session options (workers/session.ts), with this loop's thread count.
    intraOpNumThreads: opts.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
  });
  const inputName = manifest.input.name;
  const outputName = manifest.output.name;
  const rssModel = process.memoryUsage.rss();
  // The peak is the kernel's high-water mark (VmHWM), reset here: sampling RSS between runs sees only what the
  // allocators kept, not the tensors and arena blocks alive during session.run (48 to 115 MiB for the same toon run).
  const exactPeak = resetPeakRss();
  let rssPeak = rssModel;
  // The worker's reusable buffers (workers/scratch.ts), as a worker holds them.
  const scratch = new Scratch();

  const once = async (i: number) => {
    if (opts.kind === 'ort') {
      const t = tensors[i % tensors.length]!;
      await session.run({ [inputName]: new ort.Tensor('float32', t.data, t.dims) }, [outputName]);
      return;
    }
    const { jpeg } = images[i % images.length]!;
    const probed = await probe(jpeg, MAX_PIXELS);
    const inner = modelSize(probed.width, probed.height, manifest.size);
    const image = await decode(jpeg, probed, inner.width, inner.height, MAX_PIXELS);
    const padded = padTo(image.width, manifest.size.multiple) * padTo(image.height, manifest.size.multiple);
    const t = toTensor(image.rgb, image.width, image.height, manifest.input, manifest.size.multiple, manifest.size.pad, scratch.tensor(padded));
    const out = (await session.run({ [inputName]: new ort.Tensor('float32', t.data, t.dims) }, [outputName]))[outputName] as ort.Tensor;
    const rgb = fromTensor(out.data as Float32Array, out.dims, manifest.output, image.width, image.height, scratch.pixels(image.width * image.height));
    await encode({ ...image, rgb }, probed.width, probed.height, 'jpeg', 85);
    scratch.wipe();
  };

  let i = 0;
  for (const end = i + Math.max(2, images.length); i < end; i++) {
    await once(i);
    rssPeak = Math.max(rssPeak, process.memoryUsage.rss());
  }
  const latencies: number[] = [];
  const cpuStart = process.cpuUsage();
  const start = performance.now();
  while (performance.now() - start < opts.seconds * 1000) {
    const t0 = performance.now();
    await once(i++);
    latencies.push(performance.now() - t0);
    rssPeak = Math.max(rssPeak, process.memoryUsage.rss());
  }
  const elapsed = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpuStart);
  await session.release();
  return {
    kind: opts.kind,
    threads: opts.threads,
    perSecond: latencies.length / elapsed,
    latency: summarize(latencies),
    cpuPerRun: (cpu.user + cpu.system) / 1000 / latencies.length,
    modelBytes: Math.max(0, rssModel - rssBefore),
    workingSetBytes: Math.max(0, Math.max(rssPeak, exactPeak ? peakRss() : 0) - rssModel),
  };
}
