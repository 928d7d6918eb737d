/**
 * `npm run bench:overload`: the service at `--factor` (4) times its capacity, open loop, for a bounded time.
 *
 *   npm run bench:overload                                  # dctnet-bench, 512x512, 15 s at 4x
 *   npm run bench:overload -- --style toon --seconds 30
 *
 * Measures the capacity (closed loop), then offers 4x that as fixed-rate arrivals. Reports accepted (200) vs
 * refused (503 + Retry-After) requests, latency of the accepted ones, /healthz latency, and the service's RSS at
 * start, peak and end against a budget computed from the model's and the images' measured memory (budget.ts).
 * Exit code 1 if a check fails.
 */
import { availableParallelism } from 'node:os';
import { BENCH_MODELS_DIR, BUILTIN_MODELS_DIR } from '../paths.js';
import { num, readFlags } from './lib/args.js';
import { formatChecks } from './lib/checks.js';
import { benchImages } from './lib/images.js';
import { machineLine } from './lib/machine.js';
import { overloadRun } from './lib/overload-run.js';
import { sessionMemory } from './lib/session-memory.js';
import { startService } from './lib/server.js';
import { formatCounts, mib, ms, table } from './lib/stats.js';

const flags = readFlags('npm run bench:overload -- [flags]', {
  style: { default: 'dctnet-bench', help: 'style to drive' },
  size: { default: '512', help: 'photos are cropped to size x size' },
  workers: { default: String(availableParallelism()), help: 'WORKERS' },
  threads: { default: '1', help: 'ORT_INTRA_THREADS' },
  'max-queue': { default: '', help: 'MAX_QUEUE; default the service\'s (4 per worker)' },
  'capacity-seconds': { default: '8', help: 'closed-loop seconds to measure capacity (and warm up)' },
  seconds: { default: '15', help: 'seconds of overload' },
  factor: { default: '4', help: 'offered load as a multiple of capacity' },
  settle: { default: '3', help: 'seconds to settle before the start and end RSS readings' },
});

async function main(): Promise<number> {
  const size = num(flags.size, 'size');
  const workers = num(flags.workers, 'workers');
  const threads = num(flags.threads, 'threads');
  const { images, source } = await benchImages(size);
  process.stderr.write(`memory of one ${flags.style} session on these images (plain loop in a fresh process, 3 s)...\n`);
  const memory = await sessionMemory([BUILTIN_MODELS_DIR, BENCH_MODELS_DIR], flags.style, images, 3);

  const service = await startService({
    models: 'builtin+bench',
    workers,
    intraThreads: threads,
    env: flags['max-queue'] === '' ? {} : { MAX_QUEUE: String(num(flags['max-queue'], 'max-queue')) },
  });
  let result;
  try {
    process.stderr.write(`capacity: ${flags['capacity-seconds']} s closed loop; then ${flags.factor}x for ${flags.seconds} s...\n`);
    result = await overloadRun(service, images, {
      style: flags.style,
      modelBytes: memory.modelBytes,
      workingSetBytes: memory.workingSetBytes,
      capacitySeconds: num(flags['capacity-seconds'], 'capacity-seconds'),
      seconds: num(flags.seconds, 'seconds'),
      factor: num(flags.factor, 'factor'),
      settleSeconds: num(flags.settle, 'settle'),
    });
  } finally {
    await service.stop();
  }

  const r = result;
  console.log(`Machine: ${machineLine()}`);
  console.log(`Images: ${source}`);
  console.log(`\nOverload: ${flags.factor}x the measured capacity as open-loop arrivals for ${r.seconds.toFixed(1)} s (until the last answer); server ${service.entry === 'dist' ? 'dist/server.js' : 'server.ts via tsx'}.\n`);
  console.log(
    table(
      ['model', 'size', 'workers x threads', 'MAX_QUEUE', 'capacity req/s', 'offered req/s', 'sent', 'accepted (200)', 'refused (503)', 'other', 'accepted p50 ms', 'accepted p99 ms', '503 p99 ms', '/healthz p50 ms', '/healthz p99 ms'],
      [
        [
          r.style,
          `${size}x${size}`,
          `${r.workers}x${threads}`,
          String(r.maxQueue),
          r.capacity.toFixed(2),
          r.offeredRate.toFixed(2),
          String(r.sent),
          String(r.accepted),
          `${r.rejected} (${r.rejectedWithRetryAfter} with Retry-After)`,
          formatCounts(Object.fromEntries(Object.entries(r.statuses).filter(([k]) => k !== '200' && k !== '503 PTOON_BUSY'))),
          ms(r.acceptedLatency.p50),
          ms(r.acceptedLatency.p99),
          ms(r.rejectedLatency.p99),
          ms(r.health.p50),
          ms(r.health.p99),
        ],
      ],
    ),
  );
  console.log('\nService RSS (VmRSS, sampled every 100 ms):\n');
  console.log(
    table(
      ['cold (just started) MiB', 'start (warm, idle) MiB', 'peak MiB', 'end (after settle) MiB', 'budget MiB'],
      [[mib(r.rss.cold), mib(r.rss.start), mib(r.rss.peak), mib(r.rss.end), mib(r.budget.bytes)]],
    ),
  );
  console.log(`\nBudget: ${r.budget.formula}.`);
  console.log(`Main thread V8 heap (in the HTTP allowance): ${mib(r.mainHeap.cold)} MiB at start-up, ${mib(r.mainHeap.after)} MiB right after the overload.`);
  console.log(`Model and working set: one ${flags.style} session measured by the plain loop in a fresh process on the same images.`);
  console.log(`\nChecks:\n${formatChecks(r.checks)}`);
  return r.checks.every((c) => c.ok) ? 0 : 1;
}

process.exitCode = await main();
