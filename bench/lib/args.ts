/**
 * Command-line flags for the bench scripts: `--name value` or `--name=value`, numbers and comma lists, each with a
 * default, and `--help` printing them. Unknown flags are an error (a typo must not silently run the default).
 */
import { parseArgs } from 'node:util';

export interface FlagSpec {
  default: string;
  help: string;
}

export function readFlags<K extends string>(usage: string, specs: Record<K, FlagSpec>, argv = process.argv.slice(2)): Record<K, string> {
  const options = Object.fromEntries(Object.keys(specs).map((k) => [k, { type: 'string' as const }]));
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean' } }, strict: true, allowPositionals: false }));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${helpText(usage, specs)}`);
    process.exit(2);
  }
  if (values['help'] === true) {
    process.stdout.write(helpText(usage, specs));
    process.exit(0);
  }
  const out = {} as Record<K, string>;
  for (const k of Object.keys(specs) as K[]) out[k] = (values[k] as string | undefined) ?? specs[k].default;
  return out;
}

function helpText(usage: string, specs: Record<string, FlagSpec>): string {
  const lines = Object.entries(specs).map(([k, s]) => `  --${k.padEnd(16)} ${s.help} (default: ${s.default || 'none'})`);
  return `${usage}\n\n${lines.join('\n')}\n`;
}

export function num(value: string, name: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new Error(`--${name}: expected a non-negative number, got ${JSON.stringify(value)}`);
  return n;
}

export function list(value: string): string[] {
  return value.split(',').map((s) => s.trim()).filter((s) => s !== '');
}
