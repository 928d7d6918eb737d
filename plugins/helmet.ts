/**
 * Security headers on every answer (helmet), with a strict Content-Security-Policy for the web page: our own
 * scripts, styles and fonts only (no inline script, no third-party origin), images from us or from the page's own
 * blob:/data: URLs (the result preview), never framed, no referrer.
 *
 * Every answer means every one: the headers are set by the app's first onRequest hook, so that answers from any later
 * hook carry them (with @fastify/helmet, registered later, the drain's 503 did not), and by the handler of errors
 * Fastify raises before any hook runs (a malformed URL: `applySecurityHeaders` in app.ts).
 * @see https://helmetjs.github.io/
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import helmet from 'helmet';

declare module 'fastify' {
  interface FastifyInstance {
    /** Sets the security headers on a raw response: for answers sent outside the request lifecycle. */
    applySecurityHeaders(req: IncomingMessage, res: ServerResponse): void;
  }
}

export interface HelmetPluginOptions {
  /** HSTS only makes sense when we serve TLS ourselves; behind a proxy, the proxy sends it. */
  tls: boolean;
}

export const CSP_DIRECTIVES = {
  defaultSrc: ["'self'"],
  scriptSrc: ["'self'"],
  styleSrc: ["'self'"],
  imgSrc: ["'self'", 'blob:', 'data:'],
  fontSrc: ["'self'"],
  connectSrc: ["'self'"],
  objectSrc: ["'none'"],
  baseUri: ["'none'"],
  formAction: ["'self'"],
  frameAncestors: ["'none'"],
  scriptSrcAttr: ["'none'"],
};

async function helmetPlugin(fastify: FastifyInstance, opts: HelmetPluginOptions) {
  const setHeaders = helmet({
    contentSecurityPolicy: {
      // No defaults merged in: every directive above is one we chose. Notably no `upgrade-insecure-requests`,
      // which would break the page on a plain-HTTP LAN address.
      useDefaults: false,
      directives: CSP_DIRECTIVES,
    },
    referrerPolicy: { policy: 'no-referrer' },
    // Results are fetched by our own page only; other sites may not embed them.
    crossOriginResourcePolicy: { policy: 'same-origin' },
    crossOriginOpenerPolicy: { policy: 'same-origin' },
    strictTransportSecurity: opts.tls ? { maxAge: 31_536_000, includeSubDomains: false } : false,
    xFrameOptions: { action: 'deny' },
  });
  const apply = (req: IncomingMessage, res: ServerResponse) => setHeaders(req, res, () => {});
  fastify.decorate('applySecurityHeaders', apply);
  // The first onRequest hook of the app (app.ts registers this plugin first after the error handler): answers from
  // any later hook (the drain's 503, a rate limit, auth) carry the headers too.
  fastify.addHook('onRequest', async (request, reply) => {
    apply(request.raw, reply.raw);
  });
}

export default fp(helmetPlugin, { fastify: '5.x', name: 'privatoon-helmet' });
