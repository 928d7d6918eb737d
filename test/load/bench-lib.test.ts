/**
 * The load generator's own arithmetic and parsing (bench/lib), against a throwaway local server: percentiles,
 * Prometheus and Server-Timing parsing, the memory budget's formula, the open loop's arrival count, and the readings
 * of /proc that explain a row (host steal, the main thread's wait for a core).
 */
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import t from 'tap';
import { HTTP_ALLOWANCE_BYTES, memoryBudget } from '../../bench/lib/budget.js';
import { HttpClient, closedLoop, openLoop, outcomeKey, parseServerTiming } from '../../bench/lib/client.js';
import { parseHostStat, parseSchedstat, readCpu, readHost, stealShare } from '../../bench/lib/cpu.js';
import { parsePrometheus, poolGauges } from '../../bench/lib/metrics.js';
import { compareRound, summarizeRounds } from '../../bench/lib/rounds.js';
import { startScript } from '../../bench/lib/server.js';
import { countBy, percent, percentile, summarize } from '../../bench/lib/stats.js';

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

t.test('host steal is the hypervisor\'s share of the machine\'s CPU time between two readings', async (t) => {
  // user nice system idle iowait irq softirq steal guest guest_nice: guest time is inside user already.
  const before = parseHostStat('cpu  100 50 20 800 5 0 5 20 40 0\ncpu0 50 25 10 400 2 0 3 10 20 0\nintr 1\n');
  const after = parseHostStat('cpu  160 80 30 900 5 0 5 120 60 0\ncpu0 80 40 15 450 2 0 3 60 30 0\nintr 2\n');
  t.same(before, { total: 1000, steal: 20 }, 'eight fields summed, guest not counted twice');
  t.same(after, { total: 1300, steal: 120 });
  t.equal(stealShare(before, after), 100 / 300);
  t.equal(percent(stealShare(before, after)), '33%');
  t.equal(percent(0.012), '1.2%');
  t.equal(parseHostStat('intr 1\n'), undefined, 'no aggregate line');
  t.equal(parseHostStat('cpu  1 2 3\n'), undefined, 'a line too short to hold steal');
  t.ok(Number.isNaN(stealShare(undefined, after)) && Number.isNaN(stealShare(after, after)), 'unknown, not zero');
  t.equal(percent(NaN), '-');
});

t.test('bench:flask compares rounds in req/s and CPU a request, and only rounds with little host steal count as clean', async (t) => {
  const quiet = compareRound({ perSecond: 150, cpuPerRequest: 12, hostSteal: 0.01 }, { perSecond: 100, cpuPerRequest: 24, hostSteal: 0.02 });
  t.same(quiet, { ratio: 1.5, cpuRatio: 2, clean: true });
  // Either row above the noise line spoils the round; an unknown steal (NaN) is not clean either.
  t.equal(compareRound({ perSecond: 80, cpuPerRequest: 12, hostSteal: 0.3 }, { perSecond: 100, cpuPerRequest: 24, hostSteal: 0 }).clean, false);
  t.equal(compareRound({ perSecond: 80, cpuPerRequest: 12, hostSteal: 0 }, { perSecond: 100, cpuPerRequest: 24, hostSteal: 0.06 }).clean, false);
  t.equal(compareRound({ perSecond: 80, cpuPerRequest: 12, hostSteal: NaN }, { perSecond: 100, cpuPerRequest: 24, hostSteal: 0 }).clean, false);
  const noisy = compareRound({ perSecond: 60, cpuPerRequest: 16, hostSteal: 0.4 }, { perSecond: 100, cpuPerRequest: 24, hostSteal: 0.01 });
  const summary = summarizeRounds([quiet, noisy, { ratio: 1.7, cpuRatio: 1.8, clean: true }]);
  t.equal(summary.ratio, 1.5, 'median of every round');
  t.equal(summary.cleanRounds, 2);
  t.equal(summary.cleanRatio, 1.5, 'median of the clean rounds only (nearest rank: the lower of two)');
  t.equal(summary.cpuRatio, 1.8);
  t.ok(Number.isNaN(summarizeRounds([noisy]).cleanRatio), 'no clean round: no clean median');
  // A round that could not be measured (no answer on one side, unreadable counters) does not move the medians.
  const unmeasured = compareRound({ perSecond: 0, cpuPerRequest: NaN, hostSteal: 0 }, { perSecond: 0, cpuPerRequest: 24, hostSteal: 0 });
  for (const order of [[unmeasured, quiet, noisy], [quiet, unmeasured, noisy], [quiet, noisy, unmeasured]]) {
    t.match(summarizeRounds(order), { ratio: 0.6, cpuRatio: 1.5 }, 'NaN left out wherever it stands');
  }
});

t.test('the main thread\'s wait for a core is schedstat\'s second field; zeros mean the kernel does not count', async (t) => {
  t.equal(parseSchedstat('123000000 456000000 7\n'), 0.456, 'time on a core, time waiting, timeslices: the second, in s');
  t.ok(Number.isNaN(parseSchedstat('0 0 0\n')), 'a kernel without schedstats prints zeros: unknown, not zero');
  t.ok(Number.isNaN(parseSchedstat('')), 'nothing to read');
  t.ok(Number.isNaN(parseSchedstat('12 x 1\n')), 'not a number');
});

t.test('the readings come from this machine\'s /proc, and only grow', { skip: existsSync('/proc/stat') ? false : 'no /proc (not Linux)' }, async (t) => {
  const host = readHost();
  const cpu = readCpu(process.pid);
  t.ok(host !== undefined && host.total > 0 && host.steal >= 0 && host.steal <= host.total, '/proc/stat read');
  t.ok(cpu.process > 0 && cpu.main > 0, 'CPU of the process and of its main thread');
  t.ok(cpu.mainRunQueueWait >= 0 || Number.isNaN(cpu.mainRunQueueWait), 'a wait, or unknown');
  // Keep the main thread busy until its CPU reading moves (ticks are 10 ms; a loaded machine may take a while to give
  // it ten of them), then check that no counter went back.
  const deadline = Date.now() + 10_000;
  let later = readCpu(process.pid);
  while (later.main <= cpu.main && Date.now() < deadline) later = readCpu(process.pid);
  const host2 = readHost();
  t.ok(later.main > cpu.main, 'the main thread\'s CPU grew while it spun');
  if (!Number.isNaN(cpu.mainRunQueueWait)) t.ok(later.mainRunQueueWait >= cpu.mainRunQueueWait, 'its wait for a core never shrinks');
  t.ok(host2 !== undefined && host2.total >= host!.total && host2.steal >= host!.steal, 'machine counters only grow');
});
