/**
 * Only worker threads and the model tools load onnxruntime: the main thread's module graph (configuration, the app,
 * the CLI's other commands) never does, so `privatoon keygen` or a bad environment variable costs no native runtime,
 * and the pool's start-up model checks run in the workers (workers/model-check.ts).
 *
 * Each case runs in a fresh process that reports, as it exits, the shared objects loaded (process-wide) and the
 * CommonJS modules its main thread loaded (require.cache is per thread; onnxruntime-node is CommonJS). Controls show
 * that both probes see the runtime when it is loaded.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { BUILTIN_MODELS_DIR, PROJECT_ROOT } from '../../paths.js';

interface Loaded {
  /** onnxruntime's native libraries in the process (any thread). */
  sharedObjects: string[];
  /** onnxruntime-node's modules in the main thread. */
  mainThreadModules: string[];
}

const PROBE = `
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
process.once('exit', () => {
  const sharedObjects = process.report.getReport().sharedObjects.filter((file) => file.includes('onnxruntime'));
  const mainThreadModules = Object.keys(require.cache).filter((file) => file.includes('onnxruntime-node'));
  process.stderr.write('\\nLOADED ' + JSON.stringify({ sharedObjects, mainThreadModules }) + '\\n');
});`;

/** Runs node with the probe first, then `args` (a script and its arguments); returns its output and what it loaded. */
function probe(t: Test, args: string[], script?: string): { stdout: string; loaded: Loaded } {
  const dir = t.testdir({ 'probe.mjs': PROBE, ...(script === undefined ? {} : { 'script.mjs': script }) });
  const argv = script === undefined ? args : [join(dir, 'script.mjs')];
  const run = spawnSync(process.execPath, ['--import', 'tsx', '--import', join(dir, 'probe.mjs'), ...argv], { cwd: PROJECT_ROOT, encoding: 'utf8' });
  t.equal(run.status, 0, 'the process exits 0', { stderr: run.stderr });
  const line = run.stderr.split('\n').find((l) => l.startsWith('LOADED '));
  if (line === undefined) throw new Error(`the probe did not report: ${run.stderr}`);
  return { stdout: run.stdout, loaded: JSON.parse(line.slice('LOADED '.length)) as Loaded };
}

const importing = (...modules: string[]) => modules.map((m) => `await import(${JSON.stringify(join(PROJECT_ROOT, m))});`).join('\n');

t.test('`privatoon keygen` does not load the native runtime', async (t) => {
  const { stdout, loaded } = probe(t, [join(PROJECT_ROOT, 'cli.ts'), 'keygen', 'probe-key']);
  t.match(stdout, /^ {2}probe-key:[0-9a-f]{64}$/m, 'the key line is printed');
  t.same(loaded.sharedObjects, [], 'no onnxruntime library in the process');
});

t.test('the configuration, the paths and the app load no onnxruntime', async (t) => {
  const { loaded } = probe(t, [], `${importing('config.ts', 'paths.ts', 'app.ts', 'models/registry.ts')}\nconst { loadConfig } = await import(${JSON.stringify(join(PROJECT_ROOT, 'config.ts'))}); loadConfig({});`);
  t.same(loaded, { sharedObjects: [], mainThreadModules: [] });
});

t.test("a started pool has onnxruntime in its workers only, not in the main thread's module graph", async (t) => {
  const script = `
    const { InferencePool } = await import(${JSON.stringify(join(PROJECT_ROOT, 'pool', 'inference-pool.ts'))});
    const { poolSettings } = await import(${JSON.stringify(join(PROJECT_ROOT, 'config.ts'))});
    const pool = await InferencePool.start(poolSettings({ modelsDirs: [${JSON.stringify(BUILTIN_MODELS_DIR)}], workers: 1 }));
    await pool.close();`;
  const { loaded } = probe(t, [], script);
  t.ok(loaded.sharedObjects.some((file) => /libonnxruntime\.so/.test(file)), 'the worker loaded the runtime (the probe sees it)');
  t.same(loaded.mainThreadModules, [], 'the main thread did not import onnxruntime-node');
});

t.test('control: the probes see onnxruntime loaded in the main thread', async (t) => {
  const { loaded } = probe(t, [], importing('workers/ort.ts'));
  t.ok(loaded.sharedObjects.some((file) => /libonnxruntime\.so/.test(file)), 'its native library');
  t.ok(loaded.mainThreadModules.length > 0, 'its modules in the main thread');
});
