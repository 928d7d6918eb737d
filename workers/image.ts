/**
 * sharp (libvips) at both ends of the pipeline: hostile bytes in, plain RGB pixels out; RGB pixels in, an encoded
 * image without any metadata out. Buffers only, never file paths. Worker threads only.
 */
import sharp, { type Metadata, type OutputInfo, type SharpOptions } from 'sharp';
import type { InputErrorCode, OutputFormat } from '../contract.js';
import { turboJpeg } from './jpeg.js';
import { native, TaskCancelledError } from './native-guard.js';
import { sniffFormat } from '../contract.js';

// libvips settings are process-wide. The pool already runs one image per worker thread: more libvips threads per
// image would oversubscribe the cores, and its operation cache would keep decoded photos alive after the request.
sharp.cache(false);
sharp.concurrency(1);
// Only the three loaders we accept may run, whatever a file claims to be (defence in depth behind sniffing).
sharp.block({ operation: ['VipsForeignLoad'] });
sharp.unblock({ operation: ['VipsForeignLoadJpegBuffer', 'VipsForeignLoadPngBuffer', 'VipsForeignLoadWebpBuffer'] });

/**
 * JPEG entropy coding: standard Huffman tables (one pass) instead of tables optimised per image (a second pass over
 * the coefficients). Pixels are identical either way; only the file's size differs. Measured at 512x512 (bench
 * photos, CPU time, one thread): q85 4:2:0 4.0 -> 1.9 ms for +2% bytes; q95 4:4:4 6.3 -> 2.6 ms for +12% bytes.
 * A throughput service spends the CPU on images instead; OpenCV's encoder (the design this replaces) makes the same
 * choice by default. Trellis quantisation and progressive scans stay off (sharp's defaults) for the same reason.
 */
export const JPEG_ENCODER = { optimiseCoding: false } as const;

/** A stuck decode or encode must not hold a worker forever; real images take well under a second. */
const SHARP_TIMEOUT_S = 20;
/**
 * The longest side accepted, whatever the pixel count. libvips' resize holds memory in proportion to the width:
 * a 1,000,000 x 16 PNG (16 MP, inside the pixel limit, 300 kB on the wire) took 1.4 GB and 3 s to shrink. Under
 * the default pixel limit a longer side means a strip over 16:1, which no portrait is. (Found by `npm run bench:fuzz`.)
 */
export const MAX_INPUT_SIDE = 16_384;

/** A failure of the input itself, with its public code; the pipeline returns it to the main thread. */
export class ImageInputError extends Error {
  constructor(
    readonly code: Extract<InputErrorCode, 'PTOON_UNSUPPORTED_MEDIA' | 'PTOON_BAD_IMAGE' | 'PTOON_TOO_MANY_PIXELS'>,
    message: string,
  ) {
    super(message);
  }
}

export interface Probe {
  /** Size after EXIF orientation is applied. */
  width: number;
  height: number;
  hasAlpha: boolean;
  /**
   * A baseline JPEG, 8-bit YCbCr or grey, with no orientation to apply and no ICC profile: TurboJPEG reads it as
   * libvips would (jpeg.ts), so it may take the fast path.
   */
  plainJpeg: boolean;
}

export interface DecodedImage {
  /** Interleaved 8-bit sRGB, width x height x 3. */
  rgb: Uint8Array;
  /** 8-bit alpha, width x height, when the input had an alpha channel. */
  alpha: Uint8Array | undefined;
  width: number;
  height: number;
}

function inputOptions(maxInputPixels: number): SharpOptions {
  // failOn 'warning': a truncated or damaged file is an error, not a half-grey picture. pages 1: no animations.
  return { failOn: 'warning', limitInputPixels: maxInputPixels, sequentialRead: true, pages: 1 };
}

