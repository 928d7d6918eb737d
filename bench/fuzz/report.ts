/** The fuzz run's tables, in the bench scripts' Markdown style. */
import { mib, ms, summarize, table } from '../lib/stats.js';
import { isFinding, type CaseResult, type FuzzReport } from './supervisor.js';

const CODES = ['PTOON_BAD_IMAGE', 'PTOON_TOO_MANY_PIXELS', 'PTOON_UNSUPPORTED_MEDIA'] as const;

/** Findings that fail a run: every non-coded error, and crashes, hangs and memory findings that happen again alone. */
export function failures(report: FuzzReport): CaseResult[] {
  return report.findings.filter((f) => isFinding(f) && (f.outcome === 'uncoded' || f.reproduced !== false));
}

export function summaryTable(report: FuzzReport): string {
  const n = (key: string) => String(report.outcomes[key] ?? 0);
  const otherCodes = Object.keys(report.outcomes).filter((k) => k.startsWith('coded ') && !CODES.includes(k.slice(6) as never));
  const cell = (outcome: string) => {
    const found = report.findings.filter((f) => f.outcome === outcome);
    return found.length === 0 ? '0' : `${found.length} (${found.filter((h) => h.reproduced !== false).length} again alone)`;
  };
  const t = summarize(report.times.filter(Number.isFinite));
  return table(
    ['cases', 'ok', ...CODES.map((c) => `coded ${c}`), ...otherCodes, 'non-coded', `hang (> ${report.hangMs / 1000} s)`, `memory (> ${mib(report.memoryBytes)} MiB)`, 'crash', 'cases/s', 'case p50 / p99 / max ms', 'child peak RSS MiB'],
    [[
      String(report.cases),
      n('ok'),
      ...CODES.map((c) => n(`coded ${c}`)),
      ...otherCodes.map(n),
      n('non-coded'),
      cell('hang'),
      cell('memory'),
      cell('crash'),
      (report.cases / report.seconds).toFixed(0),
      `${ms(t.p50)} / ${ms(t.p99)} / ${ms(t.max)}`,
      mib(report.peakRss),
    ]],
  );
}

/** RSS after the seeds, then at each quarter of the run: a leak shows as a climb, a big case as the peak. */
export function memoryLine(report: FuzzReport): string {
  const at = (fraction: number) => report.rssSamples.find((s) => s.done >= fraction * report.cases)?.rss ?? NaN;
  const describe = (c: CaseResult) =>
    `case ${c.index} (${c.seed ?? '?'} + [${(c.mutations ?? []).join(', ')}]: ${c.outcome === 'coded' ? `coded ${c.code}` : c.outcome} at ${c.stage ?? '-'}, ${ms(c.ms)} ms)`;
  const peak = report.peakCase;
  const slow = report.slowestCase;
  return (
    `Child RSS: ${mib(Math.max(...report.readyRss))} MiB after building the seeds; ` +
    `${[0.25, 0.5, 0.75, 1].map((f) => mib(at(f))).join(' / ')} MiB after 25 / 50 / 75 / 100% of the cases; peak ${mib(report.peakRss)} MiB.` +
    (peak === undefined ? '' : ` The hungriest case raised its child's RSS by ${mib(peak.rssGrowth ?? NaN)} MiB: ${describe(peak)}.`) +
    (slow === undefined ? '' : ` The slowest: ${describe(slow)}.`)
  );
}

export function stageTable(report: FuzzReport): string {
  const rows = Object.entries(report.codedByStage).sort((a, b) => b[1] - a[1]);
  return table(['coded error, where raised', 'cases'], rows.map(([k, v]) => [k, String(v)]));
}

export function mutatorTable(report: FuzzReport): string {
  const rows = Object.entries(report.byMutator).sort((a, b) => b[1].cases - a[1].cases);
  const pct = (part: number, whole: number) => (whole === 0 ? '-' : `${((100 * part) / whole).toFixed(0)}%`);
  return table(
    ['mutator', 'cases', 'ok', 'past the header (decoded)', 'findings'],
    rows.map(([name, m]) => [name, String(m.cases), pct(m.ok, m.cases), pct(m.decoded, m.cases), String(m.findings)]),
  );
}

export function findingLines(report: FuzzReport, command: string): string {
  if (report.findings.length === 0) return 'No findings.';
  return report.findings
    .map((f) => {
      const again = f.reproduced === undefined ? '' : f.reproduced ? ' (again when run alone)' : ' (not again when run alone)';
      const what = `${f.seed ?? '?'} + [${(f.mutations ?? []).join(', ')}]`;
      return `- ${f.outcome} at case ${f.index}${again}: ${what}: ${f.detail ?? ''}\n  reproduce: ${command} --seed ${report.runSeed} --only ${f.index}`;
    })
    .join('\n');
}
