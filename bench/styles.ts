/**
 * What each served style costs: `session.run` alone, in this process, at the sizes the styles run at, with 1 and 2
 * onnxruntime threads (the plain loop of bench/lib/plain.ts, the service's session options). The learned styles
 * (CartoonGAN, imported from TF.js by models/import/) against the built-in `toon` and the DCT-Net-class benchmark.
 *
 *   npm run bench:styles                              # 512x512, 6 s per row
 *   BENCH_SIZES=256,512 BENCH_SECONDS=10 npm run bench:styles
 */
import { availableParallelism, cpus } from 'node:os';
import { BENCH_MODELS_DIR, BUILTIN_MODELS_DIR, CARTOONGAN_MODELS_DIR } from '../paths.js';
import { benchImages } from './lib/images.js';
import { findManifest, plainLoop } from './lib/plain.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 6);
const SIZES = (process.env.BENCH_SIZES ?? '512').split(',').map(Number);
const STYLES = (process.env.BENCH_STYLES ?? 'toon,dctnet-bench,hayao,hosoda,paprika,shinkai').split(',');
const THREADS = [1, Math.min(2, availableParallelism())];
const DIRS = [BUILTIN_MODELS_DIR, BENCH_MODELS_DIR, CARTOONGAN_MODELS_DIR];

console.log(`${cpus()[0]?.model ?? 'cpu'}, ${availableParallelism()} cores, ${SECONDS} s per row`);
console.log('| style | size | threads | runs/s | p50 ms | p99 ms | CPU ms per run | model RSS MiB |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
for (const size of SIZES) {
  const { images } = await benchImages(size, 4);
  for (const style of STYLES) {
    const manifest = await findManifest(DIRS, style);
    // The styles' own working size rules apply (CartoonGAN caps its long side at 512).
    for (const threads of [...new Set(THREADS)]) {
      const r = await plainLoop(manifest, images, { kind: 'ort', threads, seconds: SECONDS });
      const mib = (r.modelBytes / 2 ** 20).toFixed(0);
      console.log(`| ${style} | ${size}x${size} | ${threads} | ${r.perSecond.toFixed(2)} | ${r.latency.p50.toFixed(0)} | ${r.latency.p99.toFixed(0)} | ${r.cpuPerRun.toFixed(0)} | ${mib} |`);
    }
  }
}
