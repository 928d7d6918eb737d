/**
 * `privatoon quantize <style-id|manifest.json> --calibrate DIR [--check DIR] [--out DIR] [--id ID]
 *                     [--calibration percentile|minmax] [--reduce-range] [--keep-fp32 NODE,...] [--force]
 *                     [--threads N] [--timing-runs N]`
 *
 * Writes `<id>.onnx` and `<id>.json` (a new style, `quantizedFrom` naming the source and its sha256) into --out
 * (default: the source manifest's folder), after printing PSNR and SSIM against fp32 per photo and the speed of
 * both. Refuses to write a model below the quality bar on any held-aside photo unless --force is given.
 * Held-aside photos: those of --check, or else every third photo of --calibrate (by name), which is then not
 * used for calibration.
 */
import { availableParallelism } from 'node:os';
import { existsSync, statSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Config } from '../../config.js';
import { parseManifest, type ModelManifest } from '../manifest.js';
import { loadManifests, sha256 } from '../registry.js';
import { verifyModels } from '../verify.js';
import { QUANTIZE_USAGE } from './usage.js';
import { CALIBRATION_METHODS, listPhotos, preparePhoto, type CalibrationMethod } from './calibrate.js';
import { MIN_PSNR, MIN_SSIM, QuantizeError, quantize, type QuantizeResult } from './index.js';


const TIMING_RUNS = 3;

