/**
 * Liveness and readiness, for load balancers and orchestrators. No key, no rate limit, and they answer while the
 * server drains: they are how the outside learns that it does.
 *  - GET /healthz: the process is up and its event loop turns. Always 200.
 *  - GET /readyz: 200 while every worker is warm; 503 (with Retry-After) while a worker is being replaced or the
 *    server is shutting down (from SIGTERM on, through the grace period in which it still serves). Never touches the pool's queue, so it answers at once under any load.
 */
import type { FastifyInstance } from 'fastify';
import { NotReadyError } from '../workers/errors.js';

const healthConfig = { rateLimit: false, answersWhileDraining: true } as const;

export default async function healthRoutes(fastify: FastifyInstance) {
  fastify.get(
    '/healthz',
    {
      config: healthConfig,
      schema: {
        summary: 'Liveness: 200 while the process runs',
        tags: ['health'],
        response: { 200: { type: 'object', properties: { status: { type: 'string', enum: ['ok'] } } } },
      },
    },
    async () => ({ status: 'ok' }),
  );

  fastify.get(
    '/readyz',
    {
      config: healthConfig,
      schema: {
        summary: 'Readiness: 200 when every worker is warm, 503 while starting a worker or shutting down',
        tags: ['health'],
        response: {
          200: {
            type: 'object',
            properties: {
              status: { type: 'string', enum: ['ready'] },
              workers: { type: 'integer' },
              readyWorkers: { type: 'integer' },
              queued: { type: 'integer' },
            },
          },
          503: { $ref: 'PtoonError#' },
        },
      },
    },
    async () => {
      if (fastify.withdrawn) throw new NotReadyError();
      const stats = fastify.pool.stats();
      if (!fastify.pool.ready) throw new NotReadyError();
      return { status: 'ready', workers: stats.workers, readyWorkers: stats.readyWorkers, queued: stats.queued };
    },
  );
}
