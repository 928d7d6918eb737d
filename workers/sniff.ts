/**
 * Format sniffing from the first bytes, before any decoder sees the upload. The allow-list is JPEG, PNG and WebP:
 * everything else (SVG above all: librsvg is a large attack surface, and SVG can reference other resources) is
 * refused here, whatever the declared Content-Type says.
 */

export type InputFormat = 'jpeg' | 'png' | 'webp';

export type SniffResult = { ok: true; format: InputFormat } | { ok: false; what: string };

const startsWith = (bytes: Uint8Array, offset: number, signature: readonly number[]) =>
  bytes.length >= offset + signature.length && signature.every((b, i) => bytes[offset + i] === b);

const ascii = (text: string) => [...text].map((c) => c.charCodeAt(0));

/** Well-known formats we refuse, named so the error message can say what was sent. */
const REFUSED: ReadonlyArray<[string, (b: Uint8Array) => boolean]> = [
  ['GIF', (b) => startsWith(b, 0, ascii('GIF8'))],
  ['TIFF', (b) => startsWith(b, 0, [0x49, 0x49, 0x2a, 0x00]) || startsWith(b, 0, [0x4d, 0x4d, 0x00, 0x2a])],
  ['BMP', (b) => startsWith(b, 0, ascii('BM'))],
  ['HEIF/AVIF', (b) => startsWith(b, 4, ascii('ftyp'))],
  ['PDF', (b) => startsWith(b, 0, ascii('%PDF'))],
  ['SVG', (b) => /^\s*(<\?xml|<svg|<!DOCTYPE svg)/i.test(new TextDecoder().decode(b.subarray(0, 256)))],
];

export function sniffFormat(bytes: Uint8Array): SniffResult {
  if (startsWith(bytes, 0, [0xff, 0xd8, 0xff])) return { ok: true, format: 'jpeg' };
  if (startsWith(bytes, 0, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return { ok: true, format: 'png' };
  if (startsWith(bytes, 0, ascii('RIFF')) && startsWith(bytes, 8, ascii('WEBP'))) return { ok: true, format: 'webp' };
  const refused = REFUSED.find(([, test]) => test(bytes));
  return { ok: false, what: refused ? refused[0] : bytes.length === 0 ? 'an empty file' : 'an unrecognised format' };
}
