/**
 * For the model tools (`privatoon quantize`, the importers' tests): the whole start-up check of a set of models,
 * run once in this thread. The registry pins each file (models/registry.ts), then each model is opened exactly as a
 * worker opens it (workers/session.ts, which checks it against its manifest) and released. The service itself never
 * calls this: its main thread does not load onnxruntime, its workers run these checks as they start.
 */
import { openSession } from '../workers/session.js';
import type { ModelManifest } from './manifest.js';
import { pinModels } from './registry.js';

/** Rejects with the first ManifestError, naming the manifest file and the field. */
export async function verifyModels(manifests: readonly ModelManifest[]): Promise<void> {
  await pinModels(manifests);
  for (const m of manifests) {
    const session = await openSession(m, { intraOpThreads: 1, interOpThreads: 1, spinning: false });
    await session.release();
  }
}
