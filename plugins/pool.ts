/**
 * The inference pool as a Fastify decorator: `fastify.pool`, started here (or handed in by a test) and closed when the
 * app closes. All the threading lives in pool/inference-pool.ts; this file only owns the pool's lifetime.
 */
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { PoolSettings } from '../config.js';
import type { StageTimings } from '../contract.js';
import { InferencePool } from '../pool/inference-pool.js';

/** What the HTTP layer uses of the pool; a test may hand in anything with this shape. */
export type Pool = Pick<
  InferencePool,
  'styles' | 'defaultStyle' | 'withDefaults' | 'accepting' | 'ready' | 'saturated' | 'admit' | 'retryAfterSeconds' | 'stats' | 'threadSettings' | 'hasStyle' | 'run' | 'close' | 'destroy' | 'on' | 'off'
>;

/** What one request's inference took; read by the request log line and the metrics. */
export interface InferenceNote {
  style: string;
  queueMs: number;
  timings: StageTimings;
  faces: number;
}

declare module 'fastify' {
  interface FastifyInstance {
    pool: Pool;
  }
  interface FastifyRequest {
    inference: InferenceNote | null;
  }
}

export interface PoolPluginOptions {
  /** A pool started elsewhere (tests). Its owner closes it; this plugin does not. */
  pool?: Pool | undefined;
  settings: PoolSettings;
  /** PoolStartOptions.workerFile: given by code only (a test's fault-injecting worker), never by a setting. */
  workerFile?: URL | undefined;
}

async function poolPlugin(fastify: FastifyInstance, opts: PoolPluginOptions) {
  const owned = opts.pool === undefined;
  // Start-up fails here, naming the model file and field, if any model is bad: the server never listens without one.
  const pool: Pool =
    opts.pool ??
    (await InferencePool.start(opts.settings, { workerFile: opts.workerFile }));
  fastify.decorate('pool', pool);
  fastify.decorateRequest('inference', null);

  if (owned) {
    // Worker errors outside any task, and replacements that cannot load their models: the pool carries on (short of
    // a worker in the second case, which /readyz shows), the operator must hear of it.
    pool.on('error', (err: Error) => fastify.log.error({ err: { type: err.name, message: err.message } }, 'worker error outside a task'));
    pool.on('worker-init-failed', (message: string) => fastify.log.error({ detail: message }, 'a replacement worker could not load its models; the pool is short of a worker'));
    const settings = pool.threadSettings;
    fastify.log.info({ ...settings, styles: pool.styles.map((s) => s.id) }, 'inference pool ready');
    // Runs after the HTTP server has stopped taking requests and the in-flight ones have finished (Fastify closes
    // the server first): waiting tasks fail with NOT_READY, running ones finish, then the workers end.
    fastify.addHook('onClose', async () => {
      await pool.close();
    });
  }
}

export default fp(poolPlugin, { fastify: '5.x', name: 'privatoon-pool' });
