/**
 * One error shape for every failure, and the one place that decides it.
 *
 * Every error a client sees is `{ statusCode, code, error, message }` with a `PTOON_*` code. Coded errors (ours, and
 * the inference path's from workers/errors.ts) keep their status and message; Fastify's and the multipart parser's are
 * translated to ours, with our own messages, because theirs may quote request data (a content type, a field name).
 * Anything else is a 500 that says "Internal error" and nothing more: no stack, no path, no library text.
 */
import { STATUS_CODES } from 'node:http';
import createError from '@fastify/error';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { BadOptionError, UnsupportedMediaError, UploadTooLargeError, type CodedError } from '../workers/errors.js';

// Errors of the HTTP layer. Messages are fixed or built from values we checked; never from raw request text.
export const MissingKeyError = createError('PTOON_NO_KEY', '%s', 401);
export const InvalidKeyError = createError('PTOON_BAD_KEY', 'The API key is not valid', 403);
export const KeyConflictError = createError('PTOON_KEY_CONFLICT', 'X-API-Key and Authorization: Bearer carry different keys; send one', 400);
export const AuthDisabledError = createError('PTOON_AUTH_DISABLED', 'No API keys are configured on this server, so the API is closed; ask its operator (API_KEYS_FILE)', 503);
export const RateLimitedError = createError('PTOON_RATE_LIMITED', 'Rate limit exceeded; retry after %d s', 429);
export const UploadsPerClientError = createError('PTOON_TOO_MANY_UPLOADS', 'This client already has %d uploads in progress; finish one first', 429);
export const UploadTooSlowError = createError('PTOON_UPLOAD_TOO_SLOW', 'The upload was cut: it sent fewer than %d bytes per second over %d s', 408);
export const CrossOriginError = createError('PTOON_CROSS_ORIGIN', 'This endpoint only accepts requests from its own web page', 403);
export const BadRequestError = createError('PTOON_BAD_REQUEST', '%s', 400);
export const NotFoundError = createError('PTOON_NOT_FOUND', 'No such endpoint; see /openapi.json', 404);
export const InternalError = createError('PTOON_INTERNAL', 'Internal error', 500);

/** The JSON body of every error answer; also the OpenAPI schema `PtoonError`. */
export interface ErrorBody {
  statusCode: number;
  code: string;
  error: string;
  message: string;
  retryAfter?: number;
}

export const errorBodySchema = {
  $id: 'PtoonError',
  type: 'object',
  description: 'Every error answer has this shape; `code` is stable, `message` is for people.',
  required: ['statusCode', 'code', 'error', 'message'],
  properties: {
    statusCode: { type: 'integer' },
    code: { type: 'string', examples: ['PTOON_UNSUPPORTED_MEDIA'] },
    error: { type: 'string', examples: ['Unsupported Media Type'] },
    message: { type: 'string' },
    retryAfter: { type: 'integer', description: 'Seconds to wait before retrying (429 and 503); also in the Retry-After header' },
  },
} as const;

declare module 'fastify' {
  interface FastifyRequest {
    /** The code of the error this request was answered with, for the request log line and metrics. */
    errorCode: string | null;
  }
}

/** Seconds a 503 asks clients to wait when nothing better is known. */
const DEFAULT_RETRY_AFTER_S = 1;

/** Fastify's and @fastify/multipart's own codes, mapped to ours with our own message. */
function translate(err: FastifyError, maxUploadBytes: number): CodedError | null {
  switch (err.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_INVALID_MULTIPART_CONTENT_TYPE':
      return new UnsupportedMediaError(
        'Send multipart/form-data with the image in the field "image", or the image itself as the body with Content-Type image/jpeg, image/png or image/webp',
      );
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
    case 'FST_REQ_FILE_TOO_LARGE':
      return new UploadTooLargeError(`The upload is larger than ${maxUploadBytes} bytes (MAX_UPLOAD_BYTES)`);
    case 'FST_FILES_LIMIT':
      return new BadRequestError('Send exactly one file, in the field "image"');
    case 'FST_FIELDS_LIMIT':
    case 'FST_PARTS_LIMIT':
      return new BadRequestError('Too many form fields; the options are style, format, quality, max_size and require_face');
    case 'FST_PROTO_VIOLATION':
      return new BadRequestError('A form field has a forbidden name');
    case 'FST_MP_PREMATURE_CLOSE':
      return new BadRequestError('The request ended before the multipart body was complete');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new BadRequestError('Content-Length does not match the body');
    default:
      return null;
  }
}

