/**
 * The service's resident memory, read from /proc/<pid>/status (VmRSS: the process with all its worker threads)
 * every `intervalMs` (100 ms). Linux only; elsewhere the samples are empty and the run says so.
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

export interface RssSample {
  /** performance.now() */
  at: number;
  bytes: number;
}

/** VmRSS of a process in bytes, or NaN when it cannot be read (gone, not Linux). */
export function readRss(pid: number): number {
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match?.[1] === undefined ? NaN : Number(match[1]) * 1024;
  } catch {
    return NaN;
  }
}

export interface RssSampler {
  samples: RssSample[];
  /** The highest sample so far. */
  peak(): number;
  /** The highest sample between two performance.now() times. */
  peakBetween(from: number, to: number): number;
  stop(): RssSample[];
}

export function sampleRss(pid: number, intervalMs = 100): RssSampler {
  const samples: RssSample[] = [];
  const take = () => {
    const bytes = readRss(pid);
    if (Number.isFinite(bytes)) samples.push({ at: performance.now(), bytes });
  };
  take();
  const timer = setInterval(take, intervalMs);
  const peakOf = (list: RssSample[]) => (list.length === 0 ? NaN : list.reduce((m, s) => Math.max(m, s.bytes), 0));
  return {
    samples,
    peak: () => samples.reduce((m, s) => Math.max(m, s.bytes), 0),
    peakBetween: (from, to) => peakOf(samples.filter((s) => s.at >= from && s.at <= to)),
    stop() {
      clearInterval(timer);
      take();
      return samples;
    },
  };
}
