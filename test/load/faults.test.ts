/**
 * The fault runs (bench/lib/faults.ts) against the real server process with PRIVATOON_TEST_HOOKS, the built-in toon
 * style on small photos, two workers: a worker killed mid-task, clients disconnecting mid-upload, and clients
 * disconnecting while queued behind slow requests. Correctness only, no timing assertions.
 * `npm run bench:faults` is the same with the DCT-Net-class model at 512x512.
 */
import t, { type Test } from 'tap';
import { queueDisconnect, uploadDisconnect, workerKill, type FaultResult } from '../../bench/lib/faults.js';
import { benchImages } from '../../bench/lib/images.js';
import { startService } from '../../bench/lib/server.js';

const STYLE = 'toon';
const { images } = await benchImages(256, 4);
const service = await startService({ models: 'builtin', workers: 2, testHooks: true, env: { REQUEST_DEADLINE_MS: '1500' } });
t.teardown(() => service.stop());

/**
 * Known bug, pool/inference-pool.ts: a worker that dies on its own keeps its id in the ready set (Node reports threadId -1
 * by the time piscina emits workerDestroy), so after a crash readiness counts workers + 1 and never dips during the
 * reload. Marked todo until that is fixed; the check itself is bench/lib/faults.ts's.
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