/** Sniffs the format and reads the header only: oversized images are refused before any pixel is decoded. */
export async function probe(input: Uint8Array, maxInputPixels: number): Promise<Probe> {
  const sniffed = sniffFormat(input);
  if (!sniffed.ok) {
    throw new ImageInputError('PTOON_UNSUPPORTED_MEDIA', `The upload is ${sniffed.what}; send a JPEG, PNG or WebP image`);
  }
  // A plain JPEG's size from its header segments, without sharp (jpeg.ts): the same limits apply below.
  const quick = sniffed.format === 'jpeg' ? turboJpeg() : undefined;
  const plain = quick === undefined ? undefined : await native(async () => quick.plainHeader(input));
  if (plain !== undefined) return withinLimits(plain.width, plain.height, maxInputPixels, { hasAlpha: false, plainJpeg: true });
  let meta: Metadata;
  try {
    // limitInputPixels: 0 here, so that we can tell "too large" from "corrupt" ourselves.
    meta = await native(() => sharp(input, { ...inputOptions(maxInputPixels), limitInputPixels: false }).metadata());
  } catch (err) {
    if (err instanceof TaskCancelledError) throw err;
    throw new ImageInputError('PTOON_BAD_IMAGE', `The ${sniffed.format.toUpperCase()} image could not be read: it is damaged or truncated`);
  }
  if (meta.format !== sniffed.format) {
    throw new ImageInputError('PTOON_BAD_IMAGE', `The image's content does not match its ${sniffed.format.toUpperCase()} signature`);
  }
  const { width, height } = meta;
  if (!width || !height) throw new ImageInputError('PTOON_BAD_IMAGE', 'The image has no size');
  // EXIF orientations 5 to 8 turn the picture by 90 degrees.
  const turned = (meta.orientation ?? 1) >= 5;
  const plainJpeg =
    meta.format === 'jpeg' &&
    meta.isProgressive === false &&
    (meta.orientation ?? 1) === 1 &&
    meta.hasProfile !== true &&
    meta.depth === 'uchar' &&
    ((meta.space === 'srgb' && meta.channels === 3) || (meta.space === 'b-w' && meta.channels === 1));
  const stored = withinLimits(width, height, maxInputPixels, { hasAlpha: meta.hasAlpha ?? false, plainJpeg });
  return turned ? { ...stored, width: height, height: width } : stored;
}

/** The pixel and side limits, on the size as stored (the messages name it so). */
function withinLimits(width: number, height: number, maxInputPixels: number, rest: Omit<Probe, 'width' | 'height'>): Probe {
  if (width * height > maxInputPixels) {
    throw new ImageInputError('PTOON_TOO_MANY_PIXELS', `The image is ${width}x${height} pixels; the limit is ${maxInputPixels} pixels`);
  }
  if (width > MAX_INPUT_SIDE || height > MAX_INPUT_SIDE) {
    throw new ImageInputError('PTOON_TOO_MANY_PIXELS', `The image is ${width}x${height} pixels; a side may be at most ${MAX_INPUT_SIDE} pixels`);
  }
  return { width, height, ...rest };
}

/**
 * Decodes, applies EXIF orientation, resizes to the model's size and converts to 8-bit sRGB, alpha kept aside.
 * `room`, when given, is where a plain JPEG that needs no resizing is decoded (the worker's reusable buffer, where
 * the packing kernel reads it in place); whatever lands there is the caller's to wipe.
 */
export async function decode(
  input: Uint8Array,
  probed: Probe,
  width: number,
  height: number,
  maxInputPixels: number,
  room?: Uint8Array,
): Promise<DecodedImage> {
  const turbo = probed.plainJpeg && width === probed.width && height === probed.height ? turboJpeg() : undefined;
  if (turbo !== undefined) {
    const rgb = room ?? new Uint8Array(width * height * 3);
    if (await native(async () => turbo.decodeInto(input, width, height, rgb))) return { rgb: rgb.subarray(0, width * height * 3), alpha: undefined, width, height };
  }
  let pipeline = sharp(input, inputOptions(maxInputPixels)).timeout({ seconds: SHARP_TIMEOUT_S }).rotate();
  if (width !== probed.width || height !== probed.height) {
    pipeline = pipeline.resize(width, height, { fit: 'fill', kernel: 'lanczos3' });
  }
  // toColourspace('srgb') turns grey, CMYK, 16-bit and palette images into 8-bit sRGB (ICC profiles are applied).
  pipeline = pipeline.toColourspace('srgb');
  pipeline = probed.hasAlpha ? pipeline.ensureAlpha() : pipeline.removeAlpha();
  let data: Buffer;
  let info: OutputInfo;
  try {
    const decoding = pipeline.raw({ depth: 'uchar' });
    ({ data, info } = await native(() => decoding.toBuffer({ resolveWithObject: true })));
  } catch (err) {
    if (err instanceof TaskCancelledError) throw err;
    throw new ImageInputError('PTOON_BAD_IMAGE', 'The image could not be decoded: it is damaged or truncated');
  }
  if (info.width !== width || info.height !== height || info.channels !== (probed.hasAlpha ? 4 : 3)) {
    data.fill(0); // decoded pixels of the upload: wiped on this path too
    throw new ImageInputError('PTOON_BAD_IMAGE', 'The image decoded to an unexpected shape');
  }
  if (!probed.hasAlpha) return { rgb: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), alpha: undefined, width, height };
  const pixels = width * height;
  const rgb = new Uint8Array(pixels * 3);
  const alpha = new Uint8Array(pixels);
  for (let i = 0; i < pixels; i++) {
    rgb[i * 3] = data[i * 4]!;
    rgb[i * 3 + 1] = data[i * 4 + 1]!;
    rgb[i * 3 + 2] = data[i * 4 + 2]!;
    alpha[i] = data[i * 4 + 3]!;
  }
  data.fill(0);
  return { rgb, alpha, width, height };
}

