/**
 * Plumbing for the deployment tests: programs looked up on PATH (the tests install nothing and skip without them),
 * free loopback ports, a self-signed certificate, our own redis-server and nginx as child processes (files in a temp
 * folder, no persistence), the real server (server.ts) over HTTP or HTTPS, requests from a chosen loopback source
 * address, and metric scraping. Every process started here is stopped by the test's teardown.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import type { Test } from 'tap';
import { freePort, ROOT, sleep } from '../helper.js';
import { startScript } from '../../bench/lib/server.js';

export { freePort };

/** The full path of a program on PATH or in the sbin folders (nginx lives in /usr/sbin), or null. */
export function which(program: string): string | null {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    if (dir !== '' && existsSync(join(dir, program))) return join(dir, program);
  }
  return null;
}

/** A temp folder for one test file, removed at the end; traversable by nginx's unprivileged workers. */
export function tempDir(t: Test, name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `privatoon-${name}-`));
  chmodSync(dir, 0o755);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 10_000, stepMs = 50): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(stepMs);
  }
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export interface Certificate {
  cert: string;
  key: string;
  pem: Buffer;
}

/** A self-signed P-256 certificate for `name` (and 127.0.0.1), valid two days. */
export function selfSigned(dir: string, name: string): Certificate {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  const made = spawnSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', `/CN=${name}`,
      '-addext', `subjectAltName=DNS:${name},IP:127.0.0.1`, '-keyout', key, '-out', cert],
    { encoding: 'utf8' },
  );
  if (made.status !== 0) throw new Error(`openssl failed: ${made.stderr}`);
  chmodSync(key, 0o600);
  return { cert, key, pem: readFileSync(cert) };
}

/** A child process with its output kept, and a stop that always ends it. */
export interface Child {
  child: ChildProcessWithoutNullStreams;
  output: () => string;
  exited: Promise<number | null>;
  stop: () => Promise<void>;
}

function track(t: Test, child: ChildProcessWithoutNullStreams, stopSignal: NodeJS.Signals = 'SIGTERM', pid: () => number | undefined = () => child.pid): Child {
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const target = pid() ?? child.pid;
    try {
      if (target !== undefined) process.kill(target, 'SIGCONT');
      if (target !== undefined) process.kill(target, stopSignal);
    } catch {
      // already gone
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  };
  t.teardown(stop);
  return { child, output: () => output, exited, stop };
}

export interface RedisServer extends Child {
  port: number;
  url: string;
}

/**
 * redis-server on 127.0.0.1:`port` (free if not given), optionally with a password: no persistence (`save ""`,
 * `appendonly no`), its working folder a temp one.
 */
export async function startRedis(t: Test, dir: string, opts: { port?: number; password?: string } = {}): Promise<RedisServer> {
  const chosen = opts.port ?? (await freePort());
  const child = spawn(which('redis-server') ?? 'redis-server', [
    '--port', String(chosen), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir,
    '--daemonize', 'no', '--logfile', '', '--protected-mode', 'yes', '--databases', '1',
    ...(opts.password !== undefined ? ['--requirepass', opts.password] : []),
  ]);
  const tracked = track(t, child, 'SIGKILL');
  await waitFor('redis-server to accept connections', () => /Ready to accept connections/.test(tracked.output()) || child.exitCode !== null, 10_000);
  if (child.exitCode !== null) throw new Error(`redis-server exited: ${tracked.output()}`);
  return { ...tracked, port: chosen, url: `redis://127.0.0.1:${chosen}` };
}

export interface Instance extends Child {
  /** http(s)://127.0.0.1:port */
  base: string;
  /** http://127.0.0.1:port of its metrics listener. */
  metrics: string;
  port: number;
  /** The server's own process id (under a wrapper, not the child's). */
  pid: number;
}

/**
 * The real server (server.ts, through tsx, without tap's NODE_OPTIONS, with npm start's node flags: see test/helper.ts
 * spawnServer) on a free port, with its metrics on another, optionally under a wrapper (strace, a sandbox). Resolves
 * once it listens.
 * Signals go to the server's own process (its log lines' pid), not to a wrapper.
 */
export async function startInstance(t: Test, env: Record<string, string>, wrapper: readonly string[] = []): Promise<Instance> {
  const metricsPort = await freePort();
  const argv = [...wrapper, 'env', '-u', 'NODE_OPTIONS', process.execPath, ...startScript().nodeArgs, '--import', 'tsx', join(ROOT, 'server.ts')];
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      TSX_DISABLE_CACHE: '1',
      HOST: '127.0.0.1',
      PORT: '0',
      METRICS_PORT: String(metricsPort),
      WORKERS: '1',
      LOG_LEVEL: 'info',
      ALLOW_ROOT: '1',
      ...env,
    },
  });
  let logged = '';
  const tracked = track(t, child, 'SIGTERM', () => Number(/"pid":(\d+)/.exec(logged)?.[1]) || undefined);
  child.stdout.on('data', (chunk: Buffer) => (logged += chunk.toString('utf8')));
  let base = '';
  await waitFor(
    'the server to listen',
    () => {
      base = /Server listening at (https?:\/\/127\.0\.0\.1:\d+)/.exec(tracked.output())?.[1] ?? '';
      return base !== '' || child.exitCode !== null;
    },
    30_000,
  );
  if (base === '') throw new Error(`the server exited before listening:\n${tracked.output()}`);
  return { ...tracked, base, metrics: `http://127.0.0.1:${metricsPort}`, port: Number(new URL(base).port), pid: Number(/"pid":(\d+)/.exec(logged)?.[1]) };
}

