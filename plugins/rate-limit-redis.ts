/**
 * Where the rate limiter keeps its counts: in Redis (REDIS_URL), shared by every instance, or, without REDIS_URL,
 * in this process (@fastify/rate-limit's own LRU store: each instance then has its own budget).
 *
 * Policy when Redis cannot answer (down, unreachable, or slower than REDIS_TIMEOUT_MS): the decision falls back to
 * an in-process limiter. Not fail closed: the limits are an abuse brake, and refusing every request would turn a
 * Redis outage into a full outage. Not fail open either (@fastify/rate-limit's `skipOnError`): that would lift every
 * limit, key guessing included, for as long as Redis is away, and an attacker who can slow Redis down would lift
 * them at will. With N instances the budget during an outage is at most N times the configured one. The in-process
 * counts are kept all the time, in the shadow of Redis, so a fallback starts from what this instance already let
 * through in the window, not from zero. Each decision made without Redis counts in
 * `privatoon_rate_limit_store_errors_total`, `privatoon_rate_limit_store_up` shows the state (plugins/metrics.ts),
 * and each change of state is logged once (warn, then info when Redis is back).
 *
 * Bounded, so a dead or hung Redis never stalls a request: no offline queue (a command sent while disconnected
 * fails at once), no retry per command, REDIS_TIMEOUT_MS on connecting and on each command, and after a failed
 * command Redis is left alone for a second (decisions meanwhile are in-process), so a hung Redis costs at most one
 * slow request per second per instance. The client reconnects in the background; start-up does not wait for Redis
 * beyond one connect attempt (the service starts in fallback and says so).
 *
 * Redis holds the limiter's keys (`key:<key id>`, `ip:<address>`) with counts that expire with the window; never
 * an image, a key or a file name. Run it without persistence (`save ""`, `appendonly no`) so they stay off disk.
 */
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Redis } from 'ioredis';

declare module 'fastify' {
  interface FastifyInstance {
    rateLimitStore: RateLimitStoreStatus;
  }
}

export interface RateLimitStoreStatus extends EventEmitter {
  /** 'redis': counts shared through REDIS_URL; 'memory': counted in this process only. */
  readonly kind: 'memory' | 'redis';
  /** Whether Redis answers now; false while decisions fall back to this process (always false for 'memory'). */
  readonly up: boolean;
  /** The store for @fastify/rate-limit; undefined: its default in-process store. */
  readonly store: FastifyRateLimitStoreCtor | undefined;
}

export interface RateLimitStoreOptions {
  /** REDIS_URL; null: in-process counts only. */
  url: string | null;
  /** REDIS_TIMEOUT_MS: bound on connecting and on each command. */
  timeoutMs: number;
  /** Callers remembered by each in-process (fallback) store. */
  cache: number;
}

/** After a failed command, decisions stay in-process this long before Redis is tried again. */
export const RETRY_AFTER_FAILURE_MS = 1000;
/** Prefix of every key this service writes, so a Redis shared with other software stays tidy. */
const KEY_PREFIX = 'privatoon:rl:';

type Result = { current: number; ttl: number };
type Callback = (error: Error | null, result?: Result) => void;
type RouteParams = Parameters<FastifyRateLimitStore['child']>[0];

/** What both of the library's stores do (its types declare `incr` and `child` only). */
interface Counter {
  incr(key: string, callback: Callback, timeWindow: number, max: number): void;
  read(key: string, callback: Callback, timeWindow: number, max: number): void;
  child(routeParams: RouteParams): Counter;
}

// @fastify/rate-limit's own stores, which ship in the package without being re-exported: the fallback counts exactly
// as the default store does, and Redis is driven by the library's own script (INCR + PEXPIRE, one round trip).
const require = createRequire(import.meta.url);
const LocalStore = require('@fastify/rate-limit/store/LocalStore.js') as new (continueExceeding: boolean, exponentialBackoff: boolean, cache?: number) => Counter;
const RedisStore = require('@fastify/rate-limit/store/RedisStore.js') as new (continueExceeding: boolean, exponentialBackoff: boolean, redis: Redis, key?: string) => Counter;

/** `redis://host:port/db`, without user or password: what logs may say about REDIS_URL. */
export function describeRedisUrl(url: string): string {
  const parsed = new URL(url);
  return `${parsed.protocol}//${parsed.host}${parsed.pathname === '/' ? '' : parsed.pathname}`;
}

/** The link to Redis: up or down, and the rule for when to try it. */
class RedisLink extends EventEmitter implements RateLimitStoreStatus {
  readonly kind = 'redis';
  up = false;
  store: FastifyRateLimitStoreCtor | undefined;
  private retryAt = 0;
  private lastError = '';
  private closing = false;

