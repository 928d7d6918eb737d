/**
 * `npm run bench`: the service's throughput and latency over real HTTP, against the plain in-process onnxruntime
 * loop on the same model and images.
 *
 *   npm run bench                                   # toon, dctnet-bench and nearfree-bench, 512x512, 10 s per row
 *   npm run bench -- --seconds 30 --splits 2x1,1x2  # longer, and two workers x threads splits
 *   npm run bench -- --styles dctnet-bench --size 720 --concurrency 8
 *   npm run bench -- --baseline ../before --rounds 3 # before/after: another checkout, rows interleaved, best of 3
 *
 * For each split, the service is started (bench/lib/server.ts) with the built-in models and the DCT-Net-class
 * benchmark model, and each style is driven by `--concurrency` closed-loop clients posting photos (raw JPEG bodies,
 * options in the query), while /healthz is probed every 50 ms on a connection of its own. Right after each row,
 * with the service idle (its workers sleep: no spinning), the plain loop runs on the same model and images in this
 * process: each ratio compares two measurements taken back to back, so a machine whose background load drifts
 * skews it less. Prints one Markdown table, a diagnostics table (with the load average, to show such noise) and the
 * targets; the exit code is 0 whatever the numbers.
 *
 * First, for each style, the per-stage CPU cost of one request in this process (bench/lib/stages.ts) beside the codec
 * floor. With `--baseline DIR` (a checkout of other code, with its node_modules: `git worktree add ../before main`),
 * that checkout's stages are measured too, its service is started beside this one on the same model folders, and
 * each row is measured `--rounds` times, before and after alternating, the best of each kept: a machine whose load
 * drifts then skews both sides alike.
 */
import { availableParallelism, loadavg } from 'node:os';
import { resolve } from 'node:path';
import { DEFAULT_QUALITY } from '../contract.js';
import { BENCH_MODELS_DIR, BUILTIN_MODELS_DIR } from '../paths.js';
import { list, num, readFlags } from './lib/args.js';
import { STEAL_NOISE } from './lib/cpu.js';
import { benchImages } from './lib/images.js';
import { loadRun, type LoadRunResult } from './lib/load-run.js';
import { machineLine } from './lib/machine.js';
import { findManifest, plainLoop, type PlainResult } from './lib/plain.js';
import { startService, type Service } from './lib/server.js';
import { loadImplementation, stageCosts, STAGES, type StageCosts } from './lib/stages.js';
import { formatCounts, mib, ms, percent, table } from './lib/stats.js';

const CORES = availableParallelism();
const flags = readFlags('npm run bench -- [flags]', {
  styles: { default: 'toon,dctnet-bench,nearfree-bench', help: 'styles to drive, comma-separated' },
  size: { default: '512', help: 'photos are cropped to size x size' },
  seconds: { default: '10', help: 'measured seconds per row (after the warm-up)' },
  warmup: { default: '3', help: 'warm-up seconds per row, not measured' },
  splits: { default: `${CORES}x1`, help: 'workers x ORT intra-op threads, comma-separated (each starts its own service)' },
  concurrency: { default: '', help: 'closed-loop clients; default 2 per worker (one running, one waiting)' },
  'plain-threads': { default: String(CORES), help: 'intra-op threads of the plain loop; a list takes the best' },
  'plain-seconds': { default: '', help: 'seconds per plain loop; default --seconds' },
  baseline: { default: '', help: 'another checkout (with node_modules) to measure as "before", interleaved with this one' },
  rounds: { default: '1', help: 'measurements per row and side; the best is kept' },
  'stage-rounds': { default: '20', help: 'passes over the images for the in-process stage table' },
});
const baseline = flags.baseline === '' ? undefined : resolve(flags.baseline);
const rounds = Math.max(1, num(flags.rounds, 'rounds'));
const stageRounds = Math.max(1, num(flags['stage-rounds'], 'stage-rounds'));
/** The service's default JPEG quality, which the HTTP rows get (they name none); the stage table encodes at it too. */
const QUALITY = DEFAULT_QUALITY.jpeg;
const styles = list(flags.styles);
const size = num(flags.size, 'size');
const seconds = num(flags.seconds, 'seconds');
const warmup = num(flags.warmup, 'warmup');
const splits = list(flags.splits).map((s) => {
  const [w, t] = s.split('x').map(Number);
  if (!Number.isInteger(w) || !Number.isInteger(t) || w! < 1 || t! < 1) throw new Error(`--splits: "${s}" is not WORKERSxTHREADS`);
  return { workers: w!, threads: t! };
});
const plainThreads = list(flags['plain-threads']).map((t) => num(t, 'plain-threads'));
const plainSeconds = flags['plain-seconds'] === '' ? seconds : num(flags['plain-seconds'], 'plain-seconds');

