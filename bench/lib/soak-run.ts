/**
 * The soak: `concurrency` clients cycle through a mix of valid and invalid uploads (soakCases in images.ts) for
 * `minutes`, and every `everySeconds` a row is taken: requests and wrong answers in the interval, latency of the
 * successes, the service's RSS (now and the interval's peak) and its queue. A leak shows as RSS that keeps rising
 * after the first intervals; the run's check holds the last row to the first row's peak plus `tolerance`.
 */
import { performance } from 'node:perf_hooks';
import { check, type Check } from './checks.js';
import { HttpClient, outcomeKey, type Outcome } from './client.js';
import type { SoakCase } from './images.js';
import { readPool } from './metrics.js';
import { sampleRss } from './rss.js';
import type { Service } from './server.js';
import { countBy, summarize } from './stats.js';

export interface SoakRow {
  atS: number;
  requests: number;
  wrong: number;
  okP50: number;
  okP99: number;
  rss: number;
  rssPeak: number;
  queued: number;
}

export interface SoakResult {
  rows: SoakRow[];
  byCase: Record<string, { sent: number; wrong: number; answers: Record<string, number> }>;
  checks: Check[];
}

export async function soakRun(
  service: Service,
  cases: readonly SoakCase[],
  opts: { minutes: number; everySeconds: number; concurrency: number; tolerance?: number; onRow?: (row: SoakRow) => void },
): Promise<SoakResult> {
  const client = new HttpClient(service.base);
  const rss = sampleRss(service.pid, 100);
  const all: { c: SoakCase; o: Outcome }[] = [];
  let window: { c: SoakCase; o: Outcome }[] = [];
  const rows: SoakRow[] = [];
  const start = performance.now();
  const end = start + opts.minutes * 60_000;
  let i = 0;
  const worker = async () => {
    while (performance.now() < end) {
      const c = cases[i++ % cases.length]!;
      const o = await client.send({
        method: 'POST',
        path: `/api/cartoonize?${c.query}`,
        headers: { 'content-type': c.type, 'x-api-key': service.key },
        body: c.body,
        label: c.name,
      });
      const entry = { c, o };
      all.push(entry);
      window.push(entry);
    }
  };
  let rowFrom = start;
  const reporter = setInterval(() => {
    void (async () => {
      const now = performance.now();
      const taken = window;
      window = [];
      const ok = taken.filter((e) => e.o.status === 200).map((e) => e.o.ms);
      const lat = summarize(ok);
      const pool = await readPool(service.metricsUrl).catch(() => ({ queued: NaN }));
      const row: SoakRow = {
        atS: (now - start) / 1000,
        requests: taken.length,
        wrong: taken.filter((e) => !e.c.expect.includes(e.o.status)).length,
        okP50: lat.p50,
        okP99: lat.p99,
        rss: rss.samples.at(-1)?.bytes ?? NaN,
        rssPeak: rss.peakBetween(rowFrom, now),
        queued: pool.queued,
      };
      rowFrom = now;
      rows.push(row);
      opts.onRow?.(row);
    })();
  }, opts.everySeconds * 1000);
  try {
    await Promise.all(Array.from({ length: opts.concurrency }, worker));
  } finally {
    clearInterval(reporter);
    rss.stop();
    client.close();
  }
  const byCase: SoakResult['byCase'] = {};
  for (const c of cases) {
    const mine = all.filter((e) => e.c === c);
    byCase[c.name] = { sent: mine.length, wrong: mine.filter((e) => !c.expect.includes(e.o.status)).length, answers: countBy(mine.map((e) => e.o), outcomeKey) };
  }
  const tolerance = opts.tolerance ?? 0.1;
  const wrong = all.filter((e) => !e.c.expect.includes(e.o.status));
  const first = rows[0];
  const last = rows.at(-1);
  const checks: Check[] = [
    check('every answer as expected for its case', wrong.length === 0, `${wrong.length} of ${all.length} unexpected${wrong.length > 0 ? `: ${JSON.stringify(countBy(wrong, (e) => `${e.c.name} -> ${outcomeKey(e.o)}`))}` : ''}`),
    check(
      `RSS at the end within ${(tolerance * 100).toFixed(0)}% of the first interval's peak`,
      first !== undefined && last !== undefined && rows.length >= 2 && last.rss <= first.rssPeak * (1 + tolerance),
      first === undefined || last === undefined || rows.length < 2 ? 'too short: fewer than two intervals' : `first interval peak ${(first.rssPeak / 2 ** 20).toFixed(0)} MiB, end ${(last.rss / 2 ** 20).toFixed(0)} MiB`,
    ),
  ];
  return { rows, byCase, checks };
}
