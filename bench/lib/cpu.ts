/**
 * CPU time of the service, from /proc (Linux): the whole process, and its main thread (the one that runs HTTP).
 * Per request, these tell where the cores went: the workers' pipeline, the main thread, or elsewhere on the machine.
 */
import { readFileSync } from 'node:fs';

/** Kernel clock ticks per second (USER_HZ): 100 on every Linux architecture Node supports. */
const TICKS_PER_S = 100;

function ticks(path: string): number {
  try {
    const stat = readFileSync(path, 'utf8');
    // Fields after the command name, which is in parentheses and may hold spaces: utime is 14th, stime 15th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return NaN;
  }
}

export interface CpuReading {
  /** CPU seconds of the whole process (every thread). */
  process: number;
  /** CPU seconds of the main thread. */
  main: number;
}

export function readCpu(pid: number): CpuReading {
  return { process: ticks(`/proc/${pid}/stat`) / TICKS_PER_S, main: ticks(`/proc/${pid}/task/${pid}/stat`) / TICKS_PER_S };
}
