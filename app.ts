/**
 * The application: every plugin in the order it must run, then the routes. `buildApp` wraps it in a Fastify instance
 * with the server options (timeouts, body limit, proxy trust, logger); server.ts and the tests both use it, so tests
 * run the same app the service runs.
 *
 * Order matters and is spelled out here rather than left to file names:
 *   errors first (every later failure needs the handler) -> security headers (the first hook) -> cache-control
 *   default -> drain -> pool (start-up fails here on a bad model) -> request record (how each request ended, read by
 *   the upload budget, the request log and the metrics) -> upload budget -> auth (start-up fails here on a
 *   bad key file) -> rate-limit store (Redis or in-process) -> request log and metrics (they read what auth, the pool
 *   and the store decorate) -> rate limit (after auth: it counts by key id) -> same-origin -> body parsers ->
 *   scrubbing of unread bytes -> 100-continue -> OpenAPI (before routes: it collects them) -> 405 -> 404 -> routes.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Writable } from 'node:stream';
import type { FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { readTls, type Config } from './config.js';
import { PACKAGE_JSON } from './paths.js';
import authPlugin from './plugins/auth.js';
import cacheControlPlugin from './plugins/cache-control.js';
import drainPlugin from './plugins/drain.js';
import expectContinuePlugin from './plugins/expect-continue.js';
import errorsPlugin, { sendError } from './plugins/errors.js';
import { BadRequestError, NotFoundError } from './errors.js';
import helmetPlugin from './plugins/helmet.js';
import requestLogPlugin, { incomingRequestId, loggerOptions } from './plugins/logging.js';
import methodsPlugin from './plugins/methods.js';
import metricsPlugin from './plugins/metrics.js';
import openApiPlugin from './plugins/openapi.js';
import poolPlugin, { type Pool } from './plugins/pool.js';
import rateLimitStorePlugin from './plugins/rate-limit-redis.js';
import rateLimitPlugin, { CACHE_SIZE } from './plugins/rate-limit.js';
import rateLimitWindowsPlugin from './plugins/rate-limit-windows.js';
import requestRecordPlugin from './plugins/request-record.js';
import sameOriginPlugin from './plugins/same-origin.js';
import scrubPlugin from './plugins/scrub.js';
import uploadBudgetPlugin from './plugins/upload-budget.js';
import uploadsPlugin from './plugins/uploads.js';
import cartoonizeRoutes from './routes/cartoonize.js';
import docsRoutes from './routes/docs.js';
import healthRoutes from './routes/health.js';
import problemRoutes from './routes/problems.js';
import styleRoutes from './routes/styles.js';
import webRoutes from './routes/web.js';

declare module 'fastify' {
  interface FastifyInstance {
    config: Config;
  }
}

/** What a test (or another embedder) may hand in instead of the defaults. */
export interface AppDeps {
  /** A started pool; the caller closes it. Default: the app starts (and closes) its own from the config. */
  pool?: Pool | undefined;
  /** Where log lines go; default stdout. */
  logStream?: Writable | undefined;
  /** A rate-limit store to use instead of the configured one (REDIS_URL, else in-process). */
  rateLimitStore?: FastifyRateLimitStoreCtor | undefined;
  /** The module the app's own pool runs in its worker threads (PoolStartOptions.workerFile); default workers/entry. */
  workerFile?: URL | undefined;
}

export interface AppOptions extends AppDeps {
  config: Config;
}

const VERSION = (JSON.parse(readFileSync(PACKAGE_JSON, 'utf8')) as { version: string }).version;

