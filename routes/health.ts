/**
 * Liveness and readiness, for load balancers and orchestrators. No key, no rate limit, and they answer while the
 * server drains: they are how the outside learns that it does.
 *  - GET /healthz: the process is up and its event loop turns. Always 200.
 *  - GET /readyz: 200 while every worker is warm; 503 (with Retry-After) while a worker is being replaced or the
 *    server is shutting down (from SIGTERM on, through the grace period in which it still serves). Never touches the pool's queue, so it answers at once under any load.
 */
import type { FastifyInstance } from 'fastify';
import { problemResponses } from '../plugins/errors.js';
import { NotReadyError } from '../errors.js';

const healthConfig = { rateLimit: false, answersWhileDraining: true } as const;

export default async function healthRoutes(fastify: FastifyInstance) {
  fastify.get(
    '/healthz',
    {
      config: healthConfig,
      schema: {
        operationId: 'getLiveness',
        summary: 'Liveness: 200 while the process runs',
        tags: ['health'],
        security: [], // public
        response: {
          200: { description: 'Alive', type: 'object', required: ['status'], properties: { status: { type: 'string', enum: ['ok'] } } },
          // Only a request Node cannot parse (a bad URL) gets an error here.
          ...problemResponses(['PTOON_BAD_REQUEST']),
        },
      },
    },
    async () => ({ status: 'ok' }),
  );

  fastify.get(
    '/readyz',
    {
      config: healthConfig,
      schema: {
        operationId: 'getReadiness',
        summary: 'Readiness: 200 when every worker is warm, 503 while starting a worker or shutting down',
        tags: ['health'],
        security: [], // public
        response: {
          200: {
            description: 'Every worker is warm',
            type: 'object',
            required: ['status', 'workers', 'readyWorkers', 'queued'],
            properties: {
              status: { type: 'string', enum: ['ready'] },
              workers: { type: 'integer' },
              readyWorkers: { type: 'integer' },
              queued: { type: 'integer' },
            },
          },
          ...problemResponses(['PTOON_BAD_REQUEST', 'PTOON_NOT_READY']),
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