export const MIME: Record<OutputFormat, string> = { jpeg: 'image/jpeg', png: 'image/png', webp: 'image/webp', avif: 'image/avif' };

/**
 * Encodes RGB (+ alpha) pixels, resized to the output size. sharp writes no EXIF, XMP, IPTC or ICC unless asked
 * (we never ask), and neither does TurboJPEG (jpeg.ts: a JPEG of the model's own size), so the result carries
 * nothing of the upload but its pixels. JPEG has no alpha: flattened on white. The result may be a view into the
 * worker's reusable output buffer: the caller copies it out and wipes it.
 */
export async function encode(
  image: DecodedImage,
  outWidth: number,
  outHeight: number,
  format: OutputFormat,
  quality: number,
): Promise<Uint8Array> {
  const { width, height } = image;
  let pixels: Uint8Array = image.rgb;
  let channels: 3 | 4 = 3;
  if (image.alpha !== undefined) {
    pixels = new Uint8Array(width * height * 4);
    for (let i = 0; i < width * height; i++) {
      pixels[i * 4] = image.rgb[i * 3]!;
      pixels[i * 4 + 1] = image.rgb[i * 3 + 1]!;
      pixels[i * 4 + 2] = image.rgb[i * 3 + 2]!;
      pixels[i * 4 + 3] = image.alpha[i]!;
    }
    channels = 4;
  }
  // Chroma at full resolution from q90 (a cartoon's colour edges stay sharp), halved below: for both encoders.
  const chroma = quality >= 90 ? '4:4:4' : '4:2:0';
  const turbo = format === 'jpeg' && channels === 3 && outWidth === width && outHeight === height ? turboJpeg() : undefined;
  if (turbo !== undefined) return native(async () => turbo.encode(pixels, width, height, quality, chroma));
  let pipeline = sharp(pixels, { raw: { width, height, channels } }).timeout({ seconds: SHARP_TIMEOUT_S });
  if (outWidth !== width || outHeight !== height) pipeline = pipeline.resize(outWidth, outHeight, { fit: 'fill', kernel: 'lanczos3' });
  if (channels === 4 && format === 'jpeg') pipeline = pipeline.flatten({ background: '#ffffff' });
  switch (format) {
    case 'jpeg':
      pipeline = pipeline.jpeg({ quality, chromaSubsampling: chroma, ...JPEG_ENCODER });
      break;
    case 'png':
      pipeline = pipeline.png({ compressionLevel: 6 });
      break;
    case 'webp':
      pipeline = pipeline.webp({ quality });
      break;
    case 'avif':
      // Effort 0: AVIF's slowest step is its encoder search; at sharp's default (4) one 512x512 result costs seconds,
      // more than the inference. Effort 0 is about 0.1 s there, for a file still a fifth of JPEG q95's.
      pipeline = pipeline.avif({ quality, effort: 0 });
      break;
  }
  try {
    const encoding = pipeline;
    return await native(() => encoding.toBuffer());
  } finally {
    if (pixels !== image.rgb) pixels.fill(0);
  }
}
