/**
 * Test plumbing for the HTTP layer: a test configuration, key files, a shared pool, the app built exactly as the
 * server builds it (buildApp) with its log lines captured, and image fixtures generated with sharp (no binaries in
 * the repository). Tests may write to tap's fixture folders; the service never writes anywhere.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { existsSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import sharp from 'sharp';
import type { Test } from 'tap';
import { buildApp } from '../app.js';
import { loadConfig, type Config, type PoolSettings } from '../config.js';
import { newApiKey } from '../keys.js';
import { BUILTIN_MODELS_DIR, PROJECT_ROOT, SHARED_DIR } from '../paths.js';
import type { Pool } from '../plugins/pool.js';
import { InferencePool, withDefaults, type AskedOptions } from '../pool/inference-pool.js';
import { FAULT_WORKER } from './fixtures/faults.js';
import { startScript } from '../bench/lib/server.js';

export const ROOT = PROJECT_ROOT;
/** Real photos shared by the project (read-only); tests that need them skip when the folder is absent. */
export const SHARED_IMAGES = join(SHARED_DIR, 'images');

/** The environment every test starts from: one worker, ephemeral ports, no logs unless asked, root allowed (CI). */
export function testEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    HOST: '127.0.0.1',
    PORT: '0',
    METRICS_PORT: '0',
    WORKERS: '1',
    LOG_LEVEL: 'silent',
    ALLOW_ROOT: 'true',
    // The built-in style only: the learned styles cost seconds to load and run; their own tests configure them.
    MODELS_DIRS: BUILTIN_MODELS_DIR,
    ...extra,
  };
}

export function testConfig(extra: Record<string, string> = {}): Config {
  return loadConfig(testEnv(extra));
}

/** A key file with one fresh key per id; returns the file and the keys (which only tests ever see). */
export function writeKeys(t: Test, ids: readonly string[]): { file: string; keys: Record<string, string> } {
  const dir = t.testdir({});
  const keys: Record<string, string> = {};
  const lines = ['# test keys'];
  for (const id of ids) {
    const made = newApiKey(id);
    keys[id] = made.key;
    lines.push(made.line);
  }
  const file = join(dir, 'keys.txt');
  writeFileSync(file, lines.join('\n') + '\n');
  return { file, keys };
}

/** The pool's settings to change, and `faults`: start the workers on the fault-injecting wrapper (fixtures/faults.ts: uploads marked with withFault). */
export type PoolOptions = Partial<PoolSettings> & { faults?: boolean };

/**
 * A pool for one test file, shared by its apps (which do not close an injected pool); closed at the end. The test
 * configuration's settings (testEnv: the built-in style, one worker), with the queue at 4 unless given.
 */
export async function startPool(t: Test, opts: PoolOptions = {}): Promise<InferencePool> {
  const { faults = false, ...overrides } = opts;
  const pool = await InferencePool.start({ ...testConfig().pool, maxQueue: 4, ...overrides }, { workerFile: faults ? FAULT_WORKER : undefined });
  t.teardown(() => pool.destroy());
  return pool;
}

/** A stand-in pool for tests of the HTTP layer alone: one style, settable state, `run` as given. */
export function fakePool(overrides: Partial<Record<keyof Pool, unknown>> = {}): Pool & { ready: boolean } {
  const stats = { workers: 1, readyWorkers: 1, busy: 0, queued: 0, maxQueue: 4, completed: 0, failed: 0, workerCrashes: 0, rejectedBusy: 0, abortedQueued: 0, deadlineOverruns: 0, deadlineKills: 0 };
  return Object.assign(new EventEmitter(), {
    styles: [{ id: 'toon', title: 'Toon', faceAware: false }],
    defaultStyle: 'toon',
    withDefaults(this: Pool, asked: AskedOptions) {
      return withDefaults(this, asked);
    },
    ready: true,
    // Admits everything: when work is refused (closing, saturated) is the real pool's rule, tested on the real one.
    admit: () => {},
    retryAfterSeconds: () => 7,
    stats: () => stats,
    threadSettings: { workers: 1, intraOpThreads: 1, interOpThreads: 1, spinning: false },
    hasStyle: (id: string) => id === 'toon',
    run: async () => {
      throw new Error('fakePool.run was not given');
    },
    close: async () => {},
    destroy: async () => {},
    ...overrides,
  }) as unknown as Pool & { ready: boolean };
}

