/**
 * SIGTERM under load (bench/lib/shutdown-run.ts) against the real server process: the built-in toon style, two
 * workers, the pool saturated when the signal comes. Requests in flight (running and queued) are answered 200,
 * requests sent afterwards are refused, the service exits 0 within SHUTDOWN_TIMEOUT_MS. Correctness only.
 */
import t from 'tap';
import { benchImages } from '../../bench/lib/images.js';
import { startService } from '../../bench/lib/server.js';
import { shutdownUnderLoad } from '../../bench/lib/shutdown-run.js';

const SHUTDOWN_TIMEOUT_MS = 5000;

t.test('SIGTERM under load: in-flight requests complete, new ones are refused, exit 0 within the bound', async (t) => {
  const { images } = await benchImages(320, 4);
  const service = await startService({ models: 'builtin', workers: 2, env: { SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS) } });
  t.teardown(() => service.stop());
  const result = await shutdownUnderLoad(service, 'toon', images, { shutdownTimeoutMs: SHUTDOWN_TIMEOUT_MS, loadMs: 500 });
  t.comment(result.facts);
  for (const c of result.checks) t.ok(c.ok, `${c.name}: ${c.detail}`);
});

t.test('SIGTERM under load with a grace period: readiness 503, every request still served, then the same drain', async (t) => {
  const graceMs = 1500;
  const { images } = await benchImages(320, 4);
  const service = await startService({ models: 'builtin', workers: 2, env: { SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS), SHUTDOWN_GRACE_MS: String(graceMs) } });
  t.teardown(() => service.stop());
  const result = await shutdownUnderLoad(service, 'toon', images, { shutdownTimeoutMs: SHUTDOWN_TIMEOUT_MS, graceMs, loadMs: 500 });
  t.comment(result.facts);
  t.ok(result.checks.length >= 8, 'the grace period is judged');
  for (const c of result.checks) t.ok(c.ok, `${c.name}: ${c.detail}`);
});
