#!/usr/bin/env node
/**
 * The command line: the same pool and pipeline as the server, for offline use and smoke tests.
 *
 *   privatoon cartoonize in.jpg -o out.jpg [--style toon] [--format jpeg|png|webp] [--quality 90] [--max-size 1024]
 *   privatoon cartoonize - -o - < in.jpg > out.jpg      # stdin to stdout
 *   privatoon styles                                    # the styles the configured model folders provide
 *   privatoon keygen ID                                 # a new API key, printed once, and its line for the keys file
 *   privatoon quantize STYLE --calibrate DIR            # an int8 copy of a style (models/quantize/README.md)
 *
 * Model folders and thread settings come from the same environment variables as the server (see README).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig, type Config } from './config.js';
import { newApiKey } from './keys.js';
import { QUANTIZE_USAGE, quantizeCommand } from './models/quantize/command.js';
import { OUTPUT_FORMATS, type OutputFormat } from './workers/contract.js';
import { InferencePool } from './workers/pool.js';

const USAGE = `usage:
  privatoon cartoonize <input|-> [-o <output|->] [--style ID] [--format jpeg|png|webp] [--quality 1-100] [--max-size PX]
  privatoon styles
  privatoon keygen <key-id>
${QUANTIZE_USAGE}`;

class UsageError extends Error {}

async function readInput(path: string): Promise<Buffer> {
  if (path !== '-') return readFile(path);
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function formatFor(output: string | undefined, explicit: string | undefined): OutputFormat {
  const guess = explicit ?? (output && output !== '-' ? extname(output).slice(1).toLowerCase().replace('jpg', 'jpeg') : 'jpeg');
  if (!(OUTPUT_FORMATS as readonly string[]).includes(guess)) throw new UsageError(`--format must be one of ${OUTPUT_FORMATS.join(', ')}, got "${guess}"`);
  return guess as OutputFormat;
}

function intOption(name: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max}`);
  return n;
}

/** One image at a time: one worker, and let it use the cores through onnxruntime's own threads. */
function startPool(config: Config): Promise<InferencePool> {
  return InferencePool.start({
    modelsDirs: config.modelsDirs,
    workers: 1,
    intraOpThreads: Math.max(config.ortIntraThreads, config.workers),
    interOpThreads: config.ortInterThreads,
    maxInputPixels: config.maxInputPixels,
    maxOutputSide: config.maxOutputSide,
    maxFaces: config.maxFaces,
    minFaceSize: config.minFaceSize,
  });
}

async function cartoonize(args: string[], config: Config): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      output: { type: 'string', short: 'o' },
      style: { type: 'string', short: 's' },
      format: { type: 'string', short: 'f' },
      quality: { type: 'string', short: 'q' },
      'max-size': { type: 'string' },
    },
  });
  const [input] = positionals;
  if (input === undefined || positionals.length > 1) throw new UsageError('cartoonize takes one input file (or - for stdin)');
  const output = values.output ?? '-';
  const format = formatFor(output, values.format);
  const quality = intOption('quality', values.quality, 1, 100) ?? 90;
  const maxSize = intOption('max-size', values['max-size'], 16, config.maxOutputSide);
  const bytes = await readInput(input);

  const pool = await startPool(config);
  try {
    const style = values.style ?? pool.styles[0]!.id;
    const result = await pool.run(bytes, { style, format, quality, maxSize });
    const encoded = Buffer.from(result.output);
    if (output === '-') process.stdout.write(encoded);
    else await writeFile(output, encoded); // the operator asked for this file: offline use, not the service
    const t = result.timings;
    process.stderr.write(
      `${style}: ${result.width}x${result.height} ${format}, ${encoded.length} bytes ` +
        `(decode ${t.decode.toFixed(0)} ms, infer ${t.infer.toFixed(0)} ms, encode ${t.encode.toFixed(0)} ms)\n`,
    );
  } finally {
    await pool.close();
  }
}

async function styles(config: Config): Promise<void> {
  const pool = await startPool(config);
  try {
    for (const s of pool.styles) process.stdout.write(`${s.id}\t${s.title}\n`);
  } finally {
    await pool.close();
  }
}

function keygen(args: string[]): void {
  const [id] = args;
  if (id === undefined || args.length > 1) throw new UsageError('keygen takes one key id, e.g. `privatoon keygen acme-prod`');
  const { key, line } = newApiKey(id);
  process.stdout.write(`API key (shown once; give it to the client, it is not stored anywhere):\n  ${key}\n`);
  process.stdout.write(`Line for the keys file (API_KEYS_FILE); then reload with SIGHUP:\n  ${line}\n`);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'cartoonize':
      return cartoonize(rest, loadConfig());
    case 'styles':
      return styles(loadConfig());
    case 'keygen':
      return keygen(rest);
    case 'quantize':
      return quantizeCommand(rest, loadConfig());
    default:
      throw new UsageError(command === undefined ? 'a command is needed' : `unknown command "${command}"`);
  }
}

main(process.argv.slice(2)).catch((err: Error & { code?: string }) => {
  if (err instanceof UsageError) process.stderr.write(`${err.message}\n${USAGE}\n`);
  else process.stderr.write(`privatoon: ${err.code && !err.message.startsWith(err.code) ? `${err.code}: ` : ''}${err.message}\n`);
  process.exitCode = err instanceof UsageError ? 64 : 1;
});
