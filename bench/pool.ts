/**
 * Pool benchmark: how much of a plain onnxruntime loop's throughput the service's pool keeps, on the DCT-Net-class
 * benchmark model, at 512x512 and 720x720, for several workers x intra-op-threads splits of the cores.
 *
 *   npm run bench:pool                      # default: 8 s per measurement
 *   BENCH_SECONDS=20 npm run bench:pool     # steadier numbers
 *   BENCH_SIZES=512 BENCH_SPLITS=1x2,2x1 npm run bench:pool
 *
 * The plain loop runs session.run on a prepared tensor in this process, with the best of its thread settings: the
 * ceiling for the model alone (and once more with the whole pipeline around it, in-process). The pool does the whole job per image (JPEG decode, tensor, run, encode) in worker
 * threads, fed with enough tasks to stay busy. Prints a Markdown table; then, where ../shared has the real detector
 * and White-box model, a second table with the cost of the face path (bench/faces.ts).
 */
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as ort from '../workers/ort.js';
import sharp from 'sharp';
import { BENCH_MODELS_DIR, loadManifests } from '../models/registry.js';
import { decode, encode, probe } from '../workers/image.js';
import { fromTensor, toTensor } from '../workers/tensor.js';
import { InferencePool } from '../workers/pool.js';
import { facePathCost } from './faces.js';
import { benchPhoto } from './photos.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const SIZES = (process.env.BENCH_SIZES ?? '512,720').split(',').map(Number);
const CORES = availableParallelism();
const SPLITS = (process.env.BENCH_SPLITS ?? `1x${CORES},${CORES}x1`)
  .split(',')
  .map((s) => s.split('x').map(Number) as [number, number]);
const MODEL = join(BENCH_MODELS_DIR, 'dctnet-bench.onnx');

interface Row {
  size: number;
  mode: string;
  split: string;
  perSecond: number;
  p50: number;
  p99: number;
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/**
 * The plain loop, in this process: `ort` only runs session.run on a prepared tensor (the model's own ceiling);
 * `pipeline` also does what a worker does around it (decode, tensor, run, pixels, encode), to show the pool's
 * own overhead apart from the pipeline's.
 */
async function plainLoop(size: number, threads: number, kind: 'ort' | 'pipeline', photo: Buffer): Promise<Row> {
  const session = await ort.InferenceSession.create(MODEL, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  });
  const [manifest] = await loadManifests([BENCH_MODELS_DIR]);
  const spec = manifest!.input;
  const prepared = new ort.Tensor('float32', new Float32Array(size * size * 3).fill(128), [1, size, size, 3]);
  const once = async () => {
    if (kind === 'ort') return session.run({ input_image: prepared });
    const probed = await probe(photo, 1 << 26);
    const image = await decode(photo, probed, probed.width, probed.height, 1 << 26);
    const t = toTensor(image.rgb, image.width, image.height, spec, 16, 255);
    const out = (await session.run({ input_image: new ort.Tensor('float32', t.data, t.dims) }))['output_image'] as ort.Tensor;
    const rgb = fromTensor(out.data as Float32Array, out.dims, spec, image.width, image.height);
    return encode({ ...image, rgb }, image.width, image.height, 'jpeg', 85);
  };
  for (let i = 0; i < 2; i++) await once();
  const latencies: number[] = [];
  const start = performance.now();
  while (performance.now() - start < SECONDS * 1000) {
    const t0 = performance.now();
    await once();
    latencies.push(performance.now() - t0);
  }
  const elapsed = (performance.now() - start) / 1000;
  await session.release();
  latencies.sort((a, b) => a - b);
  const mode = kind === 'ort' ? 'plain loop: session.run only' : 'plain loop: whole pipeline, in-process';
  return { size, mode, split: `1x${threads}`, perSecond: latencies.length / elapsed, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

async function poolRun(size: number, workers: number, threads: number, photo: Buffer): Promise<Row> {
  const pool = await InferencePool.start({ modelsDirs: [BENCH_MODELS_DIR], workers, intraOpThreads: threads, maxQueue: workers * 4 });
  const task = { style: 'dctnet-bench', format: 'jpeg' as const, quality: 85 };
  // Two tasks per worker in flight: a worker never waits for the main thread between tasks.
  for (let i = 0; i < workers; i++) await pool.run(Buffer.from(photo), task);
  const latencies: number[] = [];
  const start = performance.now();
  const deadline = start + SECONDS * 1000;
  const client = async () => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      await pool.run(Buffer.from(photo), task);
      latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: workers * 2 }, client));
  const elapsed = (performance.now() - start) / 1000;
  await pool.close();
  latencies.sort((a, b) => a - b);
  return { size, mode: 'pool (decode+infer+encode)', split: `${workers}x${threads}`, perSecond: latencies.length / elapsed, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

async function main(): Promise<void> {
  const rows: Array<Row & { ratio: string }> = [];
  for (const size of SIZES) {
    const photo = await sharp(await benchPhoto()).resize(size, size, { fit: 'cover' }).jpeg({ quality: 90 }).toBuffer();
    const plain: Row[] = [];
    for (const threads of [...new Set([1, CORES])]) plain.push(await plainLoop(size, threads, 'ort', photo));
    const best = plain.reduce((a, b) => (b.perSecond > a.perSecond ? b : a));
    for (const row of plain) rows.push({ ...row, ratio: row === best ? '1.00 (best plain)' : (row.perSecond / best.perSecond).toFixed(2) });
    const inProcess = await plainLoop(size, best.split === '1x1' ? 1 : CORES, 'pipeline', photo);
    rows.push({ ...inProcess, ratio: (inProcess.perSecond / best.perSecond).toFixed(2) });
    for (const [workers, threads] of SPLITS) {
      const row = await poolRun(size, workers, threads, photo);
      rows.push({ ...row, ratio: (row.perSecond / best.perSecond).toFixed(2) });
    }
  }
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  console.log(`\nPool benchmark, DCT-Net-class model, ${SECONDS} s per row, ${CORES} cores (${cpu}), Node ${process.version}\n`);
  console.log('| size | mode | workers x threads | images/s | p50 ms | p99 ms | vs best plain loop |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const r of rows) {
    console.log(`| ${r.size}x${r.size} | ${r.mode} | ${r.split} | ${r.perSecond.toFixed(2)} | ${r.p50.toFixed(0)} | ${r.p99.toFixed(0)} | ${r.ratio} |`);
  }
  await facePathCost();
}

await main();
