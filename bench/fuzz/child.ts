/**
 * The fuzz child: builds the seed corpus, then runs the cases the supervisor names, one at a time, and reports each
 * before starting the next (the report is flushed to the pipe first, so when this process dies the supervisor knows
 * exactly which case killed it). Mutated bytes live in memory only.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { ImageInputError } from '../../workers/image.js';
import { makeCase } from './cases.js';
import { imagePath, type Limits, type Stage } from './pipeline.js';
import type { CaseMessage, FromChild, Inject, ToChild } from './protocol.js';
import { seedCorpus, type Seed } from './seeds.js';

const send = (message: FromChild) => new Promise<void>((resolve, reject) => process.send!(message, undefined, {}, (err) => (err ? reject(err) : resolve())));

/**
 * Peak RSS per case: Linux resets a process's high-water mark (VmHWM) when "5" is written to /proc/self/clear_refs
 * (procfs, not a file on disk), so the mark read after a case is that case's own peak. Elsewhere the mark is
 * getrusage's, for the whole life of the process.
 */
let canReset = true;
function resetPeak(): void {
  if (!canReset) return;
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    canReset = false;
  }
}
function peakRss(): number {
  try {
    const kib = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
    if (kib !== undefined) return Number(kib) * 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS * 1024;
}

let corpus: Seed[] = [];
let runSeed = 0;
let limits: Limits = { maxInputPixels: 0, maxOutputSide: 0 };
let inject: Inject = {};

async function runCase(index: number, announce: boolean): Promise<CaseMessage> {
  const fuzzCase = makeCase(corpus, runSeed, index);
  if (announce) await send({ type: 'announce', index, seed: fuzzCase.seed, mutations: fuzzCase.mutations });
  const stage: { at: Stage } = { at: 'probe' };
  const rssBefore = process.memoryUsage.rss();
  resetPeak();
  const started = performance.now();
  let outcome: CaseMessage['outcome'] = 'ok';
  let code: string | undefined;
  let message: string | undefined;
  try {
    if (inject.crashAt?.includes(index)) process.abort();
    if (inject.hangAt?.includes(index)) for (;;);
    if (inject.throwAt?.includes(index)) throw new TypeError('injected fault');
    if (inject.bloat?.at.includes(index)) Buffer.alloc(inject.bloat.mib * 2 ** 20, 1);
    await imagePath(fuzzCase.bytes, fuzzCase.request, limits, stage);
  } catch (err) {
    if (err instanceof ImageInputError) {
      outcome = 'coded';
      code = err.code;
    } else {
      outcome = 'uncoded';
      const e = err instanceof Error ? err : new Error(String(err));
      message = `${e.name}: ${e.message.split('\n')[0]!.slice(0, 300)}`;
    }
  }
  const ms = performance.now() - started;
  const rssPeak = peakRss();
  return { type: 'case', index, outcome, code, stage: stage.at, ms, message, seed: fuzzCase.seed, mutations: fuzzCase.mutations, rssBefore, rssPeak };
}

// One command at a time, in order: a 'describe' sent while a batch runs waits for it.
let queue = Promise.resolve();
process.on('message', (message: ToChild) => {
  queue = queue.then(() => handle(message)).catch((err: unknown) => {
    process.stderr.write(`fuzz child: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(70);
  });
});
process.on('disconnect', () => process.exit(0));

async function handle(message: ToChild): Promise<void> {
  switch (message.type) {
    case 'start':
      runSeed = message.runSeed;
      limits = message.limits;
      inject = message.inject ?? {};
      corpus = await seedCorpus();
      await send({ type: 'ready', seeds: corpus.map((s) => s.name), rss: process.memoryUsage.rss() });
      return;
    case 'run':
      for (let i = message.from; i < message.to; i += message.step) await send(await runCase(i, message.announce === true));
      await send({ type: 'batch-done', rss: process.memoryUsage.rss() });
      return;
    case 'describe': {
      const fuzzCase = makeCase(corpus, runSeed, message.index);
      await send({ type: 'described', index: message.index, seed: fuzzCase.seed, mutations: fuzzCase.mutations, bytes: message.bytes ? fuzzCase.bytes : undefined });
      return;
    }
  }
}
