/**
 * Where one request's CPU goes inside a worker, stage by stage, in this process on one thread: probe, decode, pack,
 * run, unpack, encode; beside it the codec floor, the least any service must spend on the same image (sharp's bare
 * decode to raw pixels, and a bare JPEG encode of those pixels at the same quality and encoder settings).
 *
 * CPU time (process.cpuUsage), not wall time: on a machine shared with other work, CPU time per stage stays put
 * while wall time swings. Each stage's figure is the median over `rounds` passes over every image.
 *
 * An implementation may come from another checkout of the project (`--baseline`): its own workers/image.ts and tensor.ts
 * are loaded and measured the same way, so a before/after table comes from one run on one machine state.
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import * as ort from '../../workers/ort.js';
import type { ModelManifest } from '../../models/manifest.js';
import type { BenchImage } from './images.js';

export const STAGES = ['probe', 'decode', 'pack', 'run', 'unpack', 'encode'] as const;
export type Stage = (typeof STAGES)[number];

export interface StageCosts {
  /** Median CPU ms per stage. */
  stages: Record<Stage, number>;
  /** decode + pack + unpack + encode (+ probe): what the pipeline spends besides the model. */
  overhead: number;
  /** Bare decode to raw + bare encode, median CPU ms, at the implementation's encoder settings. */
  codecFloor: number;
  /** Encoded result size, mean bytes. */
  outputBytes: number;
}

const MAX_PIXELS = 4096 * 4096;

/** The worker functions a stage table measures, from this checkout or another. */
interface Implementation {
  image: typeof import('../../workers/image.js');
  tensor: typeof import('../../workers/tensor.js');
  /** The worker's reusable buffers (and, where it has them, its SIMD kernels); absent in older checkouts. */
  scratch?: typeof import('../../workers/scratch.js') | undefined;
}

export async function loadImplementation(root?: string): Promise<Implementation> {
  if (root === undefined) {
    return { image: await import('../../workers/image.js'), tensor: await import('../../workers/tensor.js'), scratch: await import('../../workers/scratch.js') };
  }
  const load = (file: string) => import(pathToFileURL(join(root, 'workers', file)).href);
  return { image: await load('image.ts'), tensor: await load('tensor.ts'), scratch: await load('scratch.ts').catch(() => undefined) };
}

/** Pixels the stage table's reusable buffers cover: every benchmark photo. */
const SCRATCH_PIXELS = 2048 * 2048;

function cpuMs(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1000;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1] ?? NaN;
}

/**
 * Measures each implementation on the same images, interleaved image by image (the order of implementations
 * alternating between passes), so that a change in the machine's load falls on all of them alike.
 */
export async function stageCosts(
  impls: readonly Implementation[],
  manifest: ModelManifest,
  images: readonly BenchImage[],
  opts: { rounds: number; quality: number },
): Promise<StageCosts[]> {
  const session = await ort.InferenceSession.create(manifest.file, {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
  });
  // Each implementation's own reusable buffers, as one of its workers holds them (with its SIMD kernels where it has
  // them); plain arrays for a checkout without them.
  const scratches = impls.map((impl) => (impl.scratch === undefined ? undefined : new impl.scratch.Scratch(SCRATCH_PIXELS)));
  const samples = impls.map(() => ({ probe: [], decode: [], pack: [], run: [], unpack: [], encode: [], floor: [] }) as Record<Stage | 'floor', number[]>);
  const outputBytes = impls.map(() => 0);
  let outputs = 0;

  const plain = { tensor: new Float32Array(SCRATCH_PIXELS * 3), pixels: new Uint8Array(SCRATCH_PIXELS * 3) };
  const once = async (impl: Implementation, jpeg: Buffer, into: Record<Stage | 'floor', number[]> | undefined): Promise<number> => {
    const { image: img, tensor: tns } = impl;
    const own = scratches[impls.indexOf(impl)];
    const room = own === undefined ? plain : { tensor: own.tensor(SCRATCH_PIXELS)!, pixels: own.pixels(SCRATCH_PIXELS)! };
    const times: Partial<Record<Stage | 'floor', number>> = {};
    let t = process.cpuUsage();
    const probed = await img.probe(jpeg, MAX_PIXELS);
    times.probe = cpuMs(t);
    const inner = tns.modelSize(probed.width, probed.height, manifest.size);
    t = process.cpuUsage();
    // As the pipeline does: where the worker's buffers offer a room for the decoded image (`Scratch.decoded`, newer
    // checkouts), decode into it, so that packing reads it in place.
    const decodeRoom = (own as { decoded?: (pixels: number) => Uint8Array | undefined } | undefined)?.decoded?.(inner.width * inner.height);
    const decoded = await img.decode(jpeg, probed, inner.width, inner.height, MAX_PIXELS, decodeRoom);
    times.decode = cpuMs(t);
    t = process.cpuUsage();
    const packed = tns.toTensor(decoded.rgb, decoded.width, decoded.height, manifest.input, manifest.size.multiple, manifest.size.pad, room.tensor, own);
    times.pack = cpuMs(t);
    t = process.cpuUsage();
    const out = (await session.run({ [manifest.input.name]: new ort.Tensor('float32', packed.data, packed.dims) }, [manifest.output.name]))[manifest.output.name] as ort.Tensor;
    times.run = cpuMs(t);
    t = process.cpuUsage();
    const rgb = tns.fromTensor(out.data as Float32Array, out.dims, manifest.output, decoded.width, decoded.height, room.pixels, own);
    times.unpack = cpuMs(t);
    t = process.cpuUsage();
    const encoded = await img.encode({ ...decoded, rgb }, probed.width, probed.height, 'jpeg', opts.quality);
    times.encode = cpuMs(t);

    // The floor: the same image through sharp with nothing else, at the same encoder settings.
    t = process.cpuUsage();
    const { data, info } = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
    await sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels as 3 } })
      .jpeg({ quality: opts.quality, chromaSubsampling: opts.quality >= 90 ? '4:4:4' : '4:2:0', ...encoderSettings(img) })
      .toBuffer();
    times.floor = cpuMs(t);
    if (into !== undefined) for (const [stage, ms] of Object.entries(times)) into[stage as Stage | 'floor'].push(ms);
    own?.wipe();
    return encoded.length;
  };

  try {
    for (let round = -1; round < opts.rounds; round++) {
      for (const { jpeg } of images) {
        const order = impls.map((_, i) => i);
        if (round % 2 !== 0) order.reverse();
        for (const i of order) {
          const bytes = await once(impls[i]!, jpeg, round < 0 ? undefined : samples[i]); // round -1: warm-up
          if (round >= 0) outputBytes[i]! += bytes;
        }
        if (round >= 0) outputs++;
      }
    }
  } finally {
    await session.release();
  }
  return impls.map((_, i) => {
    const stages = Object.fromEntries(STAGES.map((s) => [s, median(samples[i]![s])])) as Record<Stage, number>;
    return {
      stages,
      overhead: stages.probe + stages.decode + stages.pack + stages.unpack + stages.encode,
      codecFloor: median(samples[i]!.floor),
      outputBytes: outputBytes[i]! / outputs,
    };
  });
}

/** The implementation's JPEG encoder settings beyond quality and subsampling (none before they were named). */
function encoderSettings(img: Implementation['image']): Record<string, unknown> {
  return (img as { JPEG_ENCODER?: Record<string, unknown> }).JPEG_ENCODER ?? {};
}
