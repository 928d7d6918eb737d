/**
 * Security headers on every answer (helmet), with a strict Content-Security-Policy for the web page: our own
 * scripts, styles and fonts only (no inline script, no third-party origin), images from us or from the page's own
 * blob:/data: URLs (the result preview), never framed, no referrer.
 *
 * Every answer means every one: the headers are set by the app's first onRequest hook, so that answers from any later
 * hook carry them (with @fastify/helmet, registered later, the drain's 503 did not), and by the handler of errors
 * Fastify raises before any hook runs (a malformed URL: `applySecurityHeaders` in app.ts).
 *
 * The headers are the same on every answer, so helmet runs once, at start-up, and each request only copies them.
 * (@fastify/helmet, used before, built helmet's whole middleware again on every request, CSP string included:
 * 0.2 ms of the main thread per answer under load, /healthz probes included.)
 * @see https://helmetjs.github.io/
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import helmet, { type HelmetOptions } from 'helmet';

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

export function helmetOptions(opts: HelmetPluginOptions): HelmetOptions {
  return {
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
  };
}

/** The headers helmet sets for these options: its middleware run once against a response that only records. */
export function securityHeaders(options: HelmetOptions): Record<string, string> {
  const headers: Record<string, string> = {};
  const recorder = {
    setHeader(name: string, value: unknown) {
      headers[name.toLowerCase()] = String(value);
    },
    removeHeader(name: string) {
      delete headers[name.toLowerCase()];
    },
  };
  helmet(options)({} as IncomingMessage, recorder as unknown as ServerResponse, (err?: unknown) => {
    if (err) throw err;
  });
  return headers;
}

async function helmetPlugin(fastify: FastifyInstance, opts: HelmetPluginOptions) {
  const headers = securityHeaders(helmetOptions(opts));
  fastify.decorate('applySecurityHeaders', (_req: IncomingMessage, res: ServerResponse) => {
    for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  });
  // The first onRequest hook of the app (app.ts registers this plugin first after the error handler): answers from
  // any later hook (the drain's 503, a rate limit, auth) carry the headers too.
  fastify.addHook('onRequest', (_request, reply, done) => {
    reply.headers(headers);
    done();
  });
}

export default fp(helmetPlugin, { fastify: '5.x', name: 'privatoon-helmet' });
