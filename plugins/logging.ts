/**
 * Logging that cannot leak what people upload or the keys they send.
 *
 * `loggerOptions()` is handed to Fastify's constructor: serializers that keep only the method and the route pattern
 * of a request (never the URL with its query string, never headers or bodies), an error serializer that keeps only a
 * code and our message, and pino `redact` as a second line of defence for the secret headers, should anything ever
 * log a header object (@fastify/multipart does at trace level). The plugin writes one line per request from its
 * record (plugins/request-record.ts): reqId, keyId, route, method, status, sizes, and the time spent queued and
 * inferring. The reqId is sent back as X-Request-Id.
 */
import type { Writable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifyServerOptions } from 'fastify';
import fp from 'fastify-plugin';
import pino from 'pino';
import type { LogLevel } from '../config.js';

/** Secret-bearing paths, removed (not masked) from any log object. Header names are lower-case in Node. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers["x-api-key"]',
  'headers.cookie',
  // @fastify/multipart logs its busboy options, request headers included, at trace level.
  'busboyOptions.headers',
] as const;

/** The request as logs see it: what was asked of which endpoint, not by whom or with what. */
export function serializeRequest(request: FastifyRequest): { method: string; route: string } {
  return { method: request.method, route: routeOf(request) };
}

export function serializeReply(reply: FastifyReply): { statusCode: number } {
  return { statusCode: reply.statusCode };
}

/** Errors as logs see them: kind, code and status. Our messages are kept; library messages may quote input. */
export function serializeError(err: unknown): { type: string; code?: string; statusCode?: number; message?: string } {
  if (err === null || typeof err !== 'object') return { type: typeof err };
  const e = err as { name?: unknown; code?: unknown; statusCode?: unknown; message?: unknown };
  const code = typeof e.code === 'string' ? e.code : undefined;
  return {
    type: typeof e.name === 'string' ? e.name : 'Error',
    ...(code !== undefined ? { code } : {}),
    ...(typeof e.statusCode === 'number' ? { statusCode: e.statusCode } : {}),
    ...(code?.startsWith('PTOON_') && typeof e.message === 'string' ? { message: e.message } : {}),
  };
}

/**
 * A request id a client or proxy sent that we keep: 1-128 characters from a URI's unreserved set (letters, digits,
 * `.`, `_`, `~`, `-`), starting with a letter or digit. That fits nginx's $request_id, UUIDs and ULIDs, keeps
 * the id a valid relative URI reference (it is the problem's `instance`), and leaves nothing to inject into a log
 * line or a header. Anything else (or a repeated header) is replaced by an id of ours.
 */
export const REQUEST_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$/;

export function incomingRequestId(value: string | string[] | undefined): string | null {
  return typeof value === 'string' && REQUEST_ID_PATTERN.test(value) ? value : null;
}

/** The route pattern (`/api/cartoonize`), never the URL: URLs carry query strings, and keys get pasted there. */
export function routeOf(request: FastifyRequest): string {
  return request.routeOptions.url ?? '(no route)';
}

export function loggerOptions(level: LogLevel, stream?: Writable): NonNullable<FastifyServerOptions['logger']> {
  return {
    level,
    redact: { paths: [...REDACT_PATHS], remove: true },
    serializers: { req: serializeRequest as never, res: serializeReply as never, err: serializeError as never },
    // stdout written asynchronously, in order: a synchronous write blocks the event loop whenever the reader (journald,
    // a pipe) is slow, which under load cost the main thread up to 0.4 ms a line. Lines still pending are flushed at exit.
    stream: stream ?? pino.destination({ dest: 1, sync: false }),
  };
}

/** Milliseconds, one decimal: enough for a log line, short to read. */
function ms(value: number | undefined): number | undefined {
  return value === undefined ? undefined : Math.round(value * 10) / 10;
}

async function requestLogPlugin(fastify: FastifyInstance) {
  // One line per request, from its record (plugins/request-record.ts): the metrics count the same record.
  fastify.requestRecords.subscribe((record, log) => {
    const inference = record.inference;
    log.info(
      {
        keyId: record.keyId,
        route: record.route,
        method: record.method,
        status: record.status,
        code: record.code,
        reqBytes: record.reqBytes,
        resBytes: record.resBytes,
        ms: ms(record.durationMs),
        ...(inference !== undefined
          ? { style: inference.style, queueMs: ms(inference.queueMs), inferMs: ms(inference.timings.infer), faces: inference.faces }
          : {}),
      },
      record.outcome === 'aborted' ? 'request aborted by the client' : 'request',
    );
  });

  // Lets a client quote its request in a support ticket; the id matches the log line and nothing else.
  fastify.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
}

export default fp(requestLogPlugin, {
  fastify: '5.x',
  name: 'privatoon-request-log',
  dependencies: ['privatoon-request-record'],
});
