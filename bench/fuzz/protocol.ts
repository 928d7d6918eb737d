/** The messages between the fuzz supervisor and its child process (Node IPC, advanced serialisation). Types only. */
import type { Limits, Stage } from './pipeline.js';

/** Test-only faults, to prove the supervisor sees what it must: the child aborts, spins, throws or bloats at these cases. */
export interface Inject {
  crashAt?: readonly number[];
  hangAt?: readonly number[];
  throwAt?: readonly number[];
  /** Touches this many MiB during the case. */
  bloat?: { at: readonly number[]; mib: number };
}

export type ToChild =
  | { type: 'start'; runSeed: number; limits: Limits; inject?: Inject | undefined }
  /** Runs cases from, from + step, ... below to; one 'case' message each (after an 'announce' when asked), then 'batch-done'. */
  | { type: 'run'; from: number; to: number; step: number; announce?: boolean }
  /** Builds a case without running it: its seed, its mutations and (when asked) its bytes. */
  | { type: 'describe'; index: number; bytes: boolean };

export type RawOutcome = 'ok' | 'coded' | 'uncoded';

export interface CaseMessage {
  type: 'case';
  index: number;
  outcome: RawOutcome;
  /** ImageInputError's code, for coded outcomes. */
  code?: string | undefined;
  stage: Stage;
  ms: number;
  /** The error's name and first line, for uncoded outcomes. */
  message?: string | undefined;
  seed: string;
  mutations: string[];
  /** The child's RSS before the case and its peak during it (VmHWM, reset before each case), bytes. */
  rssBefore: number;
  rssPeak: number;
}

export type FromChild =
  | { type: 'ready'; seeds: string[]; rss: number }
  | CaseMessage
  | { type: 'batch-done'; rss: number }
  /** A case about to run: what it is, known to the supervisor even if it never ends. */
  | { type: 'announce'; index: number; seed: string; mutations: string[] }
  | { type: 'described'; index: number; seed: string; mutations: string[]; bytes?: Uint8Array | undefined };