/** Polls until the pool has all its workers warm again (after a killed or crashed worker). */
export async function waitUntilReady(pool: Pick<Pool, 'ready'>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pool.ready) {
    if (Date.now() > end) throw new Error('pool did not become ready');
    await sleep(20);
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Every log line the app writes, kept in memory as text. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    for (const line of chunk.toString('utf8').split('\n')) if (line !== '') this.lines.push(line);
    callback();
  }
  get text(): string {
    return this.lines.join('\n');
  }
  records(): Record<string, unknown>[] {
    return this.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}

export interface BuildOptions {
  env?: Record<string, string>;
  pool?: Pool;
}

/** The app as the server builds it, ready, closed at the end of the test. */
export async function build(t: Test, opts: BuildOptions = {}): Promise<{ app: FastifyInstance; logs: LogCapture; config: Config }> {
  const config = testConfig(opts.env);
  const logs = new LogCapture();
  const app = buildApp(config, { pool: opts.pool, logStream: logs });
  t.teardown(() => app.close());
  await app.ready();
  return { app, logs, config };
}

/** Listens on a free loopback port; returns the base URL. */
export async function listen(app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  return `http://127.0.0.1:${address.port}`;
}

export interface Images {
  /** A small photo-like gradient, 320x240, in each format. */
  jpeg: Buffer;
  png: Buffer;
  webp: Buffer;
  svg: Buffer;
  gif: Buffer;
  text: Buffer;
  /** JPEG magic, then noise. */
  corruptJpeg: Buffer;
  /** The first 60% of a valid JPEG. */
  truncatedJpeg: Buffer;
}

let images: Promise<Images> | undefined;

/**
 * Generated once per process; every read of a field is a fresh copy. The service zero-fills the body chunks it reads
 * (plugins/uploads.ts), and `app.inject` hands it the caller's own Buffer as the chunk: a shared fixture would be
 * wiped by the first request that reads it.
 */
export async function fixtures(): Promise<Images> {
  images ??= makeImages();
  const made = await images;
  return Object.defineProperties(
    {},
    Object.fromEntries(Object.keys(made).map((name) => [name, { enumerable: true, get: () => Buffer.from(made[name as keyof Images]) }])),
  ) as Images;
}

async function makeImages(): Promise<Images> {
  const width = 320;
  const height = 240;
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      // A skin-toned radial gradient with a darker band: varied enough for the encoders to work on.
      const d = Math.hypot(x - width / 2, y - height / 2) / 200;
      raw.set([Math.round(230 - 90 * d) & 255, Math.round(180 - 80 * d + (y % 40 < 4 ? -40 : 0)) & 255, Math.round(150 - 70 * d) & 255], (y * width + x) * 3);
    }
  }
  const base = () => sharp(raw, { raw: { width, height, channels: 3 } });
  const jpeg = await base().jpeg({ quality: 90 }).toBuffer();
  const noise = Buffer.alloc(4000);
  for (let i = 0; i < noise.length; i++) noise[i] = (i * 7919) % 251;
  return {
    jpeg,
    png: await base().png().toBuffer(),
    webp: await base().webp().toBuffer(),
    gif: await base().gif().toBuffer(),
    svg: Buffer.from('<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'),
    text: Buffer.from('hello, this is not an image\n'),
    corruptJpeg: Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), noise]),
    truncatedJpeg: jpeg.subarray(0, Math.floor(jpeg.length * 0.6)),
  };
}

/** A large plain JPEG, for the pixel-limit tests. */
export async function bigJpeg(width: number, height: number): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: 180, g: 140, b: 120 } } }).jpeg().toBuffer();
}

/** A multipart form with the file in `image` (unless `field` says otherwise) and option fields. */
export function form(file: Buffer | null, opts: { filename?: string; type?: string; field?: string; fields?: Record<string, string> } = {}): FormData {
  const body = new FormData();
  for (const [name, value] of Object.entries(opts.fields ?? {})) body.append(name, value);
  if (file !== null) body.append(opts.field ?? 'image', new Blob([file], { type: opts.type ?? 'image/jpeg' }), opts.filename ?? 'photo.jpg');
  return body;
}

/** Serialises a FormData to bytes with its Content-Type, for app.inject and raw sockets. */
export async function encodeForm(body: FormData): Promise<{ payload: Buffer; contentType: string }> {
  const response = new Response(body);
  return { payload: Buffer.from(await response.arrayBuffer()), contentType: response.headers.get('content-type') ?? '' };
}

export interface Answer {
  status: number;
  headers: Headers;
  body: Buffer;
  json: () => Record<string, unknown>;
}

