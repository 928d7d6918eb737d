/**
 * `npm run bench:flask`: privatoon against the design it replaces (issue #12), in the same minutes: a Flask +
 * gunicorn + OpenCV service (bench/flask/app.py) and privatoon, both started once on the same model and photos, then
 * measured in turns, `--rounds` times, the order swapped each round: 4 closed-loop clients for `--seconds`, /healthz
 * probed every 50 ms on a connection of its own. Each round's ratio compares two runs a few seconds apart, so it holds
 * on a machine whose speed drifts (a shared VM's can move 1.5x within minutes), where absolute figures do not.
 *
 *   npm run bench:flask                                   # near-free model, 512x512, 3 rounds of 10 s
 *   npm run bench:flask -- --style dctnet-bench --rounds 5
 *
 * Needs a Python with cv2, flask and gunicorn (bench/lib/flask-service.ts); without one it says what to install and
 * exits 2. Prints Markdown tables; the exit code is 0 whatever the numbers.
 */
import { availableParallelism } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { BENCH_MODELS_DIR, BUILTIN_MODELS_DIR } from '../paths.js';
import { num, readFlags } from './lib/args.js';
import { HttpClient, closedLoop, outcomeKey, type RequestSpec } from './lib/client.js';
import { STEAL_NOISE, readCpu, readHost, stealShare } from './lib/cpu.js';
import { findPython, startFlask } from './lib/flask-service.js';
import { benchImages } from './lib/images.js';
import { machineLine } from './lib/machine.js';
import { findManifest } from './lib/plain.js';
import { startProber, type ProbeResult } from './lib/prober.js';
import { cycling } from './lib/requests.js';
import { compareRound, summarizeRounds } from './lib/rounds.js';
import { startService } from './lib/server.js';
import { countBy, formatCounts, ms, percent, summarize, table, type LatencySummary } from './lib/stats.js';

const flags = readFlags('npm run bench:flask -- [flags]', {
  style: { default: 'nearfree-bench', help: 'the model both services run (a whole-image style)' },
  size: { default: '512', help: 'photos are cropped to size x size' },
  rounds: { default: '3', help: 'measurements per service, in turns' },
  seconds: { default: '10', help: 'seconds per measurement' },
  warmup: { default: '3', help: 'warm-up seconds before each measurement' },
  clients: { default: '4', help: 'closed-loop clients' },
  workers: { default: String(availableParallelism()), help: "privatoon's workers (1 intra-op thread each) and gunicorn's sync workers (1 OpenCV thread each)" },
});
const rounds = Math.max(1, num(flags.rounds, 'rounds'));
const seconds = num(flags.seconds, 'seconds');
const warmup = num(flags.warmup, 'warmup');
const clients = Math.max(1, num(flags.clients, 'clients'));
const workers = Math.max(1, num(flags.workers, 'workers'));

const { python, why } = findPython();
if (python === undefined) {
  process.stderr.write(`npm run bench:flask needs a Python with cv2, flask and gunicorn:\n${why}Debian 12: apt-get install python3-opencv python3-flask gunicorn (or FLASK_PYTHON=/path/to/python3)\n`);
  process.exit(2);
}

/** Client lag histogram resolution (ms), taken off its p99 as bench/lib/load-run.ts does. */
const LAG_RESOLUTION_MS = 10;

interface Row {
  round: number;
  service: 'privatoon' | 'flask';
  perSecond: number;
  latency: LatencySummary;
  statuses: Record<string, number>;
  health: ProbeResult;
  cpuPerRequest: number;
  clientLagP99: number;
  /** Share of the machine's CPU time its hypervisor gave to other guests during the row (bench/lib/cpu.ts). */
  hostSteal: number;
}

async function measure(base: string, next: (i: number) => RequestSpec, cpuSeconds: () => number): Promise<Omit<Row, 'round' | 'service'>> {
  const client = new HttpClient(base);
  try {
    if (warmup > 0) await closedLoop(client, next, clients, warmup * 1000);
    const lag = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
    lag.enable();
    const cpuBefore = cpuSeconds();
    const hostBefore = readHost();
    const prober = startProber(base, 50);
    const run = await closedLoop(client, next, clients, seconds * 1000);
    const cpu = cpuSeconds() - cpuBefore;
    const hostSteal = stealShare(hostBefore, readHost());
    const health = await prober.stop();
    lag.disable();
    const ok = run.outcomes.filter((o) => o.status === 200);
    return {
      perSecond: ok.length / run.elapsedS,
      latency: summarize(ok.map((o) => o.ms)),
      statuses: countBy(run.outcomes, outcomeKey),
      health,
      cpuPerRequest: ok.length === 0 ? NaN : (cpu / ok.length) * 1000,
      clientLagP99: Math.max(0, lag.percentile(99) / 1e6 - LAG_RESOLUTION_MS),
      hostSteal,
    };
  } finally {
    client.close();
  }
}

