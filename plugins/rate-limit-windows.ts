/**
 * Several rate-limit windows per caller, as the original service's flask-limiter allowed ("60 per minute, 1000 per
 * day"), and the IETF draft's headers for all of them.
 *
 * The first window of a route is @fastify/rate-limit's (plugins/rate-limit.ts), which sends the draft's
 * RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset for it. `fastify.rateLimitWindows(windows, key)` makes an
 * onRequest hook for the windows beyond it (RATE_LIMIT_WINDOWS, UI_RATE_LIMIT_WINDOWS), counted in the same store
 * (Redis when shared, with the same in-process fallback) under the same caller key; a request over any of them is
 * refused with 429 and that window's Retry-After, before any body byte is read. On the way out, every answer of a
 * limited route gets RateLimit-Policy (every window: `60;w=60, 1000;w=86400`), and RateLimit-* describe the window
 * closest to its limit, so a client that obeys them never hits a 429.
 */
import { createRequire } from 'node:module';
import type { FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import type { RateWindow } from '../config.js';
import { RateLimitedError } from '../errors.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** An onRequest hook counting `windows` for the caller `key` names, beside the route's own limit `primary`. */
    rateLimitWindows(primary: RateWindow, windows: readonly RateWindow[], key: (request: FastifyRequest) => string): onRequestAsyncHookHandler;
  }
  interface FastifyRequest {
    /** The extra windows' state after this request was counted: for the headers. */
    rateWindows: WindowState[] | null;
    /** Every window of the route (its own limit first), when it has more than one. */
    ratePolicy: readonly RateWindow[] | null;
  }
}

export interface WindowState {
  max: number;
  windowMs: number;
  remaining: number;
  resetS: number;
  /** This window refused the request. */
  exceeded?: true;
}

export interface RateLimitWindowsOptions {
  /** RATE_LIMIT_WINDOW_MS: the window of the library's own limit on every route. */
  windowMs: number;
  store?: FastifyRateLimitStoreCtor | undefined;
  cache: number;
}

type Counted = { current: number; ttl: number };
interface Counter {
  incr(key: string, callback: (err: Error | null, result?: Counted) => void, timeWindow: number, max: number): void;
  child(routeOptions: object): Counter;
}

const require = createRequire(import.meta.url);
const LocalStore = require('@fastify/rate-limit/store/LocalStore.js') as new (continueExceeding: boolean, exponentialBackoff: boolean, cache?: number) => Counter;

/** `60;w=60, 1000;w=86400`: the draft's policy list. */
export function policyHeader(windows: readonly { max: number; windowMs: number }[]): string {
  return windows.map((w) => `${w.max};w=${Math.round(w.windowMs / 1000)}`).join(', ');
}

function header(reply: FastifyReply, name: string): number | null {
  const value = Number(reply.getHeader(name));
  return Number.isFinite(value) ? value : null;
}

async function rateLimitWindowsPlugin(fastify: FastifyInstance, opts: RateLimitWindowsOptions) {
  // Routes with one window (the cheap routes) get a one-entry policy from the library's own headers.
  const base: Counter = opts.store !== undefined ? (new opts.store({}) as unknown as Counter) : new LocalStore(false, false, opts.cache);
  let made = 0;
  fastify.decorateRequest('rateWindows', null);
  fastify.decorateRequest('ratePolicy', null);

  fastify.decorate('rateLimitWindows', (primary: RateWindow, windows: readonly RateWindow[], key: (request: FastifyRequest) => string) => {
    const policy = Object.freeze([primary, ...windows]);
    // One counter per window and per hook: its keys live under their own prefix (in Redis: `WINDOW<n>/<ms>-`).
    const counters = windows.map((w) => ({ ...w, counter: base.child({ routeInfo: { method: 'WINDOW', url: `${made++}/${w.windowMs}` }, cache: opts.cache }) }));
    return async function countWindows(request: FastifyRequest, reply: FastifyReply) {
      if (counters.length === 0) return;
      request.ratePolicy = policy;
      const caller = key(request);
      const states: WindowState[] = [];
      for (const w of counters) {
        const counted = await new Promise<Counted>((resolve, reject) =>
          w.counter.incr(caller, (err, result) => (err !== null || result === undefined ? reject(err ?? new Error('no count')) : resolve(result)), w.windowMs, w.max),
        );
        const resetS = Math.max(1, Math.ceil(counted.ttl / 1000));
        const exceeded = counted.current > w.max;
        states.push({ max: w.max, windowMs: w.windowMs, remaining: Math.max(0, w.max - counted.current), resetS, ...(exceeded ? { exceeded: true as const } : {}) });
        if (exceeded) {
          request.rateWindows = states;
          // The route's own limit was not counted (its hook runs next): these headers speak for the window that refused.
          reply.header('ratelimit-limit', w.max).header('ratelimit-remaining', 0).header('ratelimit-reset', resetS).header('retry-after', resetS);
          throw Object.assign(new RateLimitedError(resetS), { retryAfter: resetS });
        }
      }
      request.rateWindows = states;
    };
  });

  fastify.addHook('onSend', async (request, reply, payload) => {
    const limit = header(reply, 'ratelimit-limit');
    if (limit === null) return payload; // not a limited route
    if (request.ratePolicy === null) {
      reply.header('ratelimit-policy', policyHeader([{ max: limit, windowMs: opts.windowMs }]));
      return payload;
    }
    reply.header('ratelimit-policy', policyHeader(request.ratePolicy));
    const extras = request.rateWindows ?? [];
    // When the route's own limit counted this request, its headers are still the library's; else an extra window refused.
    const ownCounted = !extras.some((w) => w.exceeded === true);
    const windows: WindowState[] = [
      ...(ownCounted
        ? [{ max: limit, windowMs: request.ratePolicy[0]!.windowMs, remaining: header(reply, 'ratelimit-remaining') ?? 0, resetS: header(reply, 'ratelimit-reset') ?? 0 }]
        : []),
      ...extras,
    ];
    // The window closest to its limit speaks for all; among equals, the one that resets last.
    const tightest = windows.reduce((a, b) => (b.remaining < a.remaining || (b.remaining === a.remaining && b.resetS > a.resetS) ? b : a));
    reply.header('ratelimit-limit', tightest.max).header('ratelimit-remaining', tightest.remaining).header('ratelimit-reset', tightest.resetS);
    return payload;
  });
}

export default fp(rateLimitWindowsPlugin, { fastify: '5.x', name: 'privatoon-rate-limit-windows', dependencies: ['privatoon-errors'] });
