/**
 * The overload run, against a freshly started service:
 *  1. cold RSS; capacity = closed-loop throughput (`2 x workers` clients), which also warms the sessions' arenas;
 *  2. the same overload once before (`warmupSeconds`, default `seconds`), settle, then the start RSS (median over
 *     1 s). That first burst brings the main thread's allocations for this traffic (upload buffers held until V8
 *     collects them, the allocator's main arena that holds them) to the high-water mark they keep afterwards, as the
 *     capacity run does for onnxruntime's arenas. Without it the end-versus-start check measured that one-off growth
 *     (Node 24, toon, 1 worker: 246 MiB after the capacity run, 268 and 276 after the first two bursts, then 269
 *     and 270; under tap's coverage hook, +18%), not a leak; with it, a
 *     leak shows as the second burst's growth. RSS is sampled every 100 ms (/proc/<pid>/status) from this burst on;
 *  3. open-loop arrivals at `factor` x capacity for `seconds`, with /healthz probed every 50 ms;
 *  4. once the queue is empty: settle, the end RSS, and a few requests that must succeed (recovery).
 * Accepted = 200; rejected = 503 PTOON_BUSY with Retry-After. The peak over both bursts must stay under the budget
 * (budget.ts), and the end within `endTolerance` (10%) of the start, plus the garbage the main thread's heap floor
 * lets wait for a full collection (budget.ts: full collections now come seconds apart, and none ran within 16 s of
 * idle, so the end may catch more of it than the start did).
 */
import { HttpClient, closedLoop, openLoop, outcomeKey } from './client.js';
import { HEAP_FLOOR_GARBAGE_BYTES, memoryBudget, type Budget } from './budget.js';
import { check, type Check } from './checks.js';
import type { BenchImage } from './images.js';
import { readPool, scrape, waitForPool } from './metrics.js';
import { startProber, type ProbeResult } from './prober.js';
import { cycling } from './requests.js';
import { readRss, sampleRss } from './rss.js';
import type { Service } from './server.js';
import { sleep, steadyRss } from './settle.js';
import { countBy, summarize, type LatencySummary } from './stats.js';

export interface OverloadOptions {
  style: string;
  /** Per-session memory of this style at this size, from the plain loop (plain.ts). */
  modelBytes: number;
  workingSetBytes: number;
  capacitySeconds: number;
  seconds: number;
  /** Offered load as a multiple of the measured capacity; default 4. */
  factor?: number;
  settleSeconds?: number;
  /** Seconds of the same overload before the start RSS is read (see above); default `seconds`. */
  warmupSeconds?: number;
  /** End RSS may exceed the start by this fraction; default 0.10. */
  endTolerance?: number;
}

export interface OverloadResult {
  style: string;
  workers: number;
  maxQueue: number;
  capacity: number;
  offeredRate: number;
  seconds: number;
  sent: number;
  statuses: Record<string, number>;
  accepted: number;
  rejected: number;
  rejectedWithRetryAfter: number;
  /** 5xx other than 503 and 504, and answers that never came. */
  unexpected: number;
  acceptedLatency: LatencySummary;
  rejectedLatency: LatencySummary;
  health: ProbeResult;
  rss: { cold: number; start: number; peak: number; end: number };
  /** The main thread's V8 heap (nodejs_heap_size_total_bytes) at start-up and after the overload. */
  mainHeap: { cold: number; after: number };
  budget: Budget;
  checks: Check[];
}

