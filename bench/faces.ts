/**
 * The cost of the DCT-Net face path, per stage, on a one-face and a three-face photo: YuNet detection, the
 * whole-image pass, and the head model on each aligned 288x288 crop. Uses the real models in ../shared/models
 * (White-box standing in for both the whole and the head model); skipped with a message where they are absent.
 */
import { poolSettings } from '../config.js';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InferencePool } from '../pool/inference-pool.js';
import { invertAffine, type Affine } from '../workers/faces/similarity.js';
import { warpAffine } from '../workers/faces/warp.js';
import { SHARED_IMAGES } from './photos.js';

const MODELS = join(SHARED_IMAGES, '..', 'models');
const DETECTOR = join(MODELS, 'face_detection_yunet_n_dynamic.onnx');
const WHITEBOX = join(MODELS, 'whitebox_cartoon_nhwc.onnx');
const RUNS = Number(process.env.BENCH_FACE_RUNS ?? 5);

/** Manifests for the face-aware style, written to a scratch folder (benchmark set-up, not the service). */
function faceStyleDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'privatoon-bench-'));
  const io = { input: { name: 'input_photo', layout: 'NHWC', channels: 'BGR', range: '-1..1' }, output: { name: 'final_output' } };
  const manifests = [
    { id: 'yunet', role: 'detector', family: 'yunet', file: DETECTOR, input: { name: 'input', layout: 'NCHW', channels: 'BGR', range: '0..255' }, size: { maxLongSide: 512, multiple: 32, pad: 0, resizeBack: false } },
    { id: 'head', role: 'head', crop: 288, file: WHITEBOX, ...io, size: { multiple: 8 } },
    { id: 'faces', role: 'whole', head: 'head', detector: 'yunet', file: WHITEBOX, ...io, size: { maxShortSide: 720, multiple: 8 } },
    { id: 'whole-only', role: 'whole', file: WHITEBOX, ...io, size: { maxShortSide: 720, multiple: 8 } },
  ];
  for (const m of manifests) writeFileSync(join(dir, `${m.id}.json`), JSON.stringify(m));
  return dir;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function facePathCost(): Promise<void> {
  if (RUNS < 1) return;
  if (!existsSync(DETECTOR) || !existsSync(WHITEBOX)) {
    console.log(`\n(face path not measured: ${MODELS} holds no YuNet/White-box models)`);
    return;
  }
  const dir = faceStyleDir();
  const pool = await InferencePool.start(poolSettings({ modelsDirs: [dir], workers: 1, intraOpThreads: 2 }));
  try {
    console.log(`\nFace path cost, White-box as whole and head model, 1 worker x 2 threads, median of ${RUNS} runs (ms)\n`);
    console.log('| photo | style | faces | decode | detect | whole-image infer | heads | encode | total |');
    console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const photo of ['astronaut_eileen_collins.png', 'obama_biden_group_stage.jpg']) {
      const bytes = readFileSync(join(SHARED_IMAGES, photo));
      for (const style of ['whole-only', 'faces']) {
        const samples: Array<Record<string, number>> = [];
        let faces = 0;
        for (let i = 0; i < RUNS + 1; i++) {
          const t0 = performance.now();
          const r = await pool.run(Buffer.from(bytes), { style, format: 'jpeg', quality: 85 });
          if (i > 0) samples.push({ ...r.timings, total: performance.now() - t0 });
          faces = r.faces;
        }
        const col = (k: string) => (samples[0]![k] === undefined ? '-' : median(samples.map((s) => s[k]!)).toFixed(0));
        console.log(`| ${photo} | ${style} | ${faces} | ${col('decode')} | ${col('detect')} | ${col('infer')} | ${col('head')} | ${col('encode')} | ${col('total')} |`);
      }
    }
  } finally {
    await pool.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The face path's own pixel work, without any model: cutting an aligned 288x288 RGB crop out of a 1024x1024 photo,
 * and warping a 288x288 float mask back over a 600x600 region (what blending one head costs besides the head model).
 */
export function warpCost(runs = Math.max(RUNS, 1) * 4): void {
  const side = 1024;
  const photo = new Uint8Array(side * side * 3);
  for (let i = 0; i < photo.length; i++) photo[i] = (i * 2654435761) >>> 24;
  const r = (12 * Math.PI) / 180;
  const toPhoto: Affine = [0.4 * Math.cos(r), -0.4 * Math.sin(r), 300, 0.4 * Math.sin(r), 0.4 * Math.cos(r), 200];
  const mask = { data: new Float32Array(288 * 288).fill(1), width: 288, height: 288, channels: 1 };
  const cases: Array<[string, () => unknown]> = [
    ['288x288 RGB crop from 1024x1024 (bytes, edge)', () => warpAffine({ data: photo, width: side, height: side, channels: 3 }, toPhoto, 288, 288, 'edge')],
    ['288x288 mask back over 600x600 (floats, zero)', () => warpAffine(mask, invertAffine(toPhoto), 600, 600, 'zero')],
  ];
  console.log(`\nWarp cost (workers/faces/warp.ts, no model), median of ${runs} runs after one warm-up (ms)\n`);
  console.log('| warp | ms |');
  console.log('| --- | --- |');
  for (const [name, run] of cases) {
    run();
    const samples: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      run();
      samples.push(performance.now() - t0);
    }
    console.log(`| ${name} | ${median(samples).toFixed(2)} |`);
  }
}
