/**
 * A body left unread when its client goes away before the answer (plugins/scrub.ts). Node queues the body chunks
 * that arrive on the request until something reads them; a request still in its hooks (a rate-limit store over the
 * network, a key check) reads nothing yet. If the client hangs up then, no answer is ever sent, so the wipe at the
 * end of an answer never ran, and the queued copy of the upload stayed in memory until the collector got to it.
 * A bare Fastify with the scrub plugin and one slow hook, a raw socket that sends a marked body and hangs up.
 */
import { connect } from 'node:net';
import type { IncomingMessage } from 'node:http';
import Fastify from 'fastify';
import t from 'tap';
import scrubPlugin from '../../plugins/scrub.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

t.test('a client that hangs up while its request is in a hook: the queued body is zero-filled', async (t) => {
  const app = Fastify();
  await app.register(scrubPlugin);
  let raw: IncomingMessage | undefined;
  let hookDone = false;
  app.addHook('onRequest', async (request) => {
    raw = request.raw;
    await sleep(400); // a slow store: the body arrives and waits on the request meanwhile
    hookDone = true;
  });
  app.post('/upload', async () => ({ ok: true }));
  t.teardown(() => app.close());
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as { port: number };

  const marker = `PTOON-UNREAD-${Math.random().toString(36).slice(2)}`.padEnd(64, 'x');
  const body = Buffer.from(marker.repeat(16)); // 1 KiB, the whole declared length
  const socket = connect(port, '127.0.0.1');
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  socket.write(`POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\n\r\n`);
  socket.write(body);
  await sleep(100);
  t.ok(raw !== undefined && !hookDone, 'the request is still in its hook');
  // Node's own getter (not in its typings): the chunks queued and not read, null where read.
  const queued = () => ((raw as IncomingMessage & { readableBuffer: unknown[] }).readableBuffer ?? []).filter((c): c is Buffer => Buffer.isBuffer(c));
  t.ok(queued().some((c) => c.includes(marker.slice(0, 24))), 'the body arrived and is queued, unread, on the request');
  socket.destroy();
  await sleep(600);
  t.ok(raw!.destroyed, 'the request ended with its client');
  const left = queued();
  t.ok(left.length > 0, 'the queued chunks are still referenced by the request');
  t.ok(left.every((c) => c.every((b) => b === 0)), `no byte of the body is left in them (${left.map((c) => c.length).join(', ')} bytes)`);
});
