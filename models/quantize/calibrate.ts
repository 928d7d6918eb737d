/**
 * Calibration: the photos go through the model's own pre-processing (the worker's probe, decode, size rules and
 * tensor packing), the fp32 model runs on them with every tensor of the plan exposed as an extra output, and each
 * tensor's activation range is taken from what it actually held.
 *
 * Two ways to turn values into a range:
 *  - `minmax`: the lowest and highest value seen. Nothing is ever clipped, at the cost of a coarser step when a few
 *    values stand far out.
 *  - `percentile` (default): the 0.001st and 99.999th percentile of all values of all photos (a 4096-bin histogram
 *    per photo over its own min..max, merged). Drops the one-in-100,000 outliers that would otherwise stretch the step for every
 *    pixel, while clipping too little to show.
 * Entropy (KL) calibration is not offered: it is tuned to keep a classifier's argmax and clips far more of the
 * tails, which in an image generator are highlights and edges, the pixels people look at.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ModelManifest } from '../manifest.js';
import * as ort from '../../workers/ort.js';
import { ImageInputError, decode, probe } from '../../workers/image.js';
import { modelSize, toTensor, type PackedTensor } from '../../workers/tensor.js';
import { QuantizeError } from './graph.js';
import type { Range } from './qdq.js';

export type CalibrationMethod = 'minmax' | 'percentile';
export const CALIBRATION_METHODS: readonly CalibrationMethod[] = ['minmax', 'percentile'];

/** Large enough for any photo a person calibrates with; the service's own limit is an operator setting. */
const MAX_PIXELS = 100_000_000;
const BINS = 4096;
const PERCENTILE = 99.999;
const HISTOGRAM_STRIDE = 3;

export interface Photo {
  name: string;
  tensor: PackedTensor;
  /** The image's own size inside the (padded) tensor. */
  width: number;
  height: number;
}

/** Names that say "photo"; a file so named that does not decode as one is an error, other files are skipped. */
const PHOTO_NAME = /\.(jpe?g|png|webp)$/i;

/** The photos of a folder (by name, sorted) and the other files it holds (a README, say), which are skipped. */
export async function listPhotos(dir: string): Promise<{ photos: string[]; skipped: string[] }> {
  let names: string[];
  try {
    names = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isFile() && !e.name.startsWith('.')).map((e) => e.name);
  } catch (err) {
    throw new QuantizeError(`calibration folder ${dir} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const photos = names.filter((n) => PHOTO_NAME.test(n)).sort();
  if (photos.length === 0) throw new QuantizeError(`calibration folder ${dir} holds no photos (*.jpg, *.jpeg, *.png, *.webp); put a few portraits in it`);
  return { photos: photos.map((n) => join(dir, n)), skipped: names.filter((n) => !PHOTO_NAME.test(n)).sort() };
}

/** One photo as the model sees it, exactly as the worker would prepare it. */
export async function preparePhoto(manifest: ModelManifest, file: string): Promise<Photo> {
  const bytes = await readFile(file);
  const name = file.split('/').pop()!;
  try {
    const probed = await probe(bytes, MAX_PIXELS);
    // A head model sees square face crops of its `crop` side; a whole-image style the photo at its size rules.
    const inner = manifest.role === 'head' && manifest.crop !== undefined ? { width: manifest.crop, height: manifest.crop } : modelSize(probed.width, probed.height, manifest.size);
    const image = await decode(bytes, probed, inner.width, inner.height, MAX_PIXELS);
    const tensor = toTensor(image.rgb, image.width, image.height, manifest.input, manifest.size.multiple, manifest.size.pad);
    return { name, tensor, width: image.width, height: image.height };
  } catch (err) {
    if (err instanceof ImageInputError) throw new QuantizeError(`${file} is not a usable photo: ${err.message}`);
    throw err;
  }
}

/** Activation ranges of `tensors` over the photos, from a model that exposes them as outputs. */
export async function collectRanges(
  instrumented: Uint8Array,
  manifest: ModelManifest,
  photos: readonly Photo[],
  tensors: readonly string[],
  method: CalibrationMethod,
  threads: number,
): Promise<Map<string, Range>> {
  const session = await ort.InferenceSession.create(instrumented, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
  const run = async (photo: Photo) => {
    const feeds = { [manifest.input.name]: new ort.Tensor('float32', photo.tensor.data, photo.tensor.dims) };
    return session.run(feeds, [...tensors]);
  };
  try {
    // One pass: each photo gets its own min/max and a histogram over that span; the spans are merged afterwards.
    const seen = new Map<string, { min: number; max: number; histograms: { min: number; step: number; counts: Float64Array }[] }>(
      tensors.map((t) => [t, { min: Infinity, max: -Infinity, histograms: [] }]),
    );
    for (const photo of photos) {
      const out = await run(photo);
      for (const t of tensors) {
        const data = (out[t] as ort.Tensor).data as Float32Array;
        let min = Infinity;
        let max = -Infinity;
        for (let i = 0; i < data.length; i++) {
          const v = data[i]!;
          if (v < min) min = v;
          if (v > max) max = v;
        }
        if (!Number.isFinite(min) || !Number.isFinite(max)) throw new QuantizeError(`tensor ${t} held a NaN or infinite value on ${photo.name}`);
        const entry = seen.get(t)!;
        entry.min = Math.min(entry.min, min);
        entry.max = Math.max(entry.max, max);
        if (method === 'minmax') continue;
        const counts = new Float64Array(BINS);
        const k = max > min ? (BINS - 1) / (max - min) : 0;
        // Every HISTOGRAM_STRIDE-th value: millions of samples per tensor still, at a third of the cost. The stride
        // is odd, so with 2^n channels (NCHW rows or NHWC pixels alike) the samples cycle through every channel.
        for (let i = 0; i < data.length; i += HISTOGRAM_STRIDE) counts[Math.round((data[i]! - min) * k)]! += 1;
        entry.histograms.push({ min, step: k > 0 ? 1 / k : 0, counts });
      }
    }
    const ranges = new Map<string, Range>();
    for (const [t, { min, max, histograms }] of seen) {
      ranges.set(t, method === 'minmax' ? { min, max } : percentileRange(min, max, histograms));
    }
    return ranges;
  } finally {
    await session.release();
  }
}

/** The PERCENTILE range of the merged per-photo histograms (each bin counted at its centre). */
function percentileRange(min: number, max: number, histograms: readonly { min: number; step: number; counts: Float64Array }[]): Range {
  const merged = new Float64Array(BINS);
  const k = max > min ? (BINS - 1) / (max - min) : 0;
  for (const h of histograms) {
    for (let i = 0; i < BINS; i++) if (h.counts[i]! > 0) merged[Math.round((h.min + i * h.step - min) * k)]! += h.counts[i]!;
  }
  const tail = merged.reduce((a, b) => a + b, 0) * (1 - PERCENTILE / 100);
  let lo = 0;
  for (let below = 0; lo < BINS - 1 && below + merged[lo]! <= tail; lo++) below += merged[lo]!;
  let hi = BINS - 1;
  for (let above = 0; hi > 0 && above + merged[hi]! <= tail; hi--) above += merged[hi]!;
  const step = k > 0 ? 1 / k : 0;
  return { min: min + lo * step, max: min + hi * step };
}
