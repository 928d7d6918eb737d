/**
 * `npm run bench:faults`: the fault and shutdown runs against one service process: server.ts's own, its pool on the
 * fault-injecting worker (test/fixtures/fault-server.ts), so that marked uploads crash or hang their worker.
 *
 *   npm run bench:faults                          # dctnet-bench at 512x512
 *   npm run bench:faults -- --style toon --size 256
 *
 * In order: a worker killed mid-task; clients disconnecting mid-upload; clients disconnecting while queued; SIGTERM
 * under load (which ends the service). Prints one table and every check; exit code 1 if a check fails.
 */
import { availableParallelism } from 'node:os';
import { num, readFlags } from './lib/args.js';
import { formatChecks } from './lib/checks.js';
import { queueDisconnect, uploadDisconnect, workerKill, type FaultResult } from './lib/faults.js';
import { benchImages } from './lib/images.js';
import { machineLine } from './lib/machine.js';
import { startService } from './lib/server.js';
import { shutdownUnderLoad } from './lib/shutdown-run.js';
import { table } from './lib/stats.js';

const flags = readFlags('npm run bench:faults -- [flags]', {
  style: { default: 'dctnet-bench', help: 'style the requests use' },
  size: { default: '512', help: 'photos are cropped to size x size' },
  workers: { default: String(availableParallelism()), help: 'WORKERS' },
  'deadline-ms': { default: '4000', help: 'REQUEST_DEADLINE_MS: how long the slow (hung) requests hold their workers' },
  'shutdown-timeout-ms': { default: '10000', help: 'SHUTDOWN_TIMEOUT_MS: the bound the exit is held to' },
  'shutdown-grace-ms': { default: '0', help: 'SHUTDOWN_GRACE_MS: after SIGTERM, readiness 503 while still serving this long' },
});

async function main(): Promise<number> {
  const size = num(flags.size, 'size');
  const shutdownTimeoutMs = num(flags['shutdown-timeout-ms'], 'shutdown-timeout-ms');
  const graceMs = num(flags['shutdown-grace-ms'], 'shutdown-grace-ms');
  const { images, source } = await benchImages(size);
  const service = await startService({
    models: 'builtin+bench',
    workers: num(flags.workers, 'workers'),
    faults: true,
    env: { REQUEST_DEADLINE_MS: String(num(flags['deadline-ms'], 'deadline-ms')), SHUTDOWN_TIMEOUT_MS: String(shutdownTimeoutMs), SHUTDOWN_GRACE_MS: String(graceMs) },
  });
  const results: FaultResult[] = [];
  try {
    process.stderr.write('worker killed mid-task...\n');
    results.push(await workerKill(service, flags.style, images));
    process.stderr.write('disconnects mid-upload...\n');
    results.push(await uploadDisconnect(service, flags.style, images));
    process.stderr.write('disconnects mid-queue...\n');
    results.push(await queueDisconnect(service, flags.style, images));
    process.stderr.write('SIGTERM under load...\n');
    results.push(await shutdownUnderLoad(service, flags.style, images, { shutdownTimeoutMs, graceMs }));
  } finally {
    await service.stop();
  }
  console.log(`Machine: ${machineLine()}`);
  console.log(`Images: ${source}`);
  console.log(`\nFault runs: ${flags.style}, ${size}x${size}, ${service.env['WORKERS']} workers, REQUEST_DEADLINE_MS=${flags['deadline-ms']}, SHUTDOWN_TIMEOUT_MS=${shutdownTimeoutMs}, server ${service.entry === 'dist' ? 'dist/server.js' : 'server.ts via tsx'}.\n`);
  console.log(
    table(
      ['fault', 'what happened', 'checks'],
      results.map((r) => [r.name, r.facts, `${r.checks.filter((c) => c.ok).length}/${r.checks.length} ok`]),
    ),
  );
  for (const r of results) console.log(`\n${r.name}:\n${formatChecks(r.checks)}`);
  return results.every((r) => r.checks.every((c) => c.ok)) ? 0 : 1;
}

process.exitCode = await main();
