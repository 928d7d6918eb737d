/**
 * libjpeg-turbo's TurboJPEG API for the commonest request: a plain JPEG in, a JPEG of the same size out. Worker
 * threads only.
 *
 * Why: at 512x512 sharp (libvips) takes 4.2 ms to decode a JPEG to raw pixels and 3.8 ms to encode one at q95
 * 4:4:4; TurboJPEG does the same work in 2.0 and 2.5 ms (`npm run bench:pool`, codec rows). The difference is
 * libvips' per-pipeline set-up, and with a cheap model it is most of a request's cost. OpenCV, the design this
 * service replaces, calls libjpeg-turbo directly too.
 *
 * Same pixels: the accurate integer DCT both ways, as libvips uses, so a decode here is bit-identical to sharp's and
 * an encode gives the pixels sharp's encoder gives at the same quality and subsampling (test/workers/jpeg.test.ts).
 *
 * It never decides anything. It takes only what it reads exactly as sharp would (`Probe.plainJpeg`, checked again
 * against TurboJPEG's own header: baseline Huffman, 8-bit YCbCr or grey, no orientation, no ICC profile, no
 * resize), stops at the first warning, and any refusal hands the upload to sharp's path, which accepts or refuses
 * it as it always has: the public behaviour (codes, limits, orientation, colour management) stays sharp's.
 *
 * The library: the `libturbojpeg.so.0` (libjpeg-turbo 3.1) that @julusian/jpeg-turbo ships prebuilt, called
 * through koffi. That package's own binding cannot be used: it hard-codes the fast, inexact DCT (PSNR 37 dB on
 * `toon`, whose edges amplify the error) and per-call handles. Where the library is missing (another platform),
 * `turboJpeg()` is undefined and sharp does everything.
 *
 * The calls are synchronous on purpose: the worker thread has nothing else to do meanwhile, and a call that never
 * leaves for another thread cannot complete into a thread that is being terminated (see native-guard.ts).
 * Buffers are passed by address (no copies): nothing of the picture is left anywhere the caller does not wipe.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import koffi from 'koffi';

/** turbojpeg.h (3.x): tj3Init's kinds, the TJPARAM values used, TJPF_RGB, TJSAMP and TJCS values. */
const INIT = { COMPRESS: 0, DECOMPRESS: 1 } as const;
const PARAM = {
  STOPONWARNING: 0,
  NOREALLOC: 2,
  QUALITY: 3,
  SUBSAMP: 4,
  JPEGWIDTH: 5,
  JPEGHEIGHT: 6,
  PRECISION: 7,
  COLORSPACE: 8,
  FASTUPSAMPLE: 9,
  FASTDCT: 10,
  OPTIMIZE: 11,
  PROGRESSIVE: 12,
  SCANLIMIT: 13,
  ARITHMETIC: 14,
  LOSSLESS: 15,
} as const;
const PF_RGB = 0;
const SAMP = { S444: 0, S420: 2 } as const;
const CS = { YCbCr: 1, GRAY: 2 } as const;

/**
 * Encoded output of up to this many bytes goes into one buffer the worker keeps (TurboJPEG's worst case for
 * 1024x1024 at 4:4:4, about 3 MiB); a larger image gets a buffer of its own. A fresh buffer per request would be
 * filled by the allocator's scrubbing (`GLIBC_TUNABLES=glibc.malloc.perturb`) at every request.
 */
const RETAINED_OUTPUT_BYTES = 1024 * 1024 * 3 + 4096;

export interface TurboJpeg {
  /**
   * The size of a plain JPEG, read from its header segments without decoding (a few microseconds, against sharp's
   * 0.3 to 0.9 ms), or undefined where it is not plain or anything is in doubt: sharp's probe then reads it.
   */
  plainHeader(input: Uint8Array): { width: number; height: number } | undefined;
  /**
   * Decodes a plain JPEG of exactly `width` x `height` into `into` (RGB, 3 bytes a pixel). False where TurboJPEG
   * would not read it exactly as sharp does, or stopped at a warning: `into` is then wiped (it may hold part of
   * the picture) and sharp's path decides what the file is.
   */
  decodeInto(input: Uint8Array, width: number, height: number, into: Uint8Array): boolean;
  /**
   * Encodes RGB pixels as a baseline JPEG with standard Huffman tables, as the sharp path does (`JPEG_ENCODER` in
   * image.ts), at the chroma subsampling image.ts chose for both. The result is a view into a buffer the worker reuses: valid until the
   * next call; the caller copies it out and wipes it.
   */
  encode(rgb: Uint8Array, width: number, height: number, quality: number, chroma: '4:4:4' | '4:2:0'): Uint8Array;
  /** Tests only: the retained output buffer (undefined before the first encode), to prove it holds nothing between tasks. */
  peekOutput(): Uint8Array | undefined;
}

