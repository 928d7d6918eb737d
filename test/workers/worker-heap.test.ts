/**
 * The main thread's heap floor (`--initial-old-space-size`, given by `npm start`) stays on the main thread: the pool
 * clears it before it starts its workers (pool/worker-heap.ts), so worker isolates keep V8's own sizing.
 *
 * A fresh node runs with a floor of 512 MiB (far above what V8 would choose for these small heaps, so the two cannot
 * be confused) and V8's GC trace, which prints the old generation's limit after each full collection. A full
 * collection is forced (`--expose-gc`) in the main thread, in a worker started before any pool (the control: V8's
 * flags reach every isolate), in a worker started after a real pool has started, and in the main thread again. (The
 * pool's own worker is not asserted on: it may collect while the main thread does, and V8 prints a trace line's
 * prefix and its text in two writes, which two threads can interleave.)
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import { BUILTIN_MODELS_DIR, PROJECT_ROOT } from '../../paths.js';

const FLOOR_KB = 512 * 1024;

const SCRIPT = `
import { Worker } from 'node:worker_threads';
const phase = (name) => process.stdout.write('\\nPHASE ' + name + '\\n');
const collectInWorker = () => new Promise((resolve, reject) => {
  const worker = new Worker('const keep = Array.from({ length: 100000 }, (_, i) => ({ i })); globalThis.gc(); globalThis.gc();', { eval: true });
  worker.on('error', reject);
  worker.on('exit', resolve);
});
phase('main');
globalThis.gc();
phase('worker before any pool');
await collectInWorker();
phase('pool starting');
const { InferencePool } = await import(${JSON.stringify(join(PROJECT_ROOT, 'pool', 'inference-pool.ts'))});
const { poolSettings } = await import(${JSON.stringify(join(PROJECT_ROOT, 'config.ts'))});
const pool = await InferencePool.start(poolSettings({ modelsDirs: [${JSON.stringify(BUILTIN_MODELS_DIR)}], workers: 1 }));
phase('worker after the pool started');
await collectInWorker();
phase('main after the pool started');
globalThis.gc();
await pool.close();
phase('end');
`;

/** `[pid:0xisolate(:n)]   123 ms: [HeapController] Limit: old size: 1234 KB, new limit: 5678 KB ...` */
const LIMIT = /^\[\d+:(0x[0-9a-f]+)(?::\d+)?\]\s+[\d.]+ ms: \[HeapController\] Limit: old size: \d+ KB, new limit: (\d+) KB/;

t.test('worker isolates do not inherit the main thread\'s heap floor; the main thread keeps it', async (t) => {
  const dir = t.testdir({ 'script.mjs': SCRIPT });
  // V8 caps the floor at half the old generation's maximum, which a small machine's default could bring under 512 MiB.
  const run = spawnSync(process.execPath, ['--initial-old-space-size=512', '--max-old-space-size=4096', '--expose-gc', '--trace-gc', '--trace-gc-verbose', '--import', 'tsx', join(dir, 'script.mjs')], {
    cwd: PROJECT_ROOT,
    encoding: 'utf8',
    maxBuffer: 64 * 2 ** 20,
    timeout: 120_000,
  });
  t.equal(run.status, 0, 'the process exits 0', { stderr: run.stderr.slice(-4000) });
  // Limits by phase and isolate.
  const phases = new Map<string, { isolate: string; limitKb: number }[]>();
  let current = '';
  for (const line of run.stdout.split('\n')) {
    if (line.startsWith('PHASE ')) {
      current = line.slice('PHASE '.length);
      phases.set(current, []);
      continue;
    }
    const match = LIMIT.exec(line);
    if (match !== null) phases.get(current)?.push({ isolate: match[1]!, limitKb: Number(match[2]) });
  }
  const main = phases.get('main') ?? [];
  t.ok(main.length > 0, 'the main thread collected');
  t.ok(main.every((l) => l.limitKb >= FLOOR_KB), `main thread: limits ${main.map((l) => l.limitKb).join(', ')} KB, at or above the floor (${FLOOR_KB} KB)`);
  const mainIsolate = main[0]?.isolate;
  const workers = (name: string) => (phases.get(name) ?? []).filter((l) => l.isolate !== mainIsolate);
  const before = workers('worker before any pool');
  t.ok(before.length > 0 && before.every((l) => l.limitKb >= FLOOR_KB), `control, a worker before any pool: limits ${before.map((l) => l.limitKb).join(', ')} KB (the flag reaches it)`);
  const after = workers('worker after the pool started');
  t.ok(after.length > 0 && after.every((l) => l.limitKb < FLOOR_KB), `a worker after the pool started: limits ${after.map((l) => l.limitKb).join(', ')} KB, V8's own`);
  const mainAfter = (phases.get('main after the pool started') ?? []).filter((l) => l.isolate === mainIsolate);
  t.ok(mainAfter.length > 0 && mainAfter.every((l) => l.limitKb >= FLOOR_KB), `main thread after the pool started: limits ${mainAfter.map((l) => l.limitKb).join(', ')} KB, still at the floor`);
});
