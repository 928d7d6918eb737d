/**
 * The service's configuration: the only module that reads the environment.
 *
 * Every option is parsed to its type, checked, and given a default with the reason for it. A bad value stops the
 * service at start-up with an error naming the variable, never later on a request. The result is frozen: nothing
 * changes the configuration at run time (API keys are data, re-read on SIGHUP, not configuration).
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import type { WorkerSettings } from './contract.js';
import { BUILTIN_MODELS_DIR, CARTOONGAN_MODELS_DIR } from './paths.js';

/** One rate-limit window: at most `max` requests per `windowMs`. */
export interface RateWindow {
  max: number;
  windowMs: number;
}

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/**
 * What the inference pool needs: its threads, its bounded queue, and the limits every worker applies. Declared once,
 * with its defaults in `loadConfig`; the worker-side half is `WorkerSettings` (contract.ts).
 */
export interface PoolSettings extends WorkerSettings {
  /** Folders holding model manifests (`*.json`) and their ONNX files. */
  modelsDirs: readonly string[];
  /** Worker threads, each with its own sessions: one inference per core. */
  workers: number;
  /** Tasks that may wait for a worker; beyond it, a request is refused at once (503 with Retry-After). */
  maxQueue: number;
}

export interface Config {
  host: string;
  port: number;
  /** The inference pool's settings, passed whole to the pool (server, CLI and tests alike). */
  pool: PoolSettings;
  maxUploadBytes: number;
  maxUploads: number;
  uploadMemoryMaxBytes: number;
  uploadsPerClient: number;
  uploadMinBytesPerS: number;
  uploadRateWindowMs: number;
  requestDeadlineMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  apiKeysFile: string | null;
  rateLimitMax: number;
  rateLimitWindowMs: number;
  rateLimitCheapMax: number;
  /** More windows on the API route, beside RATE_LIMIT_MAX per RATE_LIMIT_WINDOW_MS (e.g. 1000 per day). */
  rateLimitWindows: readonly RateWindow[];
  /** More windows on the web page's route, beside UI_RATE_LIMIT_MAX per RATE_LIMIT_WINDOW_MS. */
  uiRateLimitWindows: readonly RateWindow[];
  uiEnabled: boolean;
  uiRateLimitMax: number;
  uiRequireKey: boolean;
  publicOrigin: string | null;
  /** false, or the proxies whose X-Forwarded-* headers are believed (addresses, CIDRs, proxy-addr names). */
  trustProxy: false | readonly string[];
  metricsHost: string;
  /** 0: no metrics listener. */
  metricsPort: number;
  logLevel: LogLevel;
  shutdownTimeoutMs: number;
  /** After SIGTERM, readiness 503 while still serving this long, before the drain (SHUTDOWN_TIMEOUT_MS) begins. */
  shutdownGraceMs: number;
  allowRoot: boolean;
  runAsUser: string;
  tlsCertFile: string | null;
  tlsKeyFile: string | null;
  /** null: rate-limit counts are kept in this process (each instance its own budget). */
  redisUrl: string | null;
  redisTimeoutMs: number;
  /** Who runs this service, as the web page names them; null: the page says no operator is named. */
  operatorName: string | null;
  /** How people reach the operator: an e-mail address or an http(s) URL. */
  operatorContact: string | null;
  /** The operator's privacy policy: an http(s) URL or a path on this server. */
  privacyPolicyUrl: string | null;
  /** Serve plain HTTP beyond loopback with neither TLS nor a trusted proxy (a LAN demo, a TLS sidecar we cannot see). */
  allowPlainHttp: boolean;
}

export class ConfigError extends Error {
  readonly code = 'PTOON_BAD_CONFIG';
  constructor(
    readonly variable: string,
    detail: string,
  ) {
    super(`${variable}: ${detail}`);
    this.name = 'ConfigError';
  }
}

type Env = Readonly<Record<string, string | undefined>>;

