/**
 * The Flask + OpenCV service of issue #12 (bench/flask/app.py) under gunicorn, started beside privatoon so the two
 * are measured in the same minutes on the same model: a machine whose speed drifts then moves both alike.
 * Needs a Python with cv2, flask and gunicorn (Debian 12: `apt-get install python3-opencv python3-flask gunicorn`);
 * `FLASK_PYTHON` names one, else /usr/bin/python3 and then python3 on the PATH are tried.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../paths.js';
import { freePort } from './server.js';

export interface FlaskService {
  base: string;
  /** The gunicorn master; its workers are its children. */
  pid: number;
  /** CPU seconds of the master and its workers so far. */
  cpuSeconds(): number;
  stop(): Promise<void>;
}

const APP_DIR = join(PROJECT_ROOT, 'bench', 'flask');

/** A Python that imports cv2, flask and gunicorn, or undefined; `why` says what was missing. */
export function findPython(): { python?: string; why: string } {
  const candidates = [process.env['FLASK_PYTHON'], '/usr/bin/python3', 'python3'].filter((p): p is string => p !== undefined && p !== '');
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

function ticks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

function children(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter((s) => s !== '').map(Number);
  } catch {
    return [];
  }
}

export async function startFlask(python: string, manifestFile: string, workers: number): Promise<FlaskService> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const child = spawn(python, ['-m', 'gunicorn', '--workers', String(workers), '--bind', `127.0.0.1:${port}`, '--chdir', APP_DIR, '--log-level', 'warning', 'app:app'], {
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', BASELINE_MANIFEST: manifestFile, PYTHONDONTWRITEBYTECODE: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-8000)));
  child.stderr.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-8000)));
  const kill = () => child.kill('SIGKILL');
  process.on('exit', kill);
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`gunicorn exited (${child.exitCode}):\n${output}`);
    const up = await fetch(`${base}/healthz`).then((r) => r.ok, () => false);
    // Every worker up: the master forks them one by one, and the first request must not wait for the last.
    if (up && children(child.pid!).length >= workers) break;
    if (Date.now() > deadline) {
      kill();
      throw new Error(`gunicorn did not answer /healthz within 60 s:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    base,
    pid: child.pid!,
    cpuSeconds: () => [child.pid!, ...children(child.pid!)].reduce((sum, pid) => sum + ticks(pid), 0) / 100,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(kill, 10_000);
      await exited;
      clearTimeout(timer);
      process.off('exit', kill);
    },
  };
}
