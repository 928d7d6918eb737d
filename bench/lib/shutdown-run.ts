/**
 * SIGTERM under load. Closed-loop clients keep the pool saturated (tasks waiting in the queue); SIGTERM is sent;
 * the clients keep sending until the service has exited. Requests sent before the signal (in flight: running or
 * queued) must all be answered 200; requests sent after it must be refused (503 PTOON_NOT_READY on a connection
 * still open, or the connection refused or reset), never served; the service must exit 0 within
 * SHUTDOWN_TIMEOUT_MS. "After" is dated by the service's own "shutting down" log line, since it handles the signal
 * a little after it is sent; requests racing the signal (sent within RACE_MS before it, or before the service
 * handled it) are reported but not judged. The service is gone afterwards.
 */
import { performance } from 'node:perf_hooks';
import { check, type Check } from './checks.js';
import { HttpClient, outcomeKey, type Outcome } from './client.js';
import type { BenchImage } from './images.js';
import { scrape, waitForPool } from './metrics.js';
import { cycling } from './requests.js';
import type { Service } from './server.js';
import { sleep } from './settle.js';
import { countBy, formatCounts } from './stats.js';
import type { FaultResult } from './faults.js';

const RACE_MS = 20;
/** An answer the client reads this long after the drain began was surely written after it (the client may lag). */
const DRAIN_MARGIN_MS = 50;
/** Exit may take this much longer than the bound: the process's own exit after the pool's workers end. */
const EXIT_SLACK_MS = 1000;

/** Epoch ms of the service's "shutting down" log line (pino's `time`), if it logged one. */
function drainStart(output: string): number | undefined {
  for (const line of output.split('\n')) {
    if (!line.includes('shutting down')) continue;
    try {
      const record = JSON.parse(line) as { time?: unknown; msg?: unknown };
      if (typeof record.time === 'number' && typeof record.msg === 'string' && record.msg.startsWith('shutting down')) return record.time;
    } catch {
      // not a JSON log line
    }
  }
  return undefined;
}

export async function shutdownUnderLoad(service: Service, style: string, images: readonly BenchImage[], opts: { shutdownTimeoutMs: number; clients?: number; loadMs?: number }): Promise<FaultResult> {
  const metrics = await scrape(service.metricsUrl);
  const workers = metrics.get('privatoon_ort_threads{setting="workers"}') ?? 1;
  const clients = opts.clients ?? workers * 2 + 2;
  const next = cycling(service.key, style, images);
  const client = new HttpClient(service.base);
  const outcomes: Outcome[] = [];
  let exited = false;
  const exit = service.exited.then((info) => {
    exited = true;
    return info;
  });
  let i = 0;
  const loop = async () => {
    while (!exited) {
      const o = await client.send(next(i++));
      outcomes.push(o);
      if (o.status !== 200) await sleep(25); // refused: do not spin
    }
  };
  const loops = Array.from({ length: clients }, loop);
  let signalAt = NaN;
  let signalWall = NaN;
  let queuedAtSignal = NaN;
  try {
    await sleep(opts.loadMs ?? 1000);
    const saturated = await waitForPool(service.metricsUrl, (g) => g.queued > 0 && g.busy === workers, 'the pool to be saturated before SIGTERM');
    queuedAtSignal = saturated.queued;
    signalAt = performance.now();
    signalWall = Date.now();
    service.signal('SIGTERM');
    const killer = setTimeout(() => service.signal('SIGKILL'), opts.shutdownTimeoutMs + 10_000);
    const info = await exit;
    clearTimeout(killer);
    await Promise.all(loops);
    const exitMs = info.at - signalWall;

    // The drain starts when the service handles the signal, a few ms after it is sent (later if its main thread is
    // busy); its log line dates it. Requests sent before the signal are in flight; requests sent after the drain
    // began are new; those in between raced the signal and are reported, not judged.
    const drainAt = drainStart(service.output()) ?? signalWall;
    const toEpoch = (t: number) => performance.timeOrigin + t;
    const inFlight = outcomes.filter((o) => o.startedAt < signalAt - RACE_MS);
    const late = outcomes.filter((o) => toEpoch(o.startedAt) > drainAt + RACE_MS);
    const racing = outcomes.filter((o) => !inFlight.includes(o) && !late.includes(o));
    const inFlightAtSignal = inFlight.filter((o) => o.endedAt >= signalAt);
    // Answers written after the drain began must ask the client to close (one written just before, rightly, not).
    const afterDrain = inFlightAtSignal.filter((o) => toEpoch(o.endedAt) > drainAt + DRAIN_MARGIN_MS);
    const refusedOk = (o: Outcome) => (o.status === 503 && o.code === 'PTOON_NOT_READY') || ['ECONNREFUSED', 'ECONNRESET', 'EPIPE'].includes(o.error ?? '');
    const checks: Check[] = [
      check('requests in flight at SIGTERM complete (200)', inFlightAtSignal.length > 0 && inFlightAtSignal.every((o) => o.status === 200), `${inFlightAtSignal.length} in flight (${queuedAtSignal} of them queued): ${formatCounts(countBy(inFlightAtSignal, outcomeKey))}`),
      check(
        'answers written while draining ask to close their connection',
        afterDrain.every((o) => o.connection === 'close'),
        `${afterDrain.filter((o) => o.connection === 'close').length} of ${afterDrain.length} answered after the drain began with Connection: close`,
      ),
      check('new requests are refused, none served', late.length > 0 && late.every(refusedOk), `${late.length} sent after the drain began: ${formatCounts(countBy(late, outcomeKey))}`),
      check('exit code 0', info.code === 0, `code ${info.code}, signal ${info.signal}`),
      check(`exit within SHUTDOWN_TIMEOUT_MS (${opts.shutdownTimeoutMs} ms)`, exitMs <= opts.shutdownTimeoutMs + EXIT_SLACK_MS, `${exitMs} ms after SIGTERM`),
    ];
    return {
      name: `SIGTERM under load (${clients} clients, pool saturated)`,
      facts: `${inFlightAtSignal.length} in flight at the signal, ${late.length} sent after the drain began (${(drainAt - signalWall).toFixed(0)} ms after the signal), ${racing.length} racing it (${formatCounts(countBy(racing, outcomeKey))}); exit ${info.code} after ${exitMs} ms`,
      checks,
    };
  } finally {
    exited = true;
    if (service.alive()) service.signal('SIGKILL');
    client.close();
  }
}