/** Parses and validates the whole configuration; throws a ConfigError naming the first bad variable. */
export function loadConfig(env: Env = process.env): Config {
  const read = reader(env);
  const workers = read.int('WORKERS', availableParallelism(), 1, 256); // one inference per core; ORT threads add to it

  const config: Config = {
    host: read.host('HOST', '127.0.0.1'), // loopback: exposing the service is a decision, usually made by a proxy in front
    port: read.int('PORT', 8080, 0, 65535), // 0 asks the OS for a free port (tests)
    pool: {
      modelsDirs: read.dirs('MODELS_DIRS', [BUILTIN_MODELS_DIR, CARTOONGAN_MODELS_DIR]), // toon (the default) and the learned styles work out of the box
      workers,
      intraOpThreads: read.int('ORT_INTRA_THREADS', 1, 1, 256), // parallelism comes from workers; more threads oversubscribe
      interOpThreads: read.int('ORT_INTER_THREADS', 1, 1, 256), // sequential graphs gain nothing from inter-op threads
      spinning: read.bool('ORT_SPINNING', false), // spin-waiting burns idle cores after each run
      workerNice: read.int('WORKER_NICE', 10, 0, 19), // inference threads yield to the event loop (health checks, admission, uploads) when both want a core; 0: same priority
      maxQueue: read.int('MAX_QUEUE', workers * 4, 0, 100_000), // a few runs' worth of waiting; beyond it, 503 at once
      maxInputPixels: read.int('MAX_INPUT_PIXELS', 4096 * 4096, 1, 268_402_689), // 16.7 MP: a decoded copy stays under 64 MiB
      maxOutputSide: read.int('MAX_OUTPUT_SIDE', 4096, 16, 16_384), // bounds the encoder's memory and the answer's size
      maxFaces: read.int('FACES_MAX', 8, 0, 64), // face-aware styles: one head pass per face, so the cost per image is bounded; 0 turns the face path off
      minFaceSize: read.int('FACE_MIN_SIZE', 48, 8, 4096), // smaller faces gain nothing from the head model (DCT-Net: faces over 100 px)
    },
    maxUploadBytes: read.int('MAX_UPLOAD_BYTES', 10 * 1024 * 1024, 1024, 256 * 1024 * 1024), // 10 MiB: a phone photo, with room
    // Uploads take no inference place while they arrive (plugins/upload-budget.ts); these bound them instead.
    maxUploads: read.int('MAX_UPLOADS', 64, 1, 100_000), // uploads read at once; anonymous (web page) ones get half
    uploadMemoryMaxBytes: read.int('UPLOAD_MEMORY_MAX_BYTES', 256 * 1024 * 1024, 1024, 64 * 1024 * 1024 * 1024), // their declared bytes: the memory uploads may hold
    uploadsPerClient: read.int('UPLOADS_PER_CLIENT', 4, 1, 100_000), // per key id, or per IP without a key: one client cannot take the budget
    uploadMinBytesPerS: read.int('UPLOAD_MIN_BYTES_PER_S', 8 * 1024, 0, 1024 * 1024 * 1024), // 8 KiB/s: a 2 MB photo on a poor mobile link is well above it; 0 turns the check off
    uploadRateWindowMs: read.int('UPLOAD_RATE_WINDOW_MS', 5000, 1000, 600_000), // the rate is judged over this window; a stall this long is cut
    requestDeadlineMs: read.int('REQUEST_DEADLINE_MS', 30_000, 100, 600_000), // queue + inference bound: 504 then; the run is cancelled at its next native call (pool/inference-pool.ts)
    requestTimeoutMs: read.int('REQUEST_TIMEOUT_MS', 60_000, 1000, 3_600_000), // the whole upload must arrive in time: slow-loris bound
    keepAliveTimeoutMs: read.int('KEEP_ALIVE_TIMEOUT_MS', 5000, 0, 600_000), // Node's default; raise it above a proxy's own idle timeout
    apiKeysFile: read.path('API_KEYS_FILE'), // none: the API refuses every call (fail closed)
    rateLimitMax: read.int('RATE_LIMIT_MAX', 60, 1, 1_000_000), // per key (or per IP without one), per window
    rateLimitWindowMs: read.int('RATE_LIMIT_WINDOW_MS', 60_000, 1000, 86_400_000), // one minute
    rateLimitCheapMax: read.int('RATE_LIMIT_CHEAP_MAX', 600, 1, 1_000_000), // style list, OpenAPI, web assets, 404s: cheap but not free
    rateLimitWindows: read.windows('RATE_LIMIT_WINDOWS'), // none: a load test may run thousands of requests a day on one key
    uiRateLimitWindows: read.windows('UI_RATE_LIMIT_WINDOWS'), // none; e.g. "100 per day" for a public page
    uiEnabled: read.bool('UI_ENABLED', true), // the web page is the product for people without an API key
    uiRateLimitMax: read.int('UI_RATE_LIMIT_MAX', 10, 1, 1_000_000), // per IP, per window: anonymous use is the easiest to abuse
    uiRequireKey: read.bool('UI_REQUIRE_KEY', false), // the page is for people without keys; operators may close it
    publicOrigin: read.origin('PUBLIC_ORIGIN'), // none: the UI accepts the origin the request itself names (Host); loopback only
    trustProxy: read.proxies('TRUST_PROXY'), // false: X-Forwarded-For is ignored, so it cannot be forged
    metricsHost: read.host('METRICS_HOST', '127.0.0.1'), // metrics reveal load and keys' ids: keep them off the public port
    metricsPort: read.int('METRICS_PORT', 9464, 0, 65535), // the OpenTelemetry Prometheus exporter's port; 0 turns it off
    logLevel: read.oneOf('LOG_LEVEL', LOG_LEVELS, 'info'), // one line per request
    shutdownTimeoutMs: read.int('SHUTDOWN_TIMEOUT_MS', 10_000, 0, 600_000), // below the unit's TimeoutStopSec (30 s, systemd/privatoon.service)
    shutdownGraceMs: read.int('SHUTDOWN_GRACE_MS', 0, 0, 600_000), // 0: nothing reads readiness in front (nginx); Kubernetes: longer than its endpoints take to drop the pod
    allowRoot: read.bool('ALLOW_ROOT', false), // a service that parses hostile images has no business running as root
    runAsUser: read.userName('RUN_AS_USER', 'nobody'), // started as root anyway (a container, a quick try): become this user first
    tlsCertFile: read.path('TLS_CERT_FILE'), // none: plain HTTP, TLS left to a proxy in front
    tlsKeyFile: read.path('TLS_KEY_FILE'),
    redisUrl: read.redisUrl('REDIS_URL'), // none: rate limits counted per instance; set it when several instances share clients
    redisTimeoutMs: read.int('REDIS_TIMEOUT_MS', 500, 10, 10_000), // bounds each Redis connect and command: a dead Redis never stalls a request longer
    allowPlainHttp: read.bool('ALLOW_PLAIN_HTTP', false), // keys and photos must not cross a network in clear by accident
    operatorName: read.text('OPERATOR_NAME', 100), // the web page names who runs it (people must know whom they trust)
    operatorContact: read.contact('OPERATOR_CONTACT'), // and how to reach them
    privacyPolicyUrl: read.link('PRIVACY_POLICY_URL'), // and where their policy is
  };

  if (config.port !== 0 && config.metricsPort !== 0 && config.port === config.metricsPort) {
    throw new ConfigError('METRICS_PORT', `must differ from PORT (${config.port})`);
  }
  if (!isLoopback(config.host) && config.tlsCertFile === null && config.trustProxy === false && !config.allowPlainHttp) {
    throw new ConfigError(
      'HOST',
      `${config.host} is reachable beyond this machine, but there is no TLS (TLS_CERT_FILE, TLS_KEY_FILE) and no proxy in front ` +
        '(TRUST_PROXY): API keys and photos would cross the network in clear. Serve TLS, put a TLS proxy in front (and set TRUST_PROXY ' +
        'to it), bind HOST to 127.0.0.1, or set ALLOW_PLAIN_HTTP=true if something you trust already encrypts the traffic',
    );
  }
  if (config.uiEnabled && config.publicOrigin === null && !isLoopback(config.host)) {
    // Without PUBLIC_ORIGIN, the web page's same-origin check compares the Origin with the request's own Host, which
    // a DNS-rebinding page controls. On loopback only this box can reach the page; beyond it, name the origin.
    throw new ConfigError('PUBLIC_ORIGIN', `must be set when HOST (${config.host}) is not a loopback address and the web page is on (UI_ENABLED): the origin people use, e.g. https://toon.example.org`);
  }
  if (config.uiEnabled && config.publicOrigin === null && config.trustProxy !== false) {
    // Behind a proxy the service listens on loopback, yet the whole network reaches it: the Host the proxy forwards
    // (X-Forwarded-Host, or Host itself) is whatever the browser sent, which a DNS-rebinding page controls.
    throw new ConfigError('PUBLIC_ORIGIN', 'must be set when TRUST_PROXY is (a proxy in front) and the web page is on (UI_ENABLED): the origin people use, e.g. https://toon.example.org');
  }
  if ((config.tlsCertFile === null) !== (config.tlsKeyFile === null)) {
    throw new ConfigError(config.tlsCertFile === null ? 'TLS_CERT_FILE' : 'TLS_KEY_FILE', 'TLS_CERT_FILE and TLS_KEY_FILE must be set together');
  }
  return Object.freeze({
    ...config,
    pool: Object.freeze({ ...config.pool, modelsDirs: Object.freeze([...config.pool.modelsDirs]) }),
    rateLimitWindows: Object.freeze([...config.rateLimitWindows]),
    uiRateLimitWindows: Object.freeze([...config.uiRateLimitWindows]),
  });
}

