/**
 * Ending the pool at once (`destroy`: the shutdown timeout, a failed start) while a worker is inside a real
 * onnxruntime `session.run`. Terminating a thread there aborts the whole process ("terminate called after throwing an
 * instance of 'Napi::Error'"), so a shutdown that timed out ended with an abort instead of exit 0. A child process
 * starts a pool on a slow model, lets a run get well into `session.run`, destroys the pool and exits.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { buildSlowModel } from '../../models/generate/test-models.js';
import { GUARD } from '../../contract.js';
import { BENCH_MODELS_DIR, BUILTIN_MODELS_DIR, PROJECT_ROOT } from '../../paths.js';
import { imageManifest, modelsDir } from '../fixtures/models.js';

t.test('destroy() while a run is inside session.run: the workers end, the process exits 0, no abort', async (t) => {
  const dir = modelsDir(t, [{ manifest: imageManifest('slow', { layout: 'NCHW' }), bytes: buildSlowModel() }]);
  const script = `
    const { InferencePool } = await import(${JSON.stringify(join(PROJECT_ROOT, 'pool', 'inference-pool.ts'))});
    const { poolSettings } = await import(${JSON.stringify(join(PROJECT_ROOT, 'config.ts'))});
    const { default: sharp } = await import('sharp');
    const pool = await InferencePool.start(poolSettings({ modelsDirs: [${JSON.stringify(dir)}], workers: 1 }));
    // 1024x1024: the slow model runs for about a second here (several under load).
    const photo = await sharp({ create: { width: 1024, height: 1024, channels: 3, background: { r: 90, g: 140, b: 200 } } }).jpeg().toBuffer();
    const running = pool.run(photo, { style: 'slow', format: 'jpeg', quality: 85 }).then(() => 'answered', (err) => err.code ?? err.message);
    // Not a fixed sleep (a loaded machine may still be decoding): read the task's guard (native-guard.ts) until its
    // third native call (probe, decode, session.run) is under way, then give the run 100 ms more inside.
    let guard;
    const inRun = () => { guard = [...pool['running']][0]?.guard; return guard !== undefined && Atomics.load(guard, 1) >= 3 && (Atomics.load(guard, 0) & ${GUARD.NATIVE}) !== 0; };
    for (let i = 0; i < 3000 && !inRun(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
    await new Promise((resolve) => setTimeout(resolve, 100));
    const busy = pool.stats().busy;
    const nativeCalls = guard === undefined ? 0 : Atomics.load(guard, 1);
    const inNative = guard !== undefined && (Atomics.load(guard, 0) & ${GUARD.NATIVE}) !== 0;
    await pool.destroy();
    process.stdout.write(JSON.stringify({ busy, nativeCalls, inNative, outcome: await running }) + '\\n');
    process.exit(0);`;
  const file = join(dir, 'destroy.mts'); // beside the model (the registry reads only *.json)
  writeFileSync(file, script);
  for (let round = 1; round <= 3; round++) {
    const child = spawnSync(process.execPath, ['--import', 'tsx', file], { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 60_000 });
    const said = `${child.stdout}${child.stderr}`;
    t.equal(child.status, 0, `round ${round}: exit 0 (status ${child.status}, signal ${child.signal}): ${said.slice(-400)}`);
    t.notMatch(said, /terminate called|Napi::Error|Aborted/, `round ${round}: no abort`);
    t.match(child.stdout, /"busy":1,"nativeCalls":3,"inNative":true/, `round ${round}: destroyed while the run was inside session.run (the third native call)`);
  }
});

// A worker that died is replaced, and the replacement opens every model's session: native code as well (measured:
// terminating a thread inside InferenceSession.create aborts the process just the same). A shutdown that came then
// (close, or destroy at its timeout) terminated the loading thread. The child kills its only worker with the fault
// worker's `exit` and times its replacement (200-350 ms here, the latter part opening and warming the built-in and
// benchmark models' sessions); then kills it again and ends the pool a fraction of that time later, while the new
// replacement is loading. Before the fix, one round in two or three aborted (the rounds between them cover the window).
for (const end of ['close', 'destroy'] as const) {
  t.test(`${end}() while a replacement worker loads its models: exit 0, no abort`, async (t) => {
    const dir = t.testdir({});
    const script = `
      const { InferencePool } = await import(${JSON.stringify(join(PROJECT_ROOT, 'pool', 'inference-pool.ts'))});
      const { poolSettings } = await import(${JSON.stringify(join(PROJECT_ROOT, 'config.ts'))});
      const { FAULT_WORKER, withFault } = await import(${JSON.stringify(join(PROJECT_ROOT, 'test', 'fixtures', 'faults.ts'))});
      const { default: sharp } = await import('sharp');
      const settings = poolSettings({ modelsDirs: ${JSON.stringify([BUILTIN_MODELS_DIR, BENCH_MODELS_DIR])}, workers: 1 });
      const pool = await InferencePool.start(settings, { workerFile: FAULT_WORKER });
      const photo = await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 90, g: 140, b: 200 } } }).jpeg().toBuffer();
      const kill = () => pool.run(withFault(photo, 'exit'), { style: 'toon', format: 'jpeg', quality: 85 }).then(() => 'answered', (err) => err.code ?? err.message);
      const replaced = new Promise((resolve) => pool.once('worker-ready', resolve));
      await kill();
      let started = Date.now();
      await replaced;
      const reloadMs = Date.now() - started;
      const outcome = await kill();
      await new Promise((resolve) => setTimeout(resolve, reloadMs * Number(process.argv[2])));
      const readyAtEnd = pool.stats().readyWorkers;
      started = Date.now();
      await pool.${end}();
      process.stdout.write(JSON.stringify({ outcome, readyAtEnd, reloadMs, endedMs: Date.now() - started }) + '\\n');
      process.exit(0);`;
    const file = join(dir, 'end-while-loading.mts');
    writeFileSync(file, script);
    let whileLoading = 0;
    for (const fraction of [0.3, 0.5, 0.65, 0.8, 0.9]) {
      const child = spawnSync(process.execPath, ['--import', 'tsx', file, String(fraction)], { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 60_000 });
      const said = `${child.stdout}${child.stderr}`;
      t.equal(child.status, 0, `${fraction} of the reload: exit 0 (status ${child.status}, signal ${child.signal}): ${said.slice(-400)}`);
      t.notMatch(said, /terminate called|Napi::Error|Aborted/, `${fraction} of the reload: no abort`);
      t.match(child.stdout, /"outcome":"PTOON_WORKER_FAILED"/, `${fraction} of the reload: the first worker was killed`);
      if (/"readyAtEnd":0/.test(child.stdout)) whileLoading++;
    }
    // A reload is faster the second time: the last rounds may find it done, which proves nothing but harms nothing.
    t.ok(whileLoading >= 3, `the pool was ended while its replacement was loading in ${whileLoading} of 5 rounds`);
  });
}
