/**
 * Headless Chromium for the end-to-end tests: Debian's /usr/bin/chromium driven by playwright-core (which downloads
 * no browser of its own). Tests skip when the browser is missing: `apt-get install -y chromium`.
 */
import { existsSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { chromium, type Browser, type BrowserContext, type Request } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

/** Why the browser tests cannot run here, or null when they can. */
export function chromiumMissing(): string | null {
  return existsSync(CHROMIUM) ? null : `${CHROMIUM} is missing (apt-get install -y chromium): browser tests skipped`;
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** Every request a browser context makes, in order: the test asserts none leaves the server's origin. */
export function recordRequests(context: BrowserContext): { url: string; method: string }[] {
  const seen: { url: string; method: string }[] = [];
  context.on('request', (request: Request) => seen.push({ url: request.url(), method: request.method() }));
  return seen;
}

/**
 * True for a request that stays with the server: its own origin, or a blob: URL the page made itself (blob: URLs
 * carry their creator's origin) or a data: URL (no network at all).
 */
export function staysWithServer(url: string, origin: string): boolean {
  if (url.startsWith('data:')) return true;
  if (url.startsWith('blob:')) return url.startsWith(`blob:${origin}/`);
  try {
    return new URL(url).origin === origin;
  } catch {
    return false;
  }
}

/** A stream read to its end, in memory. */
export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}
