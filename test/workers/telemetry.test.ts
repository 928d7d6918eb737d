/**
 * onnxruntime-node's own telemetry writes a SQLite store under $HOME/.cache/Microsoft (and a log in /tmp) when a
 * session is created, unless ORT_DISABLE_TELEMETRY is set. workers/ort.ts sets it; this proves it holds, and that
 * the check can fail (the bare library, in a control run, does write).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { ROOT } from '../fixtures/models.js';

const MODEL = join(ROOT, 'models', 'builtin', 'toon.onnx');

function createSession(t: Test, module: string): string {
  const home = t.testdir({});
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: home };
  delete env['ORT_DISABLE_TELEMETRY'];
  delete env['CI']; // the library stays quiet under CI=true, which would make the control vacuous
  const script = `const ort = await import(${JSON.stringify(module)}); await ort.InferenceSession.create(${JSON.stringify(MODEL)});`;
  const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, env });
  t.equal(run.status, 0, run.stderr.toString());
  // The library's debug log, if it wrote one (the control run does): leave nothing behind.
  rmSync(`/tmp/mat-debug-${run.pid}.log`, { force: true });
  return join(home, '.cache', 'Microsoft');
}

t.test('sessions opened through workers/ort.ts leave no telemetry store', async (t) => {
  t.notOk(existsSync(createSession(t, join(ROOT, 'workers', 'ort.ts'))), 'no ~/.cache/Microsoft');
});

t.test('control: the bare library does write one (so the check above can fail)', async (t) => {
  const store = createSession(t, 'onnxruntime-node');
  // If this build stopped writing a store, the check above would prove nothing: this fails, so someone looks.
  t.ok(existsSync(store), 'the bare library created ~/.cache/Microsoft');
});
