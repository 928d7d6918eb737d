/**
 * `fastify.requireSameOrigin`: an onRequest hook for the web page's own endpoints. They take no API key, so another
 * site must not be able to make its visitors' browsers use them (and spend our CPU with their IPs).
 *
 * Browsers say where a request comes from; other clients send neither header and are judged by the rate limit alone:
 *  - `Sec-Fetch-Site`, when present, must be `same-origin`;
 *  - `Origin`, when present, must be our origin: PUBLIC_ORIGIN if set (behind a proxy that rewrites Host or ends
 *    TLS), otherwise the scheme and Host of the request itself.
 */
import type { FastifyInstance, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import { CrossOriginError } from '../errors.js';

declare module 'fastify' {
  interface FastifyInstance {
    requireSameOrigin: onRequestAsyncHookHandler;
  }
}

export interface SameOriginOptions {
  /** PUBLIC_ORIGIN; null: the request's own scheme and Host. */
  publicOrigin: string | null;
}

export function isSameOrigin(request: FastifyRequest, publicOrigin: string | null): boolean {
  const fetchSite = request.headers['sec-fetch-site'];
  if (fetchSite !== undefined && fetchSite !== 'same-origin') return false;
  const origin = request.headers.origin;
  if (origin === undefined) return true;
  const expected = publicOrigin ?? `${request.protocol}://${request.host}`;
  return origin.toLowerCase() === expected.toLowerCase();
}

async function sameOriginPlugin(fastify: FastifyInstance, opts: SameOriginOptions) {
  const publicOrigin = opts.publicOrigin;
  fastify.decorate('requireSameOrigin', async function requireSameOrigin(request: FastifyRequest) {
    if (!isSameOrigin(request, publicOrigin)) throw new CrossOriginError();
  });
}

export default fp(sameOriginPlugin, { fastify: '5.x', name: 'privatoon-same-origin', dependencies: ['privatoon-errors'] });
