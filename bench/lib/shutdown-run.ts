/**
 * SIGTERM under load. Closed-loop clients keep the pool saturated (tasks waiting in the queue); SIGTERM is sent;
 * the clients keep sending until the service has exited. Requests sent before the signal (in flight: running or
 * queued) must all be answered 200; requests sent after it must be refused (503 PTOON_NOT_READY on a connection
 * still open, or the connection refused or reset), never served; the service must exit 0 within
 * SHUTDOWN_TIMEOUT_MS. "After" is dated by the service's own "shutting down" log line, since it handles the signal
 * a little after it is sent; requests racing the signal (sent within RACE_MS before it, or before the service
 * handled it) are reported but not judged. The service is gone afterwards.
 *
 * With a grace period (SHUTDOWN_GRACE_MS, `graceMs`), the drain begins that long after the signal: until then
 * (from the service's "withdrawing" log line) every request, new ones included, must be served 200 while /readyz,
 * probed every 100 ms, answers 503; the exit bound is the grace period plus SHUTDOWN_TIMEOUT_MS.
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

/** Epoch ms of the service's first log line whose message starts with `message` (pino's `time`), if it logged one. */
function loggedAt(output: string, message: string): number | undefined {
  for (const line of output.split('\n')) {
    if (!line.includes(message)) continue;
    try {
      const record = JSON.parse(line) as { time?: unknown; msg?: unknown };
      if (typeof record.time === 'number' && typeof record.msg === 'string' && record.msg.startsWith(message)) return record.time;
    } catch {
      // not a JSON log line
    }
  }
  return undefined;
}

export async function shutdownUnderLoad(service: Service, style: string, images: readonly BenchImage[], opts: { shutdownTimeoutMs: number; graceMs?: number; clients?: number; loadMs?: number }): Promise<FaultResult> {
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
  const graceMs = opts.graceMs ?? 0;
  const readiness: { at: number; status: number }[] = [];
  let probing = false;
  const probe = async () => {
    while (!exited) {
      if (probing) {
        const at = Date.now();
        readiness.push({ at, status: await fetch(`${service.base}/readyz`).then((r) => r.status, () => 0) });
      }
      await sleep(100);
    }
  };
  const prober = graceMs > 0 ? probe() : Promise.resolve();
  let signalAt = NaN;
  let signalWall: number;
  let queuedAtSignal: number;
  try {
    await sleep(opts.loadMs ?? 1000);
    const saturated = await waitForPool(service.metricsUrl, (g) => g.queued > 0 && g.busy === workers, 'the pool to be saturated before SIGTERM');
    queuedAtSignal = saturated.queued;
    signalAt = performance.now();
    signalWall = Date.now();
    probing = true;
    service.signal('SIGTERM');
    const killer = setTimeout(() => service.signal('SIGKILL'), graceMs + opts.shutdownTimeoutMs + 10_000);
    const info = await exit;
    clearTimeout(killer);
    await Promise.all([...loops, prober]);
    const exitMs = info.at - signalWall;

    // The drain starts when the service handles the signal, a few ms after it is sent (later if its main thread is
    // busy); its log line dates it. Requests sent before the signal are in flight; requests sent after the drain
    // began are new; those in between raced the signal and are reported, not judged.
    const drainAt = loggedAt(service.output(), 'shutting down') ?? signalWall;
    const withdrawAt = graceMs > 0 ? (loggedAt(service.output(), 'withdrawing') ?? signalWall) : drainAt;
    const toEpoch = (t: number) => performance.timeOrigin + t;
    const inFlight = outcomes.filter((o) => o.startedAt < signalAt - RACE_MS);
    const late = outcomes.filter((o) => toEpoch(o.startedAt) > drainAt + RACE_MS);
    // Sent while withdrawn: after the service handled the signal, before the drain began.
    const inGrace = outcomes.filter((o) => toEpoch(o.startedAt) > withdrawAt + RACE_MS && toEpoch(o.startedAt) < drainAt - RACE_MS);
    const racing = outcomes.filter((o) => !inFlight.includes(o) && !late.includes(o) && !inGrace.includes(o));
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
      check(
        graceMs > 0 ? `exit within SHUTDOWN_GRACE_MS + SHUTDOWN_TIMEOUT_MS (${graceMs} + ${opts.shutdownTimeoutMs} ms)` : `exit within SHUTDOWN_TIMEOUT_MS (${opts.shutdownTimeoutMs} ms)`,
        exitMs <= graceMs + opts.shutdownTimeoutMs + EXIT_SLACK_MS,
        `${exitMs} ms after SIGTERM`,
      ),
    ];
    if (graceMs > 0) {
      const probedInGrace = readiness.filter((p) => p.at > withdrawAt + RACE_MS && p.at < drainAt - RACE_MS);
      checks.push(
        check(`the drain begins SHUTDOWN_GRACE_MS (${graceMs} ms) after the signal`, drainAt - withdrawAt >= graceMs - RACE_MS, `${drainAt - withdrawAt} ms after the service withdrew`),
        check('requests sent during the grace period are served (200)', inGrace.length > 0 && inGrace.every((o) => o.status === 200), `${inGrace.length} sent: ${formatCounts(countBy(inGrace, outcomeKey))}`),
        check('/readyz answers 503 during the grace period', probedInGrace.length > 0 && probedInGrace.every((p) => p.status === 503), `${probedInGrace.length} probes: ${formatCounts(countBy(probedInGrace, (p) => String(p.status)))}`),
      );
    }
    return {
      name: `SIGTERM under load (${clients} clients, pool saturated)`,
      facts: `${inFlightAtSignal.length} in flight at the signal, ${graceMs > 0 ? `${inGrace.length} sent during the ${graceMs} ms grace period, ` : ''}${late.length} sent after the drain began (${(drainAt - signalWall).toFixed(0)} ms after the signal), ${racing.length} racing it (${formatCounts(countBy(racing, outcomeKey))}); exit ${info.code} after ${exitMs} ms`,
      checks,
    };
  } finally {
    exited = true;
    if (service.alive()) service.signal('SIGKILL');
    client.close();
  }
}
