/**
 * Runs fuzz cases in child processes and watches them: a child that dies (a segfault or abort in libvips) is a
 * crash, recorded against the case it was running, and replaced; a case that runs past the hang limit is a hang
 * (past the kill limit, its child is killed and replaced); a case that raises its child's RSS past the memory limit
 * is a memory finding. Each of those is then run once more, alone, in a fresh child, to tell reproducible findings
 * from accidents of a loaded machine. `jobs` children share the cases (case i goes to child i mod jobs).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { PROJECT_ROOT, moduleFile } from '../../paths.js';
import { mib } from '../lib/stats.js';
import type { Limits, Stage } from './pipeline.js';
import type { CaseMessage, FromChild, Inject, RawOutcome, ToChild } from './protocol.js';

export type Outcome = RawOutcome | 'hang' | 'memory' | 'crash';

export interface CaseResult {
  index: number;
  outcome: Outcome;
  /** The coded error's code (also kept for hangs that ended in one). */
  code?: string | undefined;
  stage?: Stage | undefined;
  /** Time the case took; for a killed hang, the time until it was killed. */
  ms: number;
  /** The child's peak RSS during the case, and how far above its RSS before the case that was (bytes). */
  rssPeak?: number | undefined;
  rssGrowth?: number | undefined;
  /** Error message (non-coded), exit signal and stderr (crash), or what a slow case ended with (hang). */
  detail?: string | undefined;
  /** Unknown for crashes and killed hangs until the case is described again. */
  seed?: string | undefined;
  mutations?: string[] | undefined;
  /** Crashes, hangs and memory findings: whether running the case again alone, in a fresh child, did the same. */
  reproduced?: boolean | undefined;
}

export interface FuzzOptions {
  runSeed: number;
  /** Cases first .. first + cases - 1. */
  cases: number;
  first?: number;
  jobs: number;
  limits: Limits;
  /** A case slower than this is a hang (2 s). */
  hangMs: number;
  /** A case still running after this is killed with its child (the child is replaced). */
  killMs: number;
  /** A case that raises the child's RSS by more than this (bytes) is a memory finding. */
  memoryBytes: number;
  inject?: Inject;
  /** Called about every `progressMs` with the results so far. */
  onProgress?: (done: number, results: Readonly<Tally>) => void;
  progressMs?: number;
}

/** Running totals (every case) and the findings in full. */
export interface Tally {
  outcomes: Record<string, number>;
  /** Coded errors by where they happened ("PTOON_BAD_IMAGE at decode"). */
  codedByStage: Record<string, number>;
  /** Per mutator: cases it took part in, ok, reached the decoder, findings. */
  byMutator: Record<string, { cases: number; ok: number; decoded: number; findings: number }>;
  findings: CaseResult[];
  /** Case times, ms, in completion order. */
  times: number[];
  /** Peak RSS of any child, bytes; the case that raised its child's RSS the most. */
  peakRss: number;
  peakCase: CaseResult | undefined;
  /** The case that took longest. */
  slowestCase: CaseResult | undefined;
  /** RSS of each child right after building its corpus; RSS after each batch of cases (`done`: cases so far). */
  readyRss: number[];
  rssSamples: { done: number; rss: number }[];
  childStarts: number;
  seeds: string[];
}

export interface FuzzReport extends Tally {
  runSeed: number;
  cases: number;
  first: number;
  jobs: number;
  seconds: number;
  hangMs: number;
  memoryBytes: number;
}

const CHILD = moduleFile('bench/fuzz/child');

/** Outcome keys as the tables print them. */
export function outcomeKey(r: Pick<CaseResult, 'outcome' | 'code'>): string {
  return r.outcome === 'coded' ? `coded ${r.code}` : r.outcome === 'uncoded' ? 'non-coded' : r.outcome;
}

