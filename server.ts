/**
 * The process: read the configuration, leave root behind, build the app (which starts the workers and checks
 * models and keys), start the metrics listener, listen, and handle signals.
 *
 *  - SIGTERM / SIGINT: graceful shutdown. Readiness turns 503 at once; for SHUTDOWN_GRACE_MS (0 by default) requests
 *    are still served, so that load balancers that learn of the end late (Kubernetes) stop sending first. Then the
 *    listener closes (new connections are refused), requests in flight finish, the pool closes and the process exits
 *    0. If that takes longer than SHUTDOWN_TIMEOUT_MS, connections are cut and the pool destroyed. A second signal
 *    exits at once.
 *  - SIGHUP: re-read API_KEYS_FILE (a bad file keeps the old keys).
 *
 * Start-up errors name what is wrong (the variable, the model file and field, the key file and line) on stderr and
 * exit 1. Nothing here is needed by tests of the app itself; they use buildApp. `main` runs when node is started on
 * this file; a test's server process imports it instead, to run this very process on a pool of its own workers.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { buildApp, type AppDeps } from './app.js';
import { loadConfig, type Config } from './config.js';

function fail(message: string): never {
  process.stderr.write(`privatoon: ${message}\n`);
  process.exit(1);
}

/**
 * Drops root for an unprivileged user, as daemons started by root do, before any worker starts (the switch applies
 * to every thread) and before any hostile byte is read. The project's files only need to be world-readable.
 */
function becomeUser(user: string): { uid: number; gid: number } {
  const entry = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .map((line) => line.split(':'))
    .find((fields) => fields[0] === user);
  if (entry === undefined) throw new Error(`there is no user "${user}" in /etc/passwd`);
  const uid = Number(entry[2]);
  const gid = Number(entry[3]);
  if (!Number.isInteger(uid) || !Number.isInteger(gid) || uid === 0) throw new Error(`"${user}" is not an unprivileged user`);
  process.setgroups!([gid]);
  process.setgid!(gid);
  process.setuid!(uid);
  return { uid, gid };
}

/** The service process: `deps` only from code (a test's fault-injecting workers), never from the environment. */
export async function main(deps: AppDeps = {}): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    fail(`configuration error: ${(err as Error).message}`);
  }
  if (process.getuid?.() === 0 && !config.allowRoot) {
    try {
      const { uid, gid } = becomeUser(config.runAsUser);
      process.stderr.write(`privatoon: started as root; now running as ${config.runAsUser} (uid ${uid}, gid ${gid}) before any model or upload is read\n`);
    } catch (err) {
      fail(
        `refusing to run as root: this service parses untrusted images, and switching to the user "${config.runAsUser}" ` +
          `(RUN_AS_USER) failed: ${(err as Error).message}. Run it as an unprivileged user (the systemd unit uses DynamicUser), ` +
          'or set ALLOW_ROOT=true in a throwaway container.',
      );
    }
  }

  const app = buildApp(config, deps);
  try {
    await app.ready();
    await app.metrics.listen();
    await app.listen({ host: config.host, port: config.port });
  } catch (err) {
    // Start-up errors are ours or the OS's (a port in use) and carry no request data: print them whole.
    await app.close().catch(() => {});
    fail(`cannot start: ${(err as Error).message}`);
  }

  let stopping = false;
  const shutdown = async (signal: NodeJS.Signals) => {
    if (stopping) {
      app.log.warn({ signal }, 'second signal: exiting without waiting');
      process.exit(1);
    }
    stopping = true;
    if (config.shutdownGraceMs > 0) {
      app.log.info({ signal, graceMs: config.shutdownGraceMs }, 'withdrawing: readiness 503, still serving until load balancers stop sending');
      app.withdraw();
      await sleep(config.shutdownGraceMs);
    }
    app.log.info({ signal, timeoutMs: config.shutdownTimeoutMs }, 'shutting down: finishing requests in flight');
    app.drain();
    const force = setTimeout(() => {
      app.log.warn('shutdown timeout reached: cutting connections and stopping the workers');
      app.server.closeAllConnections();
      void app.pool.destroy().finally(() => process.exit(0));
    }, config.shutdownTimeoutMs);
    try {
      // Closes the listener, waits for requests in flight, then runs onClose hooks: metrics listener, pool.close().
      await app.close();
    } catch (err) {
      app.log.error({ err }, 'error while closing');
    }
    clearTimeout(force);
    app.log.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', (signal) => void shutdown(signal));
  process.on('SIGINT', (signal) => void shutdown(signal));
  process.on('SIGHUP', () => {
    app.log.info('SIGHUP: reloading API keys');
    void app.apiKeys.reload();
  });
}

process.on('unhandledRejection', (reason) => {
  process.stderr.write(`privatoon: unhandled rejection: ${reason instanceof Error ? `${reason.name}: ${reason.message}` : typeof reason}\n`);
  process.exit(1);
});

/**
 * True when node was started on this file, by whatever path: relative or absolute, without its extension, through a
 * symlink (resolved as node resolves its entry point); false when another module imports it.
 */
function startedOnThisFile(): boolean {
  const started = process.argv[1];
  if (started === undefined) return false;
  try {
    return realpathSync(createRequire(import.meta.url).resolve(started)) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (startedOnThisFile()) await main();
