/**
 * Uploads in flight: their own bounded budget, a cap per client, and a minimum upload rate.
 *
 * Why: reading an upload costs memory (it is buffered whole) and time, but no CPU; inference costs CPU. So a request
 * takes no inference place while its body arrives (it asks the pool only once the body is complete: routes/
 * cartoonize.ts), and uploads are bounded here instead. Otherwise a handful of clients trickling bytes (slowloris)
 * would hold every inference place and starve everyone, as they did when places were taken before the body.
 *
 *  - A global budget: at most `maxUploads` uploads and `maxBytes` declared bytes (Content-Length, or MAX_UPLOAD_BYTES
 *    when the length is not declared) at once, so the memory they may hold is bounded. Anonymous uploads (the web
 *    page) may use only half of it: keyed clients always find room, however many anonymous clients trickle.
 *    Beyond it: 503 PTOON_BUSY with Retry-After, before a byte of the body is read.
 *  - A cap per client (per key id, or per IP without a key): `perClient` uploads at once. Beyond it: 429
 *    PTOON_TOO_MANY_UPLOADS. One client cannot take the budget for itself.
 *  - A minimum rate: an upload that delivers fewer than `minBytesPerSecond` x `windowMs` bytes in any window of
 *    `windowMs` (a stalled one among them) is cut with 408 PTOON_UPLOAD_TOO_SLOW and its connection closed.
 *    Progress is read from the socket's byte count once a second: no stream is wrapped, both body shapes are covered.
 *
 * The place is given back when the body is complete, or when the request ends in any other way.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { BusyError, UploadsPerClientError, UploadTooSlowError } from '../errors.js';

export interface UploadBudgetOptions {
  /** Uploads read at once, all clients together (MAX_UPLOADS). */
  maxUploads: number;
  /** Declared bytes of the uploads read at once (UPLOAD_MEMORY_MAX_BYTES). */
  maxBytes: number;
  /** Uploads read at once per key id, or per IP without a key (UPLOADS_PER_CLIENT). */
  perClient: number;
  /** The least an upload must deliver, in bytes per second, averaged over `windowMs` (UPLOAD_MIN_BYTES_PER_S). */
  minBytesPerSecond: number;
  /** The window over which the rate is judged; also how long an upload may stall (UPLOAD_RATE_WINDOW_MS). */
  windowMs: number;
  /** The most one upload may declare (MAX_UPLOAD_BYTES): what an upload of unknown length is counted as. */
  maxUploadBytes: number;
}

export interface UploadStats {
  uploads: number;
  bytes: number;
  cutTooSlow: number;
}

/** Who an upload belongs to, for the per-client cap; and whether it counts against the anonymous half. */
export interface Uploader {
  client: string;
  anonymous: boolean;
}

/** How often progress is sampled. */
const SAMPLE_MS = 1000;
/** Retry-After for a full budget: uploads come and go in seconds. */
const RETRY_AFTER_S = 2;

declare module 'fastify' {
  interface FastifyInstance {
    uploadBudget: {
      /**
       * preParsing: hold a place for this request's upload, or refuse it before its body is read. The place is given
       * back when the body is complete or the request is over (`request.whenDone`, plugins/request-record.ts).
       */
      admit(request: FastifyRequest, uploader: Uploader): void;
      stats(): UploadStats;
    };
  }
  interface FastifyRequest {
    /** Set when the upload was cut for being too slow; the body's reader fails with it. */
    uploadCut: Error | null;
  }
}

async function uploadBudgetPlugin(fastify: FastifyInstance, opts: UploadBudgetOptions) {
  const windowSamples = Math.max(1, Math.round(opts.windowMs / SAMPLE_MS));
  const minBytesPerWindow = opts.minBytesPerSecond * windowSamples;
  const perClient = new Map<string, number>();
  const totals = { uploads: 0, bytes: 0, anonymousUploads: 0, anonymousBytes: 0, cutTooSlow: 0 };

  function admit(request: FastifyRequest, uploader: Uploader): void {
    const declared = Number(request.headers['content-length']);
    const bytes = Number.isSafeInteger(declared) && declared >= 0 ? Math.min(declared, opts.maxUploadBytes) : opts.maxUploadBytes;
    const share = uploader.anonymous ? 2 : 1; // anonymous uploads get half of the budget
    const uploads = uploader.anonymous ? totals.anonymousUploads : totals.uploads;
    const held = uploader.anonymous ? totals.anonymousBytes : totals.bytes;
    if (uploads + 1 > opts.maxUploads / share || held + bytes > opts.maxBytes / share) {
      throw Object.assign(new BusyError(RETRY_AFTER_S), { retryAfter: RETRY_AFTER_S });
    }
    const mine = perClient.get(uploader.client) ?? 0;
    if (mine >= opts.perClient) throw Object.assign(new UploadsPerClientError(opts.perClient), { retryAfter: RETRY_AFTER_S });

    perClient.set(uploader.client, mine + 1);
    totals.uploads++;
    totals.bytes += bytes;
    if (uploader.anonymous) {
      totals.anonymousUploads++;
      totals.anonymousBytes += bytes;
    }
    const raw = request.raw;
    // Emitting the cut as an 'error' must never throw for want of a listener (see `cut`).
    const ignore = () => {};
    raw.on('error', ignore);
    const socket = raw.socket;
    const history: number[] = [socket.bytesRead];
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      clearInterval(sampler);
      raw.off('error', ignore);
      const left = (perClient.get(uploader.client) ?? 1) - 1;
      if (left > 0) perClient.set(uploader.client, left);
      else perClient.delete(uploader.client);
      totals.uploads--;
      totals.bytes -= bytes;
      if (uploader.anonymous) {
        totals.anonymousUploads--;
        totals.anonymousBytes -= bytes;
      }
    };
    const sampler = setInterval(() => {
      if (raw.complete) return release();
      // windowSamples + 1 samples span windowSamples seconds.
      history.push(socket.bytesRead);
      if (history.length > windowSamples + 1) history.shift();
      if (history.length <= windowSamples) return;
      if (history[history.length - 1]! - history[0]! >= minBytesPerWindow) return;
      totals.cutTooSlow++;
      cut(request, new UploadTooSlowError(opts.minBytesPerSecond, windowSamples)); // while `ignore` still listens
      release();
    }, SAMPLE_MS);
    sampler.unref();
    raw.once('end', release);
    request.whenDone(release);
  }

  fastify.decorateRequest('uploadCut', null);
  fastify.decorate('uploadBudget', {
    admit,
    stats: () => ({ uploads: totals.uploads, bytes: totals.bytes, cutTooSlow: totals.cutTooSlow }),
  });
}

/**
 * Fails the body's reader with `err`: Fastify's raw-body reader and the multipart parser both listen for 'error' on
 * the request; a reader not started yet finds `uploadCut` (routes/cartoonize.ts checks it). The error's answer
 * closes the connection, since the body was not read to its end.
 */
function cut(request: FastifyRequest, err: Error): void {
  request.uploadCut = err;
  request.raw.emit('error', err);
}

export default fp(uploadBudgetPlugin, { fastify: '5.x', name: 'privatoon-upload-budget', dependencies: ['privatoon-request-record'] });
