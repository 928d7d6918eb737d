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
import { PROJECT_ROOT } from '../../paths.js';
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