interface Library {
  init: (kind: number) => unknown;
  set: (handle: unknown, param: number, value: number) => number;
  get: (handle: unknown, param: number) => number;
  header: (handle: unknown, jpeg: Uint8Array, size: number) => number;
  decompress: (handle: unknown, jpeg: Uint8Array, size: number, out: Uint8Array, pitch: number, format: number) => number;
  compress: (handle: unknown, rgb: Uint8Array, width: number, pitch: number, height: number, format: number, out: [Uint8Array | bigint], size: [number]) => number;
  bufferSize: (width: number, height: number, subsampling: number) => number | bigint;
}

/** The shared library's candidates: @julusian/jpeg-turbo's prebuilt folders for this platform (glibc, then musl). */
function libraryFiles(): string[] {
  if (process.platform !== 'linux') return [];
  try {
    const root = dirname(createRequire(import.meta.url).resolve('@julusian/jpeg-turbo/package.json'));
    return ['', '-musl'].map((libc) => join(root, 'prebuilds', `jpeg-turbo-linux-${process.arch}${libc}`, 'libturbojpeg.so.0'));
  } catch {
    return [];
  }
}

function load(): Library | undefined {
  for (const file of libraryFiles()) {
    try {
      const lib = koffi.load(file);
      return {
        init: lib.func('void* tj3Init(int initType)'),
        set: lib.func('int tj3Set(void* handle, int param, int value)'),
        get: lib.func('int tj3Get(void* handle, int param)'),
        header: lib.func('int tj3DecompressHeader(void* handle, const uint8_t* jpegBuf, size_t jpegSize)'),
        decompress: lib.func('int tj3Decompress8(void* handle, const uint8_t* jpegBuf, size_t jpegSize, uint8_t* dstBuf, int pitch, int pixelFormat)'),
        compress: lib.func(
          'int tj3Compress8(void* handle, const uint8_t* srcBuf, int width, int pitch, int height, int pixelFormat, _Inout_ uint8_t** jpegBuf, _Inout_ size_t* jpegSize)',
        ),
        bufferSize: lib.func('size_t tj3JPEGBufSize(int width, int height, int jpegSubsamp)'),
      };
    } catch {
      // Not this one (missing, or built for the other C library).
    }
  }
  return undefined;
}

