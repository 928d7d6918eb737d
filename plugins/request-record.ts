/**
 * How each request ended, decided once: a frozen record that the request log line (logging.ts) and the metrics
 * (metrics.ts) both consume, so that they cannot disagree on what happened.
 *
 * A request ends in one of two ways. `answered`: its answer was written to the end (onResponse, when Fastify sees the
 * response finish). `aborted`: its client went away first (the response's 'close' before its write finished); such a
 * request gets no onResponse, and is recorded as status 499 with code PTOON_ABORTED, whatever its handler went on to
 * do. The first of the two to see the end records it; the other finds it recorded. That one 'close' listener
 * per request also drives `request.clientGone` (the signal that cancels its inference) and `request.whenDone` (work
 * that must happen once the request is over: an upload place given back, a result wiped), so nothing else listens.
 *
 * The record holds ids, patterns, numbers and codes only: the key's id (never the key), the route pattern (never the
 * URL), byte counts (never bytes).
 */
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { AbortedError } from '../errors.js';
import { routeOf, serializeError } from './logging.js';
import type { InferenceNote } from './pool.js';

export type RequestOutcome = 'answered' | 'aborted';

/** One request, as everything that reports on it sees it. Frozen: consumers read it, none may amend it. */
export interface RequestRecord {
  readonly id: string;
  /** The route pattern (`/api/cartoonize`), or `(no route)`. */
  readonly route: string;
  readonly method: string;
  /** The status written; for an aborted request, 499 (nothing was written). */
  readonly status: number;
  readonly outcome: RequestOutcome;
  /** Our error code, if the request failed (PTOON_ABORTED when aborted). */
  readonly code: string | undefined;
  /** From the request's arrival to its answer's last byte handed to the socket, or to its client's hang-up. */
  readonly durationMs: number;
  /** The id of the API key the request carried, when valid (plugins/auth.ts). Never the key. */
  readonly keyId: string | undefined;
  /** Declared request body size (Content-Length), when declared. */
  readonly reqBytes: number | undefined;
  /** Answer body size (Content-Length); 0 when aborted. */
  readonly resBytes: number | undefined;
  /** What the inference took, for a request that got a result from the pool. */
  readonly inference: Readonly<InferenceNote> | undefined;
}

/** A consumer of records; `log` is the request's own logger (its lines carry the request id). */
export type RecordConsumer = (record: RequestRecord, log: FastifyBaseLogger) => void;

declare module 'fastify' {
  interface FastifyInstance {
    requestRecords: {
      /** Calls `consumer` with every request's record, once, in subscription order. */
      subscribe(consumer: RecordConsumer): void;
    };
  }
  interface FastifyRequest {
    /** Aborted when the client hangs up before its answer is written (read it from onRequest on). */
    readonly clientGone: AbortSignal;
    /** Runs `fn` once this request is over (answered or aborted); at once if it already is. */
    whenDone(fn: (outcome: RequestOutcome) => void): void;
  }
}

/** What a hang-up is recorded as: the inference path's own error for it (errors.ts) carries both. */
const ABORTED = new AbortedError();

/** Per-request state, in a symbol-keyed slot decorated below (so every request has the same shape). */
interface RequestEnd {
  outcome: RequestOutcome | null;
  hangUp: AbortController | null;
  done: Array<(outcome: RequestOutcome) => void>;
}

const END = Symbol('privatoon.requestEnd');
type WithEnd = FastifyRequest & { [END]: RequestEnd | null };

function endOf(request: FastifyRequest): RequestEnd {
  const slot = request as WithEnd;
  return (slot[END] ??= { outcome: null, hangUp: null, done: [] });
}

function byteCount(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}

function recordOf(request: FastifyRequest, reply: FastifyReply, outcome: RequestOutcome): RequestRecord {
  const aborted = outcome === 'aborted';
  const inference = request.inference;
  return Object.freeze({
    id: request.id,
    route: routeOf(request),
    method: request.method,
    status: aborted ? ABORTED.statusCode : reply.statusCode,
    outcome,
    code: aborted ? ABORTED.code : (request.errorCode ?? undefined),
    durationMs: reply.elapsedTime,
    keyId: request.keyId ?? undefined,
    reqBytes: byteCount(request.headers['content-length']),
    resBytes: aborted ? 0 : byteCount(reply.getHeader('content-length')),
    inference: inference === null ? undefined : Object.freeze({ ...inference, timings: Object.freeze({ ...inference.timings }) }),
  });
}

async function requestRecordPlugin(fastify: FastifyInstance) {
  const consumers: RecordConsumer[] = [];

  /** Runs on its own: a failing consumer is logged and skipped; it may not end the process (a 'close' has no catch). */
  function guarded(log: FastifyBaseLogger, what: string, run: () => void): void {
    try {
      run();
    } catch (err) {
      log.error({ err: serializeError(err) }, `${what} failed`);
    }
  }

  function end(request: FastifyRequest, reply: FastifyReply, outcome: RequestOutcome): void {
    const state = endOf(request);
    if (state.outcome !== null) return;
    state.outcome = outcome;
    const hangUp = state.hangUp;
    if (outcome === 'aborted' && hangUp !== null) guarded(request.log, 'hang-up signal', () => hangUp.abort());
    for (const fn of state.done.splice(0)) guarded(request.log, 'end-of-request work', () => fn(outcome));
    const record = recordOf(request, reply, outcome);
    for (const consume of consumers) guarded(request.log, 'request record consumer', () => consume(record, request.log));
  }

  fastify.decorate('requestRecords', {
    subscribe(consumer: RecordConsumer) {
      consumers.push(consumer);
    },
  });
  fastify.decorateRequest(END, null);
  fastify.decorateRequest('clientGone', {
    getter(this: FastifyRequest): AbortSignal {
      const state = endOf(this);
      if (state.hangUp === null) {
        state.hangUp = new AbortController();
        if (state.outcome === 'aborted') state.hangUp.abort();
      }
      return state.hangUp.signal;
    },
  });
  fastify.decorateRequest('whenDone', function whenDone(this: FastifyRequest, fn: (outcome: RequestOutcome) => void) {
    const state = endOf(this);
    if (state.outcome !== null) fn(state.outcome);
    else state.done.push(fn);
  });

  // Fastify runs onResponse when the response finishes, or fails: a failed one (destroyed unfinished) was not answered.
  // `writableFinished` alone cannot say "answered": app.inject's responses finish without it.
  fastify.addHook('onResponse', async (request, reply) => {
    end(request, reply, reply.raw.destroyed && !reply.raw.writableFinished ? 'aborted' : 'answered');
  });
  // The one 'close' listener: a client that leaves before its answer is written gets no onResponse. A 'close' after
  // the answer was written leaves the record to onResponse, which may come after it.
  fastify.addHook('onRequest', async (request, reply) => {
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) end(request, reply, 'aborted');
    });
  });
}

export default fp(requestRecordPlugin, {
  fastify: '5.x',
  name: 'privatoon-request-record',
  dependencies: ['privatoon-errors', 'privatoon-pool'],
});