/**
 * The pool's settings with the service's defaults (unset variables of `env`), some replaced: for benchmarks, tools and
 * tests that start a pool of their own. Overrides are not range-checked: they come from code, not from an operator.
 */
export function poolSettings(overrides: Partial<PoolSettings> = {}, env: Env = {}): PoolSettings {
  // WORKERS goes through the reader so that the defaults derived from it (MAX_QUEUE) follow.
  const workers = overrides.workers === undefined ? {} : { WORKERS: String(overrides.workers) };
  return { ...loadConfig({ ...env, ...workers }).pool, ...overrides };
}

/** A HOST that only this machine can reach. */
export function isLoopback(host: string): boolean {
  const address = host.toLowerCase().replace(/^::ffff:/, '');
  return address === 'localhost' || address === '::1' || (isIP(address) === 4 && address.startsWith('127.'));
}

export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
}

/**
 * Reads and checks the TLS certificate and key named by the configuration, at start-up: a missing file, a bad PEM
 * or a key that does not match the certificate stops the service with an error naming the variable.
 */
export function readTls(config: Pick<Config, 'tlsCertFile' | 'tlsKeyFile'>): TlsMaterial | null {
  if (config.tlsCertFile === null || config.tlsKeyFile === null) return null;
  const cert = readNamed('TLS_CERT_FILE', config.tlsCertFile);
  const key = readNamed('TLS_KEY_FILE', config.tlsKeyFile);
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new ConfigError('TLS_KEY_FILE', `${config.tlsKeyFile} and ${config.tlsCertFile} (TLS_CERT_FILE) are not a usable pair: ${(err as Error).message}`);
  }
  return { cert, key };
}

