/**
 * POST /api/cartoonize (API key) and POST /ui/cartoonize (the web page): a photo in, a cartoon out.
 *
 * The life of a request, in hook order:
 *   onRequest   identifyKey (API) or requireSameOrigin (UI) -> rate limit (per key id, or per IP)
 *   preParsing  requireKey (API) -> admit: refuse with 503 while the pool is full or not ready, before a byte is read;
 *               hold a place in the upload budget (count, bytes, per client, minimum rate: plugins/upload-budget.ts)
 *               -> continueUpload: a declared length over the limit is 413; else `100 Continue` if the client waits for it
 *   parsing     a raw image body is buffered in memory up to MAX_UPLOAD_BYTES (plugins/uploads.ts); a multipart body
 *               is left unread for the handler
 *   handler     read the form (one file, known fields, hard limits) -> check options and magic bytes
 *               -> fastify.pool.run(bytes, options, { signal, deadlineMs }) in pool/inference-pool.ts, which takes an
 *               inference place only now that the body is complete -> the worker thread
 *               -> answer the image bytes with Content-Type, Cache-Control: no-store, Server-Timing, X-Faces
 *
 * The upload's bytes are handed to the pool, which moves them to the worker and wipes what it cannot move; if we
 * fail before that, we wipe them here. The result is wiped once written. Nothing touches the disk.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteShorthandOptions } from 'fastify';
import { describeValidation, problemResponses } from '../plugins/errors.js';
import { apiLimit, callerKey, ipKey, uiLimit } from '../plugins/rate-limit.js';
import { partDelimiter, watchEnvelope } from '../plugins/multipart-envelope.js';
import { MULTIPART_HEADER_PAIRS, OPTION_FIELDS, collectWiping } from '../plugins/uploads.js';
import { DEFAULT_QUALITY, sniffFormat, type CartoonizeOptions, type OutputFormat, type StageTimings } from '../contract.js';
import { BadOptionError, BadRequestError, UnsupportedMediaError, UploadTooLargeError, type ProblemCode } from '../errors.js';
import { wipeAndFree } from '../wipe.js';

const DEFAULT_FORMAT: OutputFormat = 'jpeg';
const MIN_OUTPUT_SIDE = 16;
const STYLE_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$';

interface CartoonizeQuery {
  style?: string;
  format?: OutputFormat | 'jpg' | 'auto';
  quality?: number;
  max_size?: number;
  require_face?: boolean;
  download?: boolean;
  crop?: 'face' | 'none';
}

/** `q` of one media range in an Accept header (RFC 9110 12.5.1): 0 when absent or refused. */
function acceptQuality(accept: string, type: string): number {
  let best = 0;
  for (const range of accept.toLowerCase().split(',')) {
    const [media = '', ...params] = range.split(';').map((p) => p.trim());
    if (media !== type && media !== 'image/*' && media !== '*/*') continue;
    const q = params.find((p) => p.startsWith('q='));
    const value = q === undefined ? 1 : Number(q.slice(2));
    // An exact match outranks a wildcard: "image/*, image/avif;q=0" refuses AVIF.
    if (media === type) return Number.isFinite(value) ? value : 0;
    if (Number.isFinite(value)) best = Math.max(best, value);
  }
  return best;
}

/**
 * `format=auto`: the smallest format the client accepts by name, AVIF then WebP, else JPEG (which every image
 * client takes). Wildcards alone do not pick AVIF or WebP: a client that sends only *\/* may not decode them.
 */
export function negotiateFormat(accept: string | undefined): OutputFormat {
  const header = accept ?? '';
  for (const format of ['avif', 'webp'] as const) {
    if (header.toLowerCase().includes(`image/${format}`) && acceptQuality(header, `image/${format}`) > 0) return format;
  }
  return 'jpeg';
}

