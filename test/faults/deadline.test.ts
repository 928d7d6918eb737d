/**
 * Deadlines that fall inside a real onnxruntime `session.run` (issue: terminating a worker thread while native code
 * runs aborts the whole process). A real server process, a model that takes a few hundred ms per run, a deadline
 * shorter than one run: twenty 504s in a row, and the process, its pool and its neighbours carry on.
 */
import { poolSettings } from '../../config.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import t from 'tap';
import { buildSlowModel } from '../../models/generate/test-models.js';
import { InferencePool } from '../../pool/inference-pool.js';
import { imageManifest, modelsDir } from '../fixtures/models.js';
import { newApiKey } from '../../keys.js';
import { form, post, sleep, spawnServer } from '../helper.js';

/**
 * Waits for the overrun run to finish in native code. Bounded generously: on a loaded machine one run takes seconds,
 * and a next task sent while it still runs would wait in the queue, where its deadline is no overrun.
 */
async function idle(pool: InferencePool): Promise<void> {
  for (let i = 0; i < 3000 && pool.stats().busy > 0; i++) await sleep(10);
}

/** A 512x512 photo-like image: the slow model takes about 250 ms a run at this size on one thread. */
async function portrait(side = 512): Promise<Buffer> {
  const raw = Buffer.alloc(side * side * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 31 + (i >> 9)) & 255;
  return sharp(raw, { raw: { width: side, height: side, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
}

t.test('pool: 20 deadlines inside session.run; the process and the pool carry on', async (t) => {
  const dir = modelsDir(t, [{ manifest: imageManifest('slow', { layout: 'NCHW' }), bytes: buildSlowModel() }]);
  const pool = await InferencePool.start(poolSettings({ modelsDirs: [dir], workers: 1, maxQueue: 4 }));
  t.teardown(() => pool.close());
  const image = await portrait();
  const small = await portrait(32);
  const rssBefore = process.memoryUsage().rss;
  for (let i = 0; i < 20; i++) {
    // 60 ms: decode is done by then and the run (hundreds of ms) is under way, in native code.
    await t.rejects(pool.run(Buffer.from(image), { style: 'slow', format: 'jpeg', quality: 85 }, { deadlineMs: 60 }), { code: 'PTOON_DEADLINE', statusCode: 504 }, `deadline ${i + 1}`);
    t.equal(pool.stats().busy, 1, 'answered at the deadline while the worker still runs the task');
    await idle(pool);
  }
  const next = await pool.run(Buffer.from(small), { style: 'slow', format: 'png', quality: 85 }, { deadlineMs: 30_000 });
  t.equal(next.width, 32, 'the next task is served');
  await idle(pool);
  const stats = pool.stats();
  t.equal(stats.busy, 0, 'no task left running');
  t.equal(stats.queued, 0, 'none left queued');
  t.equal(stats.workerCrashes, 0, 'no worker died');
  t.equal(stats.deadlineOverruns, 20, 'every deadline found its task running, and cancelled it');
  t.equal(stats.deadlineKills, 0, 'no thread was terminated: each run was left to finish in native code');
  t.equal(pool.ready, true, 'ready');
  const grown = (process.memoryUsage().rss - rssBefore) / 2 ** 20;
  t.ok(grown < 200, `RSS grew ${grown.toFixed(0)} MiB over 20 deadlines`);
});

t.test('server: deadlines inside session.run never end the process; neighbours get 200; /readyz stays 200', async (t) => {
  const dir = modelsDir(t, [{ manifest: imageManifest('slow', { layout: 'NCHW' }), bytes: buildSlowModel() }]);
  const key = newApiKey('tester');
  const file = join(dir, 'keys.txt'); // beside the models: a test has one fixture folder
  writeFileSync(file, `${key.line}\n`);
  const server = spawnServer({ MODELS_DIRS: dir, API_KEYS_FILE: file, REQUEST_DEADLINE_MS: '150', WORKERS: '1', MAX_QUEUE: '8', RATE_LIMIT_MAX: '1000' });
  t.teardown(async () => {
    if (server.child.exitCode === null) server.child.kill('SIGKILL');
    await server.exited;
  });
  const base = await server.listening;
  const headers = { 'x-api-key': key.key };
  const image = await portrait();
  const small = await portrait(32);
  const statuses: number[] = [];
  for (let i = 0; i < 20; i++) statuses.push((await post(`${base}/api/cartoonize`, form(image), headers)).status);
  t.same(statuses, Array(20).fill(504), 'twenty 504s');
  await sleep(500); // the last run finishes in native code, after its 504
  t.equal(server.child.exitCode, null, 'the process is still up');
  t.notMatch(server.output(), /terminate called|Aborted|Napi::Error/, 'no native abort');
  // Neighbour: a small image whose run fits in the deadline.
  let ok = 0;
  for (let i = 0; i < 60 && ok === 0; i++) {
    const answer = await post(`${base}/api/cartoonize`, form(small), headers);
    if (answer.status === 200) ok++;
    else await sleep(100);
  }
  t.equal(ok, 1, 'a request that fits its deadline gets 200');
  const ready = await fetch(`${base}/readyz`);
  t.equal(ready.status, 200, '/readyz is 200 afterwards');
  t.equal(server.child.exitCode, null, 'still up at the end');
});
