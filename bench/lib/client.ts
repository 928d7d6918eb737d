/**
 * A small HTTP load generator over node:http with keep-alive agents: every request's status, error code (the
 * service's JSON `code`), Retry-After and latency are kept, so tables can split latency by status (autocannon
 * cannot). Two shapes of load:
 *  - closed loop: N clients, each sends its next request when the last one is answered (measures capacity);
 *  - open loop: arrivals at a fixed rate whatever the answers (offered load; what overload really looks like).
 * Latency is measured from the moment a request was due (open loop: its scheduled arrival), so a slow generator
 * cannot hide queueing (no coordinated omission).
 */
import { Agent, request as httpRequest, type OutgoingHttpHeaders } from 'node:http';
import { performance } from 'node:perf_hooks';

export interface Outcome {
  /** HTTP status, or 0 when no answer came (see `error`). */
  status: number;
  /** The service's error code from a JSON error body (PTOON_BUSY, ...), when there is one. */
  code?: string;
  /** A JSON answer's body (up to 64 KiB), parsed. */
  json?: Record<string, unknown>;
  /** Client-side failure: ECONNRESET, ECONNREFUSED, TIMEOUT, ... */
  error?: string;
  retryAfter?: string;
  /** The Connection response header, when sent. */
  connection?: string;
  /** Server-Timing stages in ms (queue, decode, infer, encode, ...), when sent. */
  timing?: Record<string, number>;
  /** performance.now() when the request was due. */
  startedAt: number;
  /** performance.now() when the answer ended or the request failed. */
  endedAt: number;
  ms: number;
  bytes: number;
  /** A label the caller gave the request (e.g. the soak's case name). */
  label?: string;
}

export interface RequestSpec {
  method?: 'GET' | 'POST';
  /** Path and query, e.g. /api/cartoonize?style=toon */
  path: string;
  headers?: OutgoingHttpHeaders;
  body?: Buffer;
  label?: string;
  /** Per-request bound; default 120 s. */
  timeoutMs?: number;
}

/** `queue;dur=1.2, infer;dur=300` as { queue: 1.2, infer: 300 }. */
export function parseServerTiming(header: string | string[] | undefined): Record<string, number> | undefined {
  if (header === undefined) return undefined;
  const timing: Record<string, number> = {};
  for (const part of (Array.isArray(header) ? header.join(',') : header).split(',')) {
    const match = /^\s*([\w-]+)\s*;\s*dur=([\d.]+)/.exec(part);
    if (match?.[1] !== undefined && match[2] !== undefined) timing[match[1]] = Number(match[2]);
  }
  return timing;
}

/** A short name for an outcome, for status tables: `200`, `503 PTOON_BUSY`, `ECONNRESET`. */
export function outcomeKey(o: Outcome): string {
  if (o.status === 0) return o.error ?? 'no answer';
  return o.code !== undefined && o.status >= 400 ? `${o.status} ${o.code}` : String(o.status);
}

export class HttpClient {
  readonly agent: Agent;
  private readonly host: string;
  private readonly port: number;

  constructor(
    base: string,
    opts: { maxSockets?: number } = {},
  ) {
    const url = new URL(base);
    if (url.hostname !== '127.0.0.1' && url.hostname !== 'localhost') throw new Error(`load runs only target 127.0.0.1, not ${url.hostname}`);
    this.host = url.hostname;
    this.port = Number(url.port);
    this.agent = new Agent({ keepAlive: true, maxSockets: opts.maxSockets ?? Infinity, scheduling: 'lifo' });
  }

