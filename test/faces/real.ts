/**
 * Helpers for the face tests on the real models and photos of ../shared (read in place, never written).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from '../../workers/ort.js';
import sharp from 'sharp';
import type { OutputTensor } from '../../workers/faces/yunet.js';
import { fromTensor, toTensor } from '../../workers/tensor.js';
import { SHARED } from '../fixtures/models.js';

export const MODELS = join(SHARED, 'models');
export const IMAGES = join(SHARED, 'images');
export const YUNET = join(MODELS, 'face_detection_yunet_n_dynamic.onnx');
export const WHITEBOX = join(MODELS, 'whitebox_cartoon_nhwc.onnx');

/** Why the real-model tests cannot run here, or undefined when they can. */
export function missingShared(...files: string[]): string | undefined {
  const missing = [IMAGES, ...files].filter((f) => !existsSync(f));
  return missing.length === 0 ? undefined : `skipping: ${missing.join(', ')} not present (real models and photos live in ${SHARED})`;
}

export interface Rgb {
  rgb: Uint8Array;
  width: number;
  height: number;
}

/** Decodes a photo with its EXIF orientation applied, optionally shrunk to a long side, as 8-bit RGB. */
export async function loadRgb(name: string, longSide?: number): Promise<Rgb> {
  let img = sharp(readFileSync(join(IMAGES, name))).rotate();
  if (longSide !== undefined) img = img.resize(longSide, longSide, { fit: 'inside', withoutEnlargement: true, kernel: 'lanczos3' });
  const { data, info } = await img.removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { rgb: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}

const SINGLE_THREAD: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' };

export async function openYunet(): Promise<{ session: ort.InferenceSession; run: (data: Float32Array, dims: readonly number[]) => Promise<Record<string, OutputTensor>> }> {
  const session = await ort.InferenceSession.create(YUNET, SINGLE_THREAD);
  const input = session.inputNames[0]!;
  return {
    session,
    async run(data, dims) {
      const outputs = await session.run({ [input]: new ort.Tensor('float32', data, dims) });
      const named: Record<string, OutputTensor> = {};
      for (const [name, t] of Object.entries(outputs)) named[name] = { data: t.data as Float32Array, dims: t.dims };
      return named;
    },
  };
}

/** White-box cartoonization (NHWC, BGR, -1..1, sides padded to a multiple of 4) on RGB pixels. */
export async function openWhitebox(): Promise<{ session: ort.InferenceSession; stylize: (rgb: Uint8Array, width: number, height: number) => Promise<Uint8Array> }> {
  const session = await ort.InferenceSession.create(WHITEBOX, SINGLE_THREAD);
  const spec = { layout: 'NHWC', channels: 'BGR', range: '-1..1' } as const;
  return {
    session,
    async stylize(rgb, width, height) {
      const packed = toTensor(rgb, width, height, spec, 4, 'edge');
      const out = await session.run({ input_photo: new ort.Tensor('float32', packed.data, packed.dims) });
      const result = out['final_output']!;
      return fromTensor(result.data as Float32Array, result.dims, spec, width, height);
    },
  };
}