/** The app as a plugin (fastify/demo shape): no listen, no signals, no process state. */
export async function app(fastify: FastifyInstance, opts: AppOptions) {
  const { config } = opts;
  fastify.decorate('config', config);

  await fastify.register(errorsPlugin, {
    maxUploadBytes: config.maxUploadBytes,
    // Read lazily: the pool is decorated just below.
    retryAfter: () => fastify.pool.retryAfterSeconds(),
  });
  // Security headers first among the hooks: every answer carries them, those of the drain and the limits included.
  await fastify.register(helmetPlugin, { tls: config.tlsCertFile !== null });
  await fastify.register(cacheControlPlugin);
  await fastify.register(drainPlugin);
  await fastify.register(poolPlugin, { pool: opts.pool, settings: config.pool, workerFile: opts.workerFile });
  await fastify.register(requestRecordPlugin);
  // Uploads in flight are bounded here, not by the pool: they take an inference place only once their body is in.
  await fastify.register(uploadBudgetPlugin, {
    maxUploads: config.maxUploads,
    maxBytes: config.uploadMemoryMaxBytes,
    perClient: config.uploadsPerClient,
    minBytesPerSecond: config.uploadMinBytesPerS,
    windowMs: config.uploadRateWindowMs,
    maxUploadBytes: config.maxUploadBytes,
  });
  await fastify.register(authPlugin, { keysFile: config.apiKeysFile });
  // Where rate-limit counts live: Redis when REDIS_URL is set (one connect attempt here, never fatal), else in-process.
  await fastify.register(rateLimitStorePlugin, { url: config.redisUrl, timeoutMs: config.redisTimeoutMs, cache: CACHE_SIZE });
  await fastify.register(requestLogPlugin);
  await fastify.register(metricsPlugin, { host: config.metricsHost, port: config.metricsPort, version: VERSION });
  await fastify.register(rateLimitPlugin, {
    max: config.rateLimitCheapMax,
    windowMs: config.rateLimitWindowMs,
    store: opts.rateLimitStore ?? fastify.rateLimitStore.store,
  });
  await fastify.register(rateLimitWindowsPlugin, {
    windowMs: config.rateLimitWindowMs,
    store: opts.rateLimitStore ?? fastify.rateLimitStore.store,
    cache: CACHE_SIZE,
  });
  await fastify.register(sameOriginPlugin, { publicOrigin: config.publicOrigin });
  await fastify.register(uploadsPlugin, { maxUploadBytes: config.maxUploadBytes });
  await fastify.register(scrubPlugin);
  await fastify.register(expectContinuePlugin, { maxUploadBytes: config.maxUploadBytes });
  await fastify.register(openApiPlugin, { version: VERSION, maxUploadBytes: config.maxUploadBytes, publicOrigin: config.publicOrigin });

  // A known path with the wrong method: 405 + Allow, on onRequest (it must see every route, so before them).
  await fastify.register(methodsPlugin, { rateLimit: { max: config.rateLimitCheapMax, timeWindow: config.rateLimitWindowMs } });

  // Unknown URLs and methods are refused at onRequest, before a byte of their body is read (the raw-image parser is
  // app-wide, so a body sent to /nope would otherwise be buffered whole first). They are rate-limited too, at the
  // same point: scanners probing paths must not get unlimited cheap answers.
  const notFoundLimit = fastify.rateLimit({ max: config.rateLimitCheapMax, timeWindow: config.rateLimitWindowMs });
  fastify.addHook('onRequest', async (request, reply) => {
    if (!request.is404) return;
    await notFoundLimit.call(fastify, request, reply);
    if (!reply.sent) throw new NotFoundError();
  });
  fastify.setNotFoundHandler(async () => {
    throw new NotFoundError();
  });

  await fastify.register(healthRoutes);
  await fastify.register(styleRoutes);
  await fastify.register(cartoonizeRoutes);
  await fastify.register(docsRoutes);
  await fastify.register(problemRoutes);
  // The web page (GET /, /app.js, /app.css); its upload endpoint, /ui/cartoonize, is in cartoonize.ts.
  if (config.uiEnabled) {
    await fastify.register(webRoutes, { operator: { name: config.operatorName, contact: config.operatorContact, policyUrl: config.privacyPolicyUrl } });
  }
}

