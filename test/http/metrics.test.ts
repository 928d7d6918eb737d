/**
 * Metrics move as requests flow, scraped from the separate metrics listener (never the public port): request
 * durations by route pattern and status, inference stages by style, rejections and auth failures by reason, worker
 * crashes, queue depth and busy workers, and the ORT thread settings.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { request as httpRequest } from 'node:http';
import t from 'tap';
import { withFault } from '../fixtures/faults.js';
import { ROOT, build, encodeForm, fixtures, form, listen, post, sleep, startPool, waitUntilReady, writeKeys } from '../helper.js';

const pool = await startPool(t, { workers: 1, maxQueue: 1, faults: true });
const images = await fixtures();
const { file, keys } = writeKeys(t, ['alice']);
const key = { 'x-api-key': keys['alice']! };
const { app, logs } = await build(t, { pool, env: { API_KEYS_FILE: file, REQUEST_DEADLINE_MS: '1000', LOG_LEVEL: 'info' } });
const base = await listen(app);
const metricsAddress = await app.metrics.listen(0);
const api = `${base}/api/cartoonize`;

async function scrape(): Promise<string> {
  const res = await fetch(`${metricsAddress}/metrics`);
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /^text\/plain/);
  return res.text();
}

/** The value of one sample (name with its labels, as written), 0 when absent. */
function value(text: string, sample: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  return line === undefined ? 0 : Number(line.slice(sample.length + 1));
}

t.test('metrics are on their own listener, not the public port', async (t) => {
  t.notOk(metricsAddress === null, 'listening');
  t.not(new URL(metricsAddress!).port, new URL(base).port);
  t.equal((await fetch(`${base}/metrics`)).status, 404);
});

t.test('counters and histograms move with traffic', async (t) => {
  const before = await scrape();
  t.equal(value(before, 'privatoon_ort_threads{setting="workers"}'), 1);
  t.equal(value(before, 'privatoon_ort_threads{setting="intra_op"}'), 1);
  t.equal(value(before, 'privatoon_ort_threads{setting="spinning"}'), 0);
  t.equal(value(before, 'privatoon_queue_capacity'), 1);
  t.equal(value(before, 'privatoon_workers_ready'), 1);
  t.match(before, /^process_cpu_seconds_total \d/m, 'process metrics under their standard names...');
  t.match(before, /^nodejs_eventloop_lag_p99_seconds \d/m, '...and Node\'s too, as stock dashboards expect');
  t.notMatch(before, /privatoon_process_|privatoon_nodejs_/, 'not renamed');
  const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  t.match(before, new RegExp(`^privatoon_build_info\\{version="${version.replace(/\./g, '\\.')}",nodejs_version="${process.versions.node}"\\} 1$`, 'm'), 'privatoon_build_info');

  t.equal((await post(api, form(images.jpeg), key)).status, 200);
  t.equal((await post(api, form(images.svg, { type: 'image/svg+xml' }), key)).status, 415);
  t.equal((await post(api, form(images.jpeg), {})).status, 401);
  t.equal((await post(api, form(images.jpeg), { 'x-api-key': 'ptk_wrong' })).status, 401);
  t.equal((await post(api, form(withFault(images.jpeg, 'exit')), key)).status, 500);
  await waitUntilReady(pool);

  const after = await scrape();
  const okCount = 'privatoon_http_request_duration_seconds_count{route="/api/cartoonize",method="POST",status="200"}';
  t.equal(value(after, okCount) - value(before, okCount), 1, 'request duration by route and status');
  t.ok(value(after, 'privatoon_inference_stage_seconds_count{style="toon",stage="infer"}') >= 1, 'inference time by style and stage');
  t.ok(value(after, 'privatoon_inference_stage_seconds_count{style="toon",stage="queue"}') >= 1, 'queue time too');
  t.equal(value(after, 'privatoon_rejections_total{reason="unsupported"}'), 1);
  t.equal(value(after, 'privatoon_auth_failures_total{reason="missing"}'), 1);
  t.equal(value(after, 'privatoon_auth_failures_total{reason="invalid"}'), 1);
  t.equal(value(after, 'privatoon_worker_crashes_total'), 1);
  t.notMatch(after, /ptk_|secret|\?/, 'no keys or query strings in labels');
});

