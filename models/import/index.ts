/**
 * `privatoon import`: a TF.js graph model or a frozen GraphDef in, an ONNX file and a manifest the registry accepts
 * out. A model tool for the command line and the build; never on a request's path.
 */
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseManifest, type ChannelOrder, type ValueRange } from '../manifest.js';
import { convertGraph, type ConvertedModel } from './convert.js';
import { readGraphDef } from './graphdef.js';
import { readTfjsModel } from './tfjs.js';
import { ImportError, type TfGraph } from './tf-graph.js';

export { ImportError } from './tf-graph.js';

export interface ImportOptions {
  id: string;
  title?: string | undefined;
  licence?: string | undefined;
  /** The graph output to export (default: the only node nothing reads). */
  output?: string | undefined;
  channels?: ChannelOrder;
  range?: ValueRange;
  maxLongSide?: number | undefined;
  maxShortSide?: number | undefined;
  /** Pad to a multiple of this (a network that halves its input k times needs 2^k). */
  multiple?: number;
  pad?: number | 'edge';
}

export interface ImportedModel {
  onnxFile: string;
  /** Whether the ONNX file was (re)written; false when its bytes were already there. */
  written: boolean;
  manifestFile: string;
  sha256: string;
  bytes: number;
  converted: ConvertedModel;
}

/** A folder holding model.json, a model.json itself, or a .pb file. */
export async function readTfGraph(src: string): Promise<TfGraph> {
  let path = resolve(src);
  if (existsSync(path) && statSync(path).isDirectory()) {
    if (existsSync(join(path, 'model.json'))) path = join(path, 'model.json');
    else throw new ImportError(path, 'is a folder without model.json (for a DCT-Net folder use --dctnet)');
  }
  if (path.endsWith('.json')) return readTfjsModel(path);
  if (path.endsWith('.pb')) return readGraphDef(path);
  throw new ImportError(path, 'is neither a TF.js model.json nor a frozen GraphDef (.pb)');
}

/** Converts one graph and writes `<id>.onnx` and `<id>.json` into `outDir`; files are rewritten only if they change. */
export async function importModel(src: string | TfGraph, outDir: string, options: ImportOptions): Promise<ImportedModel> {
  const graph = typeof src === 'string' ? await readTfGraph(src) : src;
  const converted = convertGraph(graph, { name: options.id, output: options.output });
  const manifest = {
    id: options.id,
    title: options.title ?? options.id,
    ...(options.licence === undefined ? {} : { licence: options.licence }),
    file: `${options.id}.onnx`,
    sha256: sha256(converted.onnx),
    role: 'whole',
    input: { name: converted.input.name, layout: converted.input.layout, channels: options.channels ?? 'RGB', range: options.range ?? '-1..1' },
    output: { name: converted.output.name, layout: converted.output.layout },
    size: {
      ...(options.maxShortSide === undefined ? {} : { maxShortSide: options.maxShortSide }),
      ...(options.maxLongSide === undefined ? {} : { maxLongSide: options.maxLongSide }),
      multiple: options.multiple ?? 1,
      pad: options.pad ?? 'edge',
      resizeBack: true,
    },
  };
  return writeModel(outDir, options.id, converted, manifest);
}

/** Writes the ONNX file and its manifest (checked by the registry's own parser first) and reports what it wrote. */
export async function writeModel(outDir: string, id: string, converted: ConvertedModel, manifest: Record<string, unknown>): Promise<ImportedModel> {
  await mkdir(outDir, { recursive: true });
  const onnxFile = join(outDir, `${id}.onnx`);
  const manifestFile = join(outDir, `${id}.json`);
  const text = `${JSON.stringify(manifest, null, 2)}\n`;
  parseManifest(manifestFile, text);
  const written = await writeIfChanged(onnxFile, converted.onnx);
  await writeIfChanged(manifestFile, Buffer.from(text));
  return { onnxFile, written, manifestFile, sha256: sha256(converted.onnx), bytes: converted.onnx.length, converted };
}

async function writeIfChanged(file: string, bytes: Uint8Array): Promise<boolean> {
  const old = existsSync(file) ? await readFile(file) : null;
  if (old !== null && old.equals(bytes)) return false;
  await writeFile(file, bytes);
  return true;
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
