/**
 * int8 against fp32 (the rows `npm run bench:pool` prints after the pool table): each model is quantized with
 * `privatoon quantize` into a scratch folder (calibrated on ../shared/images, or on generated photos where that is
 * absent), then the plain onnxruntime loop runs the fp32 and the int8 model in turns, BENCH_INT8_REPEATS times
 * each, keeping each one's best run (other work on a shared machine only ever slows a run down), and the pool
 * runs the int8 style. Models: dctnet-bench, and White-box where ../shared/models has it (read in place; its int8
 * derivative only lives in the scratch folder, removed afterwards).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../config.js';
import { BENCH_MODELS_DIR } from '../paths.js';
import { quantizeCommand } from '../models/quantize/command.js';
import { findManifest, plainLoop } from './lib/plain.js';
import type { BenchImage } from './lib/images.js';
import { int8Flags } from './lib/machine.js';
import { SHARED_IMAGES, syntheticPhoto } from './photos.js';

const SECONDS = Number(process.env.BENCH_INT8_SECONDS ?? 4);
const REPEATS = Number(process.env.BENCH_INT8_REPEATS ?? 3);
const CORES = availableParallelism();
const WHITEBOX = join(SHARED_IMAGES, '..', 'models', 'whitebox_cartoon_nhwc.onnx');

export interface Int8Row {
  model: string;
  mode: string;
  split: string;
  perSecond: number;
  p50: number;
}

/** Calibration photos: the shared ones in place, else six generated ones in the scratch folder. */
async function calibrationDir(scratch: string): Promise<string> {
  if (existsSync(SHARED_IMAGES)) return SHARED_IMAGES;
  const dir = join(scratch, 'photos');
  mkdirSync(dir);
  for (let i = 0; i < 6; i++) writeFileSync(join(dir, `synthetic${i}.jpg`), await syntheticPhoto(640, 640, i + 1));
  return dir;
}

async function best(run: () => Promise<{ perSecond: number; latency: { p50: number } }>): Promise<{ perSecond: number; p50: number }> {
  let top = { perSecond: 0, p50: 0 };
  for (let i = 0; i < REPEATS; i++) {
    const r = await run();
    if (r.perSecond > top.perSecond) top = { perSecond: r.perSecond, p50: r.latency.p50 };
  }
  return top;
}

export async function int8Rows(photo: BenchImage, poolRun: (dirs: string[], style: string, workers: number, threads: number) => Promise<{ perSecond: number; p50: number }>): Promise<void> {
  const scratch = mkdtempSync(join(tmpdir(), 'privatoon-bench-int8-'));
  try {
    const sources: Array<{ name: string; dir: string; id: string }> = [{ name: 'dctnet-bench', dir: BENCH_MODELS_DIR, id: 'dctnet-bench' }];
    if (existsSync(WHITEBOX)) {
      const dir = join(scratch, 'whitebox');
      mkdirSync(dir);
      const manifest = { id: 'whitebox', role: 'whole', file: WHITEBOX, input: { name: 'input_photo', layout: 'NHWC', channels: 'BGR', range: '-1..1' }, output: { name: 'final_output' }, size: { maxShortSide: 720, multiple: 8 } };
      writeFileSync(join(dir, 'whitebox.json'), JSON.stringify(manifest));
      sources.push({ name: 'White-box', dir, id: 'whitebox' });
    }
    const photos = await calibrationDir(scratch);
    const rows: Array<Int8Row & { ratio: string }> = [];
    const report: string[] = [];
    for (const source of sources) {
      const out = join(scratch, `${source.id}-int8`);
      await quantizeCommand([join(source.dir, `${source.id}.json`), '--calibrate', photos, '--out', out, '--timing-runs', '0'], loadConfig({ MODELS_DIRS: source.dir }), (l) => report.push(l));
      const fp32 = await findManifest([source.dir], source.id);
      const int8 = await findManifest([out], `${source.id}-int8`);
      let fp32Best = 0;
      for (const threads of [...new Set([1, CORES])]) {
        let f = { perSecond: 0, p50: 0 };
        let q = { perSecond: 0, p50: 0 };
        // In turns, so that a busy spell on the machine hits both.
        for (let i = 0; i < REPEATS; i++) {
          const a = await plainLoop(fp32, [photo], { kind: 'ort', threads, seconds: SECONDS });
          if (a.perSecond > f.perSecond) f = { perSecond: a.perSecond, p50: a.latency.p50 };
          const b = await plainLoop(int8, [photo], { kind: 'ort', threads, seconds: SECONDS });
          if (b.perSecond > q.perSecond) q = { perSecond: b.perSecond, p50: b.latency.p50 };
        }
        fp32Best = Math.max(fp32Best, f.perSecond);
        rows.push({ model: source.name, mode: 'fp32 plain loop: session.run only', split: `1x${threads}`, ...f, ratio: '1.00' });
        rows.push({ model: source.name, mode: 'int8 plain loop: session.run only', split: `1x${threads}`, ...q, ratio: `**${(q.perSecond / f.perSecond).toFixed(2)}**` });
      }
      const splits: Array<[number, number]> = CORES === 1 ? [[1, 1]] : [[1, CORES], [CORES, 1]];
      for (const [workers, threads] of splits) {
        const pool = await best(async () => {
          const r = await poolRun([out], `${source.id}-int8`, workers, threads);
          return { perSecond: r.perSecond, latency: { p50: r.p50 } };
        });
        rows.push({ model: source.name, mode: 'int8 pool (decode+infer+encode)', split: `${workers}x${threads}`, ...pool, ratio: `${(pool.perSecond / fp32Best).toFixed(2)} (best fp32 plain)` });
      }
    }
    const flags = int8Flags();
    console.log(`\nint8 against fp32, ${photo.width}x${photo.height}, best of ${REPEATS} runs of ${SECONDS} s, ${CORES} cores (${cpus()[0]?.model ?? 'unknown CPU'}; ${flags})\n`);
    console.log('| model | mode | workers x threads | images/s | p50 ms | vs fp32 plain loop (same threads) |');
    console.log('| --- | --- | --- | --- | --- | --- |');
    for (const r of rows) console.log(`| ${r.model} | ${r.mode} | ${r.split} | ${r.perSecond.toFixed(2)} | ${r.p50.toFixed(0)} | ${r.ratio} |`);
    console.log('\nQuantization reports (PSNR/SSIM against fp32 at model size):\n');
    console.log(report.filter((l) => !l.startsWith('wrote')).join('\n'));
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}
