/**
 * CPU time of the service, from /proc (Linux): the whole process, and its main thread (the one that runs HTTP).
 * Per request, these tell where the cores went: the workers' pipeline, the main thread, or elsewhere on the machine.
 */
import { readFileSync } from 'node:fs';

/** Kernel clock ticks per second (USER_HZ): 100 on every Linux architecture Node supports. */
export const TICKS_PER_S = 100;

/**
 * The fields of a /proc/.../stat file after the command name (which is in parentheses and may hold spaces), or
 * undefined when it cannot be read: state is [0], ppid [1], minflt [7], utime [11], stime [12], cutime [13],
 * cstime [14], nice [16].
 */
export function statFields(path: string): string[] | undefined {
  try {
    const stat = readFileSync(path, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

function ticks(path: string): number {
  const fields = statFields(path);
  return fields === undefined ? NaN : Number(fields[11]) + Number(fields[12]);
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