/**
 * Native TLS (TLS_CERT_FILE, TLS_KEY_FILE) for a box without a proxy: TLS 1.2 and 1.3 only, and for TLS 1.2 only
 * forward-secret AEAD suites (Mozilla's "intermediate" profile); Node's own default list also allows CBC suites.
 * systemd/nginx/privatoon.conf uses the same profile.
 */
export const TLS_SETTINGS = {
  minVersion: 'TLSv1.2',
  ciphers: [
    'TLS_AES_128_GCM_SHA256',
    'TLS_AES_256_GCM_SHA384',
    'TLS_CHACHA20_POLY1305_SHA256',
    'ECDHE-ECDSA-AES128-GCM-SHA256',
    'ECDHE-RSA-AES128-GCM-SHA256',
    'ECDHE-ECDSA-AES256-GCM-SHA384',
    'ECDHE-RSA-AES256-GCM-SHA384',
    'ECDHE-ECDSA-CHACHA20-POLY1305',
    'ECDHE-RSA-CHACHA20-POLY1305',
  ].join(':'),
} as const;

/** Milliseconds a connection may sit silent. It must outlast a request's whole stay: upload, queue and inference. */
function connectionTimeout(config: Config): number {
  return Math.max(config.requestTimeoutMs, config.requestDeadlineMs) + 10_000;
}

/** A Fastify instance with the app registered and the server options that go with it. Call `ready()` or `listen()`. */
export function buildApp(config: Config, deps: AppDeps = {}): FastifyInstance {
  const tls = readTls(config);
  const fastify = Fastify({
    logger: loggerOptions(config.logLevel, deps.logStream),
    // Fastify's own request lines would log the URL (with its query string); plugins/logging.ts writes ours.
    logController: new LogController({ disableRequestLogging: true }),
    // The caller's X-Request-Id when it is a plain token (nginx's $request_id, a UUID, a ULID: checked and bounded, so
    // it cannot forge or flood a log line), else a UUID of ours; sent back as X-Request-Id and in every problem.
    genReqId: (raw: { headers: Record<string, string | string[] | undefined> }) => incomingRequestId(raw.headers['x-request-id']) ?? randomUUID(),
    requestIdHeader: false,
    trustProxy: config.trustProxy === false ? false : [...config.trustProxy],
    bodyLimit: config.maxUploadBytes,
    // The pool plugin checks and loads every model in every worker before the server listens: the learned styles
    // take seconds each on a small machine, well past Fastify's 10 s default. A failed load still fails at once.
    pluginTimeout: 300_000,
    requestTimeout: config.requestTimeoutMs,
    connectionTimeout: connectionTimeout(config),
    keepAliveTimeout: config.keepAliveTimeoutMs,
    // The drain plugin answers requests that arrive during shutdown (503 + Retry-After), health checks included.
    return503OnClosing: false,
    // Unknown query parameters are an error (a typo'd option must not be silently ignored), not silently dropped.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: false } },
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 100 },
    // Errors raised before routing (a malformed URL) get our shape too, without echoing the URL.
    frameworkErrors: (_error: unknown, request: FastifyRequest, reply: FastifyReply) => {
      fastify.applySecurityHeaders(request.raw, reply.raw); // no hook runs before this answer
      sendError(request, reply, new BadRequestError('The URL is not valid'));
    },
    ...(tls !== null ? { https: { ...tls, ...TLS_SETTINGS } } : {}),
  } as Parameters<typeof Fastify>[0]) as unknown as FastifyInstance;
  // Headers must come quickly even when the body may take REQUEST_TIMEOUT_MS: a slow-header client is an attack.
  fastify.server.headersTimeout = Math.min(20_000, config.requestTimeoutMs);
  fastify.register(fp(app, { fastify: '5.x', name: 'privatoon-app' }), { config, ...deps });
  return fastify;
}
