/**
 * Bounds on a multipart body's envelope, which the multipart parser (busboy) does not enforce: it skips any amount
 * of preamble before the first boundary, accepts part headers of any size, and silently drops header lines beyond
 * `headerPairs`. A form from a browser or curl has no preamble and two or three short header lines per part, so
 * anything far beyond that is refused with 400 (and the connection closed), instead of being read or truncated:
 *
 *  - preamble (bytes before the first boundary): at most MAX_PREAMBLE_BYTES;
 *  - one part's header block: at most MAX_PART_HEADER_BYTES, and at most `headerPairs` lines.
 *
 * The watcher reads the same chunks the parser reads (a second 'data' listener), keeps no copy of part contents
 * beyond the few bytes needed to find a boundary split across chunks, and wipes those.
 */
import type { FastifyRequest } from 'fastify';
import { BadRequestError } from '../errors.js';

/** No client sends a preamble; RFC 2046 allows one, for mail readers. */
export const MAX_PREAMBLE_BYTES = 1024;
/** Content-Disposition with a long file name, and Content-Type: well under this. */
export const MAX_PART_HEADER_BYTES = 2048;

const CRLF2 = Buffer.from('\r\n\r\n');

/** One parameter of a Content-Type: a plain name, then a plain value or a quoted one without quotes or escapes in it. */
const PARAMETER = /^\s*([A-Za-z0-9-]+)\s*=\s*(?:"([^"\\]*)"|([^"\\\s]+))\s*$/;
/** RFC 2046: 1 to 70 of these characters, a space only inside (and so only quoted). */
const BOUNDARY = /^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$/;

/**
 * What separates two parts of this request's multipart body, `\r\n--<boundary>`; undefined unless its Content-Type
 * has exactly one `boundary` parameter, written as RFC 2046 writes it, and parameters as plain as that besides.
 *
 * Why so strict: the multipart parser (busboy) reads the header with its own rules (quoted strings with escapes,
 * RFC 2231 `name*=` encodings, unquoted spaces dropped), and both this file's bounds and the upload reader
 * (`collectWiping`, which must recognise the parser's own bytes: plugins/uploads.ts) need the very boundary the parser
 * uses. Browsers, curl and HTTP libraries send `boundary=<letters, digits and dashes>`, quoted at most; on anything else
 * the two readings could differ, so the form is refused instead (routes/cartoonize.ts).
 */
export function partDelimiter(request: FastifyRequest): Buffer | undefined {
  const [, ...parameters] = (request.headers['content-type'] ?? '').split(';');
  let boundary: string | undefined;
  for (const parameter of parameters) {
    if (parameter.trim() === '') continue; // "boundary=x;": a trailing separator
    const match = PARAMETER.exec(parameter);
    if (match === null) return undefined;
    if (match[1]!.toLowerCase() !== 'boundary') continue;
    if (boundary !== undefined) return undefined; // two: which one would the parser take?
    boundary = match[2] ?? match[3]!;
  }
  return boundary !== undefined && BOUNDARY.test(boundary) ? Buffer.from(`\r\n--${boundary}`) : undefined;
}

/**
 * Starts watching the request's body; on a violation, fails the body's readers with a coded 400 (the reader rethrows
 * `request.uploadCut`). Call it right after the parser started reading (after the first `next()` of `parts()`), with
 * the request's `partDelimiter`.
 */
export function watchEnvelope(request: FastifyRequest, headerPairs: number, next: Buffer): void {
  const delimiter = next.subarray(2); // the first boundary line has no CRLF before it
  let state: 'preamble' | 'headers' | 'body' | 'done' = 'preamble';
  let seen = 0; // bytes of the current preamble or header block
  let lines = 0;
  let tail = Buffer.alloc(0); // the end of the previous chunk, for a needle split across two

  const fail = (message: string) => {
    state = 'done';
    request.raw.off('data', onData);
    const err = new BadRequestError(message);
    request.uploadCut = err;
    request.raw.emit('error', err);
  };

  /** Finds `needle` in tail + chunk without copying the chunk; returns its end offset in `chunk`, or -1. */
  const find = (chunk: Buffer, needle: Buffer): number => {
    if (tail.length > 0) {
      const joint = Buffer.concat([tail, chunk.subarray(0, needle.length - 1)]);
      const at = joint.indexOf(needle);
      joint.fill(0);
      if (at !== -1) return at + needle.length - tail.length;
    }
    const at = chunk.indexOf(needle);
    return at === -1 ? -1 : at + needle.length;
  };

  /** The last `length - 1` bytes seen, across chunks shorter than that too (a needle may span three chunks). */
  const keepTail = (chunk: Buffer, length: number) => {
    const joined = Buffer.concat([tail, chunk]);
    tail.fill(0);
    tail = Buffer.from(joined.subarray(Math.max(0, joined.length - (length - 1))));
    joined.fill(0);
  };

  function onData(chunk: Buffer): void {
    let rest = chunk;
    while (rest.length > 0 && state !== 'done') {
      if (state === 'preamble' || state === 'body') {
        const needle = state === 'preamble' ? delimiter : next;
        const end = find(rest, needle);
        if (end === -1) {
          if (state === 'preamble' && (seen += rest.length) > MAX_PREAMBLE_BYTES + delimiter.length) {
            return fail(`The multipart body has more than ${MAX_PREAMBLE_BYTES} bytes before its first boundary`);
          }
          keepTail(rest, needle.length);
          return;
        }
        if (state === 'preamble' && seen + end - delimiter.length > MAX_PREAMBLE_BYTES) {
          return fail(`The multipart body has more than ${MAX_PREAMBLE_BYTES} bytes before its first boundary`);
        }
        tail.fill(0);
        tail = Buffer.alloc(0);
        rest = rest.subarray(Math.max(0, end));
        state = 'headers';
        seen = 0;
        lines = 0;
        continue;
      }
      // headers: from the boundary line's end to the blank line (a closing "--" ends the body: nothing more to check)
      if (seen === 0 && rest[0] === 0x2d) {
        state = 'done';
        break;
      }
      const end = find(rest, CRLF2);
      const block = end === -1 ? rest : rest.subarray(0, Math.max(0, end));
      for (let i = block.indexOf(0x0a); i !== -1; i = block.indexOf(0x0a, i + 1)) lines++;
      seen += block.length;
      if (seen > MAX_PART_HEADER_BYTES) return fail(`A multipart part has more than ${MAX_PART_HEADER_BYTES} bytes of headers`);
      // The boundary line's own CRLF and the blank line's are counted above: the header lines are two fewer.
      if (end !== -1 && lines - 2 > headerPairs) return fail(`A multipart part has more than ${headerPairs} header lines`);
      if (end === -1) {
        keepTail(rest, CRLF2.length);
        return;
      }
      tail.fill(0);
      tail = Buffer.alloc(0);
      rest = rest.subarray(end);
      state = 'body';
    }
  }

  request.raw.on('data', onData);
  request.raw.once('end', () => {
    request.raw.off('data', onData);
    tail.fill(0);
  });
}
