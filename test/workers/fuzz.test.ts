/**
 * The image-path fuzzer (bench/fuzz): its containers parse and rebuild the seeds byte for byte, its cases are a
 * function of (seed, index), its supervisor records crashes, hangs and non-coded errors against the case that
 * caused them (proved with injected faults), and a short seeded run over the worker's real image path finds none.
 * The long run is `npm run bench:fuzz -- --cases 100000`.
 */
import t from 'tap';
import { loadConfig } from '../../config.js';
import { makeCase } from '../../bench/fuzz/cases.js';
import { parseJpeg, parsePng, parseWebp, serializePng, serializeWebp, concat } from '../../bench/fuzz/formats.js';
import { FORMAT_MUTATORS } from '../../bench/fuzz/mutators.js';
import { Random } from '../../bench/fuzz/random.js';
import { failures, findingLines, summaryTable } from '../../bench/fuzz/report.js';
import { seedCorpus } from '../../bench/fuzz/seeds.js';
import { runFuzz, type FuzzOptions } from '../../bench/fuzz/supervisor.js';

const config = loadConfig({});
const base: FuzzOptions = {
  runSeed: 1,
  cases: 0,
  jobs: 1,
  limits: { maxInputPixels: config.pool.maxInputPixels, maxOutputSide: config.pool.maxOutputSide },
  hangMs: 2000,
  killMs: 10_000,
  memoryBytes: 512 * 2 ** 20,
};

const corpus = await seedCorpus();

t.test('the container parsers rebuild every seed byte for byte', async (t) => {
  for (const seed of corpus) {
    if (seed.format === 'jpeg') {
      const parts = parseJpeg(seed.bytes);
      if (seed.name.includes('corrupt')) continue; // magic then noise: nothing to frame
      t.ok(parts, `${seed.name}: parses`);
      t.same(concat(parts!.map((p) => p.bytes)), seed.bytes, `${seed.name}: rebuilt`);
    } else if (seed.format === 'png') {
      const chunks = parsePng(seed.bytes);
      t.ok(chunks, `${seed.name}: parses`);
      t.same(serializePng(chunks!), seed.bytes, `${seed.name}: rebuilt with recomputed CRCs`);
    } else {
      const chunks = parseWebp(seed.bytes);
      t.ok(chunks, `${seed.name}: parses`);
      t.same(serializeWebp(chunks!), seed.bytes, `${seed.name}: rebuilt`);
    }
  }
});

t.test('structure-aware mutators change the seeds of their format', async (t) => {
  const donors = corpus.map((s) => s.bytes);
  for (const [format, mutators] of Object.entries(FORMAT_MUTATORS)) {
    const seeds = corpus.filter((s) => s.format === format && !s.name.includes('corrupt'));
    for (const mutator of new Set(mutators)) {
      let changed = 0;
      for (let i = 0; i < 20; i++) {
        const seed = seeds[i % seeds.length]!;
        const out = mutator.apply(seed.bytes, new Random(i), donors);
        if (out !== undefined && Buffer.compare(Buffer.from(out), Buffer.from(seed.bytes)) !== 0) changed++;
      }
      t.ok(changed >= 5, `${mutator.name}: changed ${changed} of 20 ${format} seeds`);
    }
  }
});

t.test('a case is a function of (run seed, index) alone', async (t) => {
  const a = makeCase(corpus, 7, 1234);
  const b = makeCase(corpus, 7, 1234);
  t.same(a.bytes, b.bytes);
  t.same(a.mutations, b.mutations);
  t.same(a.request, b.request);
  t.notSame(makeCase(corpus, 7, 1235).bytes, a.bytes, 'the next index is another case');
  t.notSame(makeCase(corpus, 8, 1234).bytes, a.bytes, 'another run seed is another sequence');
});

t.test('the supervisor records injected crashes, hangs, non-coded errors and memory bloat against their cases and carries on', async (t) => {
  const report = await runFuzz({
    ...base,
    cases: 30,
    hangMs: 1000,
    killMs: 1500,
    memoryBytes: 96 * 2 ** 20,
    inject: { crashAt: [5], hangAt: [12], throwAt: [20], bloat: { at: [25], mib: 160 } },
  });
  const total = Object.values(report.outcomes).reduce((a, b) => a + b, 0);
  t.equal(total, 30, 'every case has an outcome');
  const byIndex = new Map(report.findings.map((f) => [f.index, f]));
  t.equal(byIndex.get(5)?.outcome, 'crash', 'case 5 crashed its child');
  t.match(byIndex.get(5)?.detail, /SIGABRT/, 'the signal is named');
  t.equal(byIndex.get(5)?.reproduced, true, 'and crashes again alone');
  t.ok(byIndex.get(5)?.seed, 'the crashing case is described (seed and mutations)');
  t.equal(byIndex.get(12)?.outcome, 'hang', 'case 12 hung and was killed');
  t.equal(byIndex.get(12)?.reproduced, true, 'and hangs again alone');
  t.equal(byIndex.get(20)?.outcome, 'uncoded', 'case 20 threw a non-coded error');
  t.match(byIndex.get(20)?.detail, /TypeError: injected fault/);
  t.equal(byIndex.get(25)?.outcome, 'memory', 'case 25 raised its child\'s RSS past the limit');
  t.ok((byIndex.get(25)?.rssGrowth ?? 0) >= 150 * 2 ** 20, `by ${byIndex.get(25)?.rssGrowth} bytes`);
  t.equal(byIndex.get(25)?.reproduced, true, 'and does again alone');
  t.equal(report.findings.length, 4, 'nothing else');
  t.equal(report.childStarts, 3, 'one child, replaced after the crash and after the hang');
  t.equal(failures(report).length, 4, 'all four fail the run');
});

t.test('a short seeded run over the image path: no crash, no hang, no non-coded error', async (t) => {
  const report = await runFuzz({ ...base, runSeed: 1, cases: 2000 });
  t.comment(summaryTable(report));
  const lines = findingLines(report, 'npm run bench:fuzz --');
  t.same(failures(report), [], lines);
  t.equal(report.outcomes['non-coded'] ?? 0, 0, 'no non-coded errors');
  t.equal(report.outcomes['crash'] ?? 0, 0, 'no crashes');
  t.ok((report.peakCase?.rssGrowth ?? Infinity) < base.memoryBytes, `the hungriest case stayed under ${base.memoryBytes / 2 ** 20} MiB`);
  const total = Object.values(report.outcomes).reduce((a, b) => a + b, 0);
  t.equal(total, 2000, 'every case has an outcome');
  // The run reaches every answer the image path has, and gets past the header often.
  for (const key of ['ok', 'coded PTOON_BAD_IMAGE', 'coded PTOON_TOO_MANY_PIXELS', 'coded PTOON_UNSUPPORTED_MEDIA']) t.ok((report.outcomes[key] ?? 0) > 0, `${key}: ${report.outcomes[key]}`);
  t.ok((report.codedByStage['PTOON_BAD_IMAGE at decode'] ?? 0) > 100, `PTOON_BAD_IMAGE at decode: ${report.codedByStage['PTOON_BAD_IMAGE at decode']}`);
  t.ok(report.peakRss > 0, 'the child peak RSS is measured');
});
