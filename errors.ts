/**
 * The one error vocabulary: every `PTOON_*` code a request can end with, in one table (its status, its problem
 * type's title and description, and how the metrics count it), and the coded error class of each code, whose status
 * is read from its row. The HTTP layer's error handler (plugins/errors.ts), the pool, the metrics and the CLI all
 * read these facts here; workers return the codes themselves (contract.ts's InputErrorCode), checked below to be rows.
 *
 * Messages are fixed strings or built from numbers and ids we control: never from file names, headers or image
 * content.
 */
import createError from '@fastify/error';
import type { InputErrorCode } from './contract.js';

/** Failure reasons of the API key check, as the metrics label them. */
export type AuthFailureReason = 'missing' | 'invalid' | 'conflict' | 'not_configured';

interface ErrorRow {
  status: number;
  /** The problem type's title: the same for every occurrence, as RFC 9457 asks. */
  title: string;
  /** When it happens; served at GET /problems/<code>. */
  description: string;
  /** The `reason` label of privatoon_rejections_total; codes without one are not counted as rejections. */
  rejection?: string;
  /** The `reason` label of the auth-failure counter. */
  authFailure?: AuthFailureReason;
  /** False for the one code never answered (the client is gone): it is no problem type. */
  answered?: false;
}

/** Every code, in the order the problem catalogue lists them (by status). */
export const ERROR_CODES = {
  PTOON_BAD_REQUEST: { status: 400, title: 'Bad request', description: 'The request is malformed: a second file, an unknown form field, a broken multipart body or one without exactly one RFC 2046 boundary, a bad URL.', rejection: 'bad_request' },
  PTOON_BAD_OPTION: { status: 400, title: 'Bad option', description: 'An option (style, format, quality, max_size, download, crop...) has a value outside its range, or is unknown.', rejection: 'bad_request' },
  PTOON_UNKNOWN_STYLE: { status: 400, title: 'Unknown style', description: 'No style has this id here; GET /api/styles lists them.', rejection: 'bad_request' },
  PTOON_KEY_CONFLICT: { status: 400, title: 'Two different API keys', description: 'X-API-Key and Authorization: Bearer carry different keys; send one.', authFailure: 'conflict' },
  PTOON_NO_KEY: { status: 401, title: 'API key required', description: 'No API key was sent (X-API-Key or Authorization: Bearer), or Authorization is not "Bearer <key>".', authFailure: 'missing' },
  PTOON_BAD_KEY: { status: 401, title: 'API key not valid', description: 'The key sent is not one of this server\'s keys (or was revoked).', authFailure: 'invalid' },
  PTOON_CROSS_ORIGIN: { status: 403, title: 'Cross-origin request refused', description: 'The web page\'s endpoint was called from another origin.', rejection: 'cross_origin' },
  PTOON_NOT_FOUND: { status: 404, title: 'No such endpoint', description: 'Nothing answers at this path; /openapi.json lists what does.' },
  PTOON_METHOD_NOT_ALLOWED: { status: 405, title: 'Method not allowed', description: 'The path exists but not with this method; the Allow header lists the methods it takes.' },
  PTOON_UPLOAD_TOO_SLOW: { status: 408, title: 'Upload too slow', description: 'The upload delivered less than UPLOAD_MIN_BYTES_PER_S over UPLOAD_RATE_WINDOW_MS (or stalled) and was cut; the connection is closed.', rejection: 'upload_too_slow' },
  PTOON_TOO_LARGE: { status: 413, title: 'Upload too large', description: 'The upload is larger than MAX_UPLOAD_BYTES (refused from Content-Length before it is read when possible; a truncated upload is an error, never a short image).', rejection: 'too_large' },
  PTOON_TOO_MANY_PIXELS: { status: 413, title: 'Image has too many pixels', description: 'The image is larger than MAX_INPUT_PIXELS; refused from its header, before decoding.', rejection: 'too_large' },
  PTOON_UNSUPPORTED_MEDIA: { status: 415, title: 'Unsupported media type', description: 'Anything but a JPEG, PNG or WebP image (sniffed from the bytes), or a body that is neither multipart nor an image.', rejection: 'unsupported' },
  PTOON_BAD_IMAGE: { status: 422, title: 'Damaged image', description: 'The image could not be decoded: damaged or truncated.', rejection: 'bad_image' },
  PTOON_NO_FACE: { status: 422, title: 'No face found', description: 'require_face or crop=face was asked and the face detector found no face.', rejection: 'no_face' },
  PTOON_RATE_LIMITED: { status: 429, title: 'Rate limit exceeded', description: 'Over one of the rate-limit windows of this key (or IP); Retry-After says when a request can succeed.', rejection: 'rate_limited' },
  PTOON_TOO_MANY_UPLOADS: { status: 429, title: 'Too many uploads at once', description: 'This key (or IP, without a key) already has UPLOADS_PER_CLIENT uploads in progress; Retry-After says when to try again.', rejection: 'rate_limited' },
  PTOON_INTERNAL: { status: 500, title: 'Internal error', description: 'Something unexpected failed; the request id in `instance` finds the log line.' },
  PTOON_WORKER_FAILED: { status: 500, title: 'Inference failed', description: 'The worker running the request crashed; it is replaced, and a retry may succeed.' },
  PTOON_BUSY: { status: 503, title: 'At capacity', description: 'The inference queue is full, or the budget for uploads in flight is; Retry-After says when to come back.', rejection: 'busy' },
  PTOON_NOT_READY: { status: 503, title: 'Not ready', description: 'The service is starting, replacing a worker, or shutting down; Retry-After says when to come back.', rejection: 'not_ready' },
  PTOON_AUTH_DISABLED: { status: 503, title: 'API closed: no keys configured', description: 'The operator has configured no API keys (API_KEYS_FILE); the API refuses every call.', authFailure: 'not_configured' },
  PTOON_DEADLINE: { status: 504, title: 'Deadline exceeded', description: 'Queue wait plus inference took longer than REQUEST_DEADLINE_MS; the run is cancelled at its next native call.', rejection: 'deadline' },
  // 499 is nginx's "client closed request": logged and counted, never sent.
  PTOON_ABORTED: { status: 499, title: 'Cancelled by the client', description: 'The client went away before the answer; nobody reads it.', rejection: 'aborted', answered: false },
} as const satisfies Record<`PTOON_${string}`, ErrorRow>;

