/**
 * The load generator's own arithmetic and parsing (bench/lib), against a throwaway local server: percentiles,
 * Prometheus and Server-Timing parsing, the memory budget's formula, and the open loop's arrival count.
 */
import { createServer } from 'node:http';
import t from 'tap';
import { HTTP_ALLOWANCE_BYTES, memoryBudget } from '../../bench/lib/budget.js';
import { HttpClient, closedLoop, openLoop, outcomeKey, parseServerTiming } from '../../bench/lib/client.js';
import { parsePrometheus, poolGauges } from '../../bench/lib/metrics.js';
import { startScript } from '../../bench/lib/server.js';
import { countBy, percentile, summarize } from '../../bench/lib/stats.js';

const MiB = 2 ** 20;

t.test('percentiles are nearest-rank', async (t) => {
  const values = Array.from({ length: 100 }, (_, i) => i + 1);
  t.equal(percentile(values, 50), 50);
  t.equal(percentile(values, 99), 99);
  t.equal(percentile(values, 100), 100);
  t.equal(percentile([7], 99), 7);
  t.ok(Number.isNaN(percentile([], 50)));
  t.match(summarize([3, 1, 2]), { count: 3, p50: 2, max: 3 });
});

t.test('Prometheus text and Server-Timing are parsed', async (t) => {
  const samples = parsePrometheus(
    ['# HELP x', 'privatoon_queue_depth 3', 'privatoon_workers_busy 2', 'privatoon_workers_ready 2', 'privatoon_rejections_total{reason="busy"} 17', 'privatoon_worker_crashes_total 1'].join('\n'),
  );
  t.same(poolGauges(samples), { queued: 3, busy: 2, ready: 2, crashes: 1, rejections: { busy: 17 } });
  t.same(parseServerTiming('queue;dur=1.5, decode;dur=3, infer;dur=300.2, encode;dur=4'), { queue: 1.5, decode: 3, infer: 300.2, encode: 4 });
  t.equal(parseServerTiming(undefined), undefined);
});

t.test('the memory budget is base + allowance + workers x (model + working set) + queued uploads', async (t) => {
  const b = memoryBudget({ coldRss: 300 * MiB, workers: 2, modelBytes: 50 * MiB, workingSetBytes: 100 * MiB, maxQueue: 8, largestUploadBytes: MiB });
  t.equal(b.base, 200 * MiB, 'base: the cold service less its workers\' models');
  t.equal(b.bytes, 200 * MiB + HTTP_ALLOWANCE_BYTES + 2 * 150 * MiB + 10 * MiB);
  t.match(b.formula, /base 200 \+ HTTP allowance 160 \+ 2 workers x \(model 50 \+ image working set 100\) \+ queued uploads 10\.0 = 670 MiB/);
});

t.test('closed and open loops against a local server', async (t) => {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.url === '/busy') {
        res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '2' }).end('{"code":"PTOON_BUSY"}');
      } else {
        res.writeHead(200, { 'server-timing': 'infer;dur=5' }).end('ok');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const address = server.address();
  const base = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
  const client = new HttpClient(base);
  t.teardown(() => client.close());

  const closed = await closedLoop(client, (i) => ({ path: i % 2 === 0 ? '/' : '/busy' }), 2, 300);
  t.ok(closed.outcomes.length > 2, `${closed.outcomes.length} requests`);
  const counts = countBy(closed.outcomes, outcomeKey);
  t.same(Object.keys(counts).sort(), ['200', '503 PTOON_BUSY'], 'statuses split with the service\'s code');
  t.ok(closed.outcomes.filter((o) => o.status === 503).every((o) => o.retryAfter === '2'), 'Retry-After kept');
  t.ok(closed.outcomes.filter((o) => o.status === 200).every((o) => o.timing?.['infer'] === 5), 'Server-Timing kept');

  const open = await openLoop(client, () => ({ path: '/' }), 50, 400);
  t.equal(open.outcomes.length, 20, '50/s for 0.4 s: 20 arrivals, each answered');
  t.ok(open.outcomes.every((o) => o.status === 200));
  t.throws(() => new HttpClient('http://example.com'), /only target 127\.0\.0\.1/);
});

t.test('benchmarks start the service as `npm start` does (the allocator setting, the main thread\'s heap floor)', async (t) => {
  const { env, nodeArgs } = startScript();
  t.match(env['GLIBC_TUNABLES'], /glibc\.malloc\.perturb=\d+/);
  t.same(Object.keys(env), ['GLIBC_TUNABLES'], 'only the assignments before the command');
  t.same(nodeArgs, ['--initial-old-space-size=96'], 'only the flags between node and the script');
});
