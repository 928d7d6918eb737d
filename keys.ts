/**
 * API keys: the key file's format, the lookup of a presented key, and the making of new keys.
 *
 * The server never holds a key, only its SHA-256: a leaked key file or heap dump gives nobody access. A presented key
 * is hashed and its digest compared, in constant time, with every stored digest (no early exit), so neither the
 * comparison nor the lookup tells an attacker how close a guess was.
 *
 * File format (API_KEYS_FILE), one key per line:
 *
 *     # comments and blank lines are ignored
 *     alice-laptop:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
 *
 * The id (letters, digits, `.`, `_`, `-`; at most 64) is what logs, metrics and rate limits see. `newApiKey(id)`
 * (`privatoon keygen ID`) prints a key for the client and the line for this file.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';

export const KEY_PREFIX = 'ptk_';
const ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
const HASH_PATTERN = /^[0-9a-f]{64}$/;
/** Longer presented keys are refused before hashing: no key we make is longer than ~50 characters. */
const MAX_PRESENTED_KEY_LENGTH = 256;

export class KeyFileError extends Error {
  readonly code = 'PTOON_BAD_KEY_FILE';
  constructor(
    readonly file: string,
    readonly line: number | null,
    detail: string,
  ) {
    super(`${file}${line === null ? '' : `:${line}`}: ${detail}`);
    this.name = 'KeyFileError';
  }
}

interface StoredKey {
  id: string;
  digest: Buffer;
}

/** An immutable set of key digests; a reload builds a new one and swaps it in whole. */
export class KeySet {
  private readonly keys: readonly StoredKey[];

  constructor(keys: readonly StoredKey[]) {
    this.keys = keys;
  }

  static readonly EMPTY = new KeySet([]);

  get size(): number {
    return this.keys.length;
  }

  get ids(): readonly string[] {
    return this.keys.map((k) => k.id);
  }

  /** The id of the key whose digest matches, or null. Time depends on the number of keys only. */
  identify(presented: string): string | null {
    if (presented.length === 0 || presented.length > MAX_PRESENTED_KEY_LENGTH) return null;
    const digest = sha256(presented);
    let found: string | null = null;
    for (const key of this.keys) {
      // No break: every digest is compared, whatever matched before.
      if (timingSafeEqual(key.digest, digest) && found === null) found = key.id;
    }
    return found;
  }
}

/** Parses a key file's text; every error names the file and the line. */
export function parseKeyFile(file: string, text: string): KeySet {
  const keys: StoredKey[] = [];
  const ids = new Map<string, number>();
  const digests = new Map<string, number>();
  const lines = text.split(/\r?\n/);
  lines.forEach((rawLine, index) => {
    const lineNo = index + 1;
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    if (colon === -1) throw new KeyFileError(file, lineNo, 'expected "id:sha256hex" (no ":" found)');
    const id = line.slice(0, colon).trim();
    const hash = line.slice(colon + 1).trim().toLowerCase();
    if (!ID_PATTERN.test(id)) throw new KeyFileError(file, lineNo, 'the id must be 1-64 letters, digits, ".", "_" or "-"');
    if (hash.startsWith(KEY_PREFIX)) {
      throw new KeyFileError(file, lineNo, `holds a key, not its hash: store the line printed by \`privatoon keygen ${id}\` and give the key to the client`);
    }
    if (!HASH_PATTERN.test(hash)) throw new KeyFileError(file, lineNo, 'the hash must be 64 hexadecimal digits (SHA-256 of the key)');
    const idLine = ids.get(id);
    if (idLine !== undefined) throw new KeyFileError(file, lineNo, `id "${id}" is already used on line ${idLine}`);
    const hashLine = digests.get(hash);
    if (hashLine !== undefined) throw new KeyFileError(file, lineNo, `the same key hash is already on line ${hashLine}`);
    ids.set(id, lineNo);
    digests.set(hash, lineNo);
    keys.push({ id, digest: Buffer.from(hash, 'hex') });
  });
  return new KeySet(keys);
}

/** Reads and parses a key file; a missing or unreadable file is a KeyFileError too. */
export async function loadKeyFile(file: string): Promise<KeySet> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new KeyFileError(file, null, `cannot be read (${code})${code === 'EACCES' || code === 'EPERM' ? permissionHint() : ''}`);
  }
  return parseKeyFile(file, text);
}

/**
 * Why a permission error is likely: a server started as root reads the file only after becoming RUN_AS_USER
 * (nobody by default), so a root-only file that root could read is refused. Says which user asked.
 */
function permissionHint(): string {
  const uid = process.getuid?.();
  if (uid === undefined) return '';
  let name = `uid ${uid}`;
  try {
    name = `${userInfo().username} (uid ${uid})`;
  } catch {
    // No passwd entry for this uid (DynamicUser, containers): the number says enough.
  }
  return `: this process runs as ${name} and may not read it (started as root, the server reads it only after switching to RUN_AS_USER); make it readable by that user, or pass it as a systemd credential (systemd/README.md)`;
}

/** A new key for `id`: `key` goes to the client (once), `line` into the key file. */
export function newApiKey(id: string): { key: string; line: string } {
  if (!ID_PATTERN.test(id)) throw new RangeError('the id must be 1-64 letters, digits, ".", "_" or "-"');
  const key = KEY_PREFIX + randomBytes(32).toString('base64url');
  return { key, line: `${id}:${sha256(key).toString('hex')}` };
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
