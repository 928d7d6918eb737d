/**
 * Mutators: byte-level ones that work on anything (bit flips, bytes and integers set to extremes, truncation, block
 * deletion and duplication, splices with another seed) and structure-aware ones per format (JPEG segments, PNG
 * chunks with and without fixed CRCs, WebP RIFF chunks and VP8/VP8L/VP8X/ANIM/ALPH headers), which get past the
 * checksums and framing that blind flips rarely survive. A structure-aware mutator returns undefined when the bytes
 * no longer parse as its format; the case then takes a byte-level one instead.
 */
import { deflateSync, inflateSync } from 'node:zlib';
import {
  ascii,
  concat,
  isSof,
  JPEG,
  jpegSegment,
  parseJpeg,
  parsePng,
  parseWebp,
  readU16BE,
  readU24LE,
  readU32BE,
  readU32LE,
  serializePng,
  serializeWebp,
  writeU16BE,
  writeU16LE,
  writeU24LE,
  writeU32BE,
  writeU32LE,
  type JpegPart,
  type PngChunk,
  type RiffChunk,
} from './formats.js';
import type { Random } from './random.js';

export type SeedFormat = 'jpeg' | 'png' | 'webp';

export interface Mutator {
  name: string;
  /** The format it understands; undefined for byte-level mutators. */
  format?: SeedFormat;
  apply(bytes: Uint8Array, rng: Random, donors: readonly Uint8Array[]): Uint8Array | undefined;
}

const U8_EXTREMES = [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff] as const;
const U16_EXTREMES = [0, 1, 2, 0x7fff, 0x8000, 0xfffe, 0xffff] as const;
const U32_EXTREMES = [0, 1, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff] as const;
/** Image sides worth trying: empty, tiny, around the 16.7 MP default limit, and the largest each field can say. */
const SIDES_16 = [0, 1, 2, 3, 255, 4095, 4096, 4097, 8192, 16383, 16384, 65500, 65535] as const;
const SIDES_24 = [0, 1, 4095, 4096, 16383, 16384, 0x7fffff, 0xfffffe, 0xffffff] as const;
const SIDES_32 = [0, 1, 4096, 4097, 16384, 65535, 65536, 0x7fffffff, 0x80000000, 0xffffffff] as const;

function side(rng: Random, extremes: readonly number[], original: number, max: number): number {
  return rng.weighted<() => number>([
    [() => rng.pick(extremes), 6],
    [() => Math.min(max, original * rng.between(2, 64)), 1],
    [() => Math.max(0, original + rng.between(-2, 2)), 1],
    [() => rng.below(max + 1), 1],
  ])();
}

