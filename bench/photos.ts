/**
 * Photos for benchmarks: the real test photos in ../shared/images when present (read in place, never copied into
 * the project), else a generated photo-like picture (smooth shading plus noise, so codecs and models do real work).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { SHARED_DIR } from '../paths.js';

export const SHARED_IMAGES = join(SHARED_DIR, 'images');

export async function benchPhoto(name = 'astronaut_eileen_collins.png'): Promise<Buffer> {
  try {
    return await readFile(join(SHARED_IMAGES, name));
  } catch {
    return syntheticPhoto(768, 768);
  }
}

export async function syntheticPhoto(width: number, height: number, seed = 1): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * 3);
  let state = seed >>> 0;
  const noise = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return (state >>> 24) - 128;
  };
  const cx = width / 2;
  const cy = height / 2.2;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      // A bright oval "face" on a graded background, with texture noise.
      const d = Math.hypot((x - cx) / (width * 0.22), (y - cy) / (height * 0.3));
      const face = d < 1 ? 1 : 0;
      const base = face ? [224, 180, 150] : [60 + (120 * x) / width, 90, 140 - (80 * y) / height];
      const n = noise() * 0.12;
      raw.set(base.map((v) => Math.max(0, Math.min(255, v * (1 - 0.15 * d * face) + n))), (y * width + x) * 3);
    }
  }
  return sharp(raw, { raw: { width, height, channels: 3 } }).jpeg({ quality: 92 }).toBuffer();
}
