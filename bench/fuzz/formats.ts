/**
 * The containers of the three accepted formats, split into their parts and put back together, so that mutators can
 * work on segments and chunks instead of blind bytes: JPEG marker segments (and the entropy-coded data after each
 * SOS), PNG chunks (with their CRCs), WebP's RIFF chunks. Parsers are lenient about the payloads and strict about
 * the framing; they return undefined when the bytes no longer frame (a mutator then falls back to byte-level work).
 */

// ---------------------------------------------------------------------------------------------------------- bytes

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export const ascii = (text: string): Uint8Array => Uint8Array.from(text, (c) => c.charCodeAt(0));
export const fourcc = (bytes: Uint8Array, at: number): string => String.fromCharCode(...bytes.subarray(at, at + 4));

export function readU16BE(b: Uint8Array, at: number): number {
  return ((b[at] ?? 0) << 8) | (b[at + 1] ?? 0);
}
export function writeU16BE(b: Uint8Array, at: number, v: number): void {
  if (at + 2 > b.length) return;
  b[at] = (v >>> 8) & 0xff;
  b[at + 1] = v & 0xff;
}
export function writeU16LE(b: Uint8Array, at: number, v: number): void {
  if (at + 2 > b.length) return;
  b[at] = v & 0xff;
  b[at + 1] = (v >>> 8) & 0xff;
}
export function readU32BE(b: Uint8Array, at: number): number {
  return (((b[at] ?? 0) << 24) | ((b[at + 1] ?? 0) << 16) | ((b[at + 2] ?? 0) << 8) | (b[at + 3] ?? 0)) >>> 0;
}
export function writeU32BE(b: Uint8Array, at: number, v: number): void {
  if (at + 4 > b.length) return;
  b[at] = (v >>> 24) & 0xff;
  b[at + 1] = (v >>> 16) & 0xff;
  b[at + 2] = (v >>> 8) & 0xff;
  b[at + 3] = v & 0xff;
}
export function readU32LE(b: Uint8Array, at: number): number {
  return ((b[at] ?? 0) | ((b[at + 1] ?? 0) << 8) | ((b[at + 2] ?? 0) << 16) | ((b[at + 3] ?? 0) << 24)) >>> 0;
}
export function writeU32LE(b: Uint8Array, at: number, v: number): void {
  if (at + 4 > b.length) return;
  b[at] = v & 0xff;
  b[at + 1] = (v >>> 8) & 0xff;
  b[at + 2] = (v >>> 16) & 0xff;
  b[at + 3] = (v >>> 24) & 0xff;
}
export function readU24LE(b: Uint8Array, at: number): number {
  return (b[at] ?? 0) | ((b[at + 1] ?? 0) << 8) | ((b[at + 2] ?? 0) << 16);
}
export function writeU24LE(b: Uint8Array, at: number, v: number): void {
  if (at + 3 > b.length) return;
  b[at] = v & 0xff;
  b[at + 1] = (v >>> 8) & 0xff;
  b[at + 2] = (v >>> 16) & 0xff;
}

// ----------------------------------------------------------------------------------------------------------- JPEG

/** A JPEG part: a marker segment (FF xx, with its length and payload when it has one), or entropy-coded data. */
export interface JpegPart {
  /** The marker byte (0xC0 for SOF0...), or 'scan' for the entropy-coded data that follows an SOS segment. */
  marker: number | 'scan';
  /** The whole part as it appears in the file, marker included. */
  bytes: Uint8Array;
}

/** Markers without a length field: SOI, EOI, RST0-7, TEM. */
const standalone = (m: number) => m === 0xd8 || m === 0xd9 || (m >= 0xd0 && m <= 0xd7) || m === 0x01;
export const isSof = (m: number | 'scan') => typeof m === 'number' && m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc;
export const JPEG = { SOI: 0xd8, EOI: 0xd9, SOS: 0xda, DQT: 0xdb, DHT: 0xc4, DRI: 0xdd, APP0: 0xe0, APP1: 0xe1, APP2: 0xe2, APP14: 0xee, COM: 0xfe };