interface Row extends LoadRunResult {
  split: string;
  /** 'before' (the --baseline checkout) or 'after' (this one); 'after' alone without --baseline. */
  code: 'before' | 'after';
  /** The plain loop, session.run only, measured right after this row. */
  plain: PlainResult;
  /** 1-minute load average before the row and after its plain loop. */
  load: [number, number];
}

function loadAverage(): number {
  return loadavg()[0] ?? NaN;
}

async function main(): Promise<void> {
  const { images, source } = await benchImages(size);
  console.log(`Machine: ${machineLine()}`);
  console.log(`Images: ${source}`);
  const rows: Row[] = [];
  const pipelines = new Map<string, PlainResult>();
  const manifests = new Map(await Promise.all(styles.map(async (style) => [style, await findManifest([BUILTIN_MODELS_DIR, BENCH_MODELS_DIR], style)] as const)));

  // Per-stage CPU in this process, before any service runs: this side, and the baseline's code on the same images,
  // interleaved image by image.
  const sides = [...(baseline !== undefined ? (['before'] as const) : []), 'after'] as const;
  const stageRows: { style: string; code: string; costs: StageCosts }[] = [];
  const impls = await Promise.all(sides.map((code) => loadImplementation(code === 'before' ? baseline : undefined)));
  for (const style of styles) {
    process.stderr.write(`stages in-process, ${style}, ${sides.join(' and ')} interleaved: ${stageRounds} passes...\n`);
    const costs = await stageCosts(impls, manifests.get(style)!, images, { rounds: stageRounds, quality: QUALITY });
    sides.forEach((code, i) => stageRows.push({ style, code, costs: costs[i]! }));
  }

  let entry = '';
  for (const split of splits) {
    const services: Partial<Record<Row['code'], Service>> = {};
    try {
      for (const code of sides) {
        services[code] = await startService({ models: 'builtin+bench', workers: split.workers, intraThreads: split.threads, ...(code === 'before' ? { root: baseline } : {}) });
      }
      entry = services.after!.entry;
      for (const style of styles) {
        const concurrency = flags.concurrency === '' ? split.workers * 2 : num(flags.concurrency, 'concurrency');
        const best: Partial<Record<Row['code'], Row>> = {};
        for (let round = 0; round < rounds; round++) {
          // Alternate which side goes first, so neither always follows the other's heat.
          const order = round % 2 === 0 ? sides : [...sides].reverse();
          for (const code of order) {
            const loadBefore = loadAverage();
            process.stderr.write(`service ${split.workers}x${split.threads}, ${style}, ${code} (round ${round + 1}/${rounds}): ${warmup} s warm-up + ${seconds} s at ${concurrency} clients...\n`);
            const run = await loadRun(services[code]!, images, { style, concurrency, seconds, warmupSeconds: warmup });
            const row: Row = { ...run, split: `${split.workers}x${split.threads}`, code, plain: undefined as never, load: [loadBefore, loadAverage()] };
            if (best[code] === undefined || row.perSecond > best[code]!.perSecond) best[code] = row;
          }
        }
        const manifest = manifests.get(style)!;
        let plain: PlainResult | undefined;
        for (const threads of plainThreads) {
          process.stderr.write(`plain loop, ${style}, session.run only, 1x${threads}: ${plainSeconds} s...\n`);
          const r = await plainLoop(manifest, images, { kind: 'ort', threads, seconds: plainSeconds });
          if (plain === undefined || r.perSecond > plain.perSecond) plain = r;
        }
        if (!pipelines.has(style)) {
          process.stderr.write(`plain loop, ${style}, whole pipeline in-process, 1x${plain!.threads}: ${plainSeconds} s...\n`);
          pipelines.set(style, await plainLoop(manifest, images, { kind: 'pipeline', threads: plain!.threads, seconds: plainSeconds }));
        }
        for (const code of sides) rows.push({ ...best[code]!, plain: plain! });
      }
    } finally {
      for (const service of Object.values(services)) await service.stop();
    }
  }

  console.log(`\nPer-stage CPU of one request in-process (one thread, median of ${stageRounds} passes over the images, ms): ` +
    'the codec floor is sharp\'s bare decode to raw plus a bare JPEG encode of the same image at the same quality and encoder settings.\n');
  console.log(
    table(
      ['model', 'code', ...STAGES.map((s) => `${s} ms`), 'all but run ms', 'codec floor ms', 'all but run / floor', 'output KB'],
      stageRows.map(({ style, code, costs }) => [
        style,
        code,
        ...STAGES.map((s) => costs.stages[s].toFixed(2)),
        costs.overhead.toFixed(2),
        costs.codecFloor.toFixed(2),
        (costs.overhead / costs.codecFloor).toFixed(2),
        (costs.outputBytes / 1024).toFixed(1),
      ]),
    ),
  );

  console.log(`\nServer (${entry === 'dist' ? 'dist/server.js' : 'server.ts via tsx'}) over HTTP on 127.0.0.1, ${size}x${size} JPEG photos as raw bodies; ${seconds} s per row after ${warmup} s warm-up; /healthz probed every 50 ms.\n`);
  console.log(
    table(
      ['model', 'code', 'size', 'workers x threads', 'clients', 'req/s', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'statuses', '/healthz p50 ms', '/healthz p99 ms', 'plain loop req/s', 'server / plain', 'plain pipeline req/s', 'server / pipeline'],
      rows.map((r) => {
        const p = { ort: r.plain, pipeline: pipelines.get(r.style)! };
        return [
          r.style,
          r.code,
          `${size}x${size}`,
          r.split,
          String(r.concurrency),
          r.perSecond.toFixed(2),
          ms(r.latency.p50),
          ms(r.latency.p90),
          ms(r.latency.p99),
          ms(r.latency.max),
          formatCounts(r.statuses),
          ms(r.health.p50),
          ms(r.health.p99),
          `${p.ort.perSecond.toFixed(2)} (1x${p.ort.threads})`,
          (r.perSecond / p.ort.perSecond).toFixed(2),
          p.pipeline.perSecond.toFixed(2),
          (r.perSecond / p.pipeline.perSecond).toFixed(2),
        ];
      }),
    ),
  );
  console.log(
    '\nDiagnostics: /healthz probes; the service\'s own event-loop lag (prom-client); this client\'s event-loop delay (high would mean the probes measured the client); ' +
      'pool saturation (1 s readings with every worker busy); service RSS; median Server-Timing stages; service CPU per request (all threads, and the main thread alone) ' +
      'against the plain loop\'s CPU per run, and the share of the cores the service got; how long the main thread waited for a core (ms per second of the run: ' +
      'the scheduler\'s part of the /healthz latency); the share of the machine\'s CPU time its hypervisor gave to other guests (host steal: on a shared VM, above a few ' +
      'percent the row is noise, whatever the code); the 1-minute load average before the row and after its plain loop ' +
      '(above the core count: other work shared the machine, and the numbers are noise).\n',
  );
  const stageText = (stages: Record<string, number>) =>
    ['queue', 'decode', 'detect', 'infer', 'head', 'encode'].filter((k) => stages[k] !== undefined).map((k) => `${k} ${ms(stages[k]!)}`).join(', ') || '-';
  console.log(
    table(
      ['model', 'code', 'workers x threads', 'probes', 'failed', '/healthz max ms', 'service loop lag p99 ms', 'client loop p99 ms', 'pool saturated', 'RSS peak MiB', 'stages p50 ms', 'service CPU ms/req (main thread)', 'plain CPU ms/run', 'service share of cores', 'main thread run-queue wait ms/s', 'host steal', 'load avg'],
      rows.map((r) => [
        r.style,
        r.code,
        r.split,
        String(r.health.count + r.health.failed),
        String(r.health.failed),
        ms(r.health.max),
        ms(r.serverLagP99),
        ms(r.clientLagP99),
        Number.isFinite(r.saturated) ? `${(r.saturated * 100).toFixed(0)}%` : '-',
        mib(r.rssPeak),
        stageText(r.stages),
        `${ms(r.cpuPerRequest.process)} (${ms(r.cpuPerRequest.main)})`,
        `${ms(r.plain.cpuPerRun)} (1x${r.plain.threads})`,
        percent(r.cpuShare),
        Number.isFinite(r.mainWaitPerSecond) ? r.mainWaitPerSecond.toFixed(0) : '-',
        percent(r.hostSteal),
        `${r.load[0].toFixed(1)} -> ${r.load[1].toFixed(1)}`,
      ]),
    ),
  );

  console.log(
    '\nPer-stage time of a request in the service (Server-Timing medians, ms; wall time, so waiting for a core counts) and CPU per request ' +
      '(the service\'s main thread, and all its threads), from /proc. Code without the split reports infer alone (pack + run + unpack).\n',
  );
  const stageCell = (r: Row, name: string) => (r.stages[name] === undefined ? '-' : ms(r.stages[name]!));
  console.log(
    table(
      ['model', 'code', 'workers x threads', 'req/s', 'queue', 'decode', 'pack', 'run', 'unpack', 'infer', 'encode', 'main thread CPU ms/req', 'service CPU ms/req', 'load avg'],
      rows.map((r) => [
        r.style,
        r.code,
        r.split,
        r.perSecond.toFixed(1),
        ...['queue', 'decode', 'pack', 'run', 'unpack', 'infer', 'encode'].map((name) => stageCell(r, name)),
        ms(r.cpuPerRequest.main),
        ms(r.cpuPerRequest.process),
        `${r.load[0].toFixed(1)} -> ${r.load[1].toFixed(1)}`,
      ]),
    ),
  );

  console.log('\nTargets (near-free model at 512x512, 2 cores: >= 180 req/s, p99 < 40 ms, /healthz p99 < 10 ms; in-process, all but the run within 1.3x of the codec floor):');
  const nearfree = rows.filter((r) => r.style === 'nearfree-bench' && r.code === 'after' && size === 512);
  if (nearfree.length === 0) console.log('  not evaluated: run with --styles including nearfree-bench and --size 512');
  const mark = (ok: boolean) => (ok ? 'met' : 'NOT met');
  for (const r of nearfree) {
    const noise = r.hostSteal > STEAL_NOISE ? `; host steal ${percent(r.hostSteal)} during the row: these figures are the host's as much as the code's` : '';
    console.log(`  ${r.split}: ${r.perSecond.toFixed(1)} req/s (>= 180: ${mark(r.perSecond >= 180)}), p99 ${ms(r.latency.p99)} ms (< 40: ${mark(r.latency.p99 < 40)}), /healthz p99 ${ms(r.health.p99)} ms (< 10: ${mark(r.health.p99 < 10)})${noise}`);
  }
  for (const { style, code, costs } of stageRows.filter((r) => r.code === 'after')) {
    const ratio = costs.overhead / costs.codecFloor;
    console.log(`  ${style} (${code}), in-process: all but the run ${costs.overhead.toFixed(2)} ms against a codec floor of ${costs.codecFloor.toFixed(2)} ms = ${ratio.toFixed(2)}x (<= 1.3: ${mark(ratio <= 1.3)})`);
  }

  console.log('\nTargets (DCT-Net-class model at 512x512):');
  const targetRows = rows.filter((r) => r.style === 'dctnet-bench' && r.code === 'after');
  if (targetRows.length === 0 || size !== 512) console.log('  not evaluated: run with --styles including dctnet-bench and --size 512');
  for (const r of targetRows.filter(() => size === 512)) {
    const ratio = r.perSecond / r.plain.perSecond;
    console.log(`  ${r.split}: server / plain loop = ${ratio.toFixed(3)} (>= 0.90: ${mark(ratio >= 0.9)}); /healthz p99 = ${ms(r.health.p99)} ms with the pool saturated ${(r.saturated * 100).toFixed(0)}% of the time (<= 20 ms: ${mark(r.health.p99 <= 20 && r.health.failed === 0)})`);
  }
}

await main();
