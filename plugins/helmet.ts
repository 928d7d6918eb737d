/**
 * Security headers on every answer (@fastify/helmet), with a strict Content-Security-Policy for the web page:
 * our own scripts, styles and fonts only (no inline script, no third-party origin), images from us or from the
 * page's own blob:/data: URLs (the result preview), never framed, no referrer.
 * @see https://github.com/fastify/fastify-helmet
 */
import helmet from '@fastify/helmet';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

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
  await fastify.register(helmet, {
    global: true,
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
}

export default fp(helmetPlugin, { fastify: '5.x', name: 'privatoon-helmet' });