/**
 * POSTs a body (bytes, text or a FormData) and reads the answer. Through node:http rather than fetch: the server
 * answers refusals (401, 413, 429, 503...) before it reads the body and then closes the connection, and fetch on Node
 * 24 reports the client's own write error (EPIPE) instead of the answer that had arrived. This reads the answer.
 */
export async function post(url: string, body: FormData | Buffer | Uint8Array | string, headers: Record<string, string> = {}): Promise<Answer> {
  const encoded = body instanceof FormData ? await encodeForm(body) : { payload: Buffer.from(body), contentType: null };
  const target = new URL(url);
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<Answer>((resolve, reject) => {
    let answered = false;
    const req = send(
      target,
      {
        method: 'POST',
        headers: { ...(encoded.contentType !== null ? { 'content-type': encoded.contentType } : {}), 'content-length': String(encoded.payload.length), ...headers },
      },
      (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const bytes = Buffer.concat(chunks);
          const answerHeaders = new Headers();
          for (const [name, value] of Object.entries(res.headers)) {
            for (const v of Array.isArray(value) ? value : value === undefined ? [] : [value]) answerHeaders.append(name, v);
          }
          resolve({ status: res.statusCode ?? 0, headers: answerHeaders, body: bytes, json: () => JSON.parse(bytes.toString('utf8')) as Record<string, unknown> });
        });
      },
    );
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    req.end(encoded.payload);
  });
}

/** Which image format the bytes are, by magic number. */
export function magic(bytes: Buffer): 'jpeg' | 'png' | 'webp' | 'other' {
  if (bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  if (bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'png';
  if (bytes.subarray(0, 4).toString('latin1') === 'RIFF' && bytes.subarray(8, 12).toString('latin1') === 'WEBP') return 'webp';
  return 'other';
}

export interface ServerProcess {
  child: ChildProcessWithoutNullStreams;
  /** stdout and stderr so far. */
  output: () => string;
  /** Resolves with the base URL once the server logs that it listens. */
  listening: Promise<string>;
  exited: Promise<number | null>;
  /** Signals the server's own process (not a wrapper such as strace), known from its log lines' pid. */
  signal: (signal: NodeJS.Signals) => void;
}

/**
 * Runs server.ts in a child process, optionally under a wrapper (strace). Through tsx with its disk cache off, and
 * without the NODE_OPTIONS tap adds to children (its process-info hook writes a file at exit), with the node flags of
 * `npm start` (the main thread's heap floor): the child is the service as deployed, nothing more. With `faults`, the same process on the fault-injecting worker
 * (fixtures/fault-server.ts): uploads marked with fixtures/faults.ts's withFault get their fault.
 */
export function spawnServer(env: Record<string, string>, wrapper: readonly string[] = [], opts: { faults?: boolean } = {}): ServerProcess {
  const entry = opts.faults === true ? join(ROOT, 'test', 'fixtures', 'fault-server.ts') : join(ROOT, 'server.ts');
  const args = [...wrapper, 'env', '-u', 'NODE_OPTIONS', process.execPath, ...startScript().nodeArgs, '--import', 'tsx', entry];
  const [command, ...rest] = args as [string, ...string[]];
  const child = spawn(command, rest, {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TSX_DISABLE_CACHE: '1', ...testEnv({ LOG_LEVEL: 'info' }), ...env },
  });
  let output = '';
  let onListening: (url: string) => void = () => {};
  const listening = new Promise<string>((resolve, reject) => {
    onListening = resolve;
    child.once('exit', (code) => reject(new Error(`server exited with ${code} before listening:\n${output}`)));
  });
  listening.catch(() => {});
  const scan = (chunk: Buffer) => {
    output += chunk.toString('utf8');
    const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
    if (match?.[1] !== undefined) onListening(match[1]);
  };
  child.stdout.on('data', scan);
  child.stderr.on('data', scan);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const signal = (name: NodeJS.Signals) => {
    const pid = /"pid":(\d+)/.exec(output)?.[1];
    if (pid === undefined) throw new Error('the server has not logged its pid yet');
    process.kill(Number(pid), name);
  };
  return { child, output: () => output, listening, exited, signal };
}

export function sharedImage(name: string): string | null {
  const path = join(SHARED_IMAGES, name);
  return existsSync(path) ? path : null;
}

/** A port free on 127.0.0.1 now (the OS picks it; a test binds it moments later). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
    });
  });
}
