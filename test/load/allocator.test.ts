/**
 * The worker threads do not page-fault their way through every request (README, Performance: the allocator).
 *
 * onnxruntime-node hands each output back in a fresh array buffer (3 MiB for the near-free model at 512x512), which
 * V8 frees later, in batches, from a background thread. With glibc's default thresholds that emptied the worker's
 * heap often enough for glibc to delete it and map a new one every few requests: 28 to 300 minor page faults a
 * request, each a trip into the kernel. `npm start` sets glibc thresholds that keep freed memory for the next
 * request. The real service, started as `npm start` starts it, serves the near-free model over HTTP; its page
 * faults (all threads, /proc/PID/stat) are counted over the requests after a warm-up. The control runs the same
 * service with the scrubbing setting alone: there the faults come back, so the test fails if the thresholds stop
 * working (or stop being given). Measured: 0.3 to 5.1 a request (the most with the whole suite running beside it), 38
 * to 283 in the control (Node 20 and 24). Counts, no timing.
 */
import { existsSync } from 'node:fs';
import t from 'tap';
import { HttpClient, closedLoopCount } from '../../bench/lib/client.js';
import { statFields } from '../../bench/lib/cpu.js';
import { benchImages } from '../../bench/lib/images.js';
import { cycling } from '../../bench/lib/requests.js';
import { startScript, startService } from '../../bench/lib/server.js';
import { CAN_FREE_EARLY } from '../../wipe.js';

const REQUESTS = 800;
// Long enough for every heap to have grown to its working size (the main thread's up to its 96 MiB floor: tens of
// thousands of pages touched once, 68 faults a request over a 100-request warm-up): only steady serving is counted.
const WARM_UP = 800;
const { images } = await benchImages(512, 7);
// startService passes these through from this environment; a developer's own allocator experiment (or a preloaded
// jemalloc, which ignores GLIBC_TUNABLES) would replace what `npm start` sets, which is what is checked here.
for (const name of ['GLIBC_TUNABLES', 'MALLOC_ARENA_MAX', 'LD_PRELOAD', 'BENCH_NODE_ARGS']) delete process.env[name];

/** Minor page faults of the whole process so far (minflt, field 10 of /proc/PID/stat). */
function minorFaults(pid: number): number {
  return Number(statFields(`/proc/${pid}/stat`)?.[7]);
}

async function faultsPerRequest(env: Record<string, string>): Promise<{ perRequest: number; served: number }> {
  const service = await startService({ models: 'builtin+bench', workers: 2, env });
  const client = new HttpClient(service.base);
  try {
    const next = cycling(service.key, 'nearfree-bench', images);
    await closedLoopCount(client, next, 4, 0, WARM_UP);
    const before = minorFaults(service.pid);
    const outcomes = await closedLoopCount(client, next, 4, WARM_UP, REQUESTS);
    const faults = minorFaults(service.pid) - before;
    return { perRequest: faults / REQUESTS, served: outcomes.filter((o) => o.status === 200).length };
  } finally {
    client.close();
    await service.stop();
  }
}

const glibc = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime;
const skip = !existsSync('/proc/self/stat') ? 'no /proc/PID/stat to count page faults in (Linux only)' : glibc === undefined ? 'not a glibc system: GLIBC_TUNABLES means nothing here' : false;

t.test('started as `npm start` starts it: a few page faults a request at most', { skip }, async (t) => {
  const tunables = startScript().env['GLIBC_TUNABLES'] ?? '';
  t.match(tunables, /glibc\.malloc\.trim_threshold=\d+.*glibc\.malloc\.mmap_threshold=\d+.*glibc\.malloc\.top_pad=\d+/, `npm start: GLIBC_TUNABLES=${tunables}`);
  const { perRequest, served } = await faultsPerRequest({});
  t.equal(served, REQUESTS, 'every request answered 200');
  t.ok(perRequest < 12, `${perRequest.toFixed(1)} minor page faults a request`);
});

// On Node 22+ the workers free each model output at once (wipe.ts), so their heaps no longer empty and refill in
// batches: the control's faults are gone there even without the thresholds (1.9 a request measured). It shows the
// defect where it still exists, on Node 20.
const controlSkip = skip !== false ? skip : CAN_FREE_EARLY ? 'Node 22+ frees model outputs at once (wipe.ts): without the thresholds the workers no longer fault either; the control runs on Node 20' : false;

t.test('control: with the scrubbing setting alone, the workers fault on every request', { skip: controlSkip }, async (t) => {
  const scrubbing = /glibc\.malloc\.perturb=\d+/.exec(startScript().env['GLIBC_TUNABLES'] ?? '')![0];
  const { perRequest, served } = await faultsPerRequest({ GLIBC_TUNABLES: scrubbing });
  t.equal(served, REQUESTS, 'every request answered 200');
  t.ok(perRequest >= 20, `${perRequest.toFixed(1)} minor page faults a request with GLIBC_TUNABLES=${scrubbing}`);
});
