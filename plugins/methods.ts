/**
 * 405 Method Not Allowed, with Allow: a known path asked with a method it does not take (GET /api/cartoonize,
 * DELETE /healthz, OPTIONS anywhere) is told which methods it does take, instead of a 404 that says the path does
 * not exist. Decided on onRequest, before any body byte is read, from the routes as registered (HEAD comes with
 * every GET). Counted by the cheap-route rate limit like the 404s it replaces: scanners get no free answers.
 */
import type { RateLimitOptions } from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { MethodNotAllowedError } from '../errors.js';

export interface MethodsOptions {
  /** The rate limit 404s get (RATE_LIMIT_CHEAP_MAX per window). */
  rateLimit: RateLimitOptions;
}

interface KnownPath {
  pattern: RegExp;
  methods: Set<string>;
}

/** A route URL as a pattern: `:param` segments match one segment; a trailing slash is optional (ignoreTrailingSlash). */
function patternOf(url: string): RegExp {
  const body = url
    .replace(/\/+$/, '')
    .split('/')
    .map((segment) => (segment.startsWith(':') ? '[^/]+' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('/');
  return new RegExp(`^${body}/?$`);
}

async function methodsPlugin(fastify: FastifyInstance, opts: MethodsOptions) {
  const known = new Map<string, KnownPath>();
  fastify.addHook('onRoute', (route) => {
    const entry = known.get(route.url) ?? { pattern: patternOf(route.url), methods: new Set<string>() };
    for (const method of Array.isArray(route.method) ? route.method : [route.method]) entry.methods.add(method.toUpperCase());
    known.set(route.url, entry);
  });

  /** The methods a path takes, or null when no route has this path. */
  function allowedMethods(request: FastifyRequest): string[] | null {
    const path = request.url.split('?')[0] ?? '';
    const methods = new Set<string>();
    for (const { pattern, methods: routeMethods } of known.values()) {
      if (pattern.test(path)) for (const m of routeMethods) methods.add(m);
    }
    return methods.size === 0 ? null : [...methods].sort();
  }

  const limit = fastify.rateLimit(opts.rateLimit);
  fastify.addHook('onRequest', async (request, reply) => {
    if (!request.is404) return;
    const allowed = allowedMethods(request);
    if (allowed === null) return; // an unknown path: the 404 handler answers
    await limit.call(fastify, request, reply);
    reply.header('allow', allowed.join(', '));
    // The method is one of the few Node's parser accepts: safe to name.
    throw new MethodNotAllowedError(request.method);
  });
}

export default fp(methodsPlugin, { fastify: '5.x', name: 'privatoon-methods', dependencies: ['privatoon-errors', 'privatoon-rate-limit'] });
