/**
 * `Expect: 100-continue`, answered by us rather than by Node. Node sends "100 Continue" the moment the headers
 * arrive, so a client (curl does this for bodies over 1 MiB) starts an upload that is refused a moment later: 413,
 * 401, 429 or 503 after it has sent megabytes. Here the server's 'checkContinue' event passes the request on without
 * the interim answer, and `fastify.continueUpload`, the last preParsing hook of the upload routes, sends it only once
 * the request has passed the key check, the rate limit and admission, and its declared length fits. A client that
 * is refused never gets a 100, only the final answer, and its connection is closed (plugins/errors.ts).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, preParsingAsyncHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import { UploadTooLargeError } from '../errors.js';

declare module 'fastify' {
  interface FastifyInstance {
    continueUpload: preParsingAsyncHookHandler;
  }
}

export interface ExpectContinueOptions {
  maxUploadBytes: number;
}

/** Room for a multipart body's envelope around the file: boundaries, part headers and the short option fields. */
export const MULTIPART_ENVELOPE_BYTES = 64 * 1024;

async function expectContinuePlugin(fastify: FastifyInstance, opts: ExpectContinueOptions) {
  const server = fastify.server;
  const passOn = (req: unknown, res: unknown) => server.emit('request', req, res);
  server.on('checkContinue', passOn);
  fastify.addHook('onClose', async () => {
    server.off('checkContinue', passOn);
  });

  fastify.decorate('continueUpload', async function continueUpload(request: FastifyRequest, reply: FastifyReply) {
    const declared = Number(request.headers['content-length']);
    const multipart = /^multipart\//i.test(request.headers['content-type'] ?? '');
    const limit = opts.maxUploadBytes + (multipart ? MULTIPART_ENVELOPE_BYTES : 0);
    if (Number.isFinite(declared) && declared > limit) {
      throw new UploadTooLargeError(`The upload is larger than ${opts.maxUploadBytes} bytes (MAX_UPLOAD_BYTES)`);
    }
    if (/\b100-continue\b/i.test(request.headers.expect ?? '') && !reply.raw.headersSent) reply.raw.writeContinue();
  });
}

export default fp(expectContinuePlugin, { fastify: '5.x', name: 'privatoon-expect-continue' });
