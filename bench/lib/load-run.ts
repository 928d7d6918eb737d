/**
 * One closed-loop measurement against a running service: a warm-up, then `concurrency` clients for `seconds`, with
 * the /healthz prober and a 1 s pool-saturation check running alongside. The result is the row of `npm run bench`.
 */
import { availableParallelism } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { HttpClient, closedLoop, outcomeKey } from './client.js';
import { readCpu, readHost, stealShare } from './cpu.js';
import type { BenchImage } from './images.js';
import { eventLoopLag, readPool, scrape } from './metrics.js';
import { startProber, type ProbeResult } from './prober.js';
import { cycling } from './requests.js';
import { sampleRss } from './rss.js';
import type { Service } from './server.js';
import { countBy, summarize, type LatencySummary } from './stats.js';

/** Node records the whole timer interval: the resolution is taken off, so 0 means no delay. */
const CLIENT_LAG_RESOLUTION_MS = 10;

export interface LoadRunOptions {
  style: string;
  concurrency: number;
  seconds: number;
  warmupSeconds: number;
  probeIntervalMs?: number;
}

export interface LoadRunResult {
  style: string;
  concurrency: number;
  seconds: number;
  /** Successful answers (200) per second. */
  perSecond: number;
  /** Latency of the 200s. */
  latency: LatencySummary;
  statuses: Record<string, number>;
  health: ProbeResult;
  /** The service's own event-loop lag over the run (prom-client), ms. */
  serverLagP99: number;
  /** This process's event-loop delay p99 (ms): high values would mean the probes measured the client, not the service. */
  clientLagP99: number;
  /** Fraction of 1 s pool readings with every worker busy. */
  saturated: number;
  rssPeak: number;
  /** Service CPU per successful request, ms: the whole process, and its main thread alone. */
  cpuPerRequest: { process: number; main: number };
  /** Share of the machine's cores the service used during the run. */
  cpuShare: number;
  /** Milliseconds per second of the run that the service's main thread waited for a core (NaN: unknown). */
  mainWaitPerSecond: number;
  /** Share of the machine's CPU time the hypervisor gave to other guests during the run (NaN: unknown). */
  hostSteal: number;
  /** Median Server-Timing stages of the 200s, ms (queue, decode, infer, encode, ...). */
  stages: Record<string, number>;
}

export async function loadRun(service: Service, images: readonly BenchImage[], opts: LoadRunOptions): Promise<LoadRunResult> {
  const next = cycling(service.key, opts.style, images);
  const client = new HttpClient(service.base);
  try {
    if (opts.warmupSeconds > 0) await closedLoop(client, next, opts.concurrency, opts.warmupSeconds * 1000);
    await scrape(service.metricsUrl); // restarts the service's event-loop histogram: the next scrape covers the run
    const rss = sampleRss(service.pid);
    const clientLag = monitorEventLoopDelay({ resolution: CLIENT_LAG_RESOLUTION_MS });
    clientLag.enable();
    const cpuBefore = readCpu(service.pid);
    const hostBefore = readHost();
    const prober = startProber(service.base, opts.probeIntervalMs ?? 50);
    let busyReadings = 0;
    let readings = 0;
    let sampling = true;
    const saturation = (async () => {
      while (sampling) {
        await new Promise((resolve) => setTimeout(resolve, 1000));
        if (!sampling) break;
        const pool = await readPool(service.metricsUrl);
        readings++;
        if (pool.busy >= pool.ready && pool.busy > 0) busyReadings++;
      }
    })();
    const run = await closedLoop(client, next, opts.concurrency, opts.seconds * 1000);
    const cpuAfter = readCpu(service.pid);
    const hostAfter = readHost();
    sampling = false;
    const health = await prober.stop();
    await saturation;
    clientLag.disable();
    const lag = eventLoopLag(await scrape(service.metricsUrl));
    rss.stop();
    const ok = run.outcomes.filter((o) => o.status === 200);
    const stages: Record<string, number> = {};
    for (const name of new Set(ok.flatMap((o) => Object.keys(o.timing ?? {})))) {
      stages[name] = summarize(ok.map((o) => o.timing?.[name]).filter((v): v is number => v !== undefined)).p50;
    }
    return {
      style: opts.style,
      concurrency: opts.concurrency,
      seconds: run.elapsedS,
      perSecond: ok.length / run.elapsedS,
      latency: summarize(ok.map((o) => o.ms)),
      statuses: countBy(run.outcomes, outcomeKey),
      health,
      serverLagP99: lag.p99,
      clientLagP99: Math.max(0, clientLag.percentile(99) / 1e6 - CLIENT_LAG_RESOLUTION_MS),
      saturated: readings === 0 ? NaN : busyReadings / readings,
      rssPeak: rss.peak(),
      cpuPerRequest: { process: ((cpuAfter.process - cpuBefore.process) / ok.length) * 1000, main: ((cpuAfter.main - cpuBefore.main) / ok.length) * 1000 },
      cpuShare: (cpuAfter.process - cpuBefore.process) / run.elapsedS / availableParallelism(),
      mainWaitPerSecond: ((cpuAfter.mainRunQueueWait - cpuBefore.mainRunQueueWait) / run.elapsedS) * 1000,
      hostSteal: stealShare(hostBefore, hostAfter),
      stages,
    };
  } finally {
    client.close();
  }
}
