/**
 * Reads the service's Prometheus endpoint (the separate loopback metrics listener): queue depth, busy and ready
 * workers, rejections, crashes, and the main thread's event-loop lag as the service measures it itself.
 */

/** Samples by their full name with labels, e.g. `privatoon_rejections_total{reason="busy"}`. */
export type Samples = ReadonlyMap<string, number>;

export function parsePrometheus(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([A-Za-z_:][\w:]*(?:\{[^}]*\})?)\s+(\S+)/.exec(line);
    if (match?.[1] !== undefined && match[2] !== undefined) samples.set(match[1], Number(match[2]));
  }
  return samples;
}

export async function scrape(metricsUrl: string): Promise<Samples> {
  if (!metricsUrl.startsWith('http://127.0.0.1:')) throw new Error(`metrics are read from 127.0.0.1 only, not ${metricsUrl}`);
  const response = await fetch(metricsUrl, { signal: AbortSignal.timeout(10_000) });
  if (response.status !== 200) throw new Error(`GET ${metricsUrl}: ${response.status}`);
  return parsePrometheus(await response.text());
}

/** The pool's state as the metrics show it. */
export interface PoolGauges {
  queued: number;
  busy: number;
  ready: number;
  crashes: number;
  /** privatoon_rejections_total by reason. */
  rejections: Record<string, number>;
}

export function poolGauges(samples: Samples): PoolGauges {
  const rejections: Record<string, number> = {};
  for (const [name, value] of samples) {
    const match = /^privatoon_rejections_total\{reason="([^"]+)"\}$/.exec(name);
    if (match?.[1] !== undefined) rejections[match[1]] = value;
  }
  return {
    queued: samples.get('privatoon_queue_depth') ?? NaN,
    busy: samples.get('privatoon_workers_busy') ?? NaN,
    ready: samples.get('privatoon_workers_ready') ?? NaN,
    crashes: samples.get('privatoon_worker_crashes_total') ?? 0,
    rejections,
  };
}

export async function readPool(metricsUrl: string): Promise<PoolGauges> {
  return poolGauges(await scrape(metricsUrl));
}

/** prom-client's default eventLoopMonitoringPrecision: the timer whose lateness is measured. */
const LAG_RESOLUTION_MS = 10;

/**
 * The service's own event-loop lag percentiles in ms (prom-client's monitorEventLoopDelay; its histogram restarts
 * at every scrape, so a scrape before a run and one after it frame the run). Node records the whole timer interval,
 * so the 10 ms resolution is taken off: 0 means no lag.
 */
export function eventLoopLag(samples: Samples): { p50: number; p99: number; max: number } {
  const s = (name: string) => Math.max(0, (samples.get(name) ?? NaN) * 1000 - LAG_RESOLUTION_MS);
  return { p50: s('nodejs_eventloop_lag_p50_seconds'), p99: s('nodejs_eventloop_lag_p99_seconds'), max: s('nodejs_eventloop_lag_max_seconds') };
}

/** Polls until `check` holds for the pool's gauges; returns the last reading, or throws after `timeoutMs`. */
export async function waitForPool(metricsUrl: string, check: (g: PoolGauges) => boolean, what: string, timeoutMs = 15_000, everyMs = 20): Promise<PoolGauges> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const gauges = await readPool(metricsUrl);
    if (check(gauges)) return gauges;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (queued ${gauges.queued}, busy ${gauges.busy}, ready ${gauges.ready})`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