/** The options, as query parameters (raw body) or form fields (multipart): one schema checks both. */
function optionsSchema(maxOutputSide: number, styleIds: readonly string[]) {
  return {
    type: 'object',
    additionalProperties: false,
    properties: {
      style: { type: 'string', pattern: STYLE_PATTERN, description: `Style id; one of: ${styleIds.join(', ')} (GET /api/styles)` },
      format: {
        type: 'string',
        enum: ['jpeg', 'jpg', 'png', 'webp', 'avif', 'auto'],
        description: `Output format; default ${DEFAULT_FORMAT}. \`auto\`: AVIF or WebP when the Accept header names them, else JPEG (the answer then varies by Accept)`,
      },
      quality: {
        type: 'integer',
        minimum: 1,
        maximum: 100,
        description: `Encoder quality for jpeg, webp and avif; default ${DEFAULT_QUALITY.jpeg} (jpeg, webp), ${DEFAULT_QUALITY.avif} (avif)`,
      },
      crop: {
        type: 'string',
        enum: ['none', 'face'],
        description: 'Face-aware styles: `face` answers a square avatar centred on the largest face (422 PTOON_NO_FACE without one); default none',
      },
      download: { type: 'boolean', description: 'Answer as a download: Content-Disposition: attachment; filename="cartoon.<ext>"; default false (inline)' },
      max_size: {
        type: 'integer',
        minimum: MIN_OUTPUT_SIDE,
        maximum: maxOutputSide,
        description: `Longest side of the result in pixels (never enlarged); default and cap ${maxOutputSide}`,
      },
      require_face: { type: 'boolean', description: 'Face-aware styles: answer 422 PTOON_NO_FACE when no face is found; default false' },
    },
  } as const;
}

const binary = { schema: { type: 'string', format: 'binary' } } as const;

/** The rate limiter's headers (plugins/rate-limit.ts), on every answer of a limited route. */
export const RATE_LIMIT_HEADERS = {
  'RateLimit-Limit': { type: 'integer', description: 'The limit of the window closest to it (IETF httpapi draft)' },
  'RateLimit-Remaining': { type: 'integer', description: 'Requests left in that window' },
  'RateLimit-Reset': { type: 'integer', description: 'Seconds until that window resets' },
  'RateLimit-Policy': { type: 'string', description: 'Every window of this route, limit;w=seconds: e.g. 60;w=60, 1000;w=86400' },
} as const;

const imageResponse = {
  description: 'The cartoon, without any metadata of the upload',
  headers: {
    'Server-Timing': { type: 'string', description: 'queue, decode, [detect,] infer (= pack + run + unpack), [head,] encode; ms' },
    'X-Faces': { type: 'integer', description: 'Faces stylised by the head model (face-aware styles; 0 otherwise)' },
    'Content-Disposition': { type: 'string', description: 'inline (attachment with download=true); filename="cartoon.<ext>"' },
    'Cache-Control': { type: 'string', description: 'no-store' },
    'X-Request-Id': { type: 'string', description: 'The request id' },
    ...RATE_LIMIT_HEADERS,
  },
  content: { 'image/jpeg': binary, 'image/png': binary, 'image/webp': binary, 'image/avif': binary },
} as const;

/** What the upload routes may answer besides the image; the API also answers the key errors. */
const UPLOAD_PROBLEMS: readonly ProblemCode[] = [
  'PTOON_BAD_REQUEST',
  'PTOON_BAD_OPTION',
  'PTOON_UNKNOWN_STYLE',
  'PTOON_TOO_LARGE',
  'PTOON_TOO_MANY_PIXELS',
  'PTOON_UNSUPPORTED_MEDIA',
  'PTOON_BAD_IMAGE',
  'PTOON_NO_FACE',
  'PTOON_UPLOAD_TOO_SLOW',
  'PTOON_RATE_LIMITED',
  'PTOON_TOO_MANY_UPLOADS',
  'PTOON_INTERNAL',
  'PTOON_WORKER_FAILED',
  'PTOON_BUSY',
  'PTOON_NOT_READY',
  'PTOON_DEADLINE',
];
const KEY_PROBLEMS: readonly ProblemCode[] = ['PTOON_KEY_CONFLICT', 'PTOON_NO_KEY', 'PTOON_BAD_KEY', 'PTOON_AUTH_DISABLED'];
const rateLimitedHeaders = { 429: RATE_LIMIT_HEADERS };

