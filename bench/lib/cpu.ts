/**
 * CPU time of the service, from /proc (Linux): the whole process, and its main thread (the one that runs HTTP), with
 * the time that thread waited for a core; and the machine's own counters, for the share its hypervisor took (steal).
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
  /**
   * Seconds the main thread has spent runnable but waiting for a core (NaN when the kernel keeps no such count).
   * Between two readings it says how much of the event loop's latency was the scheduler's: the loop had work and no
   * core to do it on.
   */
  mainRunQueueWait: number;
}

/**
 * The run-queue wait in a /proc/.../schedstat file ("time on a core, time waiting on a run queue, timeslices", in ns),
 * in seconds; NaN when the file is missing or the kernel does not count (it then prints zeros: a thread that has run
 * has a non-zero first field).
 */
export function parseSchedstat(text: string): number {
  const [onCore, waiting] = text.trim().split(/\s+/).map(Number);
  if (onCore === undefined || waiting === undefined || !(onCore > 0) || !Number.isFinite(waiting)) return NaN;
  return waiting / 1e9;
}

function runQueueSeconds(path: string): number {
  try {
    return parseSchedstat(readFileSync(path, 'utf8'));
  } catch {
    return NaN;
  }
}

export function readCpu(pid: number): CpuReading {
  return {
    process: ticks(`/proc/${pid}/stat`) / TICKS_PER_S,
    main: ticks(`/proc/${pid}/task/${pid}/stat`) / TICKS_PER_S,
    mainRunQueueWait: runQueueSeconds(`/proc/${pid}/task/${pid}/schedstat`),
  };
}

/** The machine's CPU time from /proc/stat's first line, in ticks: all of it, and what the hypervisor took (steal). */
export interface HostReading {
  total: number;
  steal: number;
}

/**
 * Parses /proc/stat's aggregate `cpu` line (user nice system idle iowait irq softirq steal ...; guest time is already
 * inside user and nice, so it is not added again). Undefined when the line is missing, too short to hold steal, or
 * not numbers.
 */
export function parseHostStat(text: string): HostReading | undefined {
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  if (line === undefined) return undefined;
  const fields = line.trim().split(/\s+/).slice(1, 9).map(Number);
  if (fields.length < 8 || fields.some((v) => !Number.isFinite(v))) return undefined;
  return { total: fields.reduce((a, b) => a + b, 0), steal: fields[7]! };
}

export function readHost(): HostReading | undefined {
  try {
    return parseHostStat(readFileSync('/proc/stat', 'utf8'));
  } catch {
    return undefined;
  }
}

/**
 * Host steal above which a row is the host's noise as much as the code's figure: at 5% of two cores a thread loses a
 * few milliseconds several times a second, the size of the latency targets themselves. The benches mark such rows.
 */
export const STEAL_NOISE = 0.05;

/**
 * The share of the machine's CPU time that its hypervisor gave to other guests between two readings (0..1; NaN when
 * unknown). On a shared VM this is the noise behind every figure of a row: a vCPU taken away for a few milliseconds
 * stalls whatever thread was on it, and no setting inside the guest can win that back.
 */
export function stealShare(before: HostReading | undefined, after: HostReading | undefined): number {
  if (before === undefined || after === undefined || after.total <= before.total) return NaN;
  return (after.steal - before.steal) / (after.total - before.total);
}
