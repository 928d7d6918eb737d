/**
 * Draining for a graceful shutdown, in two steps.
 *  - `fastify.withdraw()` (server.ts, on SIGTERM, for SHUTDOWN_GRACE_MS) turns readiness to 503 and changes nothing
 *    else: requests are still accepted and served, on new connections too. Load balancers and Kubernetes learn of a
 *    pod's end from its readiness or from the API server, seconds after the signal; until they have, they keep
 *    sending, and refusing them would fail requests that another instance would have served.
 *  - `fastify.drain()` (called by server.ts on SIGTERM/SIGINT) turns readiness to 503
 * at once, refuses new work on connections that are still open with 503 + Retry-After, and asks every client to close
 * its connection after its answer, so keep-alive sockets do not hold the shutdown up. Requests already in flight are
 * left alone to finish; health checks keep answering.
 */
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { NotReadyError } from '../errors.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** True from the moment `withdraw()` or `drain()` is called: readiness answers 503. */
    readonly withdrawn: boolean;
    /** True from the moment `drain()` is called. */
    readonly draining: boolean;
    withdraw(): void;
    drain(): void;
  }
  interface FastifyContextConfig {
    /** Health checks answer while draining; everything else is refused. */
    answersWhileDraining?: boolean;
  }
}

/** Seconds a client refused during shutdown should wait: about as long as another instance takes to pick up. */
const DRAIN_RETRY_AFTER_S = 5;

async function drainPlugin(fastify: FastifyInstance) {
  let withdrawn = false;
  let draining = false;
  fastify.decorate('withdrawn', {
    getter: () => withdrawn,
  });
  fastify.decorate('draining', {
    getter: () => draining,
  });
  fastify.decorate('withdraw', () => {
    withdrawn = true;
  });
  fastify.decorate('drain', () => {
    withdrawn = true;
    draining = true;
  });

  fastify.addHook('onRequest', async (request, reply) => {
    if (!draining) return;
    reply.header('connection', 'close');
    if (request.routeOptions.config.answersWhileDraining !== true) {
      throw Object.assign(new NotReadyError(), { retryAfter: DRAIN_RETRY_AFTER_S });
    }
  });
  // An answer written after the drain began (an in-flight request) closes its connection too.
  fastify.addHook('onSend', async (_request, reply) => {
    if (draining) reply.header('connection', 'close');
  });
}

export default fp(drainPlugin, { fastify: '5.x', name: 'privatoon-drain' });
