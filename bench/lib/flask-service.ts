/**
 * The Flask + OpenCV service of issue #12 (bench/flask/app.py) under gunicorn, started beside privatoon so the two
 * are measured in the same minutes on the same model: a machine whose speed drifts then moves both alike.
 * Needs a Python with cv2, flask and gunicorn (Debian 12: `apt-get install python3-opencv python3-flask gunicorn`);
 * `FLASK_PYTHON` names one, else /usr/bin/python3 and then python3 on the PATH are tried.
 *
 * gunicorn runs in a process group of its own, and every stop signals the whole group: a master killed alone would
 * leave its workers serving the socket they inherited.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ModelManifest } from '../../models/manifest.js';
import { PROJECT_ROOT } from '../../paths.js';
import { statFields, TICKS_PER_S } from './cpu.js';
import { freePort } from './server.js';

export interface FlaskService {
  base: string;
  /** The gunicorn master; its workers are its children. */
  pid: number;
  /** CPU seconds of the master and its workers so far (workers that exited included). */
  cpuSeconds(): number;
  stop(): Promise<void>;
}

const APP_DIR = join(PROJECT_ROOT, 'bench', 'flask');

/** A Python that imports cv2, flask and gunicorn, or undefined; `why` says what was missing. */
export function findPython(): { python?: string; why: string } {
  const candidates = [...new Set([process.env['FLASK_PYTHON'], '/usr/bin/python3', 'python3'].filter((p): p is string => p !== undefined && p !== ''))];
  let why = '';
  for (const python of candidates) {
    try {
      execFileSync(python, ['-c', 'import cv2, flask, gunicorn'], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 });
      return { python, why: '' };
    } catch (err) {
      why += `${python}: ${String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim().split('\n').pop()}\n`;
    }
  }
  return { why };
}

/** The processes whose parent is `pid` (read from every /proc/PID/stat: no kernel option needed). */
function children(pid: number): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number)
    .filter((child) => Number(statFields(`/proc/${child}/stat`)?.[1]) === pid);
}

/** Starts gunicorn with `workers` sync workers on `manifest` (a whole-image style). */
export async function startFlask(python: string, manifest: ModelManifest, workers: number): Promise<FlaskService> {
  if (manifest.role !== 'whole') throw new Error(`${manifest.id}: the Flask baseline runs whole-image styles only, not a ${manifest.role} model`);
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const child = spawn(python, ['-m', 'gunicorn', '--workers', String(workers), '--bind', `127.0.0.1:${port}`, '--chdir', APP_DIR, '--worker-tmp-dir', '/dev/shm', '--log-level', 'warning', 'app:app'], {
    // The manifest as privatoon validated and resolved it (absolute model path, defaults filled in).
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', BASELINE_MANIFEST_JSON: JSON.stringify(manifest), PYTHONDONTWRITEBYTECODE: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let output = '';
  const keep = (d: Buffer) => (output = (output + d.toString()).slice(-8000));
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const alive = () => child.exitCode === null && child.signalCode === null;
  let spawnError: Error | undefined;
  child.once('error', (err) => (spawnError = err));
  const killGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, signal);
    } catch {
      // already gone
    }
  };
  const onExit = () => killGroup('SIGKILL');
  process.on('exit', onExit);
  const cpuOf = (fields: string[] | undefined, withChildren: boolean) =>
    fields === undefined ? 0 : Number(fields[11]) + Number(fields[12]) + (withChildren ? Number(fields[13]) + Number(fields[14]) : 0);

  try {
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (spawnError !== undefined) throw new Error(`${python} could not be started: ${spawnError.message}`);
      if (!alive()) throw new Error(`gunicorn exited (${child.exitCode ?? child.signalCode}):\n${output}`);
      const up = await fetch(`${base}/healthz`).then((r) => r.ok, () => false);
      // Every worker up: the master forks them one by one, and the first request must not wait for the last.
      if (up && children(child.pid!).length >= workers) break;
      if (Date.now() > deadline) throw new Error(`gunicorn did not answer /healthz with ${workers} workers within 60 s:\n${output}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  } catch (err) {
    killGroup('SIGKILL');
    if (spawnError === undefined) await exited; // a process that never started has no exit to wait for
    process.off('exit', onExit);
    throw err;
  }

  return {
    base,
    pid: child.pid!,
    // The master's own time, its live workers', and (cutime, cstime) that of workers it has reaped.
    cpuSeconds: () => (cpuOf(statFields(`/proc/${child.pid!}/stat`), true) + children(child.pid!).reduce((sum, pid) => sum + cpuOf(statFields(`/proc/${pid}/stat`), false), 0)) / TICKS_PER_S,
    async stop() {
      if (alive()) {
        killGroup('SIGTERM');
        const timer = setTimeout(() => killGroup('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      killGroup('SIGKILL'); // workers the master left behind, if any
      process.off('exit', onExit);
    },
  };
}
