/**
 * `privatoon import`: the command-line side of the importer (cli.ts dispatches here).
 *
 *   privatoon import SRC --out DIR [--id ID] [--title T] [--output NODE] [--channels RGB|BGR] [--range -1..1]
 *                        [--max-long-side PX] [--multiple N] [--licence TEXT]
 *   privatoon import --dctnet DIR --out DIR [--id ID] [--title T]
 */
import { basename, dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { ChannelOrder, ValueRange } from '../manifest.js';
import { importDctnet } from './dctnet.js';
import { importModel } from './index.js';

export const IMPORT_USAGE = `  privatoon import <model.json|model.pb|folder> --out DIR [--id ID] [--title T] [--output NODE]
      [--channels RGB|BGR] [--range -1..1|0..1|0..255] [--max-long-side PX] [--multiple N] [--licence TEXT]
  privatoon import --dctnet <ModelScope DCT-Net folder> --out DIR [--id ID] [--title T]`;

const CHANNELS: readonly ChannelOrder[] = ['RGB', 'BGR'];
const RANGES: readonly ValueRange[] = ['-1..1', '0..1', '0..255'];

export async function runImport(args: string[], usage: (message: string) => Error): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      out: { type: 'string' },
      id: { type: 'string' },
      title: { type: 'string' },
      output: { type: 'string' },
      channels: { type: 'string' },
      range: { type: 'string' },
      'max-long-side': { type: 'string' },
      multiple: { type: 'string' },
      licence: { type: 'string' },
      dctnet: { type: 'string' },
    },
  });
  if (values.out === undefined) throw usage('import needs --out DIR (where the ONNX file and its manifest go)');
  const int = (name: string, value: string | undefined, min: number, max: number): number | undefined => {
    if (value === undefined) return undefined;
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) throw usage(`--${name} must be an integer from ${min} to ${max}`);
    return n;
  };
  const id = values.id;
  if (id !== undefined && !/^[a-z0-9][a-z0-9_-]{0,63}$/.test(id)) throw usage('--id must be lower-case letters, digits, "-" or "_"');

  if (values.dctnet !== undefined) {
    if (positionals.length > 0) throw usage('import --dctnet takes the folder as its value and nothing else');
    const written = await importDctnet(values.dctnet, values.out, { id: id ?? 'dctnet', title: values.title });
    for (const model of written) process.stdout.write(`${model.sha256}  ${model.manifestFile}\n`);
    return;
  }
  const [src] = positionals;
  if (src === undefined || positionals.length > 1) throw usage('import takes one model (model.json, a .pb file, or a folder with model.json)');
  const channels = values.channels ?? 'RGB';
  if (!CHANNELS.includes(channels as ChannelOrder)) throw usage('--channels must be RGB or BGR');
  const range = values.range ?? '-1..1';
  if (!RANGES.includes(range as ValueRange)) throw usage(`--range must be one of ${RANGES.join(', ')}`);
  const model = await importModel(src, values.out, {
    id: id ?? defaultId(src),
    title: values.title,
    licence: values.licence,
    output: values.output,
    channels: channels as ChannelOrder,
    range: range as ValueRange,
    maxLongSide: int('max-long-side', values['max-long-side'], 16, 8192),
    multiple: int('multiple', values.multiple, 1, 256),
  });
  const ops = Object.entries(model.converted.onnxOps).map(([op, n]) => `${op} ${n}`).join(', ');
  process.stdout.write(`${model.sha256}  ${model.onnxFile}  ${model.bytes} bytes\n${model.manifestFile}\nONNX ops: ${ops}\n`);
}

/** `.../hayao/model.json` -> "hayao"; `cartoon_bg.pb` -> "cartoon_bg". */
function defaultId(src: string): string {
  const path = resolve(src);
  const name = basename(path) === 'model.json' ? basename(dirname(path)) : basename(path).replace(/\.(json|pb)$/, '');
  const id = name.toLowerCase().replace(/[^a-z0-9_-]+/g, '-').replace(/^[-_]+/, '').slice(0, 64);
  return id === '' ? 'imported' : id;
}
