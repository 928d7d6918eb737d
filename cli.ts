#!/usr/bin/env node
/**
 * The command line: the same pool and pipeline as the server, for offline use and smoke tests.
 *
 *   privatoon cartoonize in.jpg -o out.jpg [--style toon] [--format jpeg|png|webp|avif] [--quality 95] [--max-size 1024]
 *   privatoon cartoonize - -o - < in.jpg > out.jpg      # stdin to stdout
 *   privatoon styles                                    # the styles the configured model folders provide
 *   privatoon keygen ID                                 # a new API key, printed once, and its line for the keys file
 *   privatoon import model.json --out DIR               # a TF.js or GraphDef model to ONNX + manifest (models/import/)
 *   privatoon quantize STYLE --calibrate DIR            # an int8 copy of a style (models/quantize/README.md)
 *   privatoon --help | -h, privatoon COMMAND --help, privatoon --version
 *
 * Exit codes follow sysexits(3), listed in EXIT below and in `--help`. Model folders and thread settings come from
 * the same environment variables as the server (see README).
 */
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { loadConfig, type Config } from './config.js';
import { newApiKey } from './keys.js';
import { IMPORT_USAGE, runImport } from './models/import/cli.js';
import { QUANTIZE_USAGE } from './models/quantize/usage.js';
import { DEFAULT_QUALITY, OUTPUT_FORMATS, type OutputFormat } from './contract.js';
import { rowOf } from './errors.js';
import { PACKAGE_JSON } from './paths.js';
import { InferencePool } from './pool/inference-pool.js';

/** Exit statuses (sysexits.h), so scripts can tell a typo from a bad photo from a broken install. */
export const EXIT = { ok: 0, failure: 1, usage: 64, dataErr: 65, noInput: 66, cantCreate: 73 } as const;

const EXIT_HELP = `exit status:
  0   done
  1   the tool failed (a model, the configuration, a worker)
  64  usage error (unknown command or option, bad value, binary output to a terminal)
  65  the input is not a usable image (unsupported, damaged, too many pixels, no face)
  66  the input file cannot be read
  73  the output file cannot be written`;

const HELP = {
  main: `usage: privatoon <command> [options]

commands:
  cartoonize <input|-> -o <output|->   turn a photo into a cartoon (offline, same pipeline as the server)
  styles                               list the styles the configured model folders provide
  keygen <key-id>                      make an API key and its line for the keys file (API_KEYS_FILE)
  import <model> --out DIR             a TensorFlow.js or frozen TensorFlow model to an ONNX style (no Python)
  quantize <style> --calibrate DIR     an int8 copy of a style, calibrated on photos, checked against fp32

options:
  -h, --help      this help; \`privatoon <command> --help\` for a command's own
  -v, --version   the version

Settings (MODELS_DIRS, WORKERS, ORT_*, MAX_*) come from the same environment variables as the server.

${EXIT_HELP}`,
  cartoonize: `usage: privatoon cartoonize <input|-> [-o <output|->] [options]

  <input>              a JPEG, PNG or WebP file, or - for stdin
  -o, --output PATH    where the cartoon goes; - for stdout (the default, refused when stdout is a terminal)
  -s, --style ID       a style id (privatoon styles); default: the first style
  -f, --format FMT     ${OUTPUT_FORMATS.join(', ')}; default: from the output's extension, else jpeg
  -q, --quality N      1-100 for jpeg, webp and avif; default ${DEFAULT_QUALITY.jpeg} (avif ${DEFAULT_QUALITY.avif})
      --max-size PX    the result's longest side (never enlarged)
  -h, --help           this help

${EXIT_HELP}`,
  styles: `usage: privatoon styles

Lists the styles of the model folders in MODELS_DIRS (default: the built-in style), one per line: id, tab, title.

${EXIT_HELP}`,
  keygen: `usage: privatoon keygen <key-id>

Prints a new API key (once: it is stored nowhere) and the line to add to the keys file (API_KEYS_FILE): the id and
the key's SHA-256. The id is what logs, metrics and rate limits show: 1-64 letters, digits, ".", "_" or "-",
starting with a letter or a digit.

${EXIT_HELP}`,
  import: `usage:
${IMPORT_USAGE}

Writes an ONNX file and a manifest the service accepts into DIR (see README, "Importing TensorFlow models").

${EXIT_HELP}`,
  quantize: `usage:
${QUANTIZE_USAGE}

Writes <id>-int8.onnx and its manifest; refuses (unless --force) when a held-aside photo falls under PSNR 35 dB or
SSIM 0.98 against fp32 (see models/quantize/README.md).

${EXIT_HELP}`,
} as const;

