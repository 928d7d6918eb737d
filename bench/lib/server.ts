/**
 * Starts the real service (server.ts) as a child process for load, fault and soak runs, on 127.0.0.1 only.
 *
 * The child runs the compiled code (dist/server.js) when it exists and is not older than the sources, else server.ts
 * through tsx (BENCH_SERVER=dist|tsx forces one), with the variables and node flags of `npm start`. It gets a clean
 * environment (no NODE_OPTIONS: tap and npm put their hooks there), a temporary API key file (bench set-up writes
 * it; the service never writes anything), a rate limit high enough never to trip, an ephemeral API port and a free
 * loopback port for the metrics listener. The pid is the service's own (`bareNode`: env execs node in place), so
 * /proc/<pid>/status and signals reach the service itself.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { newApiKey } from '../../keys.js';
import { BENCH_MODELS_DIR, BUILTIN_MODELS_DIR, PROJECT_ROOT } from '../../paths.js';

export type ModelSet = 'builtin' | 'builtin+bench';

export interface ServiceOptions {
  /** Which model folders MODELS_DIRS lists; `builtin+bench` adds the DCT-Net-class benchmark model. Default builtin. */
  models?: ModelSet;
  /** WORKERS; default 2 (the service's own default is one per core). */
  workers?: number;
  /** ORT_INTRA_THREADS; default 1. */
  intraThreads?: number;
  /**
   * Run the service on the fault-injecting worker (test/fixtures/fault-server.ts: server.ts's own process, its pool on
   * test/fixtures/fault-worker.ts), so that an upload marked with `withFault` gets its fault. Default false.
   */
  faults?: boolean;
  /** Any other service variables (MAX_QUEUE, REQUEST_DEADLINE_MS, SHUTDOWN_TIMEOUT_MS, ...); they win. */
  env?: Record<string, string>;
  /** More node flags, after those of `npm start` and BENCH_NODE_ARGS (a later flag wins). */
  nodeArgs?: readonly string[];
  /** How long start-up may take (model checks and worker warm-up included). Default 90 s. */
  startTimeoutMs?: number;
  /**
   * Another checkout of the project (with its node_modules) to run instead of this one, through tsx, serving this
   * checkout's model folders: the "before" of a before/after comparison (`npm run bench -- --baseline DIR`).
   */
  root?: string;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Date.now() at exit. */
  at: number;
}

export interface Service {
  /** http://127.0.0.1:PORT */
  base: string;
  /** http://127.0.0.1:PORT/metrics on the separate metrics listener. */
  metricsUrl: string;
  pid: number;
  /** An API key the service accepts (X-Api-Key). */
  key: string;
  entry: 'dist' | 'tsx';
  /** The environment given to the service (without PATH/HOME), for the report. */
  env: Readonly<Record<string, string>>;
  /** The flags given to node before the script: `npm start`'s, then BENCH_NODE_ARGS, then the caller's. */
  nodeArgs: readonly string[];
  /** The last 256 KiB of stdout and stderr. */
  output(): string;
  alive(): boolean;
  exited: Promise<ExitInfo>;
  signal(signal: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL after `graceMs` (default 20 s); removes the temporary key file. Idempotent. */
  stop(graceMs?: number): Promise<ExitInfo>;
}

const OUTPUT_KEEP = 256 * 1024;
/** Variables passed through from the bench's own environment: allocator, thread-pool and worker-priority experiments. */
const PASS_THROUGH = ['UV_THREADPOOL_SIZE', 'MALLOC_ARENA_MAX', 'LD_PRELOAD', 'TZ', 'GLIBC_TUNABLES', 'WORKER_NICE'];

/**
 * How `npm start` runs the service (package.json's start script): the variables it sets before node (the allocator's
 * scrubbing of freed memory) and the flags it gives node (the main thread's heap floor: pool/worker-heap.ts), so that
 * the benchmark measures the service as it is deployed. Set GLIBC_TUNABLES yourself (passed through, e.g.
 * `GLIBC_TUNABLES=glibc.malloc.perturb=0`) to measure without the first; BENCH_NODE_ARGS adds node flags after these
 * (a later `--initial-old-space-size=0` undoes the second).
 */
export function startScript(root = PROJECT_ROOT): { env: Record<string, string>; nodeArgs: string[] } {
  const start = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts?: { start?: string } }).scripts?.start ?? '';
  const words = start.split(/\s+/).filter((w) => w !== '');
  const env: Record<string, string> = {};
  let i = 0;
  for (; i < words.length; i++) {
    const assignment = /^([A-Z_][A-Z0-9_]*)=(\S*)$/.exec(words[i]!);
    if (assignment === null) break; // the command itself
    env[assignment[1]!] = assignment[2]!;
  }
  // node, its flags (with any values they take), then the script: the last word.
  const nodeArgs = words[i] === 'node' ? words.slice(i + 1, -1) : [];
  if (words[i] === 'node' && !/\.js$/.test(words.at(-1) ?? '')) throw new Error(`npm start does not end with a script: ${start}`);
  return { env, nodeArgs };
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Never leave a service behind: on any exit of the bench, kill what is still running.
  process.once('exit', () => {
    for (const child of live) child.kill('SIGKILL');
  });
}

