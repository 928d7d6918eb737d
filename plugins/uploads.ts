/**
 * How request bodies are read: only two shapes are accepted, and both stay in memory.
 *
 *  - multipart/form-data (@fastify/multipart): parts are read by the route with `part.toBuffer()`. Every limit is
 *    explicit, because the plugin's defaults allow 1000 parts and unlimited files and fields, and Fastify's
 *    bodyLimit does not bound multipart bodies.
 *  - a raw image body (`Content-Type: image/jpeg|png|webp`): buffered whole, up to MAX_UPLOAD_BYTES; a bigger
 *    Content-Length is refused before a byte is read.
 *
 * Fastify's default JSON and text parsers are removed: no route takes them, so such bodies get a 415 instead of
 * being parsed for nothing. Nothing here, or anywhere, writes an upload to disk (`saveRequestFiles` is never used).
 */
import multipart from '@fastify/multipart';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

export const RAW_IMAGE_TYPES = ['image/jpeg', 'image/png', 'image/webp'] as const;

/** The option fields a form may carry besides the file; the route rejects any other name. */
export const OPTION_FIELDS = ['style', 'format', 'quality', 'max_size', 'require_face', 'download', 'crop'] as const;

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
    headerPairs: 16, // per part: Content-Disposition and Content-Type are all a part needs
  };
}

async function uploadsPlugin(fastify: FastifyInstance, opts: UploadsOptions) {
  fastify.removeAllContentTypeParsers();

  fastify.addContentTypeParser([...RAW_IMAGE_TYPES], { parseAs: 'buffer', bodyLimit: opts.maxUploadBytes }, (_request, body, done) => {
    done(null, body);
  });

  await fastify.register(multipart, {
    limits: multipartLimits(opts.maxUploadBytes),
    throwFileSizeLimit: true,
  });
}

export default fp(uploadsPlugin, { fastify: '5.x', name: 'privatoon-uploads' });
