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
 * and White-box model, a second table with the cost of the face path (bench/faces.ts), and one with the cost of its
 * warps (no model); then int8 against fp32 (bench/quantized.ts; BENCH_INT8=0 skips it).
 */
import { poolSettings } from '../config.js';
import { availableParallelism, cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import sharp from 'sharp';
import { BENCH_MODELS_DIR } from '../paths.js';
import { InferencePool } from '../pool/inference-pool.js';
import { facePathCost, warpCost } from './faces.js';
import { findManifest, plainLoop } from './lib/plain.js';
import { percentile } from './lib/stats.js';
import { benchPhoto } from './photos.js';
import { int8Rows } from './quantized.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const SIZES = (process.env.BENCH_SIZES ?? '512,720').split(',').map(Number);
const CORES = availableParallelism();
const SPLITS = (process.env.BENCH_SPLITS ?? `1x${CORES},${CORES}x1`)
  .split(',')
  .map((s) => s.split('x').map(Number) as [number, number]);

interface Row {
  size: number;
  mode: string;
  split: string;
  perSecond: number;
  p50: number;
  p99: number;
}

/** The plain loop (bench/lib/plain.ts: `ort` is session.run alone, `pipeline` the worker's whole job), in this process. */
async function plainRow(size: number, threads: number, kind: 'ort' | 'pipeline', photo: Buffer): Promise<Row> {
  const manifest = await findManifest([BENCH_MODELS_DIR], 'dctnet-bench');
  const result = await plainLoop(manifest, [{ name: 'photo', jpeg: photo, width: size, height: size }], { kind, threads, seconds: SECONDS });
  const mode = kind === 'ort' ? 'plain loop: session.run only' : 'plain loop: whole pipeline, in-process';
  return { size, mode, split: `1x${threads}`, perSecond: result.perSecond, p50: result.latency.p50, p99: result.latency.p99 };
}

async function poolRun(size: number, workers: number, threads: number, photo: Buffer, modelsDirs = [BENCH_MODELS_DIR], style = 'dctnet-bench'): Promise<Row> {
  const pool = await InferencePool.start(poolSettings({ modelsDirs, workers, intraOpThreads: threads, maxQueue: workers * 4 }));
  const task = { style, format: 'jpeg' as const, quality: 85 };
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
    for (const threads of [...new Set([1, CORES])]) plain.push(await plainRow(size, threads, 'ort', photo));
    const best = plain.reduce((a, b) => (b.perSecond > a.perSecond ? b : a));
    for (const row of plain) rows.push({ ...row, ratio: row === best ? '1.00 (best plain)' : (row.perSecond / best.perSecond).toFixed(2) });
    const inProcess = await plainRow(size, best.split === '1x1' ? 1 : CORES, 'pipeline', photo);
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
  warpCost();
  if (process.env.BENCH_INT8 !== '0') {
    const size = SIZES[0]!;
    const photo = await sharp(await benchPhoto()).resize(size, size, { fit: 'cover' }).jpeg({ quality: 90 }).toBuffer();
    await int8Rows({ name: 'photo', jpeg: photo, width: size, height: size }, (dirs, style, workers, threads) => poolRun(size, workers, threads, photo, dirs, style));
  }
}

await main();