t.test('queue depth and busy workers are read live; busy and aborted rejections are counted', async (t) => {
  await waitUntilReady(pool);
  const hung = post(api, form(withFault(images.jpeg, 'hang')), key);
  while (pool.stats().busy < 1) await sleep(5);
  // A client that leaves while queued.
  const { payload, contentType } = await encodeForm(form(images.jpeg));
  const abortedBefore = pool.stats().abortedQueued;
  const gone = httpRequest(api, { method: 'POST', headers: { ...key, 'content-type': contentType } });
  gone.on('error', () => {});
  gone.end(payload);
  while (pool.stats().queued < 1) await sleep(5);
  gone.destroy();
  while (pool.stats().abortedQueued === abortedBefore) await sleep(5);
  await sleep(20);
  const queued = post(api, form(images.jpeg), key);
  while (pool.stats().queued < 1) await sleep(5);
  t.equal((await post(api, form(images.jpeg), key)).status, 503);
  const during = await scrape();
  t.equal(value(during, 'privatoon_workers_busy'), 1);
  t.equal(value(during, 'privatoon_queue_depth'), 1);
  t.equal(value(during, 'privatoon_rejections_total{reason="busy"}'), 1);
  t.equal(value(during, 'privatoon_rejections_total{reason="aborted"}'), 1, 'the client that left is counted');
  const aborted = '{route="/api/cartoonize",method="POST",status="499"}';
  t.ok(value(during, `privatoon_http_request_duration_seconds_count${aborted}`) >= 1);
  // The log line and the metrics read one record (plugins/request-record.ts): they agree on what the aborted were.
  const abortedLines = logs.records().filter((r) => r['msg'] === 'request aborted by the client');
  t.equal(abortedLines.length, value(during, `privatoon_http_request_duration_seconds_count${aborted}`), 'the log and the metrics count the same aborted requests');
  t.equal(abortedLines.length, value(during, 'privatoon_rejections_total{reason="aborted"}'));
  t.match(abortedLines, [{ status: 499, code: 'PTOON_ABORTED', route: '/api/cartoonize', method: 'POST', keyId: 'alice', resBytes: 0, ms: Number }]);
  const loggedSeconds = abortedLines.reduce((sum, line) => sum + Number(line['ms']), 0) / 1000;
  t.ok(Math.abs(value(during, `privatoon_http_request_duration_seconds_sum${aborted}`) - loggedSeconds) < 0.0005, 'and the same time taken');
  t.equal((await hung).status, 504);
  await queued;
  const after = await scrape();
  t.ok(value(after, 'privatoon_rejections_total{reason="deadline"}') >= 1);
  t.equal(value(after, 'privatoon_deadline_overruns_total'), 1, 'the hung task was running at its deadline');
  // The hang is in JavaScript: the watchdog ends its thread (safe there) shortly after the 504.
  while (pool.stats().deadlineKills < 1) await sleep(20);
  t.equal(value(await scrape(), 'privatoon_deadline_kills_total'), 1, 'and its thread was ended');
  await waitUntilReady(pool);
});

t.test('the metrics listener answers scrapers by address, not pages by name (DNS rebinding)', async (t) => {
  const url = new URL(`${metricsAddress}/metrics`);
  const get = (host: string) =>
    new Promise<number>((resolve, reject) => {
      const req = httpRequest({ hostname: url.hostname, port: url.port, path: url.pathname, headers: { host } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
  t.equal(await get(`127.0.0.1:${url.port}`), 200, 'an address');
  t.equal(await get(`localhost:${url.port}`), 200, 'localhost');
  t.equal(await get(`[::1]:${url.port}`), 200, 'an IPv6 address');
  t.equal(await get(`10.1.2.3:${url.port}`), 200, 'a pod address, as Prometheus scrapes it');
  t.equal(await get(`rebind.example:${url.port}`), 403, 'a DNS name that points here is refused');
});
