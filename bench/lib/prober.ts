/**
 * The event loop's health as a client sees it: GET /healthz every `intervalMs` (50 ms) on a connection of its own,
 * while the load runs. /healthz does no work, so its latency is the time the service's main thread takes to get to
 * it: queueing behind HTTP parsing, uploads, log lines and answers. Probes that fail count as failures, not as
 * fast probes.
 */
import { performance } from 'node:perf_hooks';
import { HttpClient, type Outcome } from './client.js';
import { summarize, type LatencySummary } from './stats.js';

export interface ProbeResult extends LatencySummary {
  failed: number;
}

export interface Prober {
  /** Stops probing; resolves with the summary of every probe sent. */
  stop(): Promise<ProbeResult>;
  /** Probes so far (for runs that want their own windows). */
  outcomes(): readonly Outcome[];
}

export function startProber(base: string, intervalMs = 50, path = '/healthz'): Prober {
  const client = new HttpClient(base, { maxSockets: 1 });
  const outcomes: Outcome[] = [];
  let running = true;
  const loop = (async () => {
    let due = performance.now();
    while (running) {
      outcomes.push(await client.send({ path, timeoutMs: 10_000 }));
      due += intervalMs;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      else due = performance.now(); // a slow probe does not cause a burst of catch-up probes
    }
  })();
  return {
    outcomes: () => outcomes,
    async stop() {
      running = false;
      await loop;
      client.close();
      const ok = outcomes.filter((o) => o.status === 200);
      return { ...summarize(ok.map((o) => o.ms)), failed: outcomes.length - ok.length };
    },
  };
}
