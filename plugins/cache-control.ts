/**
 * A Cache-Control on every answer: `no-store` unless the route chose (web assets and the style list revalidate,
 * problem types are public for a day). Health checks, readiness, the OpenAPI document and anything new then never
 * sit in a cache by accident; images and errors say `no-store` themselves.
 */
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

async function cacheControlPlugin(fastify: FastifyInstance) {
  fastify.addHook('onSend', async (_request, reply, payload) => {
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
    return payload;
  });
}

export default fp(cacheControlPlugin, { fastify: '5.x', name: 'privatoon-cache-control' });
