/**
 * `npm run bench:fuzz`: a mutation fuzzer over the image path as a worker runs it (sniff, header probe with the
 * pixel limit, decode with limits, tensor packing, encode), in supervised child processes.
 *
 *   npm run bench:fuzz -- --cases 100000          # the README's run
 *   npm run bench:fuzz -- --seed 7 --jobs 2        # another sequence, two children
 *   npm run bench:fuzz -- --seed 1 --only 4242     # one case again, with its seed and mutations
 *   npm run bench:fuzz -- --only 4242 --save-dir /some/dir   # ... and its bytes in a file (off by default)
 *
 * Outcomes: ok, coded errors (the worker's PTOON_BAD_IMAGE, PTOON_TOO_MANY_PIXELS, PTOON_UNSUPPORTED_MEDIA: a 4xx answer), non-coded
 * errors (anything else thrown: a 500), hangs (a case over --hang-ms), memory findings (a case raising its child's RSS
 * by more than --memory-mib) and crashes (the child died). Mutated bytes
 * stay in memory unless --save-dir names a folder. Limits are the service's (MAX_INPUT_PIXELS, MAX_OUTPUT_SIDE from
 * the environment, else their defaults). Exit code 1 on a non-coded error, or a crash, hang or memory finding that happens again alone.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../config.js';
import { sniffFormat } from '../contract.js';
import { list, num, readFlags } from './lib/args.js';
import { machineLine } from './lib/machine.js';
import { failures, findingLines, memoryLine, mutatorTable, stageTable, summaryTable } from './fuzz/report.js';
import { describeCases, isFinding, outcomeKey, rerunAlone, runFuzz, type FuzzOptions } from './fuzz/supervisor.js';
import { mib } from './lib/stats.js';

const COMMAND = 'npm run bench:fuzz --';

const flags = readFlags(`${COMMAND} [flags]`, {
  cases: { default: '10000', help: 'how many cases' },
  seed: { default: '1', help: 'run seed: with the case index, it decides every case' },
  first: { default: '0', help: 'index of the first case (to continue a run)' },
  jobs: { default: '1', help: 'child processes running cases side by side' },
  'hang-ms': { default: '2000', help: 'a case slower than this is a hang' },
  'kill-ms': { default: '10000', help: 'a case still running after this is killed with its child' },
  'memory-mib': { default: '512', help: "a case that raises its child's RSS by more than this is a memory finding" },
  only: { default: '', help: 'comma list of case indices: run just these, alone, and describe them' },
  'save-dir': { default: '', help: 'write the bytes of --only cases and of findings there (off: no image bytes on disk)' },
});

async function save(options: FuzzOptions, dir: string, indices: readonly number[]): Promise<void> {
  if (dir === '' || indices.length === 0) return;
  mkdirSync(dir, { recursive: true });
  for (const d of await describeCases(options, indices, true)) {
    const sniffed = sniffFormat(d.bytes!);
    const file = join(dir, `fuzz-seed${options.runSeed}-case${d.index}.${sniffed.ok ? sniffed.format : 'bin'}`);
    writeFileSync(file, d.bytes!);
    console.log(`saved ${file}`);
  }
}

async function main(): Promise<number> {
  const config = loadConfig(process.env);
  const options: FuzzOptions = {
    runSeed: num(flags.seed, 'seed'),
    cases: num(flags.cases, 'cases'),
    first: num(flags.first, 'first'),
    jobs: Math.max(1, num(flags.jobs, 'jobs')),
    limits: { maxInputPixels: config.pool.maxInputPixels, maxOutputSide: config.pool.maxOutputSide },
    hangMs: num(flags['hang-ms'], 'hang-ms'),
    killMs: num(flags['kill-ms'], 'kill-ms'),
    memoryBytes: num(flags['memory-mib'], 'memory-mib') * 2 ** 20,
    progressMs: 10_000,
    onProgress: (done, tally) =>
      process.stderr.write(`${done} cases, ${tally.findings.length} findings, child peak RSS ${mib(tally.peakRss)} MiB\n`),
  };
  const saveDir = flags['save-dir'];

  if (flags.only !== '') {
    const indices = list(flags.only).map((v) => num(v, 'only'));
    let bad = 0;
    for (const index of indices) {
      const r = await rerunAlone(options, index);
      if (isFinding(r)) bad++;
      console.log(`case ${index} (seed ${options.runSeed}): ${r.seed} + [${r.mutations.join(', ')}]: ${outcomeKey(r)} at ${r.stage ?? '-'} in ${r.ms.toFixed(1)} ms${r.detail ? `: ${r.detail}` : ''}; child RSS ${mib(r.readyRss)} MiB after the seeds, +${mib(r.rssGrowth ?? NaN)} MiB during the case`);
    }
    await save(options, saveDir, indices);
    return bad > 0 ? 1 : 0;
  }

  process.stderr.write(`fuzzing ${options.cases} cases from ${options.first} with seed ${options.runSeed}, ${options.jobs} child(ren)...\n`);
  const report = await runFuzz(options);
  console.log(`Machine: ${machineLine()}`);
  console.log(`Seeds: ${report.seeds.length} images encoded at start (${report.seeds.join('; ')}).`);
  console.log(
    `\nFuzz run: seed ${report.runSeed}, cases ${report.first}..${report.first + report.cases - 1}, ${report.jobs} child process(es), ` +
      `MAX_INPUT_PIXELS ${options.limits.maxInputPixels}, MAX_OUTPUT_SIDE ${options.limits.maxOutputSide}, ${report.seconds.toFixed(0)} s, ` +
      `${report.childStarts} child start(s).\n`,
  );
  console.log(summaryTable(report));
  console.log(`\n${memoryLine(report)}\n`);
  console.log(stageTable(report));
  console.log('');
  console.log(mutatorTable(report));
  console.log(`\nFindings:\n${findingLines(report, COMMAND)}`);
  await save(options, saveDir, report.findings.map((f) => f.index));
  return failures(report).length > 0 ? 1 : 0;
}

process.exitCode = await main();