export type ErrorCode = keyof typeof ERROR_CODES;
type Row<C extends ErrorCode> = (typeof ERROR_CODES)[C];

/** The codes a client may be answered with: each is a problem type, `/problems/<code>`. */
export type ProblemCode = { [C in ErrorCode]: Row<C> extends { answered: false } ? never : C }[ErrorCode];

/** The problem-type catalogue (GET /problems/<code>, the OpenAPI `code` enum): the table's answered rows. */
export const PROBLEMS = Object.fromEntries(
  Object.entries(ERROR_CODES).filter(([, row]) => (row as ErrorRow).answered !== false),
) as { readonly [C in ProblemCode]: Row<C> };

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code);
}

/** The row of a code, or undefined for anything that is not one of ours (a Fastify code, a start-up error's). */
export function rowOf(code: string | null | undefined): ErrorRow | undefined {
  return isErrorCode(code) ? ERROR_CODES[code] : undefined;
}

/** What a class's message format takes: the longest, UploadTooSlowError's, has two numbers. */
type MessageArgs = [unknown?, unknown?];

/** A coded error class whose status is its row's. `message` is the class's format (util.format, as createError). */
function coded<C extends ErrorCode>(code: C, message = '%s') {
  return createError<C, Row<C>['status'], MessageArgs>(code, message, ERROR_CODES[code].status);
}

// The inference path.
export const UnsupportedMediaError = coded('PTOON_UNSUPPORTED_MEDIA');
export const BadImageError = coded('PTOON_BAD_IMAGE');
export const TooManyPixelsError = coded('PTOON_TOO_MANY_PIXELS');
export const UploadTooLargeError = coded('PTOON_TOO_LARGE');
export const BadOptionError = coded('PTOON_BAD_OPTION');
export const UnknownStyleError = coded('PTOON_UNKNOWN_STYLE', 'Unknown style "%s"');
export const NoFaceError = coded('PTOON_NO_FACE');
/** The bounded queue is full: the caller should come back after `retryAfter` seconds. */
export const BusyError = coded('PTOON_BUSY', 'The service is at capacity; retry after %d s');
export const NotReadyError = coded('PTOON_NOT_READY', 'The service is starting or shutting down');
export const DeadlineError = coded('PTOON_DEADLINE', 'The request took longer than %d ms and was cancelled');
/** The caller went away (client disconnect); nobody reads this error, it only ends the task. */
export const AbortedError = coded('PTOON_ABORTED', 'The request was cancelled by the client');
/** A worker threw or died while running the task; the pool replaces it. The message stays generic on purpose. */
export const WorkerFailedError = coded('PTOON_WORKER_FAILED', 'Inference failed');