/** A free TCP port on 127.0.0.1 (the OS picks; closed again before the service binds it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Newest modification time of the TypeScript sources that dist/ is built from. */
function newestSourceMtime(): number {
  let newest = 0;
  const visit = (dir: string, recurse: boolean) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory() && recurse) visit(path, true);
      else if (entry.isFile() && entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
    }
  };
  visit(PROJECT_ROOT, false);
  for (const dir of ['plugins', 'pool', 'routes', 'workers', 'models', join('test', 'fixtures')]) {
    const path = join(PROJECT_ROOT, dir);
    if (existsSync(path)) visit(path, true);
  }
  return newest;
}

/** The service's entry script, without its extension, relative to the project root. */
const SERVER_SCRIPT = 'server';
/** The same process with its pool on the fault-injecting worker. */
const FAULT_SERVER_SCRIPT = join('test', 'fixtures', 'fault-server');

/**
 * The compiled script (dist/server.js) when present and built after the last source change (a stale build would
 * measure old code), else the TypeScript one through tsx.
 */
export function serverEntry(script = SERVER_SCRIPT): { entry: 'dist' | 'tsx'; args: string[] } {
  const compiled = join(PROJECT_ROOT, 'dist', `${script}.js`);
  const forced = process.env['BENCH_SERVER'];
  const useDist =
    forced === 'dist' || (forced !== 'tsx' && existsSync(compiled) && statSync(compiled).mtimeMs >= newestSourceMtime());
  return useDist
    ? { entry: 'dist', args: [compiled] }
    : { entry: 'tsx', args: ['--import', 'tsx', join(PROJECT_ROOT, `${script}.ts`)] };
}

/**
 * The command that runs node with `args` and no test runner's hooks: through `env -u NODE_OPTIONS`, which execs node
 * in place (the pid stays node's). Under tap, its process-info hook wraps every spawn and puts its own loader back
 * into NODE_OPTIONS, whatever env is given, so a service started plainly ran with the test runner's loader and
 * coverage (Node 24: +45 MiB of main-thread heap at start, +56 MiB more under overload): not the deployed service.
 */
export function bareNode(args: readonly string[]): [command: string, args: string[]] {
  return ['env', ['-u', 'NODE_OPTIONS', process.execPath, ...args]];
}

export function modelsDirs(models: ModelSet): string {
  return models === 'builtin' ? BUILTIN_MODELS_DIR : `${BUILTIN_MODELS_DIR}:${BENCH_MODELS_DIR}`;
}