const VERSION = (JSON.parse(readFileSync(PACKAGE_JSON, 'utf8')) as { version: string }).version;

class UsageError extends Error {
  constructor(
    message: string,
    readonly command: keyof typeof HELP = 'main',
  ) {
    super(message);
  }
}

/** An error with its own exit status (input missing, output not writable). */
class ExitError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** parseArgs with our usage errors (not ERR_PARSE_ARGS_*) and `--help` on every command. */
function parse(
  command: keyof typeof HELP,
  args: string[],
  options: NonNullable<ParseArgsConfig['options']>,
): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  try {
    const parsed = parseArgs({ args, allowPositionals: true, strict: true, options: { ...options, help: { type: 'boolean', short: 'h' } } });
    return { values: parsed.values as Record<string, string | boolean | undefined>, positionals: parsed.positionals };
  } catch (err) {
    // Node's text goes on about positionals after "--"; the first sentence is the news.
    throw new UsageError((err as Error).message.split(/\. To specify|\n/)[0]!, command);
  }
}

async function readInput(path: string): Promise<Buffer> {
  if (path !== '-') {
    try {
      return await readFile(path);
    } catch (err) {
      throw new ExitError(`cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, EXIT.noInput);
    }
  }
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function formatFor(output: string, explicit: string | undefined): OutputFormat {
  const guess = explicit ?? (output !== '-' ? extname(output).slice(1).toLowerCase().replace('jpg', 'jpeg') : 'jpeg');
  if (!(OUTPUT_FORMATS as readonly string[]).includes(guess)) throw new UsageError(`--format must be one of ${OUTPUT_FORMATS.join(', ')}, got "${guess}"`, 'cartoonize');
  return guess as OutputFormat;
}

function intOption(name: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max}`, 'cartoonize');
  return n;
}

/** One image at a time: one worker, and let it use the cores through onnxruntime's own threads. */
function startPool(config: Config): Promise<InferencePool> {
  const { pool } = config;
  return InferencePool.start({ ...pool, workers: 1, intraOpThreads: Math.max(pool.intraOpThreads, pool.workers) });
}

async function cartoonize(args: string[]): Promise<void> {
  const { values, positionals } = parse('cartoonize', args, {
    output: { type: 'string', short: 'o' },
    style: { type: 'string', short: 's' },
    format: { type: 'string', short: 'f' },
    quality: { type: 'string', short: 'q' },
    'max-size': { type: 'string' },
  });
  if (values.help === true) return help('cartoonize');
  const [input] = positionals;
  if (input === undefined || positionals.length > 1) throw new UsageError('cartoonize takes one input file (or - for stdin)', 'cartoonize');
  const output = (values.output as string | undefined) ?? '-';
  // An image is binary: written to a terminal it is noise, and escape sequences in it can reconfigure the terminal.
  if (output === '-' && process.stdout.isTTY === true) {
    throw new UsageError('refusing to write an image to the terminal: give -o FILE, or redirect stdout (-o - > out.jpg)', 'cartoonize');
  }
  const format = formatFor(output, values.format as string | undefined);
  const config = loadConfig();
  const quality = intOption('quality', values.quality as string | undefined, 1, 100);
  const maxSize = intOption('max-size', values['max-size'] as string | undefined, 16, config.pool.maxOutputSide);
  const bytes = await readInput(input);

  const pool = await startPool(config);
  try {
    // The pool's defaults (style, the format's quality), as the HTTP API applies them.
    const options = pool.withDefaults({ style: values.style as string | undefined, format, quality, maxSize });
    const { style } = options;
    const result = await pool.run(bytes, options);
    const encoded = Buffer.from(result.output);
    if (output === '-') process.stdout.write(encoded);
    else {
      try {
        await writeFile(output, encoded); // the operator asked for this file: offline use, not the service
      } catch (err) {
        throw new ExitError(`cannot write ${output} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, EXIT.cantCreate);
      }
    }
    const t = result.timings;
    process.stderr.write(
      `${style}: ${result.width}x${result.height} ${format}, ${encoded.length} bytes ` +
        `(decode ${t.decode.toFixed(0)} ms, infer ${t.infer.toFixed(0)} ms, encode ${t.encode.toFixed(0)} ms)\n`,
    );
  } finally {
    await pool.close();
  }
}

async function styles(args: string[]): Promise<void> {
  const { values, positionals } = parse('styles', args, {});
  if (values.help === true) return help('styles');
  if (positionals.length > 0) throw new UsageError('styles takes no arguments', 'styles');
  const pool = await startPool(loadConfig());
  try {
    for (const s of pool.styles) process.stdout.write(`${s.id}\t${s.title}${s.licence === undefined ? '' : `\t${s.licence}`}\n`);
  } finally {
    await pool.close();
  }
}

/** Key ids start with a letter or digit: an id such as "--help" or "-x" would read as an option everywhere. */
const KEY_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function keygen(args: string[]): void {
  const { values, positionals } = parse('keygen', args, {});
  if (values.help === true) return help('keygen');
  const [id] = positionals;
  if (id === undefined || positionals.length > 1) throw new UsageError('keygen takes one key id, e.g. `privatoon keygen acme-prod`', 'keygen');
  if (!KEY_ID.test(id)) throw new UsageError('the key id must be 1-64 letters, digits, ".", "_" or "-", starting with a letter or a digit', 'keygen');
  const { key, line } = newApiKey(id);
  process.stdout.write(`API key (shown once; give it to the client, it is not stored anywhere):\n  ${key}\n`);
  process.stdout.write(`Line for the keys file (API_KEYS_FILE); then reload with SIGHUP:\n  ${line}\n`);
}

function help(command: keyof typeof HELP): void {
  process.stdout.write(`${HELP[command]}\n`);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'cartoonize':
      return cartoonize(rest);
    case 'styles':
      return styles(rest);
    case 'keygen':
      return keygen(rest);
    case 'import':
      if (rest.includes('--help') || rest.includes('-h')) return help('import');
      return runImport(rest, (message) => new UsageError(message));
    case 'quantize':
      if (rest.includes('--help') || rest.includes('-h')) return help('quantize');
      // Imported here, not above: the quantizer runs onnxruntime in this thread, and no other command loads it.
      return (await import('./models/quantize/command.js')).quantizeCommand(rest, loadConfig());
    case 'help':
    case '--help':
    case '-h':
      return help(rest[0] !== undefined && Object.hasOwn(HELP, rest[0]) ? (rest[0] as keyof typeof HELP) : 'main');
    case '--version':
    case '-v':
      process.stdout.write(`privatoon ${VERSION}\n`);
      return;
    default:
      throw new UsageError(command === undefined ? 'a command is needed' : `unknown command "${command}"`);
  }
}

/**
 * The exit status of a failure: a code whose row (errors.ts) has a 4xx status is the input's fault (65); anything
 * else, start-up errors' own codes included, the tool's (1).
 */
function statusOf(err: Error & { code?: string }): number {
  if (err instanceof UsageError) return EXIT.usage;
  if (err instanceof ExitError) return err.status;
  const status = rowOf(err.code)?.status;
  return status !== undefined && status >= 400 && status < 500 ? EXIT.dataErr : EXIT.failure;
}

main(process.argv.slice(2)).catch((err: Error & { code?: string; statusCode?: number }) => {
  if (err instanceof UsageError) {
    process.stderr.write(`privatoon: ${err.message}\n\n${HELP[err.command].split('\n\n')[0]}\n(privatoon ${err.command === 'main' ? '' : `${err.command} `}--help for more)\n`);
  } else {
    process.stderr.write(`privatoon: ${err.code && !err.message.startsWith(err.code) ? `${err.code}: ` : ''}${err.message}\n`);
  }
  process.exitCode = statusOf(err);
});
