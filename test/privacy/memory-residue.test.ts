/**
 * "Nothing of the photo outlives the request", checked in the server's own memory. A real server process, started
 * as `npm start` starts it (the allocator setting included), gets a valid upload, one refused for a wrong key and a
 * damaged one; once every answer is in, the test reads the child's whole address space through /proc/PID/mem and
 * counts copies of a random 64-byte marker carried in each upload's bytes, and of a run of decoded pixels of the
 * valid one. Every count must be 0.
 *
 * What this proves, and no more: after those three requests, no copy of those byte sequences is left anywhere in the
 * process's readable memory (main thread, workers, libvips and onnxruntime heaps, socket buffers). It does not prove
 * anything about the kernel's socket buffers, swap (the unit forbids it), or the moments while a request is served.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, readSync } from 'node:fs';
import sharp from 'sharp';
import t from 'tap';
import { startScript } from '../../bench/lib/server.js';
import { form, post, sleep, spawnServer, writeKeys } from '../helper.js';

const procMem = existsSync('/proc/self/mem');


/** A JPEG with a comment segment (COM) carrying `marker` right after SOI: the marker is in the upload's bytes. */
function withComment(jpeg: Buffer, marker: Buffer): Buffer {
  const length = Buffer.alloc(2);
  length.writeUInt16BE(marker.length + 2);
  return Buffer.concat([jpeg.subarray(0, 2), Buffer.from([0xff, 0xfe]), length, marker, jpeg.subarray(2)]);
}

/** Counts each needle in every readable mapping of the process. */
function countInMemory(pid: number, needles: Record<string, Buffer>, before: Record<string, string[]> = {}): Record<string, number> {
  const counts: Record<string, number> = Object.fromEntries(Object.keys(needles).map((k) => [k, 0]));
  const maps = readFileSync(`/proc/${pid}/maps`, 'utf8').trim().split('\n');
  const fd = openSync(`/proc/${pid}/mem`, 'r');
  const chunk = Buffer.alloc(16 * 1024 * 1024);
  const overlap = 256;
  try {
    for (const line of maps) {
      const [range, perms, , , , path] = line.split(/\s+/);
      if (!perms?.startsWith('r') || path === '[vvar]' || path === '[vsyscall]' || path === '[vvar_vclock]') continue;
      const [start, end] = range!.split('-').map((h) => BigInt(`0x${h}`)) as [bigint, bigint];
      for (let at = start; at < end; at += BigInt(chunk.length - overlap)) {
        const want = Number(end - at < BigInt(chunk.length) ? end - at : BigInt(chunk.length));
        let got = 0;
        try {
          got = readSync(fd, chunk, 0, want, at);
        } catch {
          break; // an unreadable page (guard, device mapping): skip the rest of this mapping
        }
        const view = chunk.subarray(0, got);
        // A match that starts in the overlap is counted by the next window, unless this is the mapping's last one.
        const last = at + BigInt(got) >= end;
        const limit = last ? got : got - overlap;
        for (const [name, needle] of Object.entries(needles)) {
          for (let i = view.indexOf(needle); i !== -1 && i < limit; i = view.indexOf(needle, i + 1)) {
            counts[name]!++;
            (before[name] ??= []).push(view.subarray(Math.max(0, i - 1024), i).toString('latin1'));
          }
        }
        if (got < want) break;
      }
    }
  } finally {
    closeSync(fd);
  }
  return counts;
}

t.test('no copy of an upload or of its pixels is left in the server after the answers', { skip: procMem ? false : '/proc/PID/mem is not available' }, async (t) => {
  const { file, keys } = writeKeys(t, ['alice']);
  const server = spawnServer({ ...startScript().env, API_KEYS_FILE: file, LOG_LEVEL: 'info' });
  t.teardown(async () => {
    if (server.child.exitCode === null) server.child.kill('SIGKILL');
    await server.exited;
  });
  const base = await server.listening;
  const pid = Number(/"pid":(\d+)/.exec(server.output())?.[1]);

  // A photo-like image with a high-entropy patch, so that a run of its decoded pixels is unique in memory.
  const side = 256;
  const raw = Buffer.alloc(side * side * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i % 768) / 3;
  randomBytes(48 * 48 * 3).copy(raw, 100 * side * 3);
  const jpeg = await sharp(raw, { raw: { width: side, height: side, channels: 3 } }).jpeg({ quality: 92 }).toBuffer();
  const decoded = await sharp(jpeg).removeAlpha().raw().toBuffer();
  const pixelRun = Buffer.from(decoded.subarray(110 * side * 3, 110 * side * 3 + 96)); // 32 pixels of the patch

  const markers = { valid: randomBytes(64), refused: randomBytes(64), damaged: randomBytes(64) };
  const valid = withComment(jpeg, markers.valid);
  const refused = withComment(jpeg, markers.refused);
  const damaged = withComment(jpeg, markers.damaged).subarray(0, Math.floor(jpeg.length * 0.6));

  const api = `${base}/api/cartoonize`;
  const key = { 'x-api-key': keys['alice']! };
  t.equal((await post(api, form(valid), key)).status, 200, 'valid upload: 200');
  t.equal((await post(api, valid, { ...key, 'content-type': 'image/jpeg' })).status, 200, 'the same as a raw body: 200');
  t.equal((await post(api, form(refused), { 'x-api-key': 'ptk_wrong' })).status, 401, 'wrong key: refused');
  t.equal((await post(api, form(damaged), key)).status, 422, 'damaged upload: 422');
  await sleep(500); // the answers' buffers are wiped when their sockets close

  const before: Record<string, string[]> = {};
  const counts = countInMemory(pid, { ...markers, pixelRun }, before);
  if (Number(process.versions.node.split('.')[0]) < 22) {
    t.same(counts, { valid: 0, refused: 0, damaged: 0, pixelRun: 0 }, `copies found: ${JSON.stringify(counts)}`);
  } else {
    // Node 22+ reads sockets into a buffer it keeps and reuses, and hands out copies: the application wipes the copies,
    // but the newest bytes of the last read stay in Node's buffer until later reads overwrite them. So the last
    // upload may be found once, there and only there (the raw request: its headers just before it); nothing else may.
    t.same({ ...counts, damaged: 0 }, { valid: 0, refused: 0, damaged: 0, pixelRun: 0 }, `copies found: ${JSON.stringify(counts)}`);
    t.ok(counts['damaged']! <= 1, `the last upload: ${counts['damaged']} copy, at most the one in Node's read buffer`);
    for (const context of before['damaged'] ?? []) t.match(context, /content-length: \d+\r\n[\s\S]*\r\n\r\n/i, 'and that copy is the raw request, in the read buffer');
    t.comment(`Node ${process.versions.node}: the last request's raw bytes stay in Node's reused socket read buffer until later reads overwrite them (README, Privacy)`);
  }
  t.equal(server.child.exitCode, null, 'the server is still up');
});
