/**
 * Coded errors of the inference path. Each carries the HTTP status it maps to, so the HTTP layer's single error
 * handler and the CLI read the same facts. Messages are fixed strings or built from numbers and ids we control:
 * never from file names, headers or image content.
 */
import createError from '@fastify/error';

export const UnsupportedMediaError = createError('PTOON_UNSUPPORTED_MEDIA', '%s', 415);
export const BadImageError = createError('PTOON_BAD_IMAGE', '%s', 422);
export const TooManyPixelsError = createError('PTOON_TOO_MANY_PIXELS', '%s', 413);
export const UploadTooLargeError = createError('PTOON_TOO_LARGE', '%s', 413);
export const BadOptionError = createError('PTOON_BAD_OPTION', '%s', 400);
export const UnknownStyleError = createError('PTOON_UNKNOWN_STYLE', 'Unknown style "%s"', 400);
export const NoFaceError = createError('PTOON_NO_FACE', '%s', 422);
/** The bounded queue is full: the caller should come back after `retryAfter` seconds. */
export const BusyError = createError('PTOON_BUSY', 'The service is at capacity; retry after %d s', 503);
export const NotReadyError = createError('PTOON_NOT_READY', 'The service is starting or shutting down', 503);
export const DeadlineError = createError('PTOON_DEADLINE', 'The request took longer than %d ms and was cancelled', 504);
/** The caller went away (client disconnect); nobody reads this error, it only ends the task. */
export const AbortedError = createError('PTOON_ABORTED', 'The request was cancelled by the client', 499);
/** A worker threw or died while running the task; the pool replaces it. The message stays generic on purpose. */
export const WorkerFailedError = createError('PTOON_WORKER_FAILED', 'Inference failed', 500);

export type CodedError = Error & { code: string; statusCode: number; retryAfter?: number };