function readNamed(variable: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(variable, `cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/** Typed readers over one environment; each names its variable in errors. Empty strings count as unset. */
function reader(env: Env) {
  const raw = (name: string): string | undefined => {
    const value = env[name]?.trim();
    return value === undefined || value === '' ? undefined : value;
  };
  return {
    int(name: string, fallback: number, min: number, max: number): number {
      const value = raw(name);
      if (value === undefined) return fallback;
      if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value)) || Number(value) < min || Number(value) > max) {
        throw new ConfigError(name, `must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
      }
      return Number(value);
    },
    bool(name: string, fallback: boolean): boolean {
      const value = raw(name)?.toLowerCase();
      if (value === undefined) return fallback;
      if (['1', 'true', 'yes', 'on'].includes(value)) return true;
      if (['0', 'false', 'no', 'off'].includes(value)) return false;
      throw new ConfigError(name, `must be true or false (or 1/0, yes/no, on/off), got ${JSON.stringify(value)}`);
    },
    oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
      const value = raw(name)?.toLowerCase();
      if (value === undefined) return fallback;
      if (!(allowed as readonly string[]).includes(value)) {
        throw new ConfigError(name, `must be one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`);
      }
      return value as T;
    },
    host(name: string, fallback: string): string {
      const value = raw(name);
      if (value === undefined) return fallback;
      if (isIP(value) === 0 && !/^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$/.test(value)) {
        throw new ConfigError(name, `must be an IP address or a host name, got ${JSON.stringify(value)}`);
      }
      return value;
    },
    userName(name: string, fallback: string): string {
      const value = raw(name);
      if (value === undefined) return fallback;
      if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(value)) throw new ConfigError(name, `must be a user name, got ${JSON.stringify(value)}`);
      return value;
    },
    path(name: string): string | null {
      const value = raw(name);
      return value === undefined ? null : resolve(value);
    },
    dirs(name: string, fallback: readonly string[]): readonly string[] {
      const value = raw(name);
      if (value === undefined) return fallback;
      const dirs = value.split(':').map((d) => d.trim()).filter((d) => d !== '');
      if (dirs.length === 0) throw new ConfigError(name, `must list at least one folder (':'-separated), got ${JSON.stringify(value)}`);
      return dirs.map((d) => resolve(d));
    },
    origin(name: string): string | null {
      const value = raw(name);
      if (value === undefined) return null;
      let url: URL;
      try {
        url = new URL(value);
      } catch {
        throw new ConfigError(name, `must be an origin such as https://toon.example.org, got ${JSON.stringify(value)}`);
      }
      if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.origin !== value.replace(/\/$/, '')) {
        throw new ConfigError(name, `must be a bare origin (scheme://host[:port], no path), got ${JSON.stringify(value)}`);
      }
      return url.origin;
    },
    redisUrl(name: string): string | null {
      const value = raw(name);
      if (value === undefined) return null;
      // Never echo the value: it may hold a password.
      const shape = 'must be redis://[[user]:password@]host[:port][/db] or rediss://… (TLS)';
      let url: URL;
      try {
        url = new URL(value);
      } catch {
        throw new ConfigError(name, `${shape}; it is not a URL`);
      }
      if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') throw new ConfigError(name, `${shape}; the scheme is ${JSON.stringify(url.protocol)}`);
      if (url.hostname === '') throw new ConfigError(name, `${shape}; the host is missing`);
      if (!/^(\/(\d{1,2})?)?$/.test(url.pathname)) throw new ConfigError(name, `${shape}; the path must be a database number`);
      if (url.search !== '' || url.hash !== '') throw new ConfigError(name, `${shape}; no query string or fragment`);
      return value;
    },
    /** flask-limiter's notation: "1000 per day", "100/hour; 10 per 30 seconds" (comma, semicolon or "and" between). */
    windows(name: string): readonly RateWindow[] {
      const value = raw(name);
      if (value === undefined) return [];
      return value.split(/\s*(?:[,;]|\band\b)\s*/i).filter((part) => part !== '').map((part) => {
        const match = /^(\d{1,7})\s*(?:\/|per)\s*(\d{1,5}\s+)?(second|minute|hour|day)s?$/i.exec(part.trim());
        const max = Number(match?.[1]);
        const count = match?.[2] === undefined ? 1 : Number(match[2]);
        if (match === null || max < 1 || count < 1) {
          throw new ConfigError(name, `must be windows such as "1000 per day" or "10/minute, 100 per hour" (per second, minute, hour or day), got ${JSON.stringify(part)}`);
        }
        const windowMs = count * UNIT_MS[match[3]!.toLowerCase() as keyof typeof UNIT_MS];
        if (windowMs > 30 * 86_400_000) throw new ConfigError(name, `a window may last at most 30 days, got ${JSON.stringify(part)}`);
        return { max, windowMs };
      });
    },
    /** One line of plain text (shown on the web page, escaped there). */
    text(name: string, maxLength: number): string | null {
      const value = raw(name);
      if (value === undefined) return null;
      // eslint-disable-next-line no-control-regex -- matching control characters is the point: they are refused
      if (value.length > maxLength || /[\u0000-\u001f\u007f]/.test(value)) throw new ConfigError(name, `must be one line of at most ${maxLength} characters`);
      return value;
    },
    contact(name: string): string | null {
      const value = raw(name);
      if (value === undefined) return null;
      if (/^[^\s@<>"]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,}$/.test(value) || isWebUrl(value)) return value;
      throw new ConfigError(name, `must be an e-mail address or an http(s) URL, got ${JSON.stringify(value)}`);
    },
    link(name: string): string | null {
      const value = raw(name);
      if (value === undefined) return null;
      if (isWebUrl(value) || /^\/[^\s"<>]*$/.test(value)) return value;
      throw new ConfigError(name, `must be an http(s) URL or a path on this server (/privacy.html), got ${JSON.stringify(value)}`);
    },
    proxies(name: string): false | readonly string[] {
      const value = raw(name);
      if (value === undefined || ['false', '0', 'no', 'off'].includes(value.toLowerCase())) return false;
      if (['true', 'yes', 'on'].includes(value.toLowerCase()) || /^\d+$/.test(value)) {
        // Trusting every hop lets any client forge X-Forwarded-For, and with it the rate-limit key.
        throw new ConfigError(name, `must be false or a comma list of proxy addresses or CIDRs (e.g. 127.0.0.1,10.0.0.0/8); "${value}" would trust any client's X-Forwarded-For`);
      }
      const entries = value.split(',').map((e) => e.trim()).filter((e) => e !== '');
      for (const entry of entries) {
        if (!isProxyEntry(entry)) throw new ConfigError(name, `${JSON.stringify(entry)} is not an IP address, a CIDR or one of loopback, linklocal, uniquelocal`);
        // 0.0.0.0/0 or ::/0 is `true` in disguise; any range this wide takes in public addresses that are no proxy.
        const [address, bits] = entry.split('/');
        // An IPv4-mapped IPv6 range (::ffff:a.b.c.d/n) covers IPv4 clients: judged as the IPv4 range it maps.
        const mapped = isIP(address!) === 6 && /^::ffff:/i.test(address!);
        const prefix = Number(bits) - (mapped ? 96 : 0);
        if (bits !== undefined && prefix < (isIP(address!) === 4 || mapped ? MIN_PROXY_PREFIX_V4 : MIN_PROXY_PREFIX_V6)) {
          throw new ConfigError(name, `${JSON.stringify(entry)} is too wide a range for proxies: it would trust any client's X-Forwarded-For; name the proxies' addresses or their subnet`);
        }
      }
      return Object.freeze(entries);
    },
  };
}

/** The widest proxy ranges believed: 10.0.0.0/8 and fc00::/7-style private ranges pass, 0.0.0.0/0-style ones do not. */
const MIN_PROXY_PREFIX_V4 = 8;
const MIN_PROXY_PREFIX_V6 = 7;

function isWebUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === 'https:' || url.protocol === 'http:') && !/[\s"<>]/.test(value);
  } catch {
    return false;
  }
}

const UNIT_MS = { second: 1000, minute: 60_000, hour: 3_600_000, day: 86_400_000 } as const;

/** What proxy-addr (Fastify's trustProxy) accepts: an address, a CIDR, or a named range. */
function isProxyEntry(entry: string): boolean {
  if (['loopback', 'linklocal', 'uniquelocal'].includes(entry)) return true;
  const [address, bits, extra] = entry.split('/');
  if (extra !== undefined || address === undefined) return false;
  const family = isIP(address);
  if (family === 0) return false;
  if (bits === undefined) return true;
  if (!/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}
