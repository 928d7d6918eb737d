/**
 * Request bytes the application never reads itself are zero-filled too, so that no copy of a photo (or of an API key)
 * outlives its request in this process's memory:
 *
 *  - Socket reads. Node's HTTP parser copies a request's body out of each chunk read from the socket, but the chunk
 *    (headers and body bytes together) stays in memory until it is reused; the last read of a connection may stay
 *    for good. Each chunk is zero-filled once the parser has taken what it needs: a 'data' listener added after the
 *    server's own runs right after the parser. This makes Node read sockets in JavaScript instead of consuming them
 *    natively; the cost is measured by `npm run bench` (README, Performance).
 *  - Bodies that were not read: a request answered before its body was read (refused by auth, a limit, an unknown
 *    URL) leaves the body chunks that had arrived queued on the request. They are drained and zero-filled once the
 *    answer is sent (the connection is closed after it: plugins/uploads.ts), with any that arrive until it closes.
 *    A client that hangs up before its answer (while its request is still in a hook, say) gets no answer: the chunks
 *    queued on its request are zero-filled where they lie when the request closes, since a request destroyed with
 *    its connection never hands them out (test/privacy/unread-body.test.ts).
 *
 * Chunks the application does read are wiped by their reader (plugins/uploads.ts, `collectWiping`).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

function wipe(chunk: Buffer | string): void {
  if (Buffer.isBuffer(chunk)) chunk.fill(0);
}

async function scrubPlugin(fastify: FastifyInstance) {
  const watch = (socket: Socket) => socket.on('data', wipe);
  // Plain HTTP: the TCP socket. Native TLS: the decrypted stream (its 'secureConnection'); the encrypted bytes read
  // from TCP are no copy of the photo.
  fastify.server.on(fastify.initialConfig.https ? 'secureConnection' : 'connection', watch);

  // At the end of each answer, Node "dumps" an unread body: it drops the body's 'data' listeners and resumes it on the
  // next tick, so that chunks queued or still to come are discarded. This listener runs right after Node's own (it
  // was added later, on the same event), in the same tick: what Node would discard is wiped.
  fastify.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    res.once('finish', () => {
      if (req.readableEnded) return; // read to its end
      req.on('data', wipe);
      req.on('error', () => {}); // the connection is closing; nothing is waiting for this body
      req.resume();
    });
    // On the request, not the response: the response carries one 'close' listener, request-record.ts's.
    req.once('close', () => {
      if (req.readableEnded || res.writableFinished) return; // read to its end, or answered (above)
      // The client left first. Its request is destroyed and will never hand out what it queued: wipe it in place.
      for (const chunk of queuedChunks(req)) wipe(chunk);
    });
  });
}

/**
 * The chunks queued on a request and not read: Node's `readableBuffer` getter (lib/internal/streams/readable.js,
 * absent from its typings), an array on Node 20 to 24 with null where a chunk was read. Anything else gives nothing;
 * test/privacy/unread-body.test.ts fails if a Node changes it.
 */
function queuedChunks(req: IncomingMessage): (Buffer | string)[] {
  const queued = (req as IncomingMessage & { readableBuffer?: unknown }).readableBuffer;
  return Array.isArray(queued) ? queued.filter((c): c is Buffer | string => Buffer.isBuffer(c) || typeof c === 'string') : [];
}

export default fp(scrubPlugin, { fastify: '5.x', name: 'privatoon-scrub' });
