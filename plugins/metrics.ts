/**
 * Prometheus metrics (prom-client) in a registry of our own, served by a separate Fastify instance on
 * METRICS_HOST:METRICS_PORT (loopback by default): load, key ids and worker health are for operators, not for the
 * public port, and a scrape must work while the API is saturated or rate-limiting.
 *
 * What is measured: request duration by route pattern and status; inference time by style and stage; queue depth,
 * busy and ready workers (read from pool.stats() at scrape time); rejections by reason; auth failures by reason;
 * worker crashes; the ORT thread settings; with REDIS_URL, whether Redis answers and how many rate-limit decisions
 * were made in-process without it. Labels are bounded sets (route patterns, codes, style ids), never URLs.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { isIP } from 'node:net';
import fp from 'fastify-plugin';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { rowOf } from '../errors.js';

declare module 'fastify' {
  interface FastifyInstance {
    metrics: {
      registry: Registry;
      /**
       * Starts the metrics listener on METRICS_PORT, or on `port` if given; resolves to its address, or to null
       * when METRICS_PORT is 0 and no port is given. Closed with the app.
       */
      listen(port?: number): Promise<string | null>;
    };
  }
}

export interface MetricsOptions {
  host: string;
  port: number;
  /** package.json's version, for privatoon_build_info. */
  version: string;
}

const STAGES = ['decode', 'detect', 'infer', 'head', 'encode'] as const;

/** A Host header that names an address (or localhost), not a DNS name: a rebinding attack needs a name. */
export function isAddressHost(host: string): boolean {
  const name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d+$/, '');
  return name === 'localhost' || isIP(name) !== 0;
}

