/**
 * One error shape for every failure, and the one place that decides it.
 *
 * Every error a client sees is an RFC 9457 problem (`application/problem+json`): `type`, `title`, `status`, `detail`
 * and `instance` (the request id, as in the X-Request-Id header), plus the stable `PTOON_*` `code` and, for clients of
 * the earlier shape, `statusCode`, `error` and `message`. Each code is one problem type, `/problems/<code>`: a
 * relative reference that resolves on the server that answered, where GET serves the type's description
 * (the root errors.ts's PROBLEMS; routes/problems.ts). Clients should match on `code` (or on `type` after resolving it). Coded
 * errors (errors.ts: the table of codes and every class) keep their status and message; Fastify's and the multipart
 * parser's are translated to ours, with our own messages, because theirs may quote request data (a content type, a
 * field name).
 * Anything else is a 500 that says "Internal error" and nothing more: no stack, no path, no library text.
 */
import { STATUS_CODES } from 'node:http';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import {
  BadOptionError,
  BadRequestError,
  InternalError,
  isErrorCode,
  PROBLEMS,
  rowOf,
  UnsupportedMediaError,
  UploadTooLargeError,
  type CodedError,
  type ProblemCode,
} from '../errors.js';
import { OPTION_FIELDS } from './uploads.js';

/** The problem type of a code: a relative reference, served by routes/problems.ts. */
export const PROBLEM_TYPE_PREFIX = '/problems/';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** The body of every error answer (RFC 9457 members, then ours); also the OpenAPI schema `PtoonError`. */
export interface ErrorBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance: string;
  code: string;
  statusCode: number;
  error: string;
  message: string;
  retryAfter?: number;
}

export const errorBodySchema = {
  $id: 'PtoonError',
  type: 'object',
  description:
    'Every error answer is an RFC 9457 problem (application/problem+json). `code` is stable and `type` is `/problems/<code>`; ' +
    '`detail` is for people. `statusCode`, `error` and `message` repeat `status`, the status text and `detail` for clients of the earlier shape.',
  required: ['type', 'title', 'status', 'detail', 'instance', 'code', 'statusCode', 'error', 'message'],
  properties: {
    type: { type: 'string', format: 'uri-reference', description: 'The problem type, `/problems/<code>` (GET it for its description)', example: '/problems/PTOON_UNSUPPORTED_MEDIA' },
    title: { type: 'string', description: 'The problem type in words; the same for every occurrence', example: 'Unsupported media type' },
    status: { type: 'integer', example: 415 },
    detail: { type: 'string', description: 'This occurrence, for people', example: 'The upload is SVG: send a JPEG, PNG or WebP image' },
    instance: { type: 'string', description: 'The request id, as in X-Request-Id and the server\'s log line', example: '0f8e0c0e-3c1a-4c38-9a0e-2f0c6f0b9b55' },
    code: { type: 'string', enum: Object.keys(PROBLEMS), example: 'PTOON_UNSUPPORTED_MEDIA' },
    statusCode: { type: 'integer', description: 'Same as `status`', example: 415 },
    error: { type: 'string', description: 'The status text', example: 'Unsupported Media Type' },
    message: { type: 'string', description: 'Same as `detail`', example: 'The upload is SVG: send a JPEG, PNG or WebP image' },
    retryAfter: { type: 'integer', description: 'Seconds to wait before retrying (429 and 503); also in the Retry-After header', example: 3 },
  },
} as const;

const HEADER_DOCS = {
  'Retry-After': { type: 'integer', description: 'Seconds to wait before a retry can succeed' },
  'WWW-Authenticate': { type: 'string', description: 'Bearer realm="privatoon" (with error="invalid_token" for a key that is not valid)' },
  Allow: { type: 'string', description: 'The methods this path takes' },
  'X-Request-Id': { type: 'string', description: 'The request id (also the problem\'s `instance`)' },
} as const;

/** Headers an answer of this status always carries, for the OpenAPI document. */
function headersOf(status: number, extra: Record<string, object>): Record<string, object> {
  const headers: Record<string, object> = { 'X-Request-Id': HEADER_DOCS['X-Request-Id'], ...extra };
  if (status === 401) headers['WWW-Authenticate'] = HEADER_DOCS['WWW-Authenticate'];
  if (status === 405) headers.Allow = HEADER_DOCS.Allow;
  if (status === 429 || status === 503) headers['Retry-After'] = HEADER_DOCS['Retry-After'];
  return headers;
}

/**
 * The `response` entries of a route schema for the codes it may answer, one per status, each listing its codes:
 * what the OpenAPI document shows. `extraHeaders` adds headers per status (the rate limit's on 429).
 */
export function problemResponses(codes: readonly ProblemCode[], extraHeaders: Record<number, Record<string, object>> = {}): Record<string, object> {
  const byStatus = new Map<number, ProblemCode[]>();
  for (const code of codes) {
    const status = PROBLEMS[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  return Object.fromEntries(
    [...byStatus].sort(([a], [b]) => a - b).map(([status, list]) => [
      String(status),
      {
        description: `${STATUS_CODES[status] ?? 'Error'}: ${list.map((code) => `\`${code}\` (${PROBLEMS[code].title.toLowerCase()})`).join(', ')}`,
        headers: headersOf(status, extraHeaders[status] ?? {}),
        content: { [PROBLEM_CONTENT_TYPE]: { schema: { $ref: 'PtoonError#' } } },
      },
    ]),
  );
}

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
      return new BadRequestError(`Too many form fields; the options are ${OPTION_FIELDS.join(', ')}`);
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
  if (isErrorCode(e?.code) && typeof e.statusCode === 'number') return e as CodedError;
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
  const statusText = STATUS_CODES[err.statusCode] ?? 'Error';
  const body: ErrorBody = {
    type: `${PROBLEM_TYPE_PREFIX}${err.code}`,
    title: rowOf(err.code)?.title ?? statusText,
    status: err.statusCode,
    detail: err.message,
    instance: request.id,
    code: err.code,
    statusCode: err.statusCode,
    error: statusText,
    message: err.message,
  };
  if (err.statusCode === 503 || err.statusCode === 429) {
    // The rate limiter has already set its own Retry-After; a 503 always gets one.
    const existing = Number(reply.getHeader('retry-after'));
    const retryAfter = Number.isFinite(existing) && existing > 0 ? existing : Math.max(1, Math.ceil(err.retryAfter ?? DEFAULT_RETRY_AFTER_S));
    reply.header('retry-after', retryAfter);
    body.retryAfter = retryAfter;
  }
  // RFC 6750: a key that is not valid is an "invalid_token"; a missing one gets the bare challenge.
  if (err.statusCode === 401) reply.header('www-authenticate', `Bearer realm="privatoon"${err.code === 'PTOON_BAD_KEY' ? ', error="invalid_token"' : ''}`);
  // Errors raised before onRequest (a malformed URL) have not been given the request id header yet.
  reply.header('x-request-id', request.id);
  // A problem describes one request: no cache may keep it (a 429 or 503 above all).
  reply.header('cache-control', 'no-store');
  // Whether the connection closes after the answer (a body left unread) is decided for every answer in
  // plugins/uploads.ts.
  // Serialised here: the routes' response schemas would otherwise filter the body through their own serializer.
  return reply.code(err.statusCode).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(body));
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
      // The client is gone: record why, and answer nobody (plugins/request-record.ts records it as aborted).
      request.errorCode = coded.code;
      reply.code(coded.statusCode);
      return reply.send();
    }
    return sendError(request, reply, coded);
  });
}

export default fp(errorsPlugin, { fastify: '5.x', name: 'privatoon-errors' });