/**
 * The image and form fields of a multipart body. Every part is consumed or destroyed, so no request hangs; when the
 * form is refused half-read, its rest is read and discarded (plugins/uploads.ts) so that the client gets the answer.
 */
async function readForm(request: FastifyRequest, maxUploadBytes: number): Promise<{ bytes: Buffer; fields: Record<string, string> }> {
  let image: Buffer | null = null;
  const fields: Record<string, string> = {};
  try {
    if (request.uploadCut !== null) throw request.uploadCut; // cut before this reader started
    // The boundary as the parser will read it, or a 400 before the body is read (plugins/multipart-envelope.ts).
    const delimiter = partDelimiter(request);
    if (delimiter === undefined) {
      throw new BadRequestError("The multipart Content-Type needs exactly one boundary parameter of 1 to 70 letters, digits or '()+_,-./:=? (RFC 2046)");
    }
    const parts = request.parts()[Symbol.asyncIterator]();
    const first = parts.next(); // the parser starts reading the body here...
    watchEnvelope(request, MULTIPART_HEADER_PAIRS, delimiter); // ...and the envelope's bounds are watched from the same chunks
    for (let step = await first; step.done !== true; step = await parts.next()) {
      const part = step.value;
      if (part.type === 'file') {
        if (part.fieldname !== 'image') {
          part.file.resume();
          throw new BadRequestError('The file must be sent in the field "image"');
        }
        // Bounded by `fileSize`: busboy stops at it and marks the file truncated: 413, never a short image.
        image = await collectWiping(part.file, maxUploadBytes, { delimiter });
        if (part.file.truncated) {
          image.fill(0);
          image = null;
          throw new UploadTooLargeError(`The upload is larger than ${maxUploadBytes} bytes (MAX_UPLOAD_BYTES)`);
        }
        continue;
      }
      const name = part.fieldname;
      if (name === 'image') throw new BadRequestError('The field "image" must be a file part (with a filename)');
      if (!(OPTION_FIELDS as readonly string[]).includes(name)) {
        throw new BadRequestError(/^[A-Za-z0-9_-]{1,32}$/.test(name) ? `Unknown form field "${name}"` : 'Unknown form field');
      }
      if (Object.hasOwn(fields, name)) throw new BadRequestError(`The field "${name}" is given twice`);
      if (part.valueTruncated) throw new BadRequestError(`The field "${name}" is too long`);
      fields[name] = String(part.value);
    }
  } catch (err) {
    image?.fill(0);
    request.drainBody = request.uploadCut === null; // a form refused half-read: answered once its rest is read
    if (request.uploadCut !== null) throw request.uploadCut; // too slow: whatever the parser made of the cut
    const code = (err as { code?: unknown }).code;
    // Busboy's own parse errors carry no code: a malformed body, not a server fault.
    throw typeof code === 'string' ? err : new BadRequestError('The multipart body is malformed');
  }
  if (image === null) throw new BadRequestError('No image: send the file in the multipart field "image"');
  return { bytes: image, fields };
}

/** `queue;dur=1.2, decode;dur=3.4, ...` in ms: what browsers' dev tools and load testers read. */
export function serverTiming(queueMs: number, timings: StageTimings): string {
  const parts: [string, number | undefined][] = [
    ['queue', queueMs],
    ['decode', timings.decode],
    ['detect', timings.detect],
    ['infer', timings.infer],
    ['pack', timings.pack],
    ['run', timings.run],
    ['unpack', timings.unpack],
    ['head', timings.head],
    ['encode', timings.encode],
  ];
  return parts
    .filter((p): p is [string, number] => p[1] !== undefined)
    .map(([name, ms]) => `${name};dur=${Math.round(ms * 10) / 10}`)
    .join(', ');
}

