/**
 * onnxruntime-node's own telemetry writes a SQLite store under $HOME/.cache/Microsoft (and a log in /tmp) when a
 * session is created, unless ORT_DISABLE_TELEMETRY is in the process's environment. The pool sets it in the main
 * thread before it starts a worker, and workers/ort.ts for the model tools: these prove both hold, and that the checks
 * can fail (the bare library writes a store; so does a worker thread that sets the variable only in its own copy of
 * process.env, which never reaches the native library: the reason the main thread must set it).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { ROOT } from '../fixtures/models.js';

const MODEL = join(ROOT, 'models', 'builtin', 'toon.onnx');

/**
 * Runs an ES module script with tsx in a fresh process whose HOME is a test folder; returns where a store would be.
 * From a file, not `-e`: worker threads inherit the command line's options, and `--input-type` fails in them.
 */
function runWithoutTelemetrySetting(t: Test, script: string, files: Record<string, string> = {}): string {
  const dir = t.testdir({ home: {}, 'script.mjs': script, ...files });
  const home = join(dir, 'home');
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: home };
  delete env['ORT_DISABLE_TELEMETRY'];
  delete env['CI']; // the library stays quiet under CI=true, which would make the control vacuous
  const run = spawnSync(process.execPath, ['--import', 'tsx', join(dir, 'script.mjs')], { cwd: ROOT, env });
  t.equal(run.status, 0, run.stderr.toString());
  // The library's debug log, if it wrote one (the controls do): leave nothing behind.
  rmSync(`/tmp/mat-debug-${run.pid}.log`, { force: true });
  return join(home, '.cache', 'Microsoft');
}

const createSession = (t: Test, module: string) =>
  runWithoutTelemetrySetting(t, `const ort = await import(${JSON.stringify(module)}); await ort.InferenceSession.create(${JSON.stringify(MODEL)});`);

t.test('sessions opened through workers/ort.ts leave no telemetry store', async (t) => {
  t.notOk(existsSync(createSession(t, join(ROOT, 'workers', 'ort.ts'))), 'no ~/.cache/Microsoft');
});

t.test("the pool's workers leave no telemetry store", async (t) => {
  const script = `
    const { InferencePool } = await import(${JSON.stringify(join(ROOT, 'pool', 'inference-pool.ts'))});
    const { poolSettings } = await import(${JSON.stringify(join(ROOT, 'config.ts'))});
    const pool = await InferencePool.start(poolSettings({ modelsDirs: [${JSON.stringify(join(ROOT, 'models', 'builtin'))}], workers: 1 }));
    await pool.close();`;
  t.notOk(existsSync(runWithoutTelemetrySetting(t, script)), 'no ~/.cache/Microsoft after a worker opened and ran a session');
});

t.test('control: the bare library does write one (so the checks above can fail)', async (t) => {
  const store = createSession(t, 'onnxruntime-node');
  // If this build stopped writing a store, the checks above would prove nothing: this fails, so someone looks.
  t.ok(existsSync(store), 'the bare library created ~/.cache/Microsoft');
});

t.test('control: a worker thread cannot turn it off for itself (so the pool must, in the main thread)', async (t) => {
  // CommonJS: under Node 20, tsx reaches a plain worker thread's require(), not its import().
  const worker = `require(${JSON.stringify(join(ROOT, 'workers', 'ort.ts'))}).InferenceSession.create(${JSON.stringify(MODEL)});`;
  const script = `
    const { Worker } = await import('node:worker_threads');
    const thread = new Worker(new URL('./worker.cjs', import.meta.url));
    await new Promise((resolve, reject) => thread.on('exit', resolve).on('error', reject));`;
  const store = runWithoutTelemetrySetting(t, script, { 'worker.cjs': worker });
  t.ok(existsSync(store), 'workers/ort.ts in a worker sets only its copy of process.env: the store is written');
});