function codec(lib: Library): TurboJpeg | undefined {
  const decompressor = lib.init(INIT.DECOMPRESS);
  const compressor = lib.init(INIT.COMPRESS);
  if (decompressor === null || compressor === null) return undefined;
  // Stop at the first warning (a truncated or damaged file goes to sharp, which refuses it); the accurate DCT and
  // smooth upsampling (libvips' choices); a bounded number of scans, though progressive files never come here.
  const settings: [unknown, number, number][] = [
    [decompressor, PARAM.STOPONWARNING, 1],
    [decompressor, PARAM.FASTDCT, 0],
    [decompressor, PARAM.FASTUPSAMPLE, 0],
    [decompressor, PARAM.SCANLIMIT, 64],
    [compressor, PARAM.FASTDCT, 0],
    [compressor, PARAM.OPTIMIZE, 0],
    [compressor, PARAM.PROGRESSIVE, 0],
    [compressor, PARAM.NOREALLOC, 1],
  ];
  if (settings.some(([handle, param, value]) => lib.set(handle, param, value) !== 0)) return undefined;

  let retained: Uint8Array | undefined;
  const output = (bytes: number): Uint8Array => {
    if (bytes > RETAINED_OUTPUT_BYTES) return new Uint8Array(bytes);
    // One byte more than any encode may fill, so a result is always part of this buffer, never all of it: wipe.ts frees
    // a whole buffer of its own, and this one is kept for the next encode.
    retained ??= new Uint8Array(RETAINED_OUTPUT_BYTES + 1);
    return retained;
  };

  /** TurboJPEG's reading of the header, when the frame is one this path takes. */
  const header = (input: Uint8Array): { width: number; height: number } | undefined => {
    const d = decompressor;
    const plain =
      lib.header(d, input, input.byteLength) === 0 &&
      lib.get(d, PARAM.PRECISION) === 8 &&
      lib.get(d, PARAM.PROGRESSIVE) === 0 &&
      lib.get(d, PARAM.ARITHMETIC) === 0 &&
      lib.get(d, PARAM.LOSSLESS) === 0 &&
      [CS.YCbCr, CS.GRAY].includes(lib.get(d, PARAM.COLORSPACE) as 1 | 2);
    return plain ? { width: lib.get(d, PARAM.JPEGWIDTH), height: lib.get(d, PARAM.JPEGHEIGHT) } : undefined;
  };

  return {
    plainHeader: (input) => (plainMarkers(input) ? header(input) : undefined),
    decodeInto(input, width, height, into) {
      const room = into.subarray(0, width * height * 3);
      const size = header(input);
      const plain = size !== undefined && size.width === width && size.height === height && room.length === width * height * 3;
      if (plain && lib.decompress(decompressor, input, input.byteLength, room, 0, PF_RGB) === 0) return true;
      room.fill(0);
      return false;
    },
    encode(rgb, width, height, quality, chroma) {
      const subsampling = chroma === '4:4:4' ? SAMP.S444 : SAMP.S420;
      const c = compressor;
      if (lib.set(c, PARAM.QUALITY, quality) !== 0 || lib.set(c, PARAM.SUBSAMP, subsampling) !== 0) throw new Error('TurboJPEG refused the encoder settings');
      const capacity = Number(lib.bufferSize(width, height, subsampling));
      const out = output(capacity);
      const size: [number] = [capacity];
      if (lib.compress(c, rgb, width, 0, height, PF_RGB, [out], size) !== 0) {
        out.fill(0, 0, capacity);
        throw new Error('TurboJPEG could not encode the result');
      }
      return out.subarray(0, size[0]);
    },
    peekOutput: () => retained,
  };
}

/**
 * The segments before a JPEG's first scan, read without decoding: true when none of them would make libvips read
 * the file differently from TurboJPEG (EXIF, which may hold an orientation; an ICC profile; Adobe's colour
 * transform marker) and the frame is sequential Huffman. Any doubt (a segment running past the end, a byte that is
 * not a marker) answers false, and sharp's probe then reads the header as before.
 */
export function plainMarkers(jpeg: Uint8Array): boolean {
  if (jpeg.length < 4 || jpeg[0] !== 0xff || jpeg[1] !== 0xd8) return false;
  let at = 2;
  while (at + 4 <= jpeg.length) {
    if (jpeg[at] !== 0xff) return false;
    const marker = jpeg[at + 1]!;
    if (marker === 0xff) {
      at++; // a fill byte before the marker
      continue;
    }
    if (marker === 0xda) return true; // start of scan: every header segment has been seen
    const length = (jpeg[at + 2]! << 8) | jpeg[at + 3]!;
    if (length < 2 || at + 2 + length > jpeg.length) return false;
    const payload = jpeg.subarray(at + 4, at + 2 + length);
    if (marker === 0xe1 && startsWith(payload, EXIF)) return false;
    if (marker === 0xe2 && startsWith(payload, ICC)) return false;
    if (marker === 0xee) return false; // Adobe: colour transform flags
    // Start-of-frame markers other than baseline (C0) and extended sequential (C1) Huffman: progressive, lossless,
    // hierarchical, arithmetic (C4, C8 and CC are tables and a reserved code, not frames).
    if (marker >= 0xc2 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) return false;
    at += 2 + length;
  }
  return false;
}

const EXIF = [0x45, 0x78, 0x69, 0x66, 0, 0]; // "Exif\0\0"
const ICC = [...'ICC_PROFILE'].map((c) => c.charCodeAt(0)).concat(0);

function startsWith(bytes: Uint8Array, prefix: readonly number[]): boolean {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

let instance: TurboJpeg | null | undefined;

/** This worker's codec (handles and output buffer), made on first use; undefined where the library is missing. */
export function turboJpeg(): TurboJpeg | undefined {
  if (instance === undefined) {
    const lib = load();
    instance = (lib && codec(lib)) ?? null;
  }
  return instance ?? undefined;
}