// The HTTP layer. Messages are fixed or built from values we checked; never from raw request text.
export const MissingKeyError = coded('PTOON_NO_KEY');
export const InvalidKeyError = coded('PTOON_BAD_KEY', 'The API key is not valid');
export const KeyConflictError = coded('PTOON_KEY_CONFLICT', 'X-API-Key and Authorization: Bearer carry different keys; send one');
export const AuthDisabledError = coded('PTOON_AUTH_DISABLED', 'No API keys are configured on this server, so the API is closed; ask its operator (API_KEYS_FILE)');
export const RateLimitedError = coded('PTOON_RATE_LIMITED', 'Rate limit exceeded; retry after %d s');
export const UploadsPerClientError = coded('PTOON_TOO_MANY_UPLOADS', 'This client already has %d uploads in progress; finish one first');
export const UploadTooSlowError = coded('PTOON_UPLOAD_TOO_SLOW', 'The upload was cut: it sent fewer than %d bytes per second over %d s');
export const CrossOriginError = coded('PTOON_CROSS_ORIGIN', 'This endpoint only accepts requests from its own web page');
export const BadRequestError = coded('PTOON_BAD_REQUEST');
export const NotFoundError = coded('PTOON_NOT_FOUND', 'No such endpoint; see /openapi.json');
export const InternalError = coded('PTOON_INTERNAL', 'Internal error');
export const MethodNotAllowedError = coded('PTOON_METHOD_NOT_ALLOWED', 'This endpoint does not take %s; the Allow header lists what it takes');

type ErrorClass<C extends ErrorCode> = createError.FastifyErrorConstructor<{ code: C; statusCode: Row<C>['status'] }, MessageArgs>;

/** The class of every code: a code without a class, or a class without a row, does not compile. */
export const ERROR_CLASSES: { readonly [C in ErrorCode]: ErrorClass<C> } = {
  PTOON_BAD_REQUEST: BadRequestError,
  PTOON_BAD_OPTION: BadOptionError,
  PTOON_UNKNOWN_STYLE: UnknownStyleError,
  PTOON_KEY_CONFLICT: KeyConflictError,
  PTOON_NO_KEY: MissingKeyError,
  PTOON_BAD_KEY: InvalidKeyError,
  PTOON_CROSS_ORIGIN: CrossOriginError,
  PTOON_NOT_FOUND: NotFoundError,
  PTOON_METHOD_NOT_ALLOWED: MethodNotAllowedError,
  PTOON_UPLOAD_TOO_SLOW: UploadTooSlowError,
  PTOON_TOO_LARGE: UploadTooLargeError,
  PTOON_TOO_MANY_PIXELS: TooManyPixelsError,
  PTOON_UNSUPPORTED_MEDIA: UnsupportedMediaError,
  PTOON_BAD_IMAGE: BadImageError,
  PTOON_NO_FACE: NoFaceError,
  PTOON_RATE_LIMITED: RateLimitedError,
  PTOON_TOO_MANY_UPLOADS: UploadsPerClientError,
  PTOON_INTERNAL: InternalError,
  PTOON_WORKER_FAILED: WorkerFailedError,
  PTOON_BUSY: BusyError,
  PTOON_NOT_READY: NotReadyError,
  PTOON_AUTH_DISABLED: AuthDisabledError,
  PTOON_DEADLINE: DeadlineError,
  PTOON_ABORTED: AbortedError,
};

export type CodedError = Error & { code: string; statusCode: number; retryAfter?: number };

/**
 * The coded error of a failure a worker returned: its code is already ours, its message the worker's. Indexing the
 * class table with InputErrorCode is the compile-time check that every code a worker may return is a row.
 */
export function inputError(code: InputErrorCode, message: string): CodedError {
  return new ERROR_CLASSES[code](message);
}
