/**
 * The model registry: finds every manifest in the configured folders, validates it and its references, and pins its
 * ONNX file's bytes. Runs once, at start-up, in the main thread, so that a bad model stops the service with an error
 * naming the file and the field instead of failing every request. It never loads onnxruntime: the checks that need
 * the runtime (the file opens, its tensors fit the manifest) run in the workers (workers/model-check.ts).
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { ManifestError, parseManifest, type ModelManifest } from './manifest.js';

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
 * Reads each model's ONNX file, checks it against its pinned sha256 (when the manifest pins one) and pins the bytes
 * read. Runs in the main thread and loads no native runtime: whether onnxruntime can open the file, and whether its
 * inputs and outputs fit the manifest, every worker checks as it opens its sessions (workers/model-check.ts).
 */
export async function pinModels(manifests: readonly ModelManifest[]): Promise<void> {
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
    // From here on the manifest pins the bytes that were read: every worker, replacements included, loads exactly
    // these or refuses (workers/session.ts), so a file swapped after start-up is never loaded silently.
    m.sha256 = actual;
  }
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
