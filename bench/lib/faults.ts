/**
 * Fault runs against a running service started with `faults` (its workers fault on marked uploads) and a short
 * REQUEST_DEADLINE_MS:
 *  - workerKill: a worker dies mid-task (fault `exit`) while other requests run: that request is a clean 500 JSON,
 *    the others succeed, the crash is counted, the pool gets its worker back and the next requests succeed;
 *  - uploadDisconnect: clients send half their body and drop the socket: nothing is queued, nothing leaks;
 *  - queueDisconnect: every worker held by a slow request (fault `hang`, ended by the deadline), requests queued
 *    behind, some of them dropped: they leave the queue at once, the running tasks are not disturbed, and the queue
 *    returns to 0.
 * Each returns the facts seen and its checks; the service is left serving.
 */
import { request as httpRequest, type ClientRequest } from 'node:http';
import { performance } from 'node:perf_hooks';
import { check, type Check } from './checks.js';
import { HttpClient, outcomeKey, type RequestSpec } from './client.js';
import type { BenchImage } from './images.js';
import { readPool, scrape, waitForPool } from './metrics.js';
import { cartoonize } from './requests.js';
import type { Service } from './server.js';
import { sleep } from './settle.js';

export interface FaultResult {
  name: string;
  facts: string;
  checks: Check[];
}

async function workersOf(service: Service): Promise<number> {
  return (await scrape(service.metricsUrl)).get('privatoon_ort_threads{setting="workers"}') ?? NaN;
}