/** One child process and the conversation with it. */
class Child {
  readonly process: ChildProcess;
  private readonly listeners = new Set<(m: FromChild) => void>();
  private stderr = '';
  readonly exited: Promise<string>;

  constructor(start: Extract<ToChild, { type: 'start' }>) {
    // NODE_OPTIONS dropped: a test runner's hooks (tap's process-info writes a file at exit) stay out of the child.
    const { NODE_OPTIONS: _, ...env } = process.env;
    this.process = fork(CHILD, [], {
      cwd: PROJECT_ROOT,
      execArgv: CHILD.endsWith('.ts') ? ['--import', 'tsx'] : [],
      env,
      serialization: 'advanced',
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    this.process.stderr!.on('data', (chunk: Buffer) => (this.stderr = (this.stderr + chunk.toString('utf8')).slice(-2000)));
    this.process.on('message', (m: FromChild) => {
      for (const listener of this.listeners) listener(m);
    });
    this.process.on('error', () => {}); // a send to a dead child: its 'exit' tells the story
    this.exited = new Promise((resolve) =>
      this.process.once('exit', (code, signal) => resolve(`${signal !== null ? `killed by ${signal}` : `exit code ${code}`}${this.stderr.trim() === '' ? '' : `: ${this.stderr.trim().split('\n').slice(-3).join(' | ')}`}`)),
    );
    this.send(start);
  }

  send(message: ToChild): void {
    if (this.process.connected) this.process.send(message);
  }

  on(listener: (m: FromChild) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves with the first message `pick` accepts, or rejects when the child dies first. */
  next<T>(pick: (m: FromChild) => T | undefined): Promise<T> {
    return new Promise((resolve, reject) => {
      const off = this.on((m) => {
        const value = pick(m);
        if (value !== undefined) {
          off();
          resolve(value);
        }
      });
      void this.exited.then((why) => {
        off();
        reject(new Error(`fuzz child ended: ${why}`));
      });
    });
  }

  async stop(): Promise<void> {
    if (this.process.exitCode === null && this.process.signalCode === null) {
      this.process.disconnect();
      const timer = setTimeout(() => this.process.kill('SIGKILL'), 5000);
      await this.exited;
      clearTimeout(timer);
    }
  }
}

export function emptyTally(): Tally {
  return { outcomes: {}, codedByStage: {}, byMutator: {}, findings: [], times: [], peakRss: 0, peakCase: undefined, slowestCase: undefined, readyRss: [], rssSamples: [], childStarts: 0, seeds: [] };
}

function record(tally: Tally, result: CaseResult): void {
  const key = outcomeKey(result);
  tally.outcomes[key] = (tally.outcomes[key] ?? 0) + 1;
  if (result.outcome === 'coded') {
    const where = `${result.code} at ${result.stage}`;
    tally.codedByStage[where] = (tally.codedByStage[where] ?? 0) + 1;
  }
  tally.times.push(result.ms);
  if (result.ms > (tally.slowestCase?.ms ?? -Infinity)) tally.slowestCase = result;
  if (result.rssPeak !== undefined) tally.peakRss = Math.max(tally.peakRss, result.rssPeak);
  if (result.rssGrowth !== undefined && result.rssGrowth > (tally.peakCase?.rssGrowth ?? -Infinity)) tally.peakCase = result;
  const finding = isFinding(result);
  if (finding) tally.findings.push(result);
  for (const name of new Set(result.mutations?.length === 0 ? ['(none: seed as is)'] : (result.mutations ?? []))) {
    const m = (tally.byMutator[name] ??= { cases: 0, ok: 0, decoded: 0, findings: 0 });
    m.cases++;
    if (result.outcome === 'ok') m.ok++;
    if (result.stage !== undefined && result.stage !== 'probe') m.decoded++;
    if (finding) m.findings++;
  }
}

export const isFinding = (r: Pick<CaseResult, 'outcome'>) => r.outcome !== 'ok' && r.outcome !== 'coded';

/** A case message as a result: slower than the hang limit makes it a hang, hungrier than the memory limit a memory finding. */
function fromMessage(m: CaseMessage, options: Pick<FuzzOptions, 'hangMs' | 'memoryBytes'>): CaseResult {
  const rssGrowth = m.rssPeak - m.rssBefore;
  const base = { index: m.index, ms: m.ms, stage: m.stage, seed: m.seed, mutations: m.mutations, code: m.code, rssPeak: m.rssPeak, rssGrowth };
  const ended = m.outcome === 'coded' ? `coded ${m.code}` : m.outcome === 'uncoded' ? m.message : 'ok';
  if (m.ms > options.hangMs) return { ...base, outcome: 'hang', detail: `took ${m.ms.toFixed(0)} ms, then ${ended}` };
  if (rssGrowth > options.memoryBytes) return { ...base, outcome: 'memory', detail: `raised the child's RSS by ${mib(rssGrowth)} MiB (to ${mib(m.rssPeak)} MiB) in ${m.ms.toFixed(0)} ms, then ${ended}` };
  return { ...base, outcome: m.outcome, detail: m.message };
}

interface LaneContext {
  options: FuzzOptions;
  start: Extract<ToChild, { type: 'start' }>;
  onResult: (result: CaseResult) => void;
  /** A child is ready (its RSS after building the corpus, its seed names). */
  onReady: (rss: number, seeds: string[]) => void;
  /** A child's RSS after a batch of cases. */
  onBatch: (rss: number) => void;
  /** When set, the child announces each case before running it (for reruns: a crash is then described too). */
  onAnnounce?: (index: number, seed: string, mutations: string[]) => void;
}

/** Cases from, from + step, ... below to, through one child at a time; crashes and hangs replace the child. */
async function runLane(ctx: LaneContext, from: number, to: number, step: number): Promise<void> {
  const { options } = ctx;
  const batch = 200;
  let next = from;
  let child: Child | undefined;
  try {
    while (next < to) {
      if (child === undefined) {
        child = new Child(ctx.start);
        const ready = await child.next((m) => (m.type === 'ready' ? m : undefined));
        ctx.onReady(ready.rss, ready.seeds);
      }
      const current: Child = child;
      const batchEnd = Math.min(to, next + batch * step);
      const outcome = await new Promise<'done' | 'died' | 'killed'>((resolve) => {
        let caseStarted = performance.now();
        const finish = (how: 'done' | 'died' | 'killed') => {
          clearInterval(watchdog);
          off();
          resolve(how);
        };
        const watchdog = setInterval(() => {
          if (performance.now() - caseStarted > options.killMs) {
            current.process.kill('SIGKILL');
            finish('killed');
          }
        }, Math.min(250, options.killMs / 4));
        const off = current.on((m) => {
          if (m.type === 'case') {
            next = m.index + step;
            caseStarted = performance.now();
            ctx.onResult(fromMessage(m, options));
          } else if (m.type === 'announce') {
            ctx.onAnnounce?.(m.index, m.seed, m.mutations);
          } else if (m.type === 'batch-done') {
            ctx.onBatch(m.rss);
            finish('done');
          }
        });
        void current.exited.then(() => finish('died'));
        current.send({ type: 'run', from: next, to: batchEnd, step, announce: ctx.onAnnounce !== undefined });
      });
      if (outcome === 'done') continue;
      const why = await current.exited;
      ctx.onResult({
        index: next,
        outcome: outcome === 'killed' ? 'hang' : 'crash',
        ms: outcome === 'killed' ? options.killMs : NaN,
        detail: outcome === 'killed' ? `still running after ${options.killMs} ms: child killed` : why,
      });
      next += step;
      child = undefined;
    }
  } finally {
    await child?.stop();
  }
}

/** Runs one case alone in a fresh child, with its description: does it crash or hang again? */
export async function rerunAlone(options: FuzzOptions, index: number): Promise<CaseResult & { seed: string; mutations: string[]; readyRss: number }> {
  let result: CaseResult = { index, outcome: 'crash', ms: NaN, detail: 'no result' };
  let described = { seed: '?', mutations: [] as string[] };
  let readyRss = NaN;
  const start: Extract<ToChild, { type: 'start' }> = { type: 'start', runSeed: options.runSeed, limits: options.limits, inject: options.inject };
  await runLane(
    {
      options,
      start,
      onResult: (r) => (result = r),
      onReady: (rss) => (readyRss = rss),
      onBatch: () => {},
      onAnnounce: (_, seed, mutations) => (described = { seed, mutations }),
    },
    index,
    index + 1,
    1,
  );
  return { ...result, ...described, readyRss };
}

/** The seeds and mutations of some cases (and their bytes, when asked), from a child that runs none of them. */
export async function describeCases(
  options: Pick<FuzzOptions, 'runSeed' | 'limits'>,
  indices: readonly number[],
  withBytes = false,
): Promise<{ index: number; seed: string; mutations: string[]; bytes?: Uint8Array | undefined }[]> {
  const child = new Child({ type: 'start', runSeed: options.runSeed, limits: options.limits });
  try {
    await child.next((m) => (m.type === 'ready' ? m : undefined));
    const out = [];
    for (const index of indices) {
      const answer = child.next((m) => (m.type === 'described' && m.index === index ? m : undefined));
      child.send({ type: 'describe', index, bytes: withBytes });
      const d = await answer;
      out.push({ index, seed: d.seed, mutations: d.mutations, bytes: d.bytes });
    }
    return out;
  } finally {
    await child.stop();
  }
}

export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const first = options.first ?? 0;
  const jobs = Math.max(1, Math.min(options.jobs, options.cases));
  const tally = emptyTally();
  const start: Extract<ToChild, { type: 'start' }> = { type: 'start', runSeed: options.runSeed, limits: options.limits, inject: options.inject };
  const began = performance.now();
  let done = 0;
  let lastProgress = began;
  const onCase = () => {
    done++;
    const now = performance.now();
    if (options.onProgress !== undefined && now - lastProgress >= (options.progressMs ?? 5000)) {
      lastProgress = now;
      options.onProgress(done, tally);
    }
  };
  const end = first + options.cases;
  const ctx: LaneContext = {
    options,
    start,
    onResult: (result) => {
      record(tally, result);
      onCase();
    },
    onReady: (rss, seeds) => {
      tally.childStarts++;
      tally.readyRss.push(rss);
      if (tally.seeds.length === 0) tally.seeds = seeds;
    },
    onBatch: (rss) => tally.rssSamples.push({ done, rss }),
  };
  await Promise.all(Array.from({ length: jobs }, (_, lane) => runLane(ctx, first + lane, end, jobs)));
  const seconds = (performance.now() - began) / 1000;

  // Crashes, hangs and memory findings: which seed and mutations they were, and whether they happen again alone.
  for (const finding of tally.findings) {
    if (finding.outcome === 'uncoded') continue; // its message says it all, and it is never an accident of load
    const again = await rerunAlone(options, finding.index);
    if (finding.mutations === undefined) {
      for (const name of new Set(again.mutations)) {
        const m = (tally.byMutator[name] ??= { cases: 0, ok: 0, decoded: 0, findings: 0 });
        m.cases++;
        m.findings++;
      }
    }
    finding.seed = again.seed;
    finding.mutations = again.mutations;
    finding.reproduced = again.outcome === finding.outcome;
    if (!finding.reproduced) finding.detail = `${finding.detail}; alone: ${outcomeKey(again)} in ${again.ms.toFixed(0)} ms`;
  }
  return { ...tally, runSeed: options.runSeed, cases: options.cases, first, jobs, seconds, hangMs: options.hangMs, memoryBytes: options.memoryBytes };
}