async function metricsPlugin(fastify: FastifyInstance, opts: MetricsOptions) {
  const registry = new Registry();
  // Node's default metrics under their standard names (process_*, nodejs_*): stock dashboards and alerts expect them.
  collectDefaultMetrics({ register: registry });
  new Gauge({
    name: 'privatoon_build_info',
    help: 'Always 1; the labels say what is running (version, Node.js version)',
    labelNames: ['version', 'nodejs_version'] as const,
    registers: [registry],
  }).set({ version: opts.version, nodejs_version: process.versions.node }, 1);
  const pool = fastify.pool;

  const requestDuration = new Histogram({
    name: 'privatoon_http_request_duration_seconds',
    help: 'HTTP request duration, by route pattern, method and status',
    labelNames: ['route', 'method', 'status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const stageDuration = new Histogram({
    name: 'privatoon_inference_stage_seconds',
    help: 'Time per inference stage (queue wait included), by style',
    labelNames: ['style', 'stage'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const rejections = new Counter({
    name: 'privatoon_rejections_total',
    help: 'Requests refused or cut short, by reason',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const authFailures = new Counter({
    name: 'privatoon_auth_failures_total',
    help: 'API key checks that failed, by reason (missing, invalid, conflict, not_configured)',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const facesPerImage = new Histogram({
    name: 'privatoon_faces_per_image',
    help: 'Faces stylised per image by face-aware styles (0: the whole-image result alone)',
    labelNames: ['style'] as const,
    buckets: [0, 1, 2, 3, 4, 6, 8],
    registers: [registry],
  });
  const workerCrashes = new Counter({
    name: 'privatoon_worker_crashes_total',
    help: 'Worker threads that died during a task (the pool replaces them)',
    registers: [registry],
  });
  // Deadlines that found their task running (answered 504; the task cancelled, its run left to finish in native
  // code), of those the threads terminated because the task was stuck in JavaScript (pool/inference-pool.ts), and uploads
  // cut for being too slow (plugins/upload-budget.ts): counts their owners keep, exported as counters.
  for (const [name, help, read] of [
    ['privatoon_deadline_overruns_total', 'Requests answered 504 while their task was running; the task stops at its next native call', () => pool.stats().deadlineOverruns],
    ['privatoon_deadline_kills_total', 'Tasks past their deadline found stuck in JavaScript: their worker was terminated and replaced', () => pool.stats().deadlineKills],
    ['privatoon_uploads_cut_total', 'Uploads cut with 408 for arriving slower than UPLOAD_MIN_BYTES_PER_S (or stalling)', () => fastify.uploadBudget.stats().cutTooSlow],
  ] as const) {
    let seen = 0;
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        const now = read();
        if (now > seen) this.inc(now - seen);
        seen = now;
      },
    });
  }
  new Gauge({
    name: 'privatoon_queue_depth',
    help: 'Inference tasks waiting for a worker',
    registers: [registry],
    collect() {
      this.set(pool.stats().queued);
    },
  });
  new Gauge({
    name: 'privatoon_uploads_in_flight',
    help: 'Uploads being read now: they hold a place in the upload budget (MAX_UPLOADS), not in the pool',
    registers: [registry],
    collect() {
      this.set(fastify.uploadBudget.stats().uploads);
    },
  });
  new Gauge({
    name: 'privatoon_upload_bytes_in_flight',
    help: 'Declared bytes of the uploads being read now (bounded by UPLOAD_MEMORY_MAX_BYTES)',
    registers: [registry],
    collect() {
      this.set(fastify.uploadBudget.stats().bytes);
    },
  });
  new Gauge({
    name: 'privatoon_queue_capacity',
    help: 'Tasks that may wait before requests are refused with 503 (MAX_QUEUE)',
    registers: [registry],
    collect() {
      this.set(pool.stats().maxQueue);
    },
  });
  new Gauge({
    name: 'privatoon_workers_busy',
    help: 'Workers running an inference now',
    registers: [registry],
    collect() {
      this.set(pool.stats().busy);
    },
  });
  new Gauge({
    name: 'privatoon_workers_ready',
    help: 'Workers with warm sessions',
    registers: [registry],
    collect() {
      this.set(pool.stats().readyWorkers);
    },
  });
  const threads = new Gauge({
    name: 'privatoon_ort_threads',
    help: 'Thread settings: workers, ORT intra-op and inter-op threads per worker, spinning (1 = on)',
    labelNames: ['setting'] as const,
    registers: [registry],
  });
  const settings = pool.threadSettings;
  threads.set({ setting: 'workers' }, settings.workers);
  threads.set({ setting: 'intra_op' }, settings.intraOpThreads);
  threads.set({ setting: 'inter_op' }, settings.interOpThreads);
  threads.set({ setting: 'spinning' }, settings.spinning ? 1 : 0);

  // Rate-limit store (plugins/rate-limit-redis.ts): with REDIS_URL, decisions Redis could not make, and its state.
  const limits = fastify.rateLimitStore;
  const storeErrors = new Counter({
    name: 'privatoon_rate_limit_store_errors_total',
    help: 'Rate-limit decisions the shared store (REDIS_URL) could not make (error, timeout, no connection), made by this process instead',
    registers: [registry],
  });
  if (limits.kind === 'redis') {
    new Gauge({
      name: 'privatoon_rate_limit_store_up',
      help: '1 while the shared rate-limit store (REDIS_URL) answers; 0 while limits are counted per instance',
      registers: [registry],
      collect() {
        this.set(limits.up ? 1 : 0);
      },
    });
  }
  const onStoreFallback = () => storeErrors.inc();
  limits.on('fallback', onStoreFallback);

  const onTaskFailed = (event: { crashed?: boolean }) => {
    if (event.crashed === true) workerCrashes.inc();
  };
  pool.on('task-failed', onTaskFailed);
  fastify.addHook('onClose', async () => {
    pool.off('task-failed', onTaskFailed);
    limits.off('fallback', onStoreFallback);
  });

  // Counted from each request's record (plugins/request-record.ts): the request log line reads the same record.
  fastify.requestRecords.subscribe((record) => {
    requestDuration.observe({ route: record.route, method: record.method, status: String(record.status) }, record.durationMs / 1000);
    // Rejection and auth-failure reasons are columns of the code's row; codes without them are not counted there.
    const row = rowOf(record.code);
    if (row?.rejection !== undefined) rejections.inc({ reason: row.rejection });
    if (row?.authFailure !== undefined) authFailures.inc({ reason: row.authFailure });
    const inference = record.inference;
    if (inference !== undefined) {
      stageDuration.observe({ style: inference.style, stage: 'queue' }, inference.queueMs / 1000);
      for (const stage of STAGES) {
        const value = inference.timings[stage];
        if (value !== undefined) stageDuration.observe({ style: inference.style, stage }, value / 1000);
      }
      if (inference.timings.detect !== undefined) facesPerImage.observe({ style: inference.style }, inference.faces);
    }
  });

  let server: FastifyInstance | null = null;
  fastify.decorate('metrics', {
    registry,
    async listen(port?: number): Promise<string | null> {
      // METRICS_PORT=0 turns metrics off; a port given here (tests: 0, any free port) overrides it.
      if (port === undefined && opts.port === 0) return null;
      server = Fastify({ logger: false });
      server.get('/metrics', async (request, reply) => {
        // DNS rebinding: a web page on a name its owner points at 127.0.0.1 could read this listener from a
        // browser on the same box. Such a request carries that name as its Host; scrapers use an address.
        if (!isAddressHost(request.host)) return reply.code(403).type('text/plain').send('Forbidden: scrape by address (Host must be an IP address or localhost)\n');
        reply.type(registry.contentType);
        return registry.metrics();
      });
      const address = await server.listen({ host: opts.host, port: port ?? opts.port });
      fastify.log.info({ address }, 'metrics listening');
      return address;
    },
  });
  fastify.addHook('onClose', async () => {
    await server?.close();
  });
}

export default fp(metricsPlugin, {
  fastify: '5.x',
  name: 'privatoon-metrics',
  dependencies: ['privatoon-pool', 'privatoon-errors', 'privatoon-auth', 'privatoon-rate-limit-store', 'privatoon-request-record'],
});
