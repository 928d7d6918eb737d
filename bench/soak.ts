/**
 * `npm run bench:soak -- --minutes 10`: minutes of mixed valid and invalid uploads (good JPEG and PNG, a large
 * photo, truncated, SVG, oversized, bad options, unknown style), with the service's RSS over time. Not for CI.
 *
 *   npm run bench:soak -- --minutes 10 --every 30
 *   npm run bench:soak -- --minutes 60 --style toon --concurrency 8
 *
 * Prints a row every `--every` seconds as it goes, then the answers per case and the checks (every answer as
 * expected; RSS at the end within 10% of the first interval's peak). Exit code 1 if a check fails.
 */
import { availableParallelism } from 'node:os';
import { num, readFlags } from './lib/args.js';
import { formatChecks } from './lib/checks.js';
import { benchImages, largePhoto, soakCases } from './lib/images.js';
import { machineLine } from './lib/machine.js';
import { startService } from './lib/server.js';
import { soakRun, type SoakRow } from './lib/soak-run.js';
import { formatCounts, mib, ms, table } from './lib/stats.js';

const flags = readFlags('npm run bench:soak -- [flags]', {
  minutes: { default: '10', help: 'how long to run' },
  every: { default: '30', help: 'seconds between RSS rows' },
  style: { default: 'dctnet-bench', help: 'style of the valid uploads' },
  size: { default: '512', help: 'the valid photos are size x size' },
  large: { default: '1600', help: 'long side of the large photo' },
  workers: { default: String(availableParallelism()), help: 'WORKERS' },
  concurrency: { default: '', help: 'clients; default 2 per worker' },
  'max-upload': { default: String(2 * 1024 * 1024), help: 'MAX_UPLOAD_BYTES (the oversized case sends one byte more)' },
});

async function main(): Promise<number> {
  const workers = num(flags.workers, 'workers');
  const maxUpload = num(flags['max-upload'], 'max-upload');
  const { images, source } = await benchImages(num(flags.size, 'size'), 1);
  const cases = await soakCases(flags.style, images[0]!, await largePhoto(num(flags.large, 'large')), maxUpload);
  const service = await startService({ models: 'builtin+bench', workers, env: { MAX_UPLOAD_BYTES: String(maxUpload) } });
  console.log(`Machine: ${machineLine()}`);
  console.log(`Images: ${source}; cases: ${cases.map((c) => c.name).join(', ')}`);
  console.log(`\nSoak: ${flags.minutes} min, ${flags.style}, ${workers} workers, server ${service.entry === 'dist' ? 'dist/server.js' : 'server.ts via tsx'}; a row every ${flags.every} s.\n`);
  const header = ['t s', 'requests', 'wrong answers', '200 p50 ms', '200 p99 ms', 'RSS MiB', 'RSS peak in interval MiB', 'queued'];
  console.log(table(header, []));
  const line = (r: SoakRow) => `| ${[r.atS.toFixed(0), String(r.requests), String(r.wrong), ms(r.okP50), ms(r.okP99), mib(r.rss), mib(r.rssPeak), String(r.queued)].join(' | ')} |`;
  let result;
  try {
    result = await soakRun(service, cases, {
      minutes: num(flags.minutes, 'minutes'),
      everySeconds: num(flags.every, 'every'),
      concurrency: flags.concurrency === '' ? workers * 2 : num(flags.concurrency, 'concurrency'),
      onRow: (r) => console.log(line(r)),
    });
  } finally {
    await service.stop();
  }
  console.log('\nAnswers per case:\n');
  console.log(
    table(
      ['case', 'expected', 'sent', 'wrong', 'answers'],
      cases.map((c) => {
        const s = result.byCase[c.name]!;
        return [c.name, c.expect.join(' or '), String(s.sent), String(s.wrong), formatCounts(s.answers)];
      }),
    ),
  );
  console.log(`\nChecks:\n${formatChecks(result.checks)}`);
  return result.checks.every((c) => c.ok) ? 0 : 1;
}

process.exitCode = await main();
