/**
 * GET /api/styles: what a client may ask for (styles, formats, limits). Public, like a menu: it reveals nothing
 * about anyone, and the web page needs it without a key. Counted by the cheap-route rate limit.
 */
import type { FastifyInstance } from 'fastify';
import { problemResponses } from '../plugins/errors.js';
import { OUTPUT_FORMATS } from '../contract.js';
import { RATE_LIMIT_HEADERS } from './cartoonize.js';

export default async function styleRoutes(fastify: FastifyInstance) {
  const { config, pool } = fastify;
  const body = {
    styles: pool.styles.map((s) => ({ id: s.id, title: s.title, faceAware: s.faceAware, ...(s.licence === undefined ? {} : { licence: s.licence }) })),
    default: pool.defaultStyle,
    formats: [...OUTPUT_FORMATS],
    limits: { maxUploadBytes: config.maxUploadBytes, maxInputPixels: config.pool.maxInputPixels, maxOutputSide: config.pool.maxOutputSide },
  };

  fastify.get(
    '/api/styles',
    {
      schema: {
        operationId: 'listStyles',
        summary: 'The styles, output formats and limits of this server',
        tags: ['cartoonize'],
        security: [], // public
        response: {
          200: {
            description: 'The styles, output formats and limits',
            headers: { 'Cache-Control': { type: 'string', description: 'no-cache: the list changes only with a restart, but may then' }, ...RATE_LIMIT_HEADERS },
            type: 'object',
            required: ['styles', 'default', 'formats', 'limits'],
            properties: {
              styles: {
                type: 'array',
                items: {
                  type: 'object',
                  required: ['id', 'title', 'faceAware'],
                  properties: {
                    id: { type: 'string' },
                    title: { type: 'string' },
                    faceAware: { type: 'boolean', description: 'Faces get their own model; require_face applies' },
                    licence: { type: 'string', description: "The model's licence and provenance, where its manifest states one" },
                  },
                },
              },
              default: { type: 'string', description: 'The style used when a request names none' },
              formats: { type: 'array', items: { type: 'string' } },
              limits: {
                type: 'object',
                properties: {
                  maxUploadBytes: { type: 'integer' },
                  maxInputPixels: { type: 'integer' },
                  maxOutputSide: { type: 'integer' },
                },
              },
            },
          },
          ...problemResponses(['PTOON_RATE_LIMITED', 'PTOON_NOT_READY'], { 429: RATE_LIMIT_HEADERS }),
        },
      },
    },
    async (_request, reply) => {
      reply.header('cache-control', 'no-cache');
      return body;
    },
  );
}