export default async function cartoonizeRoutes(fastify: FastifyInstance) {
  const { config, pool } = fastify;
  const schema = optionsSchema(config.pool.maxOutputSide, pool.styles.map((s) => s.id));

  /**
   * preParsing: refuse (503 + Retry-After) while the pool is full or not ready, before a byte is read; then hold a
   * place in the upload budget (plugins/upload-budget.ts) while the body arrives. No inference place is taken until
   * the body is complete (`pool.run`), so slow uploads cannot starve inference. From here on, a client that hangs up
   * cancels the request, even before its body has been read.
   */
  async function admit(request: FastifyRequest) {
    pool.admit();
    fastify.uploadBudget.admit(request, { client: uploaderOf(request), anonymous: request.keyId === null });
  }

  /** preParsing (UI): the page sends forms; refusing other bodies here means they are never read. */
  async function formOnly(request: FastifyRequest) {
    const type = request.headers['content-type'] ?? '';
    if (!/^multipart\/form-data\s*;/i.test(type)) throw new UnsupportedMediaError('This endpoint takes multipart/form-data with the image in the field "image"');
  }

  /** The request's options, checked by the route's own querystring schema whatever their source. */
  function readOptions(request: FastifyRequest, fields: Record<string, string> | null): CartoonizeOptions & { negotiated?: true; download?: true } {
    const query = { ...(request.query as CartoonizeQuery) };
    let options: CartoonizeQuery = query;
    if (fields !== null) {
      for (const name of Object.keys(fields)) {
        if (Object.hasOwn(query, name)) throw new BadRequestError(`"${name}" is given both in the query string and in the form`);
      }
      const merged: Record<string, unknown> = { ...query, ...fields };
      const validate = request.getValidationFunction('querystring');
      if (validate !== undefined && !validate(merged)) {
        throw new BadOptionError(describeValidation(validate.errors ?? []));
      }
      options = merged as CartoonizeQuery;
    }
    const asked = options.format ?? DEFAULT_FORMAT;
    const format = asked === 'jpg' ? 'jpeg' : asked === 'auto' ? negotiateFormat(request.headers.accept) : asked;
    // The pool fills in its default style and the format's quality (as for the CLI); an unknown style throws
    // UNKNOWN_STYLE here, and the schema's pattern makes echoing it safe.
    return {
      ...pool.withDefaults({
        style: options.style,
        format,
        quality: options.quality,
        maxSize: options.max_size,
        requireFace: options.require_face,
        ...(options.crop === 'face' ? { crop: 'face' as const } : {}),
      }),
      ...(asked === 'auto' ? { negotiated: true } : {}),
      ...(options.download === true ? { download: true } : {}),
    };
  }

  async function cartoonize(request: FastifyRequest, reply: FastifyReply) {
    const upload = request.isMultipart() ? await readForm(request, config.maxUploadBytes) : { bytes: request.body as Buffer, fields: null };
    const { bytes } = upload;
    let handedOver = false;
    try {
      if (!Buffer.isBuffer(bytes) || bytes.length === 0) throw new BadRequestError('The image is empty');
      const options = readOptions(request, upload.fields);
      // The worker sniffs again before decoding; this early look spares a queue slot for what would fail anyway.
      const sniffed = sniffFormat(bytes);
      if (!sniffed.ok) throw new UnsupportedMediaError(`The upload is ${sniffed.what}: send a JPEG, PNG or WebP image`);
      handedOver = true; // from here the pool owns the bytes: it moves them to a worker or wipes them
      const { negotiated, download, ...task } = options;
      const result = await pool.run(bytes, task, {
        signal: request.clientGone, // aborted when the client hangs up (plugins/request-record.ts)
        deadlineMs: config.requestDeadlineMs,
      });
      request.inference = { style: options.style, queueMs: result.queueMs, timings: result.timings, faces: result.faces };
      const output = Buffer.from(result.output);
      // Wiped and freed once the socket has the answer (or the client is gone): wipe.ts.
      request.whenDone(() => wipeAndFree(output));
      // A shared cache must not hand one client's AVIF to another that asked for JPEG (no-store already; Vary says why).
      if (negotiated === true) reply.header('vary', 'Accept');
      return reply
        .type(result.mime)
        .header('cache-control', 'no-store')
        .header('content-disposition', `${download === true ? 'attachment' : 'inline'}; filename="cartoon.${options.format === 'jpeg' ? 'jpg' : options.format}"`)
        .header('server-timing', serverTiming(result.queueMs, result.timings))
        .header('x-faces', String(result.faces))
        .send(output);
    } finally {
      if (!handedOver && Buffer.isBuffer(bytes)) bytes.fill(0);
    }
  }

  /** Whose upload this is, for the per-client cap: the key id when there is one, else the IP (as the rate limits count). */
  function uploaderOf(request: FastifyRequest): string {
    return request.keyId !== null ? callerKey(request) : ipKey(request);
  }

  const shared: Pick<RouteShorthandOptions, 'bodyLimit'> = { bodyLimit: config.maxUploadBytes };

  fastify.post(
    '/api/cartoonize',
    {
      ...shared,
      config: { rateLimit: apiLimit(config.rateLimitMax, config.rateLimitWindowMs), uploadBody: 'multipart+raw' },
      // The rate limiter's hook runs after these, keyed by the id identifyKey found; the extra windows are counted here.
      onRequest: [fastify.identifyKey, fastify.rateLimitWindows({ max: config.rateLimitMax, windowMs: config.rateLimitWindowMs }, config.rateLimitWindows, callerKey)],
      preParsing: [fastify.requireKey, admit, fastify.continueUpload], // 100 Continue only once all of it passed
      schema: {
        operationId: 'cartoonize',
        summary: 'Cartoonize a photo',
        description:
          'Send multipart/form-data with the file in the field `image` (options as fields or in the query string), ' +
          'or the image itself as the body with Content-Type image/jpeg, image/png or image/webp (options in the query string).',
        tags: ['cartoonize'],
        security: [{ apiKey: [] }, { bearer: [] }],
        querystring: schema,
        response: { 200: imageResponse, ...problemResponses([...UPLOAD_PROBLEMS, ...KEY_PROBLEMS], rateLimitedHeaders) },
      },
    },
    cartoonize,
  );

  if (config.uiEnabled) {
    fastify.post(
      '/ui/cartoonize',
      {
        ...shared,
        config: { rateLimit: uiLimit(config.uiRateLimitMax, config.rateLimitWindowMs), uploadBody: 'multipart' },
        onRequest: [
          fastify.requireSameOrigin,
          ...(config.uiRequireKey ? [fastify.identifyKey] : []),
          fastify.rateLimitWindows({ max: config.uiRateLimitMax, windowMs: config.rateLimitWindowMs }, config.uiRateLimitWindows, ipKey),
        ],
        preParsing: config.uiRequireKey ? [fastify.requireKey, formOnly, admit, fastify.continueUpload] : [formOnly, admit, fastify.continueUpload],
        schema: {
          operationId: 'cartoonizeFromWebPage',
          summary: 'Cartoonize a photo from the web page (same origin only, per-IP limit)',
          tags: ['web'],
          ...(config.uiRequireKey ? { security: [{ apiKey: [] }, { bearer: [] }] } : { security: [] }),
          querystring: schema,
          response: {
            200: imageResponse,
            ...problemResponses(['PTOON_CROSS_ORIGIN', ...UPLOAD_PROBLEMS, ...(config.uiRequireKey ? KEY_PROBLEMS : [])], rateLimitedHeaders),
          },
        },
      },
      cartoonize,
    );
  }
}
