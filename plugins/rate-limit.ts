/**
 * Rate limits (@fastify/rate-limit), counted per API key id when the caller has one, else per client IP.
 *
 * The limiter runs on onRequest, after `identifyKey` and before any body byte is read, so a limited client never
 * gets to upload. Failed key attempts are counted by IP, which bounds key guessing too. Each route picks its limit
 * through `config.rateLimit` (see `apiLimit`, `uiLimit`); routes without one get the cheap-route limit; health
 * checks opt out with `rateLimit: false`.
 *
 * The client IP is `request.ip`, which believes X-Forwarded-For only from the proxies in TRUST_PROXY. Counts are kept
 * in this process: with several instances each keeps its own, unless a shared `store` is given: with REDIS_URL,
 * plugins/rate-limit-redis.ts gives one (counts in Redis, in-process counts while Redis is away).
 */
import rateLimit, { normalizeIP, type FastifyRateLimitStoreCtor, type RateLimitOptions } from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { RateLimitedError } from '../errors.js';

export interface RateLimitPluginOptions {
  /** Requests per window per caller on routes without their own limit (RATE_LIMIT_CHEAP_MAX). */
  max: number;
  windowMs: number;
  /** A shared store (plugins/rate-limit-redis.ts); default: in-process LRU. */
  store?: FastifyRateLimitStoreCtor | undefined;
}

/** Callers remembered per store; beyond it the least recent are forgotten (their count restarts). */
export const CACHE_SIZE = 10_000;

/** The caller as the limiter counts it: `key:<id>` once identified, else `ip:<address>` (IPv6 by /64). */
export function callerKey(request: FastifyRequest): string {
  return request.keyId !== null ? `key:${request.keyId}` : `ip:${normalizeIP(request.ip)}`;
}

/** Per-IP only: for the anonymous web page, where a key id would let one key be shared to dodge the IP limit. */
export function ipKey(request: FastifyRequest): string {
  return `ip:${normalizeIP(request.ip)}`;
}

function errorResponseBuilder(_request: FastifyRequest, context: { ttl: number }) {
  const seconds = Math.max(1, Math.ceil(context.ttl / 1000));
  return Object.assign(new RateLimitedError(seconds), { retryAfter: seconds });
}

/** `config.rateLimit` for the API's inference route: RATE_LIMIT_MAX per key id (or IP) per window. */
export function apiLimit(max: number, windowMs: number): RateLimitOptions {
  return { max, timeWindow: windowMs, cache: CACHE_SIZE, keyGenerator: callerKey, errorResponseBuilder };
}

/** `config.rateLimit` for the web page's inference route: UI_RATE_LIMIT_MAX per IP per window. */
export function uiLimit(max: number, windowMs: number): RateLimitOptions {
  return { max, timeWindow: windowMs, cache: CACHE_SIZE, keyGenerator: ipKey, errorResponseBuilder };
}

async function rateLimitPlugin(fastify: FastifyInstance, opts: RateLimitPluginOptions) {
  await fastify.register(rateLimit, {
    global: true,
    max: opts.max,
    timeWindow: opts.windowMs,
    hook: 'onRequest',
    // The IETF draft's RateLimit-Limit, -Remaining and -Reset, not x-ratelimit-*; RateLimit-Policy and several
    // windows per route come from plugins/rate-limit-windows.ts.
    enableDraftSpec: true,
    cache: CACHE_SIZE,
    keyGenerator: callerKey,
    errorResponseBuilder,
    ...(opts.store !== undefined ? { store: opts.store } : {}),
  });
}

export default fp(rateLimitPlugin, {
  fastify: '5.x',
  name: 'privatoon-rate-limit',
  dependencies: ['privatoon-errors', 'privatoon-auth'],
});
