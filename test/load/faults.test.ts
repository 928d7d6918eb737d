/**
 * The fault runs (bench/lib/faults.ts) against the real server process (server.ts's main, its pool on the
 * fault-injecting worker: test/fixtures/fault-server.ts), the built-in toon style on small photos, two workers: a worker killed mid-task, clients disconnecting mid-upload, and clients
 * disconnecting while queued behind slow requests. Correctness only, no timing assertions.
 * `npm run bench:faults` is the same with the DCT-Net-class model at 512x512.
 */
import t, { type Test } from 'tap';
import { queueDisconnect, uploadDisconnect, workerKill, type FaultResult } from '../../bench/lib/faults.js';
import { benchImages } from '../../bench/lib/images.js';
import { startService } from '../../bench/lib/server.js';

const STYLE = 'toon';
const { images } = await benchImages(256, 4);
const service = await startService({ models: 'builtin', workers: 2, faults: true, env: { REQUEST_DEADLINE_MS: '1500' } });
t.teardown(() => service.stop());

/**
 * Every check of a run is asserted, "readiness counts each worker once" after the crash included: a worker that dies
 * on its own leaves piscina's workerDestroy with id -1 (Node resets a thread's id at exit), so the pool keeps only the
 * ids of threads still alive (pool/inference-pool.ts), and /readyz counts the replacement, not the dead one as well.
 */
function assertChecks(t: Test, result: FaultResult): void {
  t.comment(result.facts);
  for (const c of result.checks) {
    t.ok(c.ok, `${c.name}: ${c.detail}`);
  }
}

t.test('a worker killed mid-task: a clean 500, the pool recovers, the next requests succeed', async (t) => {
  assertChecks(t, await workerKill(service, STYLE, images));
});

t.test('clients that disconnect mid-upload leave nothing behind', async (t) => {
  assertChecks(t, await uploadDisconnect(service, STYLE, images));
});

t.test('clients that disconnect while queued leave the queue at once; the queue returns to 0', async (t) => {
  assertChecks(t, await queueDisconnect(service, STYLE, images));
});
