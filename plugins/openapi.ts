/**
 * The OpenAPI document, built by @fastify/swagger from the routes' own schemas (served as JSON by routes/docs.ts;
 * no swagger-ui: it would need third-party assets). Request bodies of the upload routes are read by hand (multipart
 * or raw), so they have no body schema to validate; their documentation is added here instead.
 * @see https://github.com/fastify/fastify-swagger
 */
import swagger from '@fastify/swagger';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { OPTION_FIELDS, RAW_IMAGE_TYPES } from './uploads.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Documents a request body read by hand: 'multipart' (form only) or 'multipart+raw' (form or image body). */
    uploadBody?: 'multipart' | 'multipart+raw';
  }
}

export interface OpenApiOptions {
  version: string;
  maxUploadBytes: number;
  /** PUBLIC_ORIGIN: the document's server when set; else `/`, the server that serves the document. */
  publicOrigin: string | null;
}

type Operation = { requestBody?: unknown };
type Paths = Record<string, Record<string, Operation> | undefined>;

async function openApiPlugin(fastify: FastifyInstance, opts: OpenApiOptions) {
  const uploads = new Map<string, 'multipart' | 'multipart+raw'>();
  fastify.addHook('onRoute', (route) => {
    const kind = route.config?.uploadBody;
    if (kind !== undefined) uploads.set(route.url, kind);
  });

  const multipartSchema = {
    type: 'object',
    required: ['image'],
    properties: {
      image: { type: 'string', format: 'binary', description: `A JPEG, PNG or WebP image of at most ${opts.maxUploadBytes} bytes` },
      ...Object.fromEntries(OPTION_FIELDS.map((name) => [name, { type: 'string', description: 'As the query option of the same name' }])),
    },
  };

  await fastify.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'privatoon',
        version: opts.version,
        description:
          'Privacy-first portrait cartoonization. Uploads are processed in memory and forgotten: nothing of a photo is stored or logged. ' +
          'Errors are RFC 9457 problems (`application/problem+json`) with a stable `code`; `type` is `/problems/<code>`. ' +
          '429 and 503 carry Retry-After; rate-limited routes carry RateLimit and RateLimit-Policy headers.',
      },
      servers: [{ url: opts.publicOrigin ?? '/', description: opts.publicOrigin === null ? 'The server that serves this document' : 'This service' }],
      tags: [
        { name: 'cartoonize', description: 'Photos in, cartoons out, and what this server offers' },
        { name: 'web', description: 'The web page\'s own endpoint (same origin only)' },
        { name: 'health', description: 'Liveness and readiness, for load balancers' },
        { name: 'errors', description: 'The problem types of error answers' },
      ],
      components: {
        securitySchemes: {
          apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
          bearer: { type: 'http', scheme: 'bearer' },
        },
      },
    },
    // Shared schemas keep their $id as their name in the document (PtoonError), not `def-0`.
    refResolver: {
      buildLocalReference(json, _baseUri, _fragment, i) {
        return typeof json.$id === 'string' ? json.$id : `def-${i}`;
      },
    },
    transformObject(documentObject) {
      const doc = (documentObject as { openapiObject: { paths?: Paths } }).openapiObject;
      for (const [url, kind] of uploads) {
        const operation = doc.paths?.[url]?.post;
        if (operation === undefined) continue;
        const content: Record<string, unknown> = { 'multipart/form-data': { schema: multipartSchema } };
        if (kind === 'multipart+raw') {
          for (const type of RAW_IMAGE_TYPES) content[type] = { schema: { type: 'string', format: 'binary' } };
        }
        operation.requestBody = { required: true, content };
      }
      return doc;
    },
  });
}

export default fp(openApiPlugin, { fastify: '5.x', name: 'privatoon-openapi' });