export async function startService(opts: ServiceOptions = {}): Promise<Service> {
  installExitHook();
  const dir = mkdtempSync(join(tmpdir(), 'privatoon-bench-'));
  const apiKey = newApiKey('bench');
  const keysFile = join(dir, 'keys.txt');
  writeFileSync(keysFile, `# temporary key for a benchmark run\n${apiKey.line}\n`, { mode: 0o600 });
  const metricsPort = await freePort();

  const serviceEnv: Record<string, string> = {
    HOST: '127.0.0.1',
    PORT: '0',
    METRICS_HOST: '127.0.0.1',
    METRICS_PORT: String(metricsPort),
    MODELS_DIRS: modelsDirs(opts.models ?? 'builtin'),
    WORKERS: String(opts.workers ?? 2),
    ORT_INTRA_THREADS: String(opts.intraThreads ?? 1),
    API_KEYS_FILE: keysFile,
    RATE_LIMIT_MAX: '1000000',
    RATE_LIMIT_CHEAP_MAX: '1000000',
    LOG_LEVEL: 'info', // the deployed default; the "listening" lines are read from it
    // The service refuses root; benchmark machines and CI containers often are root.
    ...(process.getuid?.() === 0 ? { ALLOW_ROOT: 'true' } : {}),
    ...opts.env,
  };
  const inherited: Record<string, string> = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? dir, TSX_DISABLE_CACHE: '1' };
  for (const name of PASS_THROUGH) {
    const value = process.env[name];
    if (value !== undefined) inherited[name] = value;
  }

  const script = opts.faults === true ? FAULT_SERVER_SCRIPT : SERVER_SCRIPT;
  const { entry, args } = opts.root === undefined ? serverEntry(script) : { entry: 'tsx' as const, args: ['--import', 'tsx', join(opts.root, `${script}.ts`)] };
  // BENCH_NODE_ARGS: more flags for the service's node, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` (main thread and
  // workers), after those of `npm start`; then the caller's.
  const start = startScript(opts.root);
  const nodeArgs = [...start.nodeArgs, ...(process.env['BENCH_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== ''), ...(opts.nodeArgs ?? [])];
  const child = spawn(...bareNode([...nodeArgs, ...args]), { cwd: opts.root ?? PROJECT_ROOT, env: { ...start.env, ...inherited, ...serviceEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let output = '';
  let onListening: (url: string) => void = () => {};
  let onFailed: (err: Error) => void = () => {};
  const listening = new Promise<string>((resolve, reject) => {
    onListening = resolve;
    onFailed = reject;
  });
  let listened = false;
  const scan = (chunk: Buffer) => {
    output += chunk.toString('utf8');
    if (output.length > OUTPUT_KEEP * 2) output = output.slice(-OUTPUT_KEEP);
    // Searched only until found: under load the service logs a line per request, and scanning the kept output for
    // each one cost this process (and so the machine the service shares) a visible share of a core.
    if (listened) return;
    const api = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
    if (api?.[1] !== undefined && output.includes('"msg":"metrics listening"')) {
      listened = true;
      onListening(api[1]);
    }
  };
  child.stdout!.on('data', scan);
  child.stderr!.on('data', scan);
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(child);
      onFailed(new Error(`the service exited (code ${code}, signal ${signal}) before listening:\n${output.slice(-4000)}`));
      resolve({ code, signal, at: Date.now() });
    });
  });
  const cleanup = () => rmSync(dir, { recursive: true, force: true });

  const timeoutMs = opts.startTimeoutMs ?? 90_000;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the service did not listen within ${timeoutMs} ms:\n${output.slice(-4000)}`)), timeoutMs);
  });
  let base: string;
  try {
    base = await Promise.race([listening, timedOut]);
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    cleanup();
    throw err;
  } finally {
    clearTimeout(timer);
  }

  let stopping: Promise<ExitInfo> | undefined;
  const { API_KEYS_FILE: _file, ...shownEnv } = serviceEnv;
  return {
    base,
    metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
    pid: child.pid!,
    key: apiKey.key,
    entry,
    env: shownEnv,
    nodeArgs,
    output: () => output,
    alive: () => child.exitCode === null && child.signalCode === null,
    exited,
    signal: (signal) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    stop(graceMs = 20_000) {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM');
          const kill = setTimeout(() => child.kill('SIGKILL'), graceMs);
          const info = await exited;
          clearTimeout(kill);
          cleanup();
          return info;
        }
        cleanup();
        return exited;
      })();
      return stopping;
    },
  };
}