/** A style id among the configured folders, or a manifest file (its `file` relative to it, as the registry does). */
async function findSource(ref: string, config: Config): Promise<ModelManifest> {
  if (ref.endsWith('.json') || (existsSync(ref) && statSync(ref).isFile())) {
    const source = resolve(ref);
    let text: string;
    try {
      text = await readFile(source, 'utf8');
    } catch (err) {
      throw new QuantizeError(`manifest ${source} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    const manifest = parseManifest(source, text);
    manifest.file = isAbsolute(manifest.file) ? manifest.file : resolve(dirname(source), manifest.file);
    return manifest;
  }
  const manifest = (await loadManifests(config.pool.modelsDirs)).find((m) => m.id === ref);
  if (manifest === undefined) throw new QuantizeError(`no style "${ref}" in ${config.pool.modelsDirs.join(', ')} (MODELS_DIRS); give its id or its manifest file`);
  return manifest;
}

function printReport(manifest: ModelManifest, result: QuantizeResult, method: CalibrationMethod, runs: number, out: (line: string) => void): void {
  out(`${manifest.id}: int8 nodes ${Object.entries(result.int8Nodes).map(([op, n]) => `${op} ${n}`).join(', ')}; calibration ${method}`);
  for (const note of result.notes) out(`  ${note}`);
  out('');
  out('| photo | set | model size | PSNR dB | SSIM |');
  out('| --- | --- | --- | --- | --- |');
  for (const p of result.photos) {
    const fail = p.set === 'held aside' && (p.psnr < MIN_PSNR || p.ssim < MIN_SSIM) ? ' (below the bar)' : '';
    out(`| ${p.name} | ${p.set} | ${p.width}x${p.height} | ${p.psnr.toFixed(2)} | ${p.ssim.toFixed(4)}${fail} |`);
  }
  const held = result.photos.filter((p) => p.set === 'held aside');
  out('');
  out(`held aside: PSNR min ${Math.min(...held.map((p) => p.psnr)).toFixed(2)} dB (bar ${MIN_PSNR}), SSIM min ${Math.min(...held.map((p) => p.ssim)).toFixed(4)} (bar ${MIN_SSIM})`);
  if (result.speed) {
    const { photo, fp32Ms, int8Ms } = result.speed;
    out(`speed on ${photo}, session.run best of ${runs}: fp32 ${fp32Ms.toFixed(0)} ms, int8 ${int8Ms.toFixed(0)} ms, ${(fp32Ms / int8Ms).toFixed(2)}x`);
  }
}

export async function quantizeCommand(args: string[], config: Config, out: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      calibrate: { type: 'string' },
      check: { type: 'string' },
      out: { type: 'string' },
      id: { type: 'string' },
      calibration: { type: 'string' },
      'reduce-range': { type: 'boolean' },
      'keep-fp32': { type: 'string' },
      force: { type: 'boolean' },
      threads: { type: 'string' },
      'timing-runs': { type: 'string' },
    },
  });
  const [ref] = positionals;
  if (ref === undefined || positionals.length > 1) throw new QuantizeError(`quantize takes one style id or manifest file\n${QUANTIZE_USAGE}`);
  if (values.calibrate === undefined) throw new QuantizeError(`--calibrate DIR is required: a folder of photos like the ones the style will see\n${QUANTIZE_USAGE}`);
  const method = (values.calibration ?? 'percentile') as CalibrationMethod;
  if (!CALIBRATION_METHODS.includes(method)) throw new QuantizeError(`--calibration must be one of ${CALIBRATION_METHODS.join(', ')}`);
  const timingRuns = Number(values['timing-runs'] ?? TIMING_RUNS);
  if (!Number.isInteger(timingRuns) || timingRuns < 0 || timingRuns > 100) throw new QuantizeError('--timing-runs must be an integer from 0 to 100');
  const threads = values.threads === undefined ? availableParallelism() : Number(values.threads);
  if (!Number.isInteger(threads) || threads < 1 || threads > 256) throw new QuantizeError('--threads must be an integer from 1 to 256');

  const manifest = await findSource(ref, config);
  if (manifest.role === 'detector') {
    throw new QuantizeError(`${manifest.source}: "${manifest.id}" is a ${manifest.family ?? ''} detector, not an image-to-image model; only styles and head models can be quantized`);
  }
  await verifyModels([manifest]); // the file exists, matches its pin, and takes and gives one image tensor
  const id = values.id ?? `${manifest.id}-int8`;
  // Fail before minutes of calibration, with the registry's own rule for ids.
  parseManifest('--id', JSON.stringify({ id, file: `${id}.onnx`, input: manifest.input, size: {} }));
  const outDir = resolve(values.out ?? dirname(manifest.source));

  const listed = await listPhotos(values.calibrate);
  const calibrationFiles = listed.photos;
  if (listed.skipped.length > 0) out(`skipped in ${values.calibrate} (not named as a photo): ${listed.skipped.join(', ')}`);
  let checkFiles: string[];
  let calibrateFiles: string[];
  if (values.check !== undefined) {
    checkFiles = (await listPhotos(values.check)).photos;
    calibrateFiles = calibrationFiles;
  } else {
    if (calibrationFiles.length < 2) throw new QuantizeError(`${values.calibrate} has one photo: give at least two (every third is held aside to check the result), or a separate --check DIR`);
    checkFiles = calibrationFiles.filter((_, i) => i % 3 === 2 || (calibrationFiles.length === 2 && i === 1));
    calibrateFiles = calibrationFiles.filter((f) => !checkFiles.includes(f));
  }
  const prepare = async (files: string[]) => {
    const photos = [];
    for (const f of files) photos.push(await preparePhoto(manifest, f));
    return photos;
  };
  const fp32 = await readFile(manifest.file);
  const result = await quantize(manifest, fp32, {
    calibration: await prepare(calibrateFiles),
    check: await prepare(checkFiles),
    method,
    reduceRange: values['reduce-range'] ?? false,
    keepFp32: new Set((values['keep-fp32'] ?? '').split(',').filter((s) => s !== '')),
    threads,
    timingRuns,
  });
  printReport(manifest, result, method, timingRuns, out);
  if (!result.passed && !values.force) {
    throw new QuantizeError(`not written: the int8 model misses the quality bar (PSNR >= ${MIN_PSNR} dB and SSIM >= ${MIN_SSIM} against fp32 on every held-aside photo); try --calibration minmax or --keep-fp32, or --force to write it anyway`);
  }
  const file = `${id}.onnx`;
  const quantized = {
    id,
    title: `${manifest.title} (int8)`,
    file,
    role: manifest.role,
    sha256: sha256(result.bytes),
    quantizedFrom: { id: manifest.id, sha256: sha256(fp32) },
    input: manifest.input,
    output: manifest.output,
    size: manifest.size,
    ...(manifest.crop === undefined ? {} : { crop: manifest.crop }),
    ...(manifest.head === undefined ? {} : { head: manifest.head, detector: manifest.detector }),
  };
  const text = `${JSON.stringify(quantized, null, 2)}\n`;
  parseManifest(`${id}.json`, text); // what the registry will check, --id included, before anything is written
  await mkdir(outDir, { recursive: true });
  await writeFile(join(outDir, file), result.bytes);
  await writeFile(join(outDir, `${id}.json`), text);
  out(`${result.passed ? '' : 'FORCED: below the quality bar; '}wrote ${join(outDir, file)} and ${basename(id)}.json (from ${manifest.id}, sha256 ${quantized.quantizedFrom.sha256.slice(0, 12)}…)`);
}
