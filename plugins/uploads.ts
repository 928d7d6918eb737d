/**
 * How request bodies are read: only two shapes are accepted, and both stay in memory.
 *
 *  - multipart/form-data (@fastify/multipart): each file part is read by the route with `collectWiping`. Every limit is
 *    explicit, because the plugin's defaults allow 1000 parts and unlimited files and fields, and Fastify's
 *    bodyLimit does not bound multipart bodies.
 *  - a raw image body (`Content-Type: image/jpeg|png|webp`): buffered whole, up to MAX_UPLOAD_BYTES; a bigger
 *    Content-Length is refused before a byte is read.
 *
 * Both readers copy each chunk into one buffer and wipe the chunk (`collectWiping`): no copy of a photo is left
 * to the garbage collector, and a chunk that is a buffer of its own is freed at once (wipe.ts).
 *
 * Fastify's default JSON and text parsers are removed: no route takes them, so such bodies get a 415 instead of
 * being parsed for nothing. Nothing here, or anywhere, writes an upload to disk (`saveRequestFiles` is never used).
 */
import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { BadRequestError, UploadTooLargeError } from '../errors.js';
import { wipeAndFree } from '../wipe.js';

export const RAW_IMAGE_TYPES = ['image/jpeg', 'image/png', 'image/webp'] as const;

/** The option fields a form may carry besides the file; the route rejects any other name. */
export const OPTION_FIELDS = ['style', 'format', 'quality', 'max_size', 'require_face', 'download', 'crop'] as const;

/** Header lines per part: Content-Disposition and Content-Type are all a part needs. */
export const MULTIPART_HEADER_PAIRS = 16;

/** Room for a form's envelope around the image: boundaries, part headers and the option fields. */
export const MULTIPART_ENVELOPE_BYTES = 64 * 1024;

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by a reader that gave up half-way on a body worth draining (see the onSend hook below). */
    drainBody: boolean;
  }
}

export interface UploadsOptions {
  maxUploadBytes: number;
}

export function multipartLimits(maxUploadBytes: number) {
  return {
    files: 1, // one image; a second file part is an error (FST_FILES_LIMIT -> 400)
    fields: OPTION_FIELDS.length + 1, // the options, with one spare so a stray field gets a clear "unknown field"
    parts: OPTION_FIELDS.length + 3, // fields + file + slack: bounds the work spent on a hostile form
    fileSize: maxUploadBytes, // truncation throws FST_REQ_FILE_TOO_LARGE -> 413, never a short image
    fieldSize: 256, // option values are short words and numbers
    fieldNameSize: 64,
    headerPairs: MULTIPART_HEADER_PAIRS, // more is refused with 400 (plugins/multipart-envelope.ts), never truncated
  };
}

function tooLarge(maxUploadBytes: number): Error {
  return new UploadTooLargeError(`The upload is larger than ${maxUploadBytes} bytes (MAX_UPLOAD_BYTES)`);
}

/**
 * Reads a body's chunks into one buffer of its own, wiping each chunk once copied and the buffer itself if reading
 * fails; copies outgrown are wiped too. Wiped means zero-filled and, where the bytes are a buffer of their own, freed
 * at once (wipe.ts): Node's HTTP parser hands out each piece of a body as a copy of its own (about 64 KiB at most), so
 * on the main thread they were, with the result, most of the array-buffer memory a request left for the collector,
 * and each collection pauses every request and health check. Pieces that share their memory with other bytes are
 * zero-filled only.
 *
 * `delimiter` (a multipart file: `\r\n--<boundary>`): a piece that is a run of its bytes is copied but never written
 * to. The multipart parser (@fastify/busboy) hands out bytes that may turn out to be a boundary, once they do not,
 * as views of its own small search buffer, which it keeps using: zero-filling one corrupted the parser's state (the
 * next field came out with zeros in it) and freeing one made its next read throw. Such bytes are the boundary's, which
 * the client sent in the clear in Content-Type, never the photo's.
 *
 * `expected` (a declared length) sizes the buffer at once; without it, it grows by doubling, each old copy wiped.
 * More than `max` bytes: UploadTooLargeError. The result is a buffer of its own (never a slice of a shared one) when
 * its length is as expected, so it can be moved to a worker without a copy.
 */
export async function collectWiping(chunks: AsyncIterable<Buffer>, max: number, { expected, delimiter }: { expected?: number | undefined; delimiter?: Buffer | undefined } = {}): Promise<Buffer> {
  const wipe = (chunk: Buffer) => {
    if (delimiter === undefined || chunk.length > delimiter.length || !delimiter.includes(chunk)) wipeAndFree(chunk);
  };
  let body = Buffer.alloc(Math.min(max, expected ?? 64 * 1024));
  let length = 0;
  try {
    for await (const chunk of chunks) {
      if (length + chunk.length > max) {
        wipe(chunk);
        throw tooLarge(max);
      }
      if (length + chunk.length > body.length) {
        const grown = Buffer.alloc(Math.min(max, Math.max(body.length * 2, length + chunk.length)));
        body.copy(grown, 0, 0, length);
        wipeAndFree(body);
        body = grown;
      }
      chunk.copy(body, length);
      length += chunk.length;
      wipe(chunk);
    }
  } catch (err) {
    wipeAndFree(body);
    throw err;
  }
  if (length === body.length) return body;
  const exact = Buffer.alloc(length);
  body.copy(exact, 0, 0, length);
  wipeAndFree(body);
  return exact;
}

async function uploadsPlugin(fastify: FastifyInstance, opts: UploadsOptions) {
  fastify.removeAllContentTypeParsers();

  // An answer to a request whose body was not read (refused early, a GET with a body, an unknown URL) closes the
  // connection: to keep it alive, Node would read and discard the whole body, up to the client's Content-Length.
  // A form refused half-read (a second file, a bad field) whose declared length is within the upload limit is the
  // exception: the rest is read and discarded (and wiped: plugins/scrub.ts), so that the client, still sending, gets
  // the answer instead of a broken pipe.
  const drainLimit = opts.maxUploadBytes + MULTIPART_ENVELOPE_BYTES;
  fastify.decorateRequest('drainBody', false);
  fastify.addHook('onSend', async (request, reply) => {
    if (request.raw.complete !== false) return; // read to its end; undefined under app.inject
    const declared = Number(request.headers['content-length']);
    if (request.drainBody && Number.isSafeInteger(declared) && declared <= drainLimit) return;
    reply.header('connection', 'close');
  });

  // Our own reader, not Fastify's `parseAs: 'buffer'`: that one leaves every chunk it concatenates to the garbage
  // collector, so copies of the photo would outlive the request in memory.
  fastify.addContentTypeParser([...RAW_IMAGE_TYPES], async (request: FastifyRequest, payload: AsyncIterable<Buffer>) => {
    const declared = Number(request.headers['content-length']);
    if (declared > opts.maxUploadBytes) throw tooLarge(opts.maxUploadBytes);
    const body = await collectWiping(payload, opts.maxUploadBytes, { expected: Number.isSafeInteger(declared) ? declared : undefined });
    if (Number.isSafeInteger(declared) && body.length !== declared) {
      body.fill(0);
      throw new BadRequestError('Content-Length does not match the body');
    }
    return body;
  });

  await fastify.register(multipart, {
    limits: multipartLimits(opts.maxUploadBytes),
    throwFileSizeLimit: true,
  });
}

export default fp(uploadsPlugin, { fastify: '5.x', name: 'privatoon-uploads' });
