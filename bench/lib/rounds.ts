/**
 * How `npm run bench:flask` compares two services measured in turns: per round, the ratio of their requests a second
 * (what the issue asks for) and of their CPU a request (the capacity each would have on cores of its own), and whether
 * the round is clean, meaning both of its rows ran with host steal at or below STEAL_NOISE (bench/lib/cpu.ts). On a
 * busy shared VM the requests-a-second ratio moves with whichever row the host took more from; the CPU ratio moves
 * far less, since stolen time is counted as neither service's CPU.
 */
import { STEAL_NOISE } from './cpu.js';
import { summarize } from './stats.js';

/** One measured row: its requests a second, service CPU a request (ms) and host steal (0..1, NaN when unknown). */
export interface RoundSide {
  perSecond: number;
  cpuPerRequest: number;
  hostSteal: number;
}

export interface RoundComparison {
  /** ours / theirs in requests a second. */
  ratio: number;
  /** theirs / ours in CPU a request: above 1, ours costs less. */
  cpuRatio: number;
  /** Both rows had host steal at or below the noise line (an unknown steal is not clean). */
  clean: boolean;
}

export function compareRound(ours: RoundSide, theirs: RoundSide, noise = STEAL_NOISE): RoundComparison {
  return {
    ratio: ours.perSecond / theirs.perSecond,
    cpuRatio: theirs.cpuPerRequest / ours.cpuPerRequest,
    clean: ours.hostSteal <= noise && theirs.hostSteal <= noise,
  };
}

/**
 * Medians of the ratios: over every round, over the clean ones, and of the CPU ratios; a ratio that could not be
 * measured (NaN or infinite: a row without one answer, or unreadable counters) is left out, and no ratio gives NaN.
 */
export function summarizeRounds(rounds: readonly RoundComparison[]): { ratio: number; cleanRatio: number; cleanRounds: number; cpuRatio: number } {
  const median = (values: number[]) => summarize(values.filter(Number.isFinite)).p50; // NaN when there are none
  const clean = rounds.filter((r) => r.clean);
  return {
    ratio: median(rounds.map((r) => r.ratio)),
    cleanRatio: median(clean.map((r) => r.ratio)),
    cleanRounds: clean.length,
    cpuRatio: median(rounds.map((r) => r.cpuRatio)),
  };
}