/** The format the bytes frame as, by signature (a splice may have changed it since the seed). */
export function formatOf(b: Uint8Array): SeedFormat | undefined {
  if (b[0] === 0xff && b[1] === 0xd8) return 'jpeg';
  if (b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return 'png';
  if (b[0] === 0x52 && b[1] === 0x49 && b[2] === 0x46 && b[3] === 0x46) return 'webp';
  return undefined;
}

/** The donors of one format (the bytes themselves when there are none). */
function ofFormat(donors: readonly Uint8Array[], format: SeedFormat, self: Uint8Array): readonly Uint8Array[] {
  const same = donors.filter((d) => formatOf(d) === format);
  return same.length > 0 ? same : [self];
}

// --------------------------------------------------------------------------------------------------- byte level

const bitFlip: Mutator = {
  name: 'bit-flip',
  apply(b, rng) {
    if (b.length === 0) return undefined;
    const out = b.slice();
    for (let n = rng.between(1, 8); n > 0; n--) out[rng.offset(out.length)]! ^= 1 << rng.below(8);
    return out;
  },
};

const byteExtremes: Mutator = {
  name: 'byte-extreme',
  apply(b, rng) {
    if (b.length === 0) return undefined;
    const out = b.slice();
    for (let n = rng.between(1, 4); n > 0; n--) out[rng.offset(out.length)] = rng.pick([0x00, 0xff, 0x7f, 0x80]);
    return out;
  },
};

const intExtremes: Mutator = {
  name: 'int-extreme',
  apply(b, rng) {
    if (b.length < 4) return undefined;
    const out = b.slice();
    const at = Math.min(rng.offset(out.length), out.length - 4);
    if (rng.chance(0.5)) {
      const v = rng.pick(U16_EXTREMES);
      if (rng.chance(0.5)) writeU16BE(out, at, v);
      else writeU16LE(out, at, v);
    } else {
      const v = rng.pick(U32_EXTREMES);
      if (rng.chance(0.5)) writeU32BE(out, at, v);
      else writeU32LE(out, at, v);
    }
    return out;
  },
};

const truncate: Mutator = {
  name: 'truncate',
  apply(b, rng) {
    if (b.length < 2) return undefined;
    const keep = rng.weighted<() => number>([
      [() => rng.below(b.length), 4],
      [() => b.length - rng.between(1, Math.min(32, b.length - 1)), 3],
      [() => rng.below(Math.min(b.length, 64)), 2],
    ])();
    return b.slice(0, keep);
  },
};

function blockOf(b: Uint8Array, rng: Random): [number, number] {
  const start = rng.offset(b.length);
  const length = rng.between(1, Math.max(1, Math.min(b.length - start, rng.pick([4, 16, 256, 4096]))));
  return [start, start + length];
}

const deleteBlock: Mutator = {
  name: 'delete-block',
  apply(b, rng) {
    if (b.length < 2) return undefined;
    const [s, e] = blockOf(b, rng);
    return concat([b.subarray(0, s), b.subarray(e)]);
  },
};

const duplicateBlock: Mutator = {
  name: 'duplicate-block',
  apply(b, rng) {
    if (b.length < 2) return undefined;
    const [s, e] = blockOf(b, rng);
    const at = rng.offset(b.length);
    const copies = rng.chance(0.2) ? rng.between(2, 32) : 1;
    return concat([b.subarray(0, at), ...Array.from({ length: copies }, () => b.subarray(s, e)), b.subarray(at)]);
  },
};

const insertBytes: Mutator = {
  name: 'insert-bytes',
  apply(b, rng) {
    const at = rng.offset(b.length);
    const n = rng.between(1, 64);
    const filler = rng.chance(0.5) ? rng.bytes(n) : new Uint8Array(n).fill(rng.pick(U8_EXTREMES));
    return concat([b.subarray(0, at), filler, b.subarray(at)]);
  },
};

/** The start of this file, the rest of another (the donors are the other seeds, every format). */
const splice: Mutator = {
  name: 'splice',
  apply(b, rng, donors) {
    if (b.length < 2 || donors.length === 0) return undefined;
    const donor = rng.pick(donors);
    return concat([b.subarray(0, rng.below(b.length)), donor.subarray(rng.below(donor.length))]);
  },
};

export const BYTE_MUTATORS: readonly Mutator[] = [bitFlip, byteExtremes, intExtremes, truncate, deleteBlock, duplicateBlock, insertBytes, splice];

// ----------------------------------------------------------------------------------------------------------- EXIF

/** A small TIFF (the body of EXIF) with an orientation and pointers, its fields pushed to extremes. */
function exifTiff(rng: Random): Uint8Array {
  const little = rng.chance(0.5);
  const out = new Uint8Array(64 + rng.below(64));
  const u16 = (at: number, v: number) => (little ? writeU16LE(out, at, v) : writeU16BE(out, at, v));
  const u32 = (at: number, v: number) => (little ? writeU32LE(out, at, v) : writeU32BE(out, at, v));
  out.set(little ? ascii('II') : ascii('MM'), 0);
  u16(2, rng.chance(0.9) ? 42 : rng.pick(U16_EXTREMES));
  u32(4, rng.chance(0.8) ? 8 : rng.pick(U32_EXTREMES));
  const entries = rng.between(1, 3);
  u16(8, rng.chance(0.85) ? entries : rng.pick(U16_EXTREMES));
  // 0x0112 Orientation, 0x8769 Exif IFD pointer, 0x8825 GPS IFD pointer.
  const tags = [0x0112, 0x8769, 0x8825];
  for (let i = 0; i < entries; i++) {
    const at = 10 + i * 12;
    u16(at, tags[i]!);
    u16(at + 2, rng.chance(0.7) ? (i === 0 ? 3 : 4) : rng.pick([0, 1, 2, 7, 12, 13, 14, 0xffff]));
    u32(at + 4, rng.chance(0.7) ? 1 : rng.pick(U32_EXTREMES));
    // Orientation values 1-8 are defined; the rest are not. Pointers: in range, to themselves, or far away.
    u32(at + 8, i === 0 ? rng.pick([0, 1, 3, 5, 6, 8, 9, 0xff, 0xffff]) : rng.pick([8, 10, 0, out.length - 2, 0x7fffffff, 0xffffffff]));
  }
  // The next IFD: none, back to the first (a loop), or out of range.
  u32(10 + entries * 12, rng.pick([0, 0, 8, 4, out.length, 0xffffffff]));
  return out;
}

// ----------------------------------------------------------------------------------------------------------- JPEG

function jpegMutator(name: string, apply: (parts: JpegPart[], rng: Random) => Uint8Array | undefined): Mutator {
  return {
    name,
    format: 'jpeg',
    apply(b, rng) {
      const parts = parseJpeg(b);
      return parts === undefined ? undefined : apply(parts, rng);
    },
  };
}

const joinParts = (parts: readonly JpegPart[]) => concat(parts.map((p) => p.bytes));

/** Replaces one part (chosen by `match`) with what `edit` makes of a copy of it. */
function editPart(parts: JpegPart[], rng: Random, match: (p: JpegPart) => boolean, edit: (bytes: Uint8Array) => void): Uint8Array | undefined {
  const candidates = parts.map((p, i) => [p, i] as const).filter(([p]) => match(p));
  if (candidates.length === 0) return undefined;
  const [part, i] = rng.pick(candidates);
  const bytes = part.bytes.slice();
  edit(bytes);
  parts[i] = { marker: part.marker, bytes };
  return joinParts(parts);
}

const jpegSofDims = jpegMutator('jpeg-sof-size', (parts, rng) =>
  editPart(parts, rng, (p) => isSof(p.marker), (s) => {
    const which = rng.below(3);
    if (which !== 1) writeU16BE(s, 5, side(rng, SIDES_16, readU16BE(s, 5), 0xffff));
    if (which !== 0) writeU16BE(s, 7, side(rng, SIDES_16, readU16BE(s, 7), 0xffff));
  }),
);

const jpegSofFields = jpegMutator('jpeg-sof-fields', (parts, rng) =>
  editPart(parts, rng, (p) => isSof(p.marker), (s) => {
    const components = s[9] ?? 0;
    const field = rng.weighted<() => void>([
      [() => (s[4] = rng.pick([0, 1, 7, 8, 12, 16, 255])), 1], // sample precision
      [() => (s[9] = rng.pick([0, 1, 2, 3, 4, 5, 255])), 1], // component count
      [() => (s[10 + 3 * rng.below(Math.max(1, components)) + 1] = rng.pick([0x00, 0x11, 0x12, 0x21, 0x22, 0x41, 0x44, 0x14, 0xff, 0x0f])), 2], // sampling
      [() => (s[10 + 3 * rng.below(Math.max(1, components)) + 2] = rng.pick([0, 1, 3, 4, 255])), 1], // quantisation table
      [() => (s[10 + 3 * rng.below(Math.max(1, components))] = rng.pick([0, 1, 2, 255])), 1], // component id (duplicates)
    ]);
    if (s.length > 10) field();
    // Switching the frame type: baseline, extended, progressive, lossless, arithmetic, hierarchical.
    if (rng.chance(0.15)) s[1] = rng.pick([0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc9, 0xca, 0xcb, 0xcd, 0xcf]);
  }),
);

const jpegTableGarbage = jpegMutator('jpeg-dqt-dht-garbage', (parts, rng) =>
  editPart(parts, rng, (p) => p.marker === JPEG.DQT || p.marker === JPEG.DHT, (s) => {
    if (s.length <= 5) return;
    if (s[1] === JPEG.DHT && rng.chance(0.5)) {
      // The 16 code-length counts: sums beyond 256 codes, or none at all.
      for (let i = 5; i < Math.min(s.length, 21); i++) s[i] = rng.chance(0.5) ? rng.pick(U8_EXTREMES) : s[i]!;
    } else if (rng.chance(0.3)) {
      s[4] = rng.pick([0x00, 0x01, 0x10, 0x13, 0x04, 0x1f, 0xf0, 0xff]); // precision / class and table id
    } else {
      const from = 5 + rng.below(s.length - 5);
      const value = rng.chance(0.5) ? undefined : rng.pick(U8_EXTREMES);
      for (let i = from; i < Math.min(s.length, from + rng.between(1, 64)); i++) s[i] = value ?? rng.next() & 0xff;
    }
  }),
);

const jpegSosFields = jpegMutator('jpeg-sos-fields', (parts, rng) =>
  editPart(parts, rng, (p) => p.marker === JPEG.SOS, (s) => {
    const n = s[4] ?? 0;
    rng.weighted<() => void>([
      [() => (s[4] = rng.pick([0, 1, 2, 3, 4, 5, 255])), 1], // components in scan
      [() => (s[5 + 2 * rng.below(Math.max(1, n))] = rng.pick([0, 1, 2, 3, 4, 255])), 1], // component selector
      [() => (s[6 + 2 * rng.below(Math.max(1, n))] = rng.pick([0x00, 0x11, 0x44, 0x0f, 0xf0, 0xff])), 1], // DC/AC tables
      [() => (s[5 + 2 * n] = rng.pick([0, 1, 63, 64, 255])), 1], // Ss
      [() => (s[6 + 2 * n] = rng.pick([0, 1, 63, 64, 255])), 1], // Se
      [() => (s[7 + 2 * n] = rng.pick([0x00, 0x01, 0x10, 0x0d, 0xd0, 0xff])), 1], // Ah/Al
    ])();
  }),
);

const jpegRestart = jpegMutator('jpeg-dri', (parts, rng) => {
  const interval = rng.pick([0, 1, 2, 7, 0x7fff, 0xffff]);
  const dri = jpegSegment(JPEG.DRI, Uint8Array.of(interval >>> 8, interval & 0xff));
  const existing = parts.findIndex((p) => p.marker === JPEG.DRI);
  const sos = parts.findIndex((p) => p.marker === JPEG.SOS);
  if (existing >= 0) parts[existing] = { marker: JPEG.DRI, bytes: dri };
  else parts.splice(sos >= 0 ? sos : 1, 0, { marker: JPEG.DRI, bytes: dri });
  // Sometimes restart markers inside the scan too, in or out of sequence.
  const scan = parts.findIndex((p) => p.marker === 'scan');
  if (scan >= 0 && rng.chance(0.5)) {
    const data = parts[scan]!.bytes;
    const at = rng.below(data.length);
    parts[scan] = { marker: 'scan', bytes: concat([data.subarray(0, at), Uint8Array.of(0xff, 0xd0 + rng.below(8)), data.subarray(at)]) };
  }
  return joinParts(parts);
});

const jpegDropPart = jpegMutator('jpeg-drop-segment', (parts, rng) => {
  if (parts.length < 3) return undefined;
  const i = rng.between(1, parts.length - 1);
  parts.splice(i, parts[i]!.marker === JPEG.SOS && parts[i + 1]?.marker === 'scan' ? 2 : 1);
  return joinParts(parts);
});

/** Repeats a segment, or a whole scan (SOS and its data) up to 200 times: the progressive "scan bomb". */
const jpegDuplicatePart = jpegMutator('jpeg-duplicate-segment', (parts, rng) => {
  if (parts.length < 2) return undefined;
  const i = rng.between(1, parts.length - 1);
  const span = parts[i]!.marker === JPEG.SOS && parts[i + 1]?.marker === 'scan' ? 2 : 1;
  const copies = rng.chance(0.3) ? rng.between(10, 200) : rng.between(1, 3);
  const block = parts.slice(i, i + span);
  parts.splice(i, 0, ...Array.from({ length: copies }, () => block).flat());
  return joinParts(parts);
});

/**
 * The progressive-JPEG CPU bomb: a large frame and thousands of near-empty scans, each of which makes the decoder
 * walk the whole coefficient buffer again. Small on the wire, slow to decode unless the decoder bounds the scans.
 */
const jpegScanBomb = jpegMutator('jpeg-scan-bomb', (parts, rng) => {
  const sos = parts.findIndex((p) => p.marker === JPEG.SOS);
  const sof = parts.findIndex((p) => isSof(p.marker));
  if (sos < 0 || sof < 0) return undefined;
  const frame = parts[sof]!.bytes.slice();
  if (rng.chance(0.5)) frame[1] = 0xc2; // progressive, whatever the seed was
  const side = rng.pick([512, 1024, 2048, 4096]);
  writeU16BE(frame, 5, side);
  writeU16BE(frame, 7, side);
  parts[sof] = { marker: frame[1]!, bytes: frame };
  // The last scan header of the file (a progressive refinement scan, in progressive seeds), with a few data bytes.
  const last = parts.map((p, i) => [p, i] as const).filter(([p]) => p.marker === JPEG.SOS).pop()!;
  const scan: Uint8Array[] = [last[0].bytes, rng.bytes(rng.between(0, 4)).map((b) => (b === 0xff ? 0 : b))];
  const copies = rng.pick([100, 1000, 5000, 20000]);
  const eoi = parts.findIndex((p) => p.marker === JPEG.EOI);
  const bomb = concat(Array.from({ length: copies }, () => scan).flat());
  parts.splice(eoi >= 0 ? eoi : parts.length, 0, { marker: 'scan', bytes: bomb });
  return joinParts(parts);
});

const jpegSwapParts = jpegMutator('jpeg-swap-segments', (parts, rng) => {
  if (parts.length < 4) return undefined;
  const a = rng.between(1, parts.length - 1);
  const b = rng.between(1, parts.length - 1);
  [parts[a], parts[b]] = [parts[b]!, parts[a]!];
  return joinParts(parts);
});

const jpegNoEoi = jpegMutator('jpeg-no-eoi', (parts, rng) => {
  const eoi = parts.findIndex((p) => p.marker === JPEG.EOI);
  if (eoi < 0) return undefined;
  parts.splice(eoi);
  const last = parts[parts.length - 1];
  // Also cut into the last scan at times, so the data ends mid-MCU.
  if (last?.marker === 'scan' && rng.chance(0.5)) parts[parts.length - 1] = { marker: 'scan', bytes: last.bytes.subarray(0, rng.below(last.bytes.length)) };
  return joinParts(parts);
});

/** A segment's length field set to an extreme, its payload left as it was: the framing then lies. */
const jpegLengthField = jpegMutator('jpeg-segment-length', (parts, rng) =>
  editPart(parts, rng, (p) => p.marker !== 'scan' && p.bytes.length >= 4, (s) => {
    const length = readU16BE(s, 2);
    writeU16BE(s, 2, rng.pick([0, 1, 2, 3, length - 1, length + 1, 0xffff]));
  }),
);

const jpegScanData = jpegMutator('jpeg-scan-data', (parts, rng) =>
  editPart(parts, rng, (p) => p.marker === 'scan' && p.bytes.length > 0, (s) => {
    const at = rng.below(s.length);
    rng.weighted<() => void>([
      [() => (s[at]! ^= 1 << rng.below(8)), 3],
      [() => s.fill(rng.pick([0x00, 0xff]), at, Math.min(s.length, at + rng.between(1, 512))), 2],
      [() => {
        // A marker in the middle of the entropy data: RSTn, EOI, SOS, or any other.
        if (at + 1 < s.length) [s[at], s[at + 1]] = [0xff, rng.pick([0xd0, 0xd7, 0xd9, 0xda, 0xc4, 0xdb, 0x01, 0xfe])];
      }, 2],
    ])();
  }),
);

/** APP segments with hostile payloads: EXIF (read for orientation), ICC (applied on decode), Adobe (colour transform). */
const jpegAppGarbage = jpegMutator('jpeg-app-segment', (parts, rng) => {
  const payload = rng.weighted<() => [number, Uint8Array]>([
    [() => [JPEG.APP1, concat([ascii('Exif\0\0'), exifTiff(rng)])], 4],
    [() => {
      // ICC_PROFILE chunk header: sequence number and count (1-based; 0 and mismatches are invalid), then garbage.
      const body = concat([ascii('ICC_PROFILE\0'), Uint8Array.of(rng.pick([0, 1, 2, 255]), rng.pick([0, 1, 2, 255])), rng.bytes(rng.between(0, 400))]);
      if (body.length >= 18) writeU32BE(body, 14, rng.pick([0, 128, body.length - 14, 0xffffffff])); // profile size field
      return [JPEG.APP2, body];
    }, 3],
    [() => [JPEG.APP14, concat([ascii('Adobe'), Uint8Array.of(0, 100, 0, 0, 0, 0), Uint8Array.of(rng.pick([0, 1, 2, 3, 255]))])], 2],
    [() => [JPEG.APP0, concat([ascii('JFIF\0'), Uint8Array.of(1, 2, rng.pick([0, 1, 2, 255])), rng.bytes(4), Uint8Array.of(rng.pick([0, 1, 255]), rng.pick([0, 1, 255]))])], 1],
    [() => [JPEG.COM, rng.bytes(rng.pick([0, 1, 1000, 65533]))], 1],
  ])();
  const at = rng.between(1, Math.max(1, parts.findIndex((p) => p.marker === JPEG.SOS)));
  parts.splice(at, 0, { marker: payload[0], bytes: jpegSegment(payload[0], payload[1]) });
  return joinParts(parts);
});

/** A segment from another JPEG seed in place of this one's of the same kind (tables, frame, scan), or added. */
const jpegDonorSegment: Mutator = {
  name: 'jpeg-donor-segment',
  format: 'jpeg',
  apply(b, rng, donors) {
    const parts = parseJpeg(b);
    const donor = parseJpeg(rng.pick(ofFormat(donors, 'jpeg', b)));
    if (parts === undefined || donor === undefined || donor.length < 2) return undefined;
    const j = rng.between(1, donor.length - 1);
    const span = donor[j]!.marker === JPEG.SOS && donor[j + 1]?.marker === 'scan' ? 2 : 1;
    const same = parts.findIndex((p) => p.marker === donor[j]!.marker);
    if (same >= 0 && rng.chance(0.7)) {
      const ownSpan = parts[same]!.marker === JPEG.SOS && parts[same + 1]?.marker === 'scan' ? 2 : 1;
      parts.splice(same, ownSpan, ...donor.slice(j, j + span));
    } else {
      parts.splice(rng.between(1, parts.length), 0, ...donor.slice(j, j + span));
    }
    return joinParts(parts);
  },
};

const JPEG_MUTATORS: readonly Mutator[] = [
  jpegSofDims,
  jpegSofFields,
  jpegTableGarbage,
  jpegSosFields,
  jpegRestart,
  jpegDropPart,
  jpegDuplicatePart,
  jpegScanBomb,
  jpegSwapParts,
  jpegNoEoi,
  jpegLengthField,
  jpegScanData,
  jpegAppGarbage,
  jpegDonorSegment,
];

// ------------------------------------------------------------------------------------------------------------ PNG

/** Most PNG mutations fix the CRCs (or the decoder stops at the first chunk); 1 in 5 keeps the stale one. */
function pngMutator(name: string, apply: (chunks: PngChunk[], rng: Random, stale: Set<PngChunk>) => PngChunk[] | undefined): Mutator {
  return {
    name,
    format: 'png',
    apply(b, rng) {
      const chunks = parsePng(b);
      if (chunks === undefined) return undefined;
      const stale = new Set<PngChunk>();
      const out = apply(chunks, rng, stale);
      return out === undefined ? undefined : serializePng(out, stale);
    },
  };
}

function replaceChunk(chunks: PngChunk[], rng: Random, stale: Set<PngChunk>, type: string, edit: (data: Uint8Array) => Uint8Array): PngChunk[] | undefined {
  const i = chunks.findIndex((c) => c.type === type);
  if (i < 0) return undefined;
  const old = chunks[i]!;
  const next = { ...old, data: edit(old.data.slice()) };
  chunks[i] = next;
  if (rng.chance(0.2)) stale.add(next);
  return chunks;
}

const pngIhdr = pngMutator('png-ihdr', (chunks, rng, stale) =>
  replaceChunk(chunks, rng, stale, 'IHDR', (d) => {
    rng.weighted<() => void>([
      [() => writeU32BE(d, 0, side(rng, SIDES_32, readU32BE(d, 0), 0xffffffff)), 2], // width
      [() => writeU32BE(d, 4, side(rng, SIDES_32, readU32BE(d, 4), 0xffffffff)), 2], // height
      [() => (d[8] = rng.pick([0, 1, 2, 3, 4, 5, 8, 16, 32, 255])), 2], // bit depth
      [() => (d[9] = rng.pick([0, 1, 2, 3, 4, 5, 6, 7, 8, 255])), 2], // colour type
      [() => (d[10] = rng.pick([1, 255])), 1], // compression method
      [() => (d[11] = rng.pick([1, 255])), 1], // filter method
      [() => (d[12] = rng.pick([0, 1, 2, 255])), 1], // interlace
    ])();
    return d;
  }),
);

const idatData = (chunks: readonly PngChunk[]) => concat(chunks.filter((c) => c.type === 'IDAT').map((c) => c.data));

/** The image data in new IDAT chunks where the first one was; the old ones are removed. */
function withIdat(chunks: PngChunk[], idats: PngChunk[]): PngChunk[] | undefined {
  const first = chunks.findIndex((c) => c.type === 'IDAT');
  if (first < 0) return undefined;
  const rest = chunks.filter((c) => c.type !== 'IDAT');
  rest.splice(first, 0, ...idats);
  return rest;
}

const pngIdatSplit = pngMutator('png-idat-split', (chunks, rng) => {
  const data = idatData(chunks);
  const cuts = Array.from({ length: rng.between(1, 64) }, () => rng.below(data.length + 1)).sort((a, b) => a - b);
  const bounds = [0, ...cuts, data.length];
  // Zero-length IDATs (two equal cuts) are legal and a classic edge case: kept.
  return withIdat(chunks, bounds.slice(1).map((end, i) => ({ type: 'IDAT', data: data.subarray(bounds[i]!, end), crc: 0 })));
});

const MAX_INFLATE = 4 * 2 ** 20;

/** The zlib stream: garbage in the compressed bytes, or valid zlib around bad scanlines (filter types, lengths). */
const pngZlib = pngMutator('png-zlib', (chunks, rng) => {
  const data = idatData(chunks);
  if (data.length < 4) return undefined;
  let stream: Uint8Array;
  if (rng.chance(0.4)) {
    stream = data.slice();
    rng.weighted<() => void>([
      [() => (stream[rng.below(stream.length)]! ^= 1 << rng.below(8)), 3],
      [() => ([stream[0], stream[1]] = [rng.pick([0x78, 0x08, 0x7f, 0xff, 0x00]), rng.pick([0x9c, 0x01, 0xda, 0x00, 0xff])]), 1], // header
      [() => writeU32BE(stream, stream.length - 4, rng.next()), 1], // Adler-32
      [() => stream.fill(rng.pick([0, 0xff]), 2 + rng.below(stream.length - 2)), 1],
    ])();
  } else {
    let raw: Uint8Array;
    try {
      // Bounded: the bomb seed inflates to 75 MB, which would count in the child's peak RSS against the image path.
      raw = inflateSync(data, { maxOutputLength: MAX_INFLATE });
    } catch {
      return undefined;
    }
    raw = rng.weighted<() => Uint8Array>([
      [() => { const r = raw.slice(); r[rng.below(r.length)] = rng.between(5, 255); return r; }, 2], // a bad filter byte (or pixel)
      [() => raw.subarray(0, rng.below(raw.length)), 2], // too few scanlines
      [() => concat([raw, rng.bytes(rng.between(1, 4096))]), 1], // too much data
      [() => { const r = raw.slice(); r.fill(rng.pick([0, 4, 0xff]), rng.below(r.length)); return r; }, 1],
    ])();
    stream = deflateSync(raw, { level: rng.pick([0, 1, 9]) });
  }
  return withIdat(chunks, [{ type: 'IDAT', data: stream, crc: 0 }]);
});

const pngDropChunk = pngMutator('png-drop-chunk', (chunks, rng) => {
  if (chunks.length < 2) return undefined;
  chunks.splice(rng.below(chunks.length), 1);
  return chunks;
});

const pngDuplicateChunk = pngMutator('png-duplicate-chunk', (chunks, rng) => {
  if (chunks.length === 0) return undefined;
  const i = rng.below(chunks.length);
  chunks.splice(rng.below(chunks.length + 1), 0, ...Array.from({ length: rng.chance(0.2) ? rng.between(2, 100) : 1 }, () => chunks[i]!));
  return chunks;
});

/** Thousands of small chunks: empty IDATs between the real ones, or ancillary text and unknown chunks. */
const pngChunkFlood = pngMutator('png-chunk-flood', (chunks, rng) => {
  const idat = chunks.findIndex((c) => c.type === 'IDAT');
  if (idat < 0) return undefined;
  const filler: PngChunk = rng.weighted<() => PngChunk>([
    [() => ({ type: 'IDAT', data: new Uint8Array(0), crc: 0 }), 1],
    [() => ({ type: 'tEXt', data: ascii('k\0v'), crc: 0 }), 1],
    [() => ({ type: 'prVt', data: rng.bytes(8), crc: 0 }), 1],
    [() => ({ type: 'sPLT', data: concat([ascii('p\0'), Uint8Array.of(8), rng.bytes(12)]), crc: 0 }), 1],
  ])();
  chunks.splice(filler.type === 'IDAT' ? idat + 1 : idat, 0, ...Array.from({ length: rng.pick([1000, 5000, 20000]) }, () => filler));
  return chunks;
});

const pngSwapChunks = pngMutator('png-swap-chunks', (chunks, rng) => {
  if (chunks.length < 2) return undefined;
  const a = rng.below(chunks.length);
  const b = rng.below(chunks.length);
  [chunks[a], chunks[b]] = [chunks[b]!, chunks[a]!];
  return chunks;
});

/** An ancillary (or unknown critical) chunk with hostile content, placed before the image data or anywhere. */
const pngInsertChunk = pngMutator('png-insert-chunk', (chunks, rng, stale) => {
  const be32 = (v: number) => { const d = new Uint8Array(4); writeU32BE(d, 0, v); return d; };
  const [type, data] = rng.weighted<() => [string, Uint8Array]>([
    [() => ['PLTE', rng.bytes(rng.pick([0, 3, 6, 765, 768, 771, 1024]))], 2],
    [() => ['tRNS', rng.bytes(rng.pick([0, 1, 2, 6, 255, 256, 300]))], 2],
    [() => ['iCCP', concat([ascii('icc\0\0'), rng.chance(0.5) ? rng.bytes(rng.between(0, 300)) : deflateSync(rng.bytes(rng.between(0, 600)))])], 2],
    [() => ['eXIf', exifTiff(rng)], 3],
    [() => ['gAMA', be32(rng.pick(U32_EXTREMES))], 1],
    [() => ['cHRM', concat(Array.from({ length: 8 }, () => be32(rng.pick(U32_EXTREMES))))], 1],
    [() => ['sRGB', Uint8Array.of(rng.pick([0, 3, 4, 255]))], 1],
    [() => ['sBIT', rng.bytes(rng.between(0, 5))], 1],
    [() => ['cICP', Uint8Array.of(rng.next() & 0xff, rng.next() & 0xff, rng.pick([0, 1, 255]), rng.pick([0, 1, 255]))], 1],
    [() => ['pHYs', concat([be32(rng.pick(U32_EXTREMES)), be32(rng.pick(U32_EXTREMES)), Uint8Array.of(rng.pick([0, 1, 255]))])], 1],
    [() => [rng.pick(['zTXt', 'iTXt', 'tEXt']), concat([ascii('Comment\0'), rng.bytes(rng.between(0, 200))])], 1],
    [() => ['acTL', concat([be32(rng.pick(U32_EXTREMES)), be32(rng.pick([0, 1, 0xffffffff]))])], 1],
    [() => ['fcTL', concat([be32(0), ...Array.from({ length: 4 }, () => be32(rng.pick(SIDES_32))), Uint8Array.of(0, 1, 0, 1, rng.pick([0, 3]), rng.pick([0, 2]))])], 1],
    [() => [rng.pick(['XyZw', 'ABCD', 'IDAT', 'IEND']), rng.bytes(rng.between(0, 64))], 1], // unknown critical / stray
  ])();
  const chunk: PngChunk = { type, data, crc: 0 };
  if (rng.chance(0.1)) stale.add(chunk);
  const idat = chunks.findIndex((c) => c.type === 'IDAT');
  chunks.splice(rng.chance(0.8) && idat > 0 ? rng.between(1, idat) : rng.below(chunks.length + 1), 0, chunk);
  return chunks;
});

/** Raw edits of the framing itself: a chunk's length field or its CRC, after serialisation. */
const pngFraming: Mutator = {
  name: 'png-length-crc',
  format: 'png',
  apply(b, rng) {
    const chunks = parsePng(b);
    if (chunks === undefined || chunks.length === 0) return undefined;
    const i = rng.below(chunks.length);
    let at = 8;
    for (let k = 0; k < i; k++) at += 12 + chunks[k]!.data.length;
    const out = b.slice();
    if (rng.chance(0.5)) writeU32BE(out, at, rng.pick([0, 1, chunks[i]!.data.length + 1, 0x7fffffff, 0x80000000, 0xffffffff]));
    else writeU32BE(out, at + 8 + chunks[i]!.data.length, rng.next());
    return out;
  },
};

/** A chunk from another PNG seed (its IHDR, PLTE, tRNS, iCCP, IDAT...) in place of this one's of the same type, or added. */
const pngDonorChunk: Mutator = {
  name: 'png-donor-chunk',
  format: 'png',
  apply(b, rng, donors) {
    const chunks = parsePng(b);
    const donor = parsePng(rng.pick(ofFormat(donors, 'png', b)));
    if (chunks === undefined || donor === undefined || donor.length === 0) return undefined;
    const chunk = rng.pick(donor);
    const same = chunks.findIndex((c) => c.type === chunk.type);
    if (same >= 0 && rng.chance(0.7)) chunks[same] = chunk;
    else chunks.splice(rng.between(0, chunks.length), 0, chunk);
    return serializePng(chunks);
  },
};

const PNG_MUTATORS: readonly Mutator[] = [pngIhdr, pngIhdr, pngIdatSplit, pngZlib, pngZlib, pngDropChunk, pngDuplicateChunk, pngChunkFlood, pngSwapChunks, pngInsertChunk, pngInsertChunk, pngFraming, pngDonorChunk];

// ----------------------------------------------------------------------------------------------------------- WebP

function webpMutator(name: string, apply: (chunks: RiffChunk[], rng: Random) => RiffChunk[] | Uint8Array | undefined): Mutator {
  return {
    name,
    format: 'webp',
    apply(b, rng) {
      const chunks = parseWebp(b);
      if (chunks === undefined) return undefined;
      const out = apply(chunks, rng);
      return out === undefined || out instanceof Uint8Array ? out : serializeWebp(out);
    },
  };
}

function editChunk(chunks: RiffChunk[], rng: Random, types: readonly string[], edit: (d: Uint8Array) => Uint8Array | void): RiffChunk[] | undefined {
  const candidates = chunks.map((c, i) => [c, i] as const).filter(([c]) => types.includes(c.type));
  if (candidates.length === 0) return undefined;
  const [chunk, i] = rng.pick(candidates);
  const data = chunk.data.slice();
  chunks[i] = { type: chunk.type, data: edit(data) ?? data };
  return chunks;
}

/** The VP8X chunk of an extended file, made from the first frame when the file is a simple one. */
function vp8x(flags: number, width: number, height: number): RiffChunk {
  const data = new Uint8Array(10);
  data[0] = flags;
  writeU24LE(data, 4, width - 1);
  writeU24LE(data, 7, height - 1);
  return { type: 'VP8X', data };
}

const webpRiffSize: Mutator = {
  name: 'webp-riff-size',
  format: 'webp',
  apply(b, rng) {
    if (parseWebp(b) === undefined) return undefined;
    const out = b.slice();
    writeU32LE(out, 4, rng.pick([0, 1, 4, 12, out.length - 8 - rng.between(1, 16), out.length - 7, out.length, 0x7fffffff, 0xfffffff6, 0xffffffff]));
    return out;
  },
};

/** A chunk's size field set to an extreme, after serialisation (the RIFF framing then lies). */
const webpChunkSize: Mutator = {
  name: 'webp-chunk-size',
  format: 'webp',
  apply(b, rng) {
    const chunks = parseWebp(b);
    if (chunks === undefined || chunks.length === 0) return undefined;
    const i = rng.below(chunks.length);
    let at = 12;
    for (let k = 0; k < i; k++) at += 8 + chunks[k]!.data.length + (chunks[k]!.data.length & 1);
    const out = b.slice();
    const size = chunks[i]!.data.length;
    writeU32LE(out, at + 4, rng.pick([0, 1, size - 1, size + 1, size + 2, 0x7fffffff, 0xfffffff0, 0xffffffff]));
    return out;
  },
};

const webpVp8Header = webpMutator('webp-vp8-header', (chunks, rng) =>
  editChunk(chunks, rng, ['VP8 '], (d) => {
    if (d.length < 10) return;
    rng.weighted<() => void>([
      [() => (d[0] = (d[0]! & 0xe0) | rng.pick([0x01, 0x0e, 0x10, 0x1f, 0x00])), 1], // key frame bit, version, show frame
      [() => { const v = rng.pick([0, 1, 0x7ffff]); d[0] = (d[0]! & 0x1f) | ((v & 7) << 5); d[1] = (v >>> 3) & 0xff; d[2] = (v >>> 11) & 0xff; }, 2], // first partition size
      [() => d.set(rng.bytes(3), 3), 1], // start code
      [() => writeU16LE(d, 6, (rng.pick(SIDES_16) & 0x3fff) | (rng.below(4) << 14)), 2], // width and scale
      [() => writeU16LE(d, 8, (rng.pick(SIDES_16) & 0x3fff) | (rng.below(4) << 14)), 2], // height and scale
      [() => { const at = 10 + rng.below(Math.max(1, d.length - 10)); d.fill(rng.pick([0, 0xff]), at, at + rng.between(1, 64)); }, 2], // partitions
    ])();
  }),
);

const webpVp8lHeader = webpMutator('webp-vp8l-header', (chunks, rng) =>
  editChunk(chunks, rng, ['VP8L'], (d) => {
    if (d.length < 5) return;
    // Signature 0x2f, then 14 bits width-1, 14 bits height-1, 1 bit alpha, 3 bits version (must be 0).
    let bits = (d[1]! | (d[2]! << 8) | (d[3]! << 16) | (d[4]! << 24)) >>> 0;
    rng.weighted<() => void>([
      [() => (d[0] = rng.pick([0x00, 0x2e, 0x2f, 0xff])), 1],
      [() => (bits = ((bits & ~0x3fff) | rng.pick([0, 1, 0x3fff, 0x2000])) >>> 0), 2],
      [() => (bits = ((bits & ~(0x3fff << 14)) | (rng.pick([0, 1, 0x3fff, 0x2000]) << 14)) >>> 0), 2],
      [() => (bits = (bits ^ (1 << 28)) >>> 0), 1],
      [() => (bits = ((bits & 0x1fffffff) | (rng.between(1, 7) << 29)) >>> 0), 1],
      [() => { for (let n = rng.between(1, 8); n > 0; n--) d[5 + rng.below(Math.max(1, d.length - 5))]! ^= 1 << rng.below(8); }, 3], // transforms, Huffman codes
    ])();
    writeU32LE(d, 1, bits);
  }),
);

/** The picture size a simple file's VP8 or VP8L header gives (the canvas a valid VP8X would declare). */
function imageSize(chunks: readonly RiffChunk[]): [number, number] {
  const image = chunks.find((c) => c.type === 'VP8 ' || c.type === 'VP8L');
  if (image?.type === 'VP8 ' && image.data.length >= 10) return [(image.data[6]! | (image.data[7]! << 8)) & 0x3fff, (image.data[8]! | (image.data[9]! << 8)) & 0x3fff];
  if (image?.type === 'VP8L' && image.data.length >= 5) {
    const bits = readU32LE(image.data, 1);
    return [(bits & 0x3fff) + 1, ((bits >>> 14) & 0x3fff) + 1];
  }
  return [1, 1];
}

/** VP8X: the canvas size, the feature flags, or an extended header added to a simple file. */
const webpVp8x = webpMutator('webp-vp8x', (chunks, rng) => {
  const existing = chunks.findIndex((c) => c.type === 'VP8X');
  if (existing < 0) {
    // ICC 0x20, alpha 0x10, EXIF 0x08, XMP 0x04, animation 0x02: claims the file may or may not honour.
    const flags = rng.pick([0x00, 0x00, 0x10, 0x20, 0x08, 0x02, 0x3e, 0xff]);
    const [w, h] = imageSize(chunks);
    const canvas = rng.chance(0.6) ? [w, h] : [rng.pick([1, w + 1, 0x1000000]), rng.pick([1, h - 1, 0x1000000])];
    chunks.unshift(vp8x(flags, canvas[0]!, canvas[1]!));
    return chunks;
  }
  return editChunk(chunks, rng, ['VP8X'], (d) => {
    if (d.length < 10) return;
    rng.weighted<() => void>([
      [() => (d[0] = rng.pick([0x00, 0x02, 0x10, 0x12, 0x20, 0x3e, 0xc1, 0xff])), 2],
      [() => writeU24LE(d, 4, side(rng, SIDES_24, readU24LE(d, 4), 0xffffff)), 2],
      [() => writeU24LE(d, 7, side(rng, SIDES_24, readU24LE(d, 7), 0xffffff)), 2],
      [() => d.set(rng.bytes(3), 1), 1], // reserved bits
    ])();
  });
});

/** Animation: ANMF frame rectangles and durations at extremes, frames repeated, ANIM dropped or added. */
const webpAnim = webpMutator('webp-anim', (chunks, rng) => {
  const frames = chunks.filter((c) => c.type === 'ANMF');
  if (frames.length === 0) {
    // A still image turned into a one-frame animation, its frame rectangle right or hostile.
    const image = chunks.findIndex((c) => c.type === 'VP8 ' || c.type === 'VP8L');
    if (image < 0) return undefined;
    const [w, h] = imageSize(chunks);
    const honest = rng.chance(0.5);
    const head = new Uint8Array(16);
    writeU24LE(head, 0, honest ? 0 : rng.pick([0, 1, 0x7fffff]));
    writeU24LE(head, 3, honest ? 0 : rng.pick([0, 1, 0x7fffff]));
    writeU24LE(head, 6, honest ? w - 1 : rng.pick(SIDES_24));
    writeU24LE(head, 9, honest ? h - 1 : rng.pick(SIDES_24));
    writeU24LE(head, 12, rng.pick([0, 100, 0xffffff]));
    const inner = serializeWebp([chunks[image]!]).subarray(12);
    const anim: RiffChunk = { type: 'ANIM', data: Uint8Array.of(0, 0, 0, 0, 0, 0) };
    const canvas = honest ? [w, h] : [rng.pick([1, w, 0xffffff]), rng.pick([1, h, 0xffffff])];
    return [vp8x(0x02 | (rng.chance(0.5) ? 0x10 : 0), canvas[0]!, canvas[1]!), anim, { type: 'ANMF', data: concat([head, inner]) }];
  }
  return rng.weighted<() => RiffChunk[] | undefined>([
    [() => editChunk(chunks, rng, ['ANMF'], (d) => {
      const field = rng.below(5); // x/2, y/2, width-1, height-1, duration: 24 bits each
      writeU24LE(d, field * 3, rng.pick(SIDES_24));
      if (rng.chance(0.3)) d[15] = rng.pick([0x00, 0x01, 0x02, 0x03, 0xff]);
    }), 3],
    [() => { chunks.push(...Array.from({ length: rng.between(2, 200) }, () => frames[0]!)); return chunks; }, 1],
    [() => chunks.filter((c) => c.type !== 'ANIM'), 1],
    [() => editChunk(chunks, rng, ['ANIM'], (d) => d.set(rng.bytes(Math.min(d.length, 6)))), 1],
  ])();
});

/** ALPH: the header byte (compression, filter, pre-processing, reserved bits) and the alpha data itself. */
const webpAlpha = webpMutator('webp-alph', (chunks, rng) => {
  if (!chunks.some((c) => c.type === 'ALPH')) {
    const image = chunks.findIndex((c) => c.type === 'VP8 ');
    if (image < 0) return undefined;
    const alpha: RiffChunk = { type: 'ALPH', data: concat([Uint8Array.of(rng.pick([0x00, 0x01, 0x02, 0x03, 0x3f, 0xff])), rng.bytes(rng.pick([0, 1, 100, 5000]))]) };
    chunks.splice(image, 0, alpha);
    if (!chunks.some((c) => c.type === 'VP8X')) chunks.unshift(vp8x(0x10, 320, 240));
    return chunks;
  }
  return editChunk(chunks, rng, ['ALPH'], (d) => {
    if (d.length === 0) return;
    if (rng.chance(0.4)) d[0] = rng.pick([0x00, 0x01, 0x02, 0x03, 0x04, 0x0c, 0x30, 0xc0, 0xff]);
    else if (rng.chance(0.5)) return d.subarray(0, rng.below(d.length));
    else for (let n = rng.between(1, 8); n > 0; n--) d[rng.below(d.length)]! ^= 1 << rng.below(8);
  });
});

/** ICCP, EXIF and XMP chunks with garbage, declared in VP8X or not. */
const webpMetadata = webpMutator('webp-metadata', (chunks, rng) => {
  const chunk: RiffChunk = rng.weighted<() => RiffChunk>([
    [() => ({ type: 'ICCP', data: rng.bytes(rng.pick([0, 4, 128, 132, 600])) }), 2],
    [() => ({ type: 'EXIF', data: rng.chance(0.5) ? concat([ascii('Exif\0\0'), exifTiff(rng)]) : exifTiff(rng) }), 3],
    [() => ({ type: 'XMP ', data: rng.bytes(rng.between(0, 200)) }), 1],
  ])();
  const head = chunks.findIndex((c) => c.type === 'VP8X');
  if (head < 0) chunks.unshift(vp8x(0x2c, 320, 240));
  chunks.splice(rng.between(1, chunks.length), 0, chunk);
  return chunks;
});

const webpChunkOps = webpMutator('webp-chunk-ops', (chunks, rng) => {
  if (chunks.length === 0) return undefined;
  const i = rng.below(chunks.length);
  rng.weighted<() => void>([
    [() => chunks.splice(i, 1), 1],
    [() => chunks.splice(rng.below(chunks.length + 1), 0, chunks[i]!), 1],
    [() => { const j = rng.below(chunks.length); [chunks[i], chunks[j]] = [chunks[j]!, chunks[i]!]; }, 1],
    [() => chunks.splice(rng.below(chunks.length + 1), 0, { type: rng.pick(['VP8 ', 'VP8L', 'ABCD', '\0\0\0\0']), data: rng.bytes(rng.between(0, 64)) }), 1],
  ])();
  return chunks;
});

/** A chunk from another WebP seed (VP8, VP8L, ALPH, VP8X, ANMF...) in place of this one's of the same type, or added. */
const webpDonorChunk: Mutator = {
  name: 'webp-donor-chunk',
  format: 'webp',
  apply(b, rng, donors) {
    const chunks = parseWebp(b);
    const donor = parseWebp(rng.pick(ofFormat(donors, 'webp', b)));
    if (chunks === undefined || donor === undefined || donor.length === 0) return undefined;
    const chunk = rng.pick(donor);
    const same = chunks.findIndex((c) => c.type === chunk.type);
    if (same >= 0 && rng.chance(0.7)) chunks[same] = chunk;
    else chunks.splice(rng.between(0, chunks.length), 0, chunk);
    return serializeWebp(chunks);
  },
};

const WEBP_MUTATORS: readonly Mutator[] = [webpRiffSize, webpChunkSize, webpVp8Header, webpVp8Header, webpVp8lHeader, webpVp8lHeader, webpVp8x, webpAnim, webpAlpha, webpMetadata, webpChunkOps, webpDonorChunk];

export const FORMAT_MUTATORS: Readonly<Record<SeedFormat, readonly Mutator[]>> = { jpeg: JPEG_MUTATORS, png: PNG_MUTATORS, webp: WEBP_MUTATORS };

/** Every mutator's name, for tables that list them all (each name once). */
export const MUTATOR_NAMES: readonly string[] = [...new Set([...BYTE_MUTATORS, ...JPEG_MUTATORS, ...PNG_MUTATORS, ...WEBP_MUTATORS].map((m) => m.name))];
