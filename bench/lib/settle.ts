/** Waiting helpers: sleep, and the service's steady RSS (median over a window, so one GC spike does not count). */
import { readRss } from './rss.js';

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export async function steadyRss(pid: number, windowMs = 1000, everyMs = 100): Promise<number> {
  const samples: number[] = [];
  for (let t = 0; t <= windowMs; t += everyMs) {
    const bytes = readRss(pid);
    if (Number.isFinite(bytes)) samples.push(bytes);
    await sleep(everyMs);
  }
  samples.sort((a, b) => a - b);
  return samples.length === 0 ? NaN : samples[Math.floor(samples.length / 2)]!;
}
