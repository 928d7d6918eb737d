/**
 * API keys: who is calling. Keys live in API_KEYS_FILE as SHA-256 hashes (keys.ts has the format and the lookup).
 *
 * Two hooks, used by the routes that need a key, in this order:
 *  - `identifyKey` (onRequest) reads `X-API-Key` or `Authorization: Bearer`, and sets `request.keyId` or notes why
 *    not. It rejects nothing, so that the rate limiter, which runs next, can count failed attempts by IP.
 *  - `requireKey` (preParsing, before any body byte is read) turns a noted failure into its error: no key
 *    (PTOON_NO_KEY), a wrong key (PTOON_BAD_KEY), two different keys (PTOON_KEY_CONFLICT), no keys configured
 *    (PTOON_AUTH_DISABLED: fail closed). Their statuses, and their metrics labels, are their rows in errors.ts.
 *
 * The key itself is never stored on the request, logged or compared as a string; only its id travels on.
 */
import { access } from 'node:fs/promises';
import type { FastifyInstance, FastifyRequest, onRequestAsyncHookHandler, preParsingAsyncHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import { KeySet, loadKeyFile } from '../keys.js';
import { AuthDisabledError, InvalidKeyError, KeyConflictError, MissingKeyError } from '../errors.js';

declare module 'fastify' {
  interface FastifyInstance {
    apiKeys: {
      /** Keys loaded now. */
      readonly size: number;
      /** Re-reads the key file. A bad file keeps the old keys and logs why; resolves false then. */
      reload(): Promise<boolean>;
    };
    identifyKey: onRequestAsyncHookHandler;
    requireKey: preParsingAsyncHookHandler;
  }
  interface FastifyRequest {
    /** The id of the caller's API key once identified; never the key. */
    keyId: string | null;
    /** Why no key was identified; thrown by `requireKey`. */
    authFailure: Error | null;
  }
}

export interface AuthOptions {
  /** API_KEYS_FILE; null: no keys, the API refuses every call. */
  keysFile: string | null;
}

/** Seconds a client is asked to wait while no keys are configured (a reload with SIGHUP can add them). */
const AUTH_DISABLED_RETRY_AFTER_S = 60;

const BEARER = /^Bearer[ \t]+([^\s]+)[ \t]*$/i;

/** The key a request presents, or why it presents none usable. Pure: no lookup yet. */
export function presentedKey(request: FastifyRequest): { key: string } | { error: Error } | null {
  const headerKey = single(request.headers['x-api-key']);
  const authorization = single(request.headers.authorization);
  let bearer: string | undefined;
  if (authorization !== undefined) {
    const match = BEARER.exec(authorization);
    if (match === null) return { error: new MissingKeyError('Authorization must be "Bearer <key>"; or send the key in X-API-Key') };
    bearer = match[1];
  }
  if (headerKey !== undefined && bearer !== undefined && headerKey !== bearer) return { error: new KeyConflictError() };
  const key = headerKey ?? bearer;
  return key === undefined || key === '' ? null : { key };
}

function single(value: string | string[] | undefined): string | undefined {
  // Node joins repeated headers; an array (set-cookie style) never carries a key.
  return typeof value === 'string' ? value.trim() : undefined;
}

/** A file handed over by systemd's LoadCredential= (it lives in $CREDENTIALS_DIRECTORY). */
function isSystemdCredential(file: string): boolean {
  const dir = process.env['CREDENTIALS_DIRECTORY'];
  return dir !== undefined && dir !== '' && file.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ENOENT'; // unreadable is not gone: loading it says why
  }
}

async function authPlugin(fastify: FastifyInstance, opts: AuthOptions) {
  const keysFile = opts.keysFile;
  // Start-up: a bad file stops the service with an error naming the file and the line.
  let keys = keysFile === null ? KeySet.EMPTY : await loadKeyFile(keysFile);
  if (keysFile === null) {
    fastify.log.warn('API_KEYS_FILE is not set: the API refuses every call (health checks and the web page still work)');
  } else {
    fastify.log.info({ keys: keys.size, ids: keys.ids }, 'API keys loaded');
    if (keys.size === 0) fastify.log.warn({ file: keysFile }, 'the API key file holds no keys: the API refuses every call until it does (reload with SIGHUP)');
  }

  let reloads: Promise<boolean> = Promise.resolve(true);
  /** Re-reads the keys file; see `reload` below. */
  async function reloadNow(): Promise<boolean> {
    if (keysFile === null) {
      fastify.log.warn('API_KEYS_FILE is not set: nothing to reload');
      return false;
    }
    if (isSystemdCredential(keysFile)) {
      // systemd (252) copies a LoadCredential= file once, at start: re-reading the copy cannot see a change.
      fastify.log.error(
        { file: keysFile },
        'API_KEYS_FILE is a systemd credential, copied once when the service started: a reload cannot apply key changes; restart the service (it drains first), or use the keys-in-etc drop-in for reloads',
      );
      return false;
    }
    if (!(await exists(keysFile))) {
      // The file is the list of valid keys: no file, no valid key. Removing it is how an operator revokes them all.
      const revoked = keys.ids;
      keys = KeySet.EMPTY;
      fastify.log.error({ file: keysFile, revoked }, 'API_KEYS_FILE is gone: every key is revoked; the API refuses every call until the file is back (SIGHUP)');
      return true;
    }
    let next: KeySet;
    try {
      next = await loadKeyFile(keysFile);
    } catch (err) {
      // Keep serving with the keys we had: a half-written file must not lock every client out.
      fastify.log.error({ err, keptKeys: keys.size }, 'API key reload failed; the keys loaded before stay in use');
      return false;
    }
    const revoked = keys.ids.filter((id) => !next.ids.includes(id));
    const added = next.ids.filter((id) => !keys.ids.includes(id));
    keys = next;
    fastify.log.info({ keys: keys.size, ids: keys.ids, added, revoked }, 'API keys reloaded');
    return true;
  }

  fastify.decorate('apiKeys', {
    get size() {
      return keys.size;
    },
    // One at a time: two SIGHUPs close together must not finish out of order (an older file's keys would win).
    reload(): Promise<boolean> {
      const run = reloads.then(reloadNow);
      reloads = run.catch(() => false);
      return run;
    },
  });
  fastify.decorateRequest('keyId', null);
  fastify.decorateRequest('authFailure', null);

  fastify.decorate('identifyKey', async function identifyKey(request: FastifyRequest) {
    if (keys.size === 0) {
      // Only an operator can fix this: ask clients to come back in a minute rather than at once.
      request.authFailure = Object.assign(new AuthDisabledError(), { retryAfter: AUTH_DISABLED_RETRY_AFTER_S });
      return;
    }
    const presented = presentedKey(request);
    if (presented === null) {
      request.authFailure = new MissingKeyError('An API key is required: send it in X-API-Key or Authorization: Bearer');
    } else if ('error' in presented) {
      request.authFailure = presented.error;
    } else {
      request.keyId = keys.identify(presented.key);
      if (request.keyId === null) request.authFailure = new InvalidKeyError();
    }
  });

  fastify.decorate('requireKey', async function requireKey(request: FastifyRequest) {
    if (request.authFailure !== null) throw request.authFailure;
    if (request.keyId === null) throw new MissingKeyError('An API key is required: send it in X-API-Key or Authorization: Bearer');
  });
}

export default fp(authPlugin, { fastify: '5.x', name: 'privatoon-auth', dependencies: ['privatoon-errors'] });