  /** Sends one request; never rejects (failures are outcomes). `dueAt` backdates the start (open loop). */
  send(spec: RequestSpec, dueAt = performance.now()): Promise<Outcome> {
    return new Promise((resolve) => {
      let done = false;
      const finish = (partial: Omit<Outcome, 'startedAt' | 'endedAt' | 'ms'>) => {
        if (done) return;
        done = true;
        const endedAt = performance.now();
        resolve({ ...partial, startedAt: dueAt, endedAt, ms: endedAt - dueAt, ...(spec.label !== undefined ? { label: spec.label } : {}) });
      };
      const headers: OutgoingHttpHeaders = { ...spec.headers };
      if (spec.body !== undefined) headers['content-length'] = spec.body.length;
      const req = httpRequest(
        { host: this.host, port: this.port, method: spec.method ?? (spec.body ? 'POST' : 'GET'), path: spec.path, headers, agent: this.agent },
        (res) => {
          const chunks: Buffer[] = [];
          let bytes = 0;
          const status = res.statusCode ?? 0;
          // application/json, and the errors' application/problem+json
          const json = /^application\/([\w.-]+\+)?json/.test(res.headers['content-type'] ?? '');
          res.on('data', (chunk: Buffer) => {
            bytes += chunk.length;
            if (json && bytes < 64 * 1024) chunks.push(chunk);
          });
          res.on('end', () => {
            let code: string | undefined;
            let body: Record<string, unknown> | undefined;
            if (json) {
              try {
                body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
                if (typeof body['code'] === 'string') code = body['code'];
              } catch {
                code = 'BAD_JSON';
              }
            }
            const retryAfter = res.headers['retry-after'];
            const connection = res.headers['connection'];
            const timing = parseServerTiming(res.headers['server-timing']);
            finish({
              status,
              bytes,
              ...(code !== undefined ? { code } : {}),
              ...(body !== undefined ? { json: body } : {}),
              ...(retryAfter !== undefined ? { retryAfter } : {}),
              ...(connection !== undefined ? { connection } : {}),
              ...(timing !== undefined ? { timing } : {}),
            });
          });
          res.on('error', (err: NodeJS.ErrnoException) => finish({ status: 0, error: err.code ?? err.message, bytes }));
          res.on('aborted', () => finish({ status: 0, error: 'ABORTED', bytes }));
        },
      );
      req.setTimeout(spec.timeoutMs ?? 120_000, () => {
        finish({ status: 0, error: 'TIMEOUT', bytes: 0 });
        req.destroy();
      });
      req.on('error', (err: NodeJS.ErrnoException) => finish({ status: 0, error: err.code ?? err.message, bytes: 0 }));
      req.end(spec.body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

export interface LoadResult {
  outcomes: Outcome[];
  /** Seconds from the first request to the last answer. */
  elapsedS: number;
}

/**
 * `concurrency` clients, each sending `next()` back to back until `durationMs` has passed; requests in flight at
 * the end are waited for (and counted).
 */
export async function closedLoop(client: HttpClient, next: (i: number) => RequestSpec, concurrency: number, durationMs: number): Promise<LoadResult> {
  const outcomes: Outcome[] = [];
  const start = performance.now();
  const end = start + durationMs;
  let i = 0;
  const worker = async () => {
    while (performance.now() < end) outcomes.push(await client.send(next(i++)));
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const last = outcomes.reduce((m, o) => Math.max(m, o.endedAt), start);
  return { outcomes, elapsedS: (last - start) / 1000 };
}

/**
 * `count` requests from `concurrency` clients, each sending its next one when the last is answered: request
 * `first + i` is `next(first + i)`. For checks that count something per request (no clock involved).
 */
export async function closedLoopCount(client: HttpClient, next: (i: number) => RequestSpec, concurrency: number, first: number, count: number): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  let i = first;
  const worker = async () => {
    while (i < first + count) outcomes.push(await client.send(next(i++)));
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return outcomes;
}

/**
 * Arrivals at `ratePerS` for `durationMs`, each sent whether or not earlier ones were answered. `maxOutstanding`
 * bounds the generator itself: arrivals beyond it are counted as CLIENT_SKIPPED, not sent.
 */
export async function openLoop(
  client: HttpClient,
  next: (i: number) => RequestSpec,
  ratePerS: number,
  durationMs: number,
  maxOutstanding = 2000,
): Promise<LoadResult> {
  const outcomes: Outcome[] = [];
  const pending = new Set<Promise<void>>();
  const interval = 1000 / ratePerS;
  const start = performance.now();
  const total = Math.floor((durationMs / 1000) * ratePerS);
  for (let i = 0; i < total; i++) {
    const due = start + i * interval;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
    if (pending.size >= maxOutstanding) {
      outcomes.push({ status: 0, error: 'CLIENT_SKIPPED', startedAt: due, endedAt: due, ms: 0, bytes: 0 });
      continue;
    }
    const p: Promise<void> = client.send(next(i), due).then((o) => {
      outcomes.push(o);
      pending.delete(p);
    });
    pending.add(p);
  }
  await Promise.all(pending);
  const last = outcomes.reduce((m, o) => Math.max(m, o.endedAt), start);
  return { outcomes, elapsedS: (last - start) / 1000 };
}