  constructor(
    readonly client: Redis,
    private readonly log: FastifyBaseLogger,
    private readonly target: string,
  ) {
    super();
    client.on('ready', () => this.succeeded());
    client.on('close', () => this.down('connection closed'));
    // Also keeps ioredis from printing "Unhandled error event" for each failed reconnect.
    client.on('error', (err: Error) => {
      this.lastError = err.message;
      log.debug({ store: target, reason: err.message }, 'rate-limit store error');
    });
  }

  /** Whether this decision may go to Redis. */
  usable(): boolean {
    return this.client.status === 'ready' && Date.now() >= this.retryAt;
  }

  succeeded(): void {
    if (this.up) return;
    this.up = true;
    this.log.info({ store: this.target }, 'rate-limit store reachable: limits are shared by every instance');
    this.emit('up');
  }

  /** A decision made in-process: `err` when Redis failed it, null when it was not tried (disconnected, resting). */
  fellBack(err: Error | null): void {
    if (err !== null) this.retryAt = Date.now() + RETRY_AFTER_FAILURE_MS;
    this.emit('fallback');
    this.down(err?.message ?? (this.lastError || `connection ${this.client.status}`));
  }

  /** Disconnects for good (the app is closing): no reconnect, no warning. */
  close(): void {
    this.closing = true;
    this.client.disconnect();
  }

  private down(reason: string): void {
    if (!this.up || this.closing) return;
    this.up = false;
    this.log.warn({ store: this.target, reason }, 'rate-limit store unreachable: counting in this process until it is back, so limits apply per instance');
    this.emit('down');
  }
}

/** Redis first; this process's counts when Redis fails or is resting. Both count every hit (see the policy above). */
class FallbackStore implements FastifyRateLimitStore {
  constructor(
    private readonly shared: Counter,
    private readonly local: Counter,
    private readonly link: RedisLink,
  ) {}

  incr(key: string, callback: Callback, timeWindow: number, max: number): void {
    this.decide('incr', key, callback, timeWindow, max);
  }

  read(key: string, callback: Callback, timeWindow: number, max: number): void {
    this.decide('read', key, callback, timeWindow, max);
  }

  child(routeParams: RouteParams): FallbackStore {
    return new FallbackStore(this.shared.child(routeParams), this.local.child(routeParams), this.link);
  }

  private decide(method: 'incr' | 'read', key: string, callback: Callback, timeWindow: number, max: number): void {
    let localResult: Result | undefined;
    this.local[method](key, (_err, result) => (localResult = result), timeWindow, max); // synchronous
    const fallBack = (err: Error | null) => {
      this.link.fellBack(err);
      callback(null, localResult);
    };
    if (!this.link.usable()) {
      fallBack(null);
      return;
    }
    this.shared[method](
      key,
      (err, result) => {
        if (err !== null || result === undefined) {
          fallBack(err ?? new Error('no answer'));
          return;
        }
        this.link.succeeded();
        callback(null, result);
      },
      timeWindow,
      max,
    );
  }
}

class InProcess extends EventEmitter implements RateLimitStoreStatus {
  readonly kind = 'memory';
  readonly up = false;
  readonly store = undefined;
}

async function rateLimitStorePlugin(fastify: FastifyInstance, opts: RateLimitStoreOptions) {
  if (opts.url === null) {
    fastify.decorate('rateLimitStore', new InProcess());
    return;
  }
  const target = describeRedisUrl(opts.url);
  const client = new Redis(opts.url, {
    lazyConnect: true, // connected below, so start-up knows the outcome
    connectTimeout: opts.timeoutMs,
    commandTimeout: opts.timeoutMs,
    maxRetriesPerRequest: 0, // a command cut by a lost connection fails at once; the in-process count decides
    enableOfflineQueue: false, // while disconnected, commands fail at once instead of waiting for a reconnect
    retryStrategy: (attempt) => Math.min(attempt * 200, 2000), // keep reconnecting, at most every 2 s
    connectionName: 'privatoon',
  });
  const link = new RedisLink(client, fastify.log, target);
  const global = (options: { continueExceeding?: boolean; exponentialBackoff?: boolean }) =>
    new FallbackStore(
      new RedisStore(options.continueExceeding === true, options.exponentialBackoff === true, client, KEY_PREFIX),
      new LocalStore(options.continueExceeding === true, options.exponentialBackoff === true, opts.cache),
      link,
    );
  // @fastify/rate-limit calls `new store(globalOptions)`; a constructor that returns an object yields that object.
  link.store = function SharedStore(options: object) {
    return global(options);
  } as unknown as FastifyRateLimitStoreCtor;
  fastify.decorate('rateLimitStore', link);
  fastify.addHook('onClose', async () => link.close());

  try {
    await client.connect();
  } catch (err) {
    fastify.log.warn(
      { store: target, reason: (err as Error).message },
      'REDIS_URL: the rate-limit store is unreachable at start-up: counting in this process (limits apply per instance) until it is reachable',
    );
  }
}

export default fp(rateLimitStorePlugin, { fastify: '5.x', name: 'privatoon-rate-limit-store' });