export function parseJpeg(b: Uint8Array): JpegPart[] | undefined {
  if (b.length < 4 || b[0] !== 0xff || b[1] !== 0xd8) return undefined;
  const parts: JpegPart[] = [{ marker: JPEG.SOI, bytes: b.subarray(0, 2) }];
  let at = 2;
  while (at < b.length) {
    if (b[at] !== 0xff) {
      parts.push({ marker: 'scan', bytes: b.subarray(at) }); // trailing garbage: kept as opaque data
      break;
    }
    let m = b[at + 1];
    let start = at;
    while (m === 0xff && start + 2 < b.length) m = b[++start + 1]; // fill bytes
    if (m === undefined) return undefined;
    if (standalone(m)) {
      parts.push({ marker: m, bytes: b.subarray(at, start + 2) });
      at = start + 2;
      if (m === JPEG.EOI && at < b.length) {
        parts.push({ marker: 'scan', bytes: b.subarray(at) });
        break;
      }
      continue;
    }
    const length = readU16BE(b, start + 2);
    if (length < 2 || start + 2 + length > b.length) return undefined;
    parts.push({ marker: m, bytes: b.subarray(at, start + 2 + length) });
    at = start + 2 + length;
    if (m === JPEG.SOS) {
      // Entropy-coded data runs to the next marker that is neither a stuffed 0xFF00 nor a restart marker.
      let end = at;
      while (end < b.length) {
        if (b[end] === 0xff && end + 1 < b.length) {
          const next = b[end + 1]!;
          if (next !== 0x00 && !(next >= 0xd0 && next <= 0xd7) && next !== 0xff) break;
        }
        end++;
      }
      if (end > at) parts.push({ marker: 'scan', bytes: b.subarray(at, end) });
      at = end;
    }
  }
  return parts;
}

/** A marker segment with the given payload (length computed, clamped to what the 16-bit field can say). */
export function jpegSegment(marker: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + payload.length);
  out[0] = 0xff;
  out[1] = marker;
  writeU16BE(out, 2, Math.min(0xffff, payload.length + 2));
  out.set(payload, 4);
  return out;
}

// ------------------------------------------------------------------------------------------------------------ PNG

export const PNG_SIGNATURE = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);

export interface PngChunk {
  type: string;
  data: Uint8Array;
  /** The CRC as stored in the file (not checked); `serializePng` recomputes it unless told to keep it. */
  crc: number;
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32(...parts: Uint8Array[]): number {
  let c = 0xffffffff;
  for (const p of parts) for (let i = 0; i < p.length; i++) c = CRC_TABLE[(c ^ p[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export function parsePng(b: Uint8Array): PngChunk[] | undefined {
  if (b.length < 8 || PNG_SIGNATURE.some((v, i) => b[i] !== v)) return undefined;
  const chunks: PngChunk[] = [];
  let at = 8;
  while (at + 12 <= b.length) {
    const length = readU32BE(b, at);
    if (at + 12 + length > b.length) return undefined;
    chunks.push({ type: fourcc(b, at + 4), data: b.subarray(at + 8, at + 8 + length), crc: readU32BE(b, at + 8 + length) });
    at += 12 + length;
  }
  return at === b.length ? chunks : undefined;
}

/** Chunks back to a file. `keepCrc`: the chunks whose stored (possibly now wrong) CRC is written as it is. */
export function serializePng(chunks: readonly PngChunk[], keepCrc: ReadonlySet<PngChunk> = new Set()): Uint8Array {
  const parts: Uint8Array[] = [PNG_SIGNATURE];
  for (const chunk of chunks) {
    const head = new Uint8Array(8);
    writeU32BE(head, 0, chunk.data.length);
    head.set(ascii(chunk.type.padEnd(4, ' ').slice(0, 4)), 4);
    const tail = new Uint8Array(4);
    writeU32BE(tail, 0, keepCrc.has(chunk) ? chunk.crc : crc32(head.subarray(4), chunk.data));
    parts.push(head, chunk.data, tail);
  }
  return concat(parts);
}

// ----------------------------------------------------------------------------------------------------------- WebP

export interface RiffChunk {
  type: string;
  data: Uint8Array;
}

/** The chunks after "RIFF" size "WEBP"; the RIFF size field is not trusted (the file's real length is used). */
export function parseWebp(b: Uint8Array): RiffChunk[] | undefined {
  if (b.length < 12 || fourcc(b, 0) !== 'RIFF' || fourcc(b, 8) !== 'WEBP') return undefined;
  const chunks: RiffChunk[] = [];
  let at = 12;
  while (at + 8 <= b.length) {
    const size = readU32LE(b, at + 4);
    if (at + 8 + size > b.length) return undefined;
    chunks.push({ type: fourcc(b, at), data: b.subarray(at + 8, at + 8 + size) });
    at += 8 + size + (size & 1);
  }
  return chunks;
}

/** Chunks back to a file with a correct RIFF size (mutators that want a wrong one write it afterwards). */
export function serializeWebp(chunks: readonly RiffChunk[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const chunk of chunks) {
    const head = new Uint8Array(8);
    head.set(ascii(chunk.type.padEnd(4, ' ').slice(0, 4)), 0);
    writeU32LE(head, 4, chunk.data.length);
    parts.push(head, chunk.data);
    if (chunk.data.length & 1) parts.push(new Uint8Array(1));
  }
  const body = concat(parts);
  const out = new Uint8Array(12 + body.length);
  out.set(ascii('RIFF'), 0);
  writeU32LE(out, 4, body.length + 4);
  out.set(ascii('WEBP'), 8);
  out.set(body, 12);
  return out;
}