/** Ajv's findings as one readable sentence: `quality must be <= 100`. Property names come from our schema. */
export function describeValidation(
  errors: readonly { instancePath: string; message?: string | undefined; keyword: string; params: Record<string, unknown> }[],
): string {
  return errors
    .map((e) => {
      if (e.keyword === 'additionalProperties') {
        const name = String(e.params.additionalProperty ?? '');
        return /^[A-Za-z0-9_-]{1,32}$/.test(name) ? `unknown option "${name}"` : 'unknown option';
      }
      const name = e.instancePath.replace(/^\//, '').replace(/\//g, '.') || 'options';
      return `${name} ${e.message ?? 'is not valid'}`;
    })
    .join('; ');
}

/** Turns anything thrown into the coded error we answer with. */
export function toCodedError(err: unknown, maxUploadBytes: number): CodedError {
  const e = err as FastifyError & Partial<CodedError>;
  if (typeof e?.code === 'string' && e.code.startsWith('PTOON_') && typeof e.statusCode === 'number') return e as CodedError;
  if (Array.isArray(e?.validation)) return new BadOptionError(describeValidation(e.validation as never));
  const translated = e !== null && typeof e === 'object' ? translate(e, maxUploadBytes) : null;
  if (translated !== null) return translated;
  // Any other client error from Fastify (bad URL, bad header...): keep its status, not its text.
  if (typeof e?.code === 'string' && e.code.startsWith('FST_') && typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return Object.assign(new BadRequestError(STATUS_CODES[e.statusCode] ?? 'Bad request'), { statusCode: e.statusCode });
  }
  return new InternalError();
}

/**
 * What an operator may read about an unexpected error: its kind, its code and where in our code it was thrown.
 * Not its message: messages of errors we did not make may quote their input (JSON.parse quotes the text it choked on).
 */
function describeUnexpected(err: unknown): { type: string; code?: string; frames: string[] } {
  const e = (err instanceof Error ? err : new Error(typeof err)) as Error & { code?: unknown };
  return {
    type: e.name,
    ...(typeof e.code === 'string' ? { code: e.code } : {}),
    frames: (e.stack ?? '').split('\n').filter((l) => /^\s+at /.test(l)).slice(0, 8).map((l) => l.trim()),
  };
}

export interface ErrorsOptions {
  maxUploadBytes: number;
  /** Seconds a busy client should wait when the error does not say. */
  retryAfter?: () => number;
}

export function sendError(request: FastifyRequest, reply: FastifyReply, err: CodedError): FastifyReply {
  request.errorCode = err.code;
  const body: ErrorBody = {
    statusCode: err.statusCode,
    code: err.code,
    error: STATUS_CODES[err.statusCode] ?? 'Error',
    message: err.message,
  };
  if (err.statusCode === 503 || err.statusCode === 429) {
    // The rate limiter has already set its own Retry-After; a 503 always gets one.
    const existing = Number(reply.getHeader('retry-after'));
    const retryAfter = Number.isFinite(existing) && existing > 0 ? existing : Math.max(1, Math.ceil(err.retryAfter ?? DEFAULT_RETRY_AFTER_S));
    reply.header('retry-after', retryAfter);
    body.retryAfter = retryAfter;
  }
  if (err.statusCode === 401) reply.header('www-authenticate', 'Bearer realm="privatoon"');
  return reply.code(err.statusCode).type('application/json; charset=utf-8').send(body);
}

async function errorsPlugin(fastify: FastifyInstance, opts: ErrorsOptions) {
  const maxUploadBytes = opts.maxUploadBytes;
  const retryAfter = opts.retryAfter ?? (() => DEFAULT_RETRY_AFTER_S);

  fastify.decorateRequest('errorCode', null);
  fastify.addSchema(errorBodySchema);

  fastify.setErrorHandler(function handleError(err, request, reply) {
    const coded = toCodedError(err, maxUploadBytes);
    if (coded.code === 'PTOON_INTERNAL') {
      request.log.error({ unexpected: describeUnexpected(err) }, 'unexpected error');
    } else if (coded.code === 'PTOON_WORKER_FAILED' || coded.code === 'PTOON_DEADLINE') {
      // Worth an operator's look; every other coded error is in the request's own line already.
      request.log.warn({ code: coded.code }, coded.message);
    }
    if (coded.statusCode === 503 && coded.retryAfter === undefined) coded.retryAfter = retryAfter();
    if (coded.code === 'PTOON_ABORTED') {
      // The client is gone: record why, and answer nobody.
      request.errorCode = coded.code;
      reply.code(499);
      return reply.send();
    }
    return sendError(request, reply, coded);
  });
}

export default fp(errorsPlugin, { fastify: '5.x', name: 'privatoon-errors' });
