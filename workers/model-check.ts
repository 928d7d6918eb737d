/**
 * The checks that need onnxruntime: a model file opens, and its real inputs and outputs are what its manifest says.
 * Every worker runs them as it opens its sessions at start-up (workers/session.ts), so the main thread never loads
 * the native runtime; a failure is a ManifestError naming the manifest file and the field, which the worker reports
 * to the pool (workers/entry.ts) and the pool's start rejects with.
 */
import { ManifestError, type ModelManifest, type TensorSpec } from '../models/manifest.js';
import { checkYunetOutputs } from './faces/yunet.js';
import type * as ort from './ort.js';

/** Detector families whose outputs we know how to decode, with the check of a model's output names. */
const DETECTOR_FAMILIES: Record<string, (outputNames: readonly string[]) => void> = { yunet: checkYunetOutputs };

/** What onnxruntime says about an opened model: the part of an InferenceSession these checks read. */
type SessionIo = Pick<ort.InferenceSession, 'inputMetadata' | 'outputMetadata' | 'outputNames'>;

/** onnxruntime could not create a session from the file's bytes. */
export function unloadable(m: ModelManifest, err: unknown): ManifestError {
  return new ManifestError(m.source, 'file', `points to ${m.file}, which onnxruntime cannot load: ${(err as Error).message}`);
}

/** A head's mask image could not be decoded. */
export function unreadableMask(m: ModelManifest, err: unknown): ManifestError {
  const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  return new ManifestError(m.source, 'mask', `points to ${m.mask}, which is not a readable image (${reason})`);
}

/** The role decides the tensors' expected rank; detectors are checked by their family's decoder instead. */
export function checkIo(m: ModelManifest, session: SessionIo): void {
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
