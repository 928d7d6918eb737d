/**
 * The uploads for load runs: the real photos of ../shared/images (bench/photos.ts; read in place, never copied into
 * the project) cropped to `size` x `size` JPEGs, else generated photo-like pictures of that size. And, for the soak,
 * the invalid uploads a hostile or careless client sends: truncated, SVG, oversized, bad options.
 */
import { readdir, readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import sharp from 'sharp';
import { SHARED_IMAGES, benchPhoto, syntheticPhoto } from '../photos.js';

export interface BenchImage {
  name: string;
  jpeg: Buffer;
  width: number;
  height: number;
}

/** Up to `max` photos, each cropped (cover) to size x size and encoded as JPEG q90. */
/** A large photo (long side `longSide`), JPEG q90: the real bench photo when present, else a generated one. */
export async function largePhoto(longSide: number): Promise<Buffer> {
  return sharp(await benchPhoto())
    .rotate()
    .resize(longSide, longSide, { fit: 'inside' })
    .removeAlpha()
    .jpeg({ quality: 90 })
    .toBuffer();
}

export async function benchImages(size: number, max = 8): Promise<{ images: BenchImage[]; source: string }> {
  let names: string[] = [];
  try {
    names = (await readdir(SHARED_IMAGES)).filter((n) => ['.jpg', '.jpeg', '.png'].includes(extname(n).toLowerCase())).sort();
  } catch {
    // no shared photos: generated ones below
  }
  const images: BenchImage[] = [];
  for (const name of names.slice(0, max)) {
    const jpeg = await sharp(await readFile(join(SHARED_IMAGES, name)))
      .rotate()
      .resize(size, size, { fit: 'cover' })
      .removeAlpha()
      .jpeg({ quality: 90 })
      .toBuffer();
    images.push({ name, jpeg, width: size, height: size });
  }
  if (images.length > 0) return { images, source: `${images.length} photos from ${SHARED_IMAGES}, cropped to ${size}x${size}` };
  for (let seed = 1; seed <= 4; seed++) {
    images.push({ name: `synthetic-${seed}`, jpeg: await syntheticPhoto(size, size, seed), width: size, height: size });
  }
  return { images, source: `${images.length} generated photo-like images, ${size}x${size} (no ${SHARED_IMAGES})` };
}

export interface SoakCase {
  name: string;
  /** Content-Type of the raw body. */
  type: string;
  body: Buffer;
  /** Query string options (without `?`). */
  query: string;
  /** Statuses that count as a correct answer for this case. */
  expect: readonly number[];
}

/**
 * The soak's mix: good uploads (a bench photo as JPEG, the same as PNG answered in WebP, and a large photo, which
 * the model runs at its own cap) and every kind of bad one, with the answers the service must give.
 */
export async function soakCases(style: string, good: BenchImage, large: Buffer, maxUploadBytes: number): Promise<SoakCase[]> {
  const png = await sharp(good.jpeg).png().toBuffer();
  const q = `style=${style}`;
  return [
    { name: 'jpeg', type: 'image/jpeg', body: good.jpeg, query: q, expect: [200] },
    { name: 'png->webp', type: 'image/png', body: png, query: `${q}&format=webp`, expect: [200] },
    { name: 'large jpeg', type: 'image/jpeg', body: large, query: q, expect: [200] },
    { name: 'truncated', type: 'image/jpeg', body: good.jpeg.subarray(0, Math.floor(good.jpeg.length * 0.6)), query: q, expect: [422] },
    {
      name: 'svg',
      type: 'image/png',
      body: Buffer.from('<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="4000" height="4000"><rect width="10" height="10"/></svg>'),
      query: q,
      expect: [415],
    },
    // One byte over the limit: refused from Content-Length, before the body is read.
    { name: 'oversized', type: 'image/jpeg', body: Buffer.concat([good.jpeg, Buffer.alloc(maxUploadBytes + 1 - good.jpeg.length)]), query: q, expect: [413] },
    { name: 'bad option', type: 'image/jpeg', body: good.jpeg, query: `${q}&quality=1000`, expect: [400] },
    { name: 'unknown style', type: 'image/jpeg', body: good.jpeg, query: 'style=no-such-style', expect: [400] },
  ];
}
