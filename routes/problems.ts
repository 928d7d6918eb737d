/**
 * GET /problems/:code: what a problem type means. Every error answer's `type` is `/problems/<code>`, a relative
 * reference that resolves here, on the server that answered, so the description always matches the running version.
 * The catalogue is errors.ts's PROBLEMS (the table's answered rows). Public and cacheable (it changes only with a
 * deploy); counted by the cheap-route rate limit.
 */
import type { FastifyInstance } from 'fastify';
import { NotFoundError, PROBLEMS } from '../errors.js';
import { PROBLEM_TYPE_PREFIX, problemResponses } from '../plugins/errors.js';

const CODE_PATTERN = '^PTOON_[A-Z_]{1,40}$';

export default async function problemRoutes(fastify: FastifyInstance) {
  fastify.get<{ Params: { code: string } }>(
    `${PROBLEM_TYPE_PREFIX}:code`,
    {
      schema: {
        operationId: 'getProblemType',
        summary: 'The description of a problem type (an error answer\'s `type`)',
        tags: ['errors'],
        security: [], // public
        params: { type: 'object', required: ['code'], properties: { code: { type: 'string', pattern: CODE_PATTERN, description: 'A PTOON_* code' } } },
        response: {
          200: {
            description: 'The problem type',
            headers: { 'Cache-Control': { type: 'string', description: 'public, max-age=86400' } },
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  required: ['type', 'code', 'status', 'title', 'description'],
                  properties: {
                    type: { type: 'string', format: 'uri-reference' },
                    code: { type: 'string' },
                    status: { type: 'integer' },
                    title: { type: 'string' },
                    description: { type: 'string' },
                  },
                },
              },
            },
          },
          ...problemResponses(['PTOON_BAD_OPTION', 'PTOON_NOT_FOUND', 'PTOON_RATE_LIMITED']),
        },
      },
    },
    async (request, reply) => {
      const { code } = request.params;
      if (!Object.hasOwn(PROBLEMS, code)) throw new NotFoundError();
      const problem = PROBLEMS[code as keyof typeof PROBLEMS];
      reply.header('cache-control', 'public, max-age=86400');
      return { type: `${PROBLEM_TYPE_PREFIX}${code}`, code, status: problem.status, title: problem.title, description: problem.description };
    },
  );
}
