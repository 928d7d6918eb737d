/**
 * GET /openapi.json: the OpenAPI 3 document generated from the routes' schemas (plugins/openapi.ts). Public, and
 * counted by the cheap-route rate limit.
 */
import type { FastifyInstance } from 'fastify';

export default async function docsRoutes(fastify: FastifyInstance) {
  fastify.get('/openapi.json', { schema: { hide: true } }, async () => fastify.swagger());
}