export interface Nginx extends Child {
  dir: string;
}

/**
 * nginx with the given main configuration, as a child (`-g 'daemon off;'`), its prefix, pid, logs and temp folders
 * in `dir`; optionally under strace (`trace`: the strace output file). Resolves once `port` accepts connections.
 */
export async function startNginx(t: Test, dir: string, conf: string, port: number, trace?: string): Promise<Nginx> {
  const nginx = which('nginx') ?? 'nginx';
  const check = spawnSync(nginx, ['-t', '-q', '-p', dir, '-c', conf, '-e', join(dir, 'error.log')], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`nginx -t refused the configuration:\n${check.stderr}`);
  const args = [nginx, '-p', dir, '-c', conf, '-e', join(dir, 'error.log'), '-g', 'daemon off;'];
  const [command, ...rest] = (trace !== undefined ? ['strace', '-f', '-qq', '-e', 'trace=%file', '-o', trace, ...args] : args) as [string, ...string[]];
  const child = spawn(command, rest, { cwd: dir });
  // Under strace the child is strace: nginx's master (pid file) is the one to signal, and SIGQUIT ends its workers too.
  const masterPid = () => {
    try {
      return Number(readFileSync(join(dir, 'nginx.pid'), 'utf8').trim()) || undefined;
    } catch {
      return undefined;
    }
  };
  const tracked = track(t, child, 'SIGQUIT', masterPid);
  await waitFor('nginx to listen', async () => child.exitCode !== null || (await portOpen(port)), 10_000);
  if (child.exitCode !== null) throw new Error(`nginx exited: ${tracked.output()}\n${readErrorLog(dir)}`);
  return { ...tracked, dir };
}

function readErrorLog(dir: string): string {
  try {
    return readFileSync(join(dir, 'error.log'), 'utf8');
  } catch {
    return '';
  }
}

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** The TLS version negotiated (HTTPS only). */
  protocol: string | null;
  ms: number;
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: Buffer;
  /** The loopback address to connect from (127.0.0.2 ...): how a test plays several clients. */
  from?: string;
  /** HTTPS: the certificate to trust, the name to ask for (SNI and verification). */
  ca?: Buffer;
  servername?: string;
  /** HTTPS: what the client offers (to check what the server refuses). */
  minVersion?: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';
  maxVersion?: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';
  ciphers?: string;
  timeoutMs?: number;
}

/** One request on a fresh connection (no agent), so the source address and TLS settings apply to it. */
export function request(url: string, opts: RequestOptions = {}): Promise<Reply> {
  const started = performance.now();
  const target = new URL(url);
  const https = target.protocol === 'https:';
  const headers = { ...(opts.body !== undefined ? { 'content-length': String(opts.body.length) } : {}), ...opts.headers };
  return new Promise((resolve, reject) => {
    const options = {
      method: opts.method ?? (opts.body !== undefined ? 'POST' : 'GET'),
      headers,
      agent: false as const,
      timeout: opts.timeoutMs ?? 20_000,
      ...(opts.from !== undefined ? { localAddress: opts.from } : {}),
      ...(https
        ? {
            ca: opts.ca,
            servername: opts.servername,
            minVersion: opts.minVersion,
            maxVersion: opts.maxVersion,
            ciphers: opts.ciphers,
          }
        : {}),
    };
    const req = (https ? httpsRequest : httpRequest)(target, options, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const socket = res.socket as TLSSocket | null;
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks),
          protocol: https && socket !== null && typeof socket.getProtocol === 'function' ? socket.getProtocol() : null,
          ms: performance.now() - started,
        });
      });
    });
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** The metrics text of an instance. */
export async function scrape(instance: Pick<Instance, 'metrics'>): Promise<string> {
  return (await request(`${instance.metrics}/metrics`)).body.toString('utf8');
}

/** The value of one sample (name with its labels, as written), 0 when absent. */
export function sample(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.slice(name.length + 1));
}

/** Requests an instance has answered on a route, any status (from its request-duration histogram). */
export function answered(text: string, route: string, method = 'GET'): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('privatoon_http_request_duration_seconds_count{') && line.includes(`route="${route}"`) && line.includes(`method="${method}"`)) {
      total += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return total;
}