const manifest = await findManifest([BUILTIN_MODELS_DIR, BENCH_MODELS_DIR], flags.style);
const size = num(flags.size, 'size');
const { images, source } = await benchImages(size);
process.stderr.write(`starting privatoon (${workers} workers x 1 thread) and Flask + OpenCV (gunicorn, ${workers} sync workers) on ${manifest.id}...\n`);
const privatoon = await startService({ models: 'builtin+bench', workers, intraThreads: 1 });
const flask = await startFlask(python, manifest, workers).catch(async (err: unknown) => {
  await privatoon.stop();
  throw err;
});
const rows: Row[] = [];
try {
  const sides = {
    privatoon: () => measure(privatoon.base, cycling(privatoon.key, manifest.id, images), () => readCpu(privatoon.pid).process),
    flask: () => measure(flask.base, cycling('unused', manifest.id, images), () => flask.cpuSeconds()),
  };
  for (let round = 1; round <= rounds; round++) {
    const order = round % 2 === 1 ? (['privatoon', 'flask'] as const) : (['flask', 'privatoon'] as const);
    for (const service of order) {
      process.stderr.write(`round ${round}/${rounds}, ${service}: ${warmup} s warm-up + ${seconds} s at ${clients} clients...\n`);
      rows.push({ round, service, ...(await sides[service]()) });
    }
  }
} finally {
  await Promise.all([privatoon.stop(), flask.stop()]);
}

const median = (values: number[]) => summarize(values).p50;
const f1 = (v: number) => v.toFixed(1);
process.stdout.write(`\nMachine: ${machineLine()}\nImages: ${source}; model ${manifest.id}; ${clients} clients; ${seconds} s per row after ${warmup} s warm-up; /healthz probed every 50 ms; host steal is the share of the machine's CPU time its hypervisor gave to other guests during the row (above a few percent, that row is noise).\n\n`);
process.stdout.write(
  table(
    ['round', 'service', 'req/s', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'statuses', '/healthz p50 ms', '/healthz p99 ms', 'service CPU ms/req', 'client loop p99 ms', 'host steal'],
    rows.map((r) => [String(r.round), r.service, r.perSecond.toFixed(1), ms(r.latency.p50), ms(r.latency.p90), ms(r.latency.p99), ms(r.latency.max), formatCounts(r.statuses), ms(r.health.p50), ms(r.health.p99), f1(r.cpuPerRequest), f1(r.clientLagP99), percent(r.hostSteal)]),
  ),
);
const pairs = Array.from({ length: rounds }, (_, i) => {
  const side = (service: Row['service']) => rows.find((r) => r.round === i + 1 && r.service === service)!;
  return compareRound(side('privatoon'), side('flask'));
});
const summary = summarizeRounds(pairs);
const ours = rows.filter((r) => r.service === 'privatoon');
const theirs = rows.filter((r) => r.service === 'flask');
const marked = pairs.map((r) => `${r.ratio.toFixed(2)}${r.clean ? '' : '*'}`).join(', ');
const cleanMedian =
  summary.cleanRounds === 0 ? `no round had a known host steal <= ${percent(STEAL_NOISE)} on both rows` : `${summary.cleanRatio.toFixed(2)} over the ${summary.cleanRounds} with host steal <= ${percent(STEAL_NOISE)} on both rows`;
process.stdout.write(`\nprivatoon / Flask req/s by round: ${marked} (* host steal above ${percent(STEAL_NOISE)}, or unknown); median ${summary.ratio.toFixed(2)} over all ${rounds}, ${cleanMedian} (issue #12: at least 1.5)\n`);
process.stdout.write(`Flask / privatoon service CPU a request by round: ${pairs.map((r) => r.cpuRatio.toFixed(2)).join(', ')}; median ${summary.cpuRatio.toFixed(2)} (capacity on cores of their own: bench/lib/rounds.ts)\n`);
process.stdout.write(
  `Medians over the rounds: privatoon ${f1(median(ours.map((r) => r.perSecond)))} req/s, p99 ${ms(median(ours.map((r) => r.latency.p99)))} ms, /healthz p99 ${ms(median(ours.map((r) => r.health.p99)))} ms; ` +
    `Flask ${f1(median(theirs.map((r) => r.perSecond)))} req/s, p99 ${ms(median(theirs.map((r) => r.latency.p99)))} ms, /healthz p99 ${ms(median(theirs.map((r) => r.health.p99)))} ms\n`,
);