export async function overloadRun(service: Service, images: readonly BenchImage[], opts: OverloadOptions): Promise<OverloadResult> {
  const factor = opts.factor ?? 4;
  const settleMs = (opts.settleSeconds ?? 3) * 1000;
  const tolerance = opts.endTolerance ?? 0.1;
  const metrics = await scrape(service.metricsUrl);
  const workers = metrics.get('privatoon_ort_threads{setting="workers"}') ?? NaN;
  const maxQueue = metrics.get('privatoon_queue_capacity') ?? NaN;
  const cold = await steadyRss(service.pid, 500);
  const heapCold = metrics.get('nodejs_heap_size_total_bytes') ?? NaN;
  const next = cycling(service.key, opts.style, images);

  const client = new HttpClient(service.base);
  try {
    const measured = await closedLoop(client, next, workers * 2, opts.capacitySeconds * 1000);
    const capacity = measured.outcomes.filter((o) => o.status === 200).length / measured.elapsedS;
    if (!(capacity > 0)) throw new Error(`no capacity measured: ${JSON.stringify(countBy(measured.outcomes, outcomeKey))}`);
    await waitForPool(service.metricsUrl, (g) => g.queued === 0 && g.busy === 0, 'the pool to be idle after the capacity run');
    const offeredRate = capacity * factor;
    // The peak covers both bursts: the first one's growth is not a leak, but it must fit the budget too.
    const rss = sampleRss(service.pid, 100);
    await openLoop(client, next, offeredRate, (opts.warmupSeconds ?? opts.seconds) * 1000);
    await waitForPool(service.metricsUrl, (g) => g.queued === 0 && g.busy === 0, 'the pool to be idle after the warm-up burst', 60_000);
    await sleep(settleMs);
    const start = await steadyRss(service.pid);

    const prober = startProber(service.base, 50);
    const run = await openLoop(client, next, offeredRate, opts.seconds * 1000);
    const health = await prober.stop();
    const heapAfter = (await scrape(service.metricsUrl)).get('nodejs_heap_size_total_bytes') ?? NaN;
    const queueAfter = await waitForPool(service.metricsUrl, (g) => g.queued === 0 && g.busy === 0, 'the queue to empty after the overload', 60_000);
    const peak = Math.max(rss.peak(), readRss(service.pid));
    await sleep(settleMs);
    const end = await steadyRss(service.pid);
    rss.stop();

    // Recovery: the service serves again, one request per worker.
    const after = await Promise.all(Array.from({ length: workers }, (_, i) => client.send(next(i))));

    const outcomes = run.outcomes;
    const accepted = outcomes.filter((o) => o.status === 200);
    const rejected = outcomes.filter((o) => o.status === 503);
    const withRetryAfter = rejected.filter((o) => o.code === 'PTOON_BUSY' && Number(o.retryAfter) >= 1);
    const unexpected = outcomes.filter((o) => o.status === 0 || (o.status >= 500 && o.status !== 503 && o.status !== 504));
    const budget = memoryBudget({
      coldRss: cold,
      workers,
      modelBytes: opts.modelBytes,
      workingSetBytes: opts.workingSetBytes,
      maxQueue,
      largestUploadBytes: Math.max(...images.map((i) => i.jpeg.length)),
    });
    const statuses = countBy(outcomes, outcomeKey);
    const mb = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
    const checks: Check[] = [
      check('no 5xx other than 503/504, no dropped connections', unexpected.length === 0, `${unexpected.length} of ${outcomes.length} (${JSON.stringify(statuses)})`),
      check('overload was reached: some requests refused', rejected.length > 0, `${rejected.length} refused with 503`),
      check('the service kept serving during the overload', accepted.length > 0, `${accepted.length} accepted`),
      check('every 503 is PTOON_BUSY with Retry-After >= 1 s', withRetryAfter.length === rejected.length, `${withRetryAfter.length} of ${rejected.length}`),
      check('/healthz answered every probe', health.failed === 0 && health.count > 0, `${health.count} probes, ${health.failed} failed`),
      check('the queue is empty after the load', queueAfter.queued === 0 && queueAfter.busy === 0, `queued ${queueAfter.queued}, busy ${queueAfter.busy}`),
      check('peak RSS under the budget', peak < budget.bytes, `peak ${mb(peak)} < budget ${mb(budget.bytes)} (${budget.formula})`, { memory: true }),
      check(
        `end RSS within ${(tolerance * 100).toFixed(0)}% of the start, plus the garbage the main heap may hold (${mb(HEAP_FLOOR_GARBAGE_BYTES)})`,
        end <= start * (1 + tolerance) + HEAP_FLOOR_GARBAGE_BYTES,
        `start ${mb(start)}, end ${mb(end)} (${(((end - start) / start) * 100).toFixed(1)}%)`,
        { memory: true },
      ),
      check('served again afterwards', after.every((o) => o.status === 200), after.map(outcomeKey).join(', ')),
    ];
    const pool = await readPool(service.metricsUrl);
    if (pool.crashes > 0) checks.push(check('no worker crashed', false, `${pool.crashes} crashes`));
    return {
      style: opts.style,
      workers,
      maxQueue,
      capacity,
      offeredRate,
      seconds: run.elapsedS,
      sent: outcomes.length,
      statuses,
      accepted: accepted.length,
      rejected: rejected.length,
      rejectedWithRetryAfter: withRetryAfter.length,
      unexpected: unexpected.length,
      acceptedLatency: summarize(accepted.map((o) => o.ms)),
      rejectedLatency: summarize(rejected.map((o) => o.ms)),
      health,
      rss: { cold, start, peak, end },
      mainHeap: { cold: heapCold, after: heapAfter },
      budget,
      checks,
    };
  } finally {
    client.close();
  }
}