async function readyz(service: Service): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${service.base}/readyz`, { signal: AbortSignal.timeout(10_000) });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/**
 * Polls /readyz until it answers 200 with at least every worker ready (as the pool's own `ready` counts); returns
 * how long that took, whether it was ever 503, and the last body.
 */
async function untilReady(service: Service, timeoutMs = 30_000): Promise<{ ms: number; sawNotReady: boolean; body: Record<string, unknown> }> {
  const start = performance.now();
  let sawNotReady = false;
  for (;;) {
    const r = await readyz(service);
    if (r.status === 200 && Number(r.body['readyWorkers']) >= Number(r.body['workers'])) return { ms: performance.now() - start, sawNotReady, body: r.body };
    sawNotReady ||= r.status === 503;
    if (performance.now() - start > timeoutMs) throw new Error(`the service was not ready again within ${timeoutMs} ms`);
    await sleep(10);
  }
}

/** `n` ordinary requests at once; all must succeed. */
async function servedAgain(client: HttpClient, service: Service, style: string, images: readonly BenchImage[], n: number): Promise<Check> {
  const answers = await Promise.all(Array.from({ length: n }, (_, i) => client.send(cartoonize(service.key, style, images[i % images.length]!))));
  return check('the next requests succeed', answers.every((a) => a.status === 200), answers.map(outcomeKey).join(', '));
}

export async function workerKill(service: Service, style: string, images: readonly BenchImage[]): Promise<FaultResult> {
  const client = new HttpClient(service.base);
  try {
    const workers = await workersOf(service);
    await untilReady(service);
    const before = await readPool(service.metricsUrl);
    // Ordinary requests on the other workers (and queued), with the fatal one among them.
    const others = Array.from({ length: workers }, (_, i) => client.send(cartoonize(service.key, style, images[i % images.length]!)));
    const killed = await client.send(cartoonize(service.key, style, images[0]!, { fault: 'exit' }));
    const recovery = await untilReady(service);
    const answers = await Promise.all(others);
    // Served again: one request per worker at once, so the replacement worker must be up and running.
    const again = await servedAgain(client, service, style, images, workers * 2);
    const after = await readPool(service.metricsUrl);
    const readyBody = (await readyz(service)).body;
    const checks = [
      check('the killed request is a clean 500 JSON', killed.status === 500 && killed.code === 'PTOON_WORKER_FAILED', outcomeKey(killed)),
      check(
        'the error body is the generic one',
        killed.json?.['detail'] === 'Inference failed' &&
          Object.keys(killed.json).sort().join() === 'code,detail,error,instance,message,status,statusCode,title,type',
        JSON.stringify(killed.json),
      ),
      check('requests on the other workers succeed', answers.every((a) => a.status === 200), answers.map(outcomeKey).join(', ')),
      check('the crash is counted (privatoon_worker_crashes_total)', after.crashes === before.crashes + 1, `${before.crashes} -> ${after.crashes}`),
      again,
      // Each worker counted once: a crashed worker's id must leave the ready set when its replacement joins it.
      check(
        'readiness counts each worker once (/readyz readyWorkers, privatoon_workers_ready)',
        readyBody['readyWorkers'] === workers && after.ready === workers,
        `/readyz readyWorkers ${String(readyBody['readyWorkers'])}, privatoon_workers_ready ${after.ready}, of ${workers} workers`,
      ),
    ];
    return {
      name: 'worker killed mid-task (fault exit)',
      facts: `answer ${outcomeKey(killed)} in ${killed.ms.toFixed(0)} ms; ${workers} requests alongside: ${answers.map(outcomeKey).join(', ')}; ready again ${recovery.ms.toFixed(0)} ms later (/readyz 503 seen: ${recovery.sawNotReady ? 'yes' : 'no'})`,
      checks,
    };
  } finally {
    client.close();
  }
}

/** A request that sends `fraction` of its body and then waits; `drop()` destroys its socket. */
function partialRequest(service: Service, spec: RequestSpec, fraction: number): { req: ClientRequest; drop: () => void } {
  const url = new URL(service.base);
  const body = spec.body!;
  const req = httpRequest({
    host: url.hostname,
    port: Number(url.port),
    method: 'POST',
    path: spec.path,
    headers: { ...spec.headers, 'content-length': body.length },
    agent: false,
  });
  req.on('error', () => {}); // we break it on purpose
  req.on('response', (res) => res.resume());
  if (fraction >= 1) req.end(body);
  else req.write(body.subarray(0, Math.floor(body.length * fraction)));
  return { req, drop: () => req.destroy() };
}

export async function uploadDisconnect(service: Service, style: string, images: readonly BenchImage[], count = 4): Promise<FaultResult> {
  const client = new HttpClient(service.base);
  try {
    const workers = await workersOf(service);
    const before = await readPool(service.metricsUrl);
    const partial = Array.from({ length: count }, (_, i) => partialRequest(service, cartoonize(service.key, style, images[i % images.length]!), 0.5));
    await sleep(300); // headers and half the body are in; the service waits for the rest
    const during = await readPool(service.metricsUrl);
    for (const p of partial) p.drop();
    const settled = await waitForPool(service.metricsUrl, (g) => (g.rejections['aborted'] ?? 0) >= (before.rejections['aborted'] ?? 0) + count, 'the dropped uploads to be counted', 10_000);
    const idle = await waitForPool(service.metricsUrl, (g) => g.queued === 0 && g.busy === 0, 'the pool to be idle', 10_000);
    const checks = [
      check('half-sent uploads never reach the queue', during.queued === 0 && during.busy === 0, `while ${count} uploads hang half-sent: queued ${during.queued}, busy ${during.busy}`),
      check('each dropped upload is counted as aborted', (settled.rejections['aborted'] ?? 0) - (before.rejections['aborted'] ?? 0) === count, `privatoon_rejections_total{reason="aborted"} +${(settled.rejections['aborted'] ?? 0) - (before.rejections['aborted'] ?? 0)}`),
      check('no leaked tasks: queue and workers idle', idle.queued === 0 && idle.busy === 0, `queued ${idle.queued}, busy ${idle.busy}`),
      check('the service is alive', service.alive(), service.alive() ? 'running' : 'exited'),
      await servedAgain(client, service, style, images, workers),
    ];
    return { name: `${count} clients disconnect mid-upload (half the body sent)`, facts: `queue during: ${during.queued}; after: ${idle.queued} queued, ${idle.busy} busy`, checks };
  } finally {
    client.close();
  }
}

export async function queueDisconnect(service: Service, style: string, images: readonly BenchImage[], opts: { queued?: number; dropped?: number } = {}): Promise<FaultResult> {
  const client = new HttpClient(service.base);
  try {
    const workers = await workersOf(service);
    const metrics = await scrape(service.metricsUrl);
    const maxQueue = metrics.get('privatoon_queue_capacity') ?? 0;
    const queued = Math.min(opts.queued ?? 4, maxQueue);
    const dropped = Math.min(opts.dropped ?? Math.ceil(queued / 2), queued);
    await untilReady(service);
    const before = await readPool(service.metricsUrl);

    // Every worker held by a slow request (the deadline ends it with 504 and replaces the worker).
    const slow = Array.from({ length: workers }, () => client.send(cartoonize(service.key, style, images[0]!, { fault: 'hang' })));
    await waitForPool(service.metricsUrl, (g) => g.busy === workers, 'every worker to be busy');
    const waiting = Array.from({ length: queued }, (_, i) => partialRequest(service, cartoonize(service.key, style, images[i % images.length]!), 1));
    const answers = waiting.map(
      (w) =>
        new Promise<string>((resolve) => {
          w.req.on('response', (res) => resolve(String(res.statusCode)));
          w.req.on('close', () => resolve('dropped'));
        }),
    );
    const full = await waitForPool(service.metricsUrl, (g) => g.queued === queued, `${queued} requests to be queued`);
    const dropStart = performance.now();
    for (const w of waiting.slice(0, dropped)) w.drop();
    const afterDrop = await waitForPool(service.metricsUrl, (g) => g.queued === queued - dropped, 'the dropped requests to leave the queue', 10_000, 5);
    const dropMs = performance.now() - dropStart;
    const slowAnswers = await Promise.all(slow);
    const keptAnswers = await Promise.all(answers.slice(dropped));
    const idle = await waitForPool(service.metricsUrl, (g) => g.queued === 0 && g.busy === 0, 'the pool to be idle', 30_000);
    await untilReady(service);
    const after = await readPool(service.metricsUrl);
    const aborted = (after.rejections['aborted'] ?? 0) - (before.rejections['aborted'] ?? 0);
    const checks = [
      check('dropped requests leave the queue at once', afterDrop.queued === queued - dropped, `queue ${full.queued} -> ${afterDrop.queued} in ${dropMs.toFixed(0)} ms after dropping ${dropped}`),
      check('the running tasks are not disturbed', afterDrop.busy === workers, `busy ${afterDrop.busy} of ${workers} after the drop`),
      check('the dropped requests are counted as aborted', aborted === dropped, `privatoon_rejections_total{reason="aborted"} +${aborted}`),
      check('the slow requests end at the deadline (504)', slowAnswers.every((a) => a.status === 504), slowAnswers.map(outcomeKey).join(', ')),
      check('the kept queued requests are answered (200, or 504 when their deadline ran out behind the slow ones)', keptAnswers.every((a) => a === '200' || a === '504'), keptAnswers.join(', ') || 'none kept'),
      check('no leaked tasks: queue returns to 0', idle.queued === 0 && idle.busy === 0, `queued ${idle.queued}, busy ${idle.busy}`),
      await servedAgain(client, service, style, images, workers),
    ];
    return {
      name: `${dropped} of ${queued} queued clients disconnect (workers held by slow requests)`,
      facts: `queue ${full.queued} -> ${afterDrop.queued} in ${dropMs.toFixed(0)} ms; slow: ${slowAnswers.map(outcomeKey).join(', ')}; kept: ${keptAnswers.join(', ') || '-'}`,
      checks,
    };
  } finally {
    client.close();
  }
}
