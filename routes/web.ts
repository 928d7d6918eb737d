/**
 * The web page: GET /, /app.js and /app.css, read from web/ once at registration and served from memory.
 *
 * The files are tiny and change only with a deploy, so they go out with `Cache-Control: no-cache` and a strong ETag
 * (a revalidation costs a 304). The Content-Security-Policy comes from the app's security headers (plugins/helmet.ts);
 * nothing in the page is inline, so the strict policy holds. The page learns the styles and the upload limit from
 * GET /api/styles and posts to POST /ui/cartoonize (routes/cartoonize.ts). Counted by the cheap-route rate limit.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type {} from '@fastify/swagger'; // `schema.hide`: the page is not part of the API's OpenAPI document
import type { FastifyInstance } from 'fastify';
import { WEB_DIR } from '../paths.js';

export interface WebOptions {
  /** Who runs the service (OPERATOR_NAME, OPERATOR_CONTACT, PRIVACY_POLICY_URL), for the page's notice. */
  operator?: { name: string | null; contact: string | null; policyUrl: string | null };
}

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The notice's last line: who runs this service, how to reach them, their policy. Values are escaped. */
export function operatorLine(operator: WebOptions['operator']): string {
  const name = operator?.name ?? null;
  const contact = operator?.contact ?? null;
  const policy = operator?.policyUrl ?? null;
  if (name === null && contact === null && policy === null) {
    return 'The operator of this server has not published a name or a contact: do not upload a photo you would not entrust to an unknown party.';
  }
  const parts = [`Run by <strong>${escapeHtml(name ?? 'the operator of this server')}</strong>.`];
  if (contact !== null) {
    const href = contact.includes('@') && !contact.includes('://') ? `mailto:${contact}` : contact;
    parts.push(`Contact: <a href="${escapeHtml(href)}" rel="noopener">${escapeHtml(contact)}</a>.`);
  }
  if (policy !== null) parts.push(`<a href="${escapeHtml(policy)}" rel="noopener">Privacy policy</a>.`);
  return parts.join(' ');
}

const FILES = [
  { url: '/', file: 'index.html', type: 'text/html; charset=utf-8' },
  { url: '/app.js', file: 'app.js', type: 'text/javascript; charset=utf-8' },
  { url: '/app.css', file: 'app.css', type: 'text/css; charset=utf-8' },
] as const;

/** The project's web/ folder (paths.ts), checked at registration: a missing page stops start-up, not a request. */
export function findWebDir(): string {
  if (!existsSync(join(WEB_DIR, 'index.html'))) throw new Error(`The web page's files are missing: no index.html in ${WEB_DIR}`);
  return WEB_DIR;
}

/** True when an If-None-Match header names this ETag (weak comparison, as RFC 9110 asks for GET). */
function matches(ifNoneMatch: string | undefined, etag: string): boolean {
  if (ifNoneMatch === undefined) return false;
  if (ifNoneMatch.trim() === '*') return true;
  return ifNoneMatch.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag);
}

export default async function webRoutes(fastify: FastifyInstance, opts: WebOptions = {}) {
  const dir = findWebDir();

  for (const { url, file, type } of FILES) {
    const read = readFileSync(join(dir, file));
    const body = file === 'index.html' ? Buffer.from(read.toString('utf8').replace('<!--operator-->', operatorLine(opts.operator))) : read;
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 32)}"`;

    fastify.get(url, { schema: { hide: true } }, async (request, reply) => {
      reply.header('cache-control', 'no-cache').header('x-content-type-options', 'nosniff').header('etag', etag);
      if (matches(request.headers['if-none-match'], etag)) return reply.code(304).send();
      return reply.type(type).send(body);
    });
  }
}
