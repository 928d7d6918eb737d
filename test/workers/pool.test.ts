import { readdirSync, readFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { poolSettings } from '../../config.js';
import t from 'tap';
import { buildChannel0Model, buildInvertModel, buildSlowModel } from '../../models/generate/test-models.js';
import { DEFAULT_QUALITY, type CartoonizeOptions } from '../../contract.js';
import { InferencePool, ownedArrayBuffer } from '../../pool/inference-pool.js';
import { FAULT_WORKER, withFault } from '../fixtures/faults.js';
import { imageManifest, modelsDir } from '../fixtures/models.js';

const opts = (style: string, extra: Partial<CartoonizeOptions> = {}): CartoonizeOptions => ({ style, format: 'png', quality: 90, ...extra });

/** A 48x32 image with a distinct colour per pixel (lossless PNG), so position and channel mistakes show. */
async function gradient(width = 48, height = 32): Promise<{ png: Buffer; raw: Buffer }> {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) raw.set([(x * 5) & 255, (y * 7) & 255, (x * 3 + y * 2) & 255], (y * width + x) * 3);
  }
  return { png: await sharp(raw, { raw: { width, height, channels: 3 } }).png().toBuffer(), raw };
}

async function pixels(output: ArrayBuffer): Promise<Buffer> {
  return sharp(Buffer.from(output)).removeAlpha().raw().toBuffer();
}

t.test("a model the workers' checks refuse rejects the start with its ManifestError, with one worker or several", async (t) => {
  const dir = modelsDir(t, [{ manifest: imageManifest('named', { layout: 'NCHW', inputName: 'pixels' }), bytes: buildInvertModel({ layout: 'NCHW', range: '0..1' }) }]);
  for (const workers of [1, 3]) {
    await t.rejects(
      InferencePool.start(poolSettings({ modelsDirs: [dir], workers })),
      {
        name: 'ManifestError',
        code: 'PTOON_BAD_MANIFEST',
        file: join(dir, 'named.json'),
        field: 'input.name',
        message: `${join(dir, 'named.json')}: field "input.name" is "pixels" but the model's are: input`,
      },
      `${workers} worker(s): the manifest's own error, not a worker's`,
    );
  }
  // A model onnxruntime cannot open at all, and a head whose mask is no image: the same path, the same naming.
  const garbage = modelsDir(t, [{ manifest: imageManifest('garbage', { layout: 'NCHW' }), bytes: new Uint8Array([1, 2, 3]) }]);
  await t.rejects(InferencePool.start(poolSettings({ modelsDirs: [garbage], workers: 2 })), { field: 'file', message: /garbage\.json: field "file" points to .*garbage\.onnx, which onnxruntime cannot load/ });
});

t.test('each layout and value range is honoured (invert models)', async (t) => {
  const models = [];
  for (const layout of ['NCHW', 'NHWC'] as const) {
    for (const range of ['0..1', '-1..1', '0..255'] as const) {
      const id = `invert-${layout}-${range.replace(/\W+/g, '')}`.toLowerCase();
      models.push({ manifest: imageManifest(id, { layout, range }), bytes: buildInvertModel({ layout, range }) });
    }
  }
  const pool = await InferencePool.start(poolSettings({ modelsDirs: [modelsDir(t, models)], workers: 1 }));
  t.teardown(() => pool.close());
  const { png, raw } = await gradient();
  for (const { manifest } of models) {
    const result = await pool.run(Buffer.from(png), opts(manifest.id));
    t.same([result.width, result.height], [48, 32], `${manifest.id}: size kept`);
    const out = await pixels(result.output);
    const expected = Buffer.from(raw.map((v) => 255 - v));
    t.ok(out.equals(expected), `${manifest.id}: every pixel is the negative of the input`);
  }
});

t.test('channel order is honoured (channel-0 models)', async (t) => {
  const bytes = buildChannel0Model({ layout: 'NHWC' });
  const dir = modelsDir(t, [
    { manifest: imageManifest('rgb', { layout: 'NHWC', channels: 'RGB' }), bytes },
    { manifest: imageManifest('bgr', { layout: 'NHWC', channels: 'BGR' }), bytes },
  ]);
  const pool = await InferencePool.start(poolSettings({ modelsDirs: [dir], workers: 1 }));
  t.teardown(() => pool.close());
  const blue = await sharp({ create: { width: 16, height: 16, channels: 3, background: { r: 0, g: 0, b: 255 } } }).png().toBuffer();
  const viaRgb = await pixels((await pool.run(Buffer.from(blue), opts('rgb'))).output);
  const viaBgr = await pixels((await pool.run(Buffer.from(blue), opts('bgr'))).output);
  t.same(Array.from(viaRgb.subarray(0, 3)), [0, 0, 0], 'RGB model sees red (0) in channel 0');
  t.same(Array.from(viaBgr.subarray(0, 3)), [255, 255, 255], 'BGR model sees blue (255) in channel 0');
});

t.test('padding to a multiple is cropped away again, and the output can be capped', async (t) => {
  const dir = modelsDir(t, [
    {
      manifest: imageManifest('padded', { layout: 'NCHW', range: '-1..1' }, { multiple: 16, pad: 255 }),
      bytes: buildInvertModel({ layout: 'NCHW', range: '-1..1' }),
    },
  ]);
  const pool = await InferencePool.start(poolSettings({ modelsDirs: [dir], workers: 1 }));
  t.teardown(() => pool.close());
  const { png, raw } = await gradient(37, 21);
  const result = await pool.run(Buffer.from(png), opts('padded'));
  t.same([result.width, result.height], [37, 21]);
  t.ok((await pixels(result.output)).equals(Buffer.from(raw.map((v) => 255 - v))), 'pixels line up after the crop');
  const capped = await pool.run(Buffer.from(png), opts('padded', { maxSize: 20 }));
  t.same([capped.width, capped.height], [20, 11], 'long side capped, aspect kept');
  for (const format of ['jpeg', 'webp'] as const) {
    const r = await pool.run(Buffer.from(png), opts('padded', { format }));
    t.equal(r.mime, `image/${format}`);
    t.equal((await sharp(Buffer.from(r.output)).metadata()).format, format);
  }
});

t.test('buffers are transferred on both legs, and pooled Buffers are copied, never moved', async (t) => {
  const dir = modelsDir(t, [{ manifest: imageManifest('inv', { layout: 'NCHW' }), bytes: buildInvertModel({ layout: 'NCHW', range: '0..1' }) }]);
  const pool = await InferencePool.start(poolSettings({ modelsDirs: [dir], workers: 1 }));
  t.teardown(() => pool.close());
  const { png } = await gradient();

  const own = new Uint8Array(png.length);
  own.set(png);
  const result = await pool.run(own, opts('inv'));
  t.equal(own.byteLength, 0, "the sender's view is detached: the bytes moved to the worker");
  t.ok(result.output instanceof ArrayBuffer && result.output.byteLength > 0, 'the result arrives as an ArrayBuffer of its own');

  // A small Buffer lives inside Node's shared 8 KiB pool, next to other Buffers.
  const tiny = await sharp({ create: { width: 4, height: 4, channels: 3, background: 'red' } }).png().toBuffer();
  const pooled = Buffer.from(tiny);
  const neighbour = Buffer.from('neighbour-bytes');
  t.equal(pooled.buffer, neighbour.buffer, 'fixture: both Buffers share one pool slab');
  await pool.run(pooled, opts('inv'));
  t.equal(neighbour.toString(), 'neighbour-bytes', 'the neighbour in the pool is untouched');
  t.equal(pooled.byteLength, tiny.length, 'the pooled Buffer was not detached');
  t.ok(pooled.every((b) => b === 0), 'the copied-from upload was zero-filled');

  const slice = Buffer.concat([Buffer.alloc(10_000), png]).subarray(10_000);
  const owned = ownedArrayBuffer(slice);
  t.equal(owned.byteLength, png.length, 'a view into a larger allocation gets a buffer of its own size');

  // A Buffer made by native code over memory of its own (sharp's output, with Node 24): whole, but not
  // transferable. Handed to the pool as it is, the task failed with DataCloneError (500 PTOON_WORKER_FAILED).
  const native = await sharp({ create: { width: 256, height: 256, channels: 3, background: 'blue' } }).png().toBuffer();
  const copyOfNative = Buffer.from(native);
  const answer = await pool.run(native, opts('inv'));
  t.equal(answer.width, 256, "sharp's own output Buffer is served");
  t.ok(native.byteLength === 0 || native.every((b) => b === 0), 'and is moved or wiped, as any upload');
  const again = ownedArrayBuffer(copyOfNative);
  t.doesNotThrow(() => structuredClone(again, { transfer: [again] }), 'what ownedArrayBuffer returns can always be transferred');
});

t.test('bad input gives typed errors and the pool carries on', async (t) => {
  const dir = modelsDir(t, [{ manifest: imageManifest('inv', { layout: 'NCHW' }), bytes: buildInvertModel({ layout: 'NCHW', range: '0..1' }) }]);
  const pool = await InferencePool.start(poolSettings({ modelsDirs: [dir], workers: 1, maxInputPixels: 100_000 }));
  t.teardown(() => pool.close());
  const { png } = await gradient();
  const jpeg = await sharp(png).resize(300, 200).jpeg().toBuffer();
  const big = await sharp({ create: { width: 400, height: 400, channels: 3, background: 'black' } }).png().toBuffer();
  const cases: Array<[string, Uint8Array, string, number]> = [
    ['svg', Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>'), 'PTOON_UNSUPPORTED_MEDIA', 415],
    ['truncated', jpeg.subarray(0, jpeg.length >> 1), 'PTOON_BAD_IMAGE', 422],
    ['too many pixels', big, 'PTOON_TOO_MANY_PIXELS', 413],
  ];
  for (const [name, bytes, code, status] of cases) {
    await t.rejects(pool.run(Buffer.from(bytes), opts('inv')), { code, statusCode: status }, name);
  }
  await t.rejects(pool.run(Buffer.from(png), opts('nope')), { code: 'PTOON_UNKNOWN_STYLE', statusCode: 400 });
  t.equal((await pool.run(Buffer.from(png), opts('inv'))).width, 48, 'a good request still works');
});

t.test('a queued task whose client went away is dropped; a full queue is a typed 503', async (t) => {
  const dir = modelsDir(t, [{ manifest: imageManifest('inv', { layout: 'NCHW' }), bytes: buildInvertModel({ layout: 'NCHW', range: '0..1' }) }]);
  const pool = await InferencePool.start(poolSettings({ modelsDirs: [dir], workers: 1, maxQueue: 1 }), { workerFile: FAULT_WORKER });
  t.teardown(() => pool.destroy());
  const { png } = await gradient();

  const hung = pool.run(withFault(png, 'hang'), opts('inv'), { deadlineMs: 1500 });
  const client = new AbortController();
  const queued = pool.run(Buffer.from(png), opts('inv'), { signal: client.signal });
  t.equal(pool.stats().queued, 1, 'second task waits');
  t.equal(pool.saturated, true, 'busy worker + full queue: saturated');
  const refused = pool.run(Buffer.from(png), opts('inv'));
  await t.rejects(refused, { code: 'PTOON_BUSY', statusCode: 503 }, 'third task is refused at once');
  try {
    await refused;
  } catch (err) {
    t.ok((err as { retryAfter?: number }).retryAfter! >= 1, 'with a Retry-After');
  }
  client.abort();
  await t.rejects(queued, { code: 'PTOON_ABORTED' });
  t.equal(pool.stats().queued, 0, 'the queue is empty again');
  t.equal(pool.stats().abortedQueued, 1);

  await t.rejects(hung, { code: 'PTOON_DEADLINE', statusCode: 504 }, 'the deadline ends the hung task');
  const next = await pool.run(Buffer.from(png), opts('inv'));
  t.equal(next.width, 48, 'the replaced worker serves the next task');
});

t.test('a worker that throws or dies is survived', async (t) => {
  const dir = modelsDir(t, [{ manifest: imageManifest('inv', { layout: 'NCHW' }), bytes: buildInvertModel({ layout: 'NCHW', range: '0..1' }) }]);
  const pool = await InferencePool.start(poolSettings({ modelsDirs: [dir], workers: 1 }), { workerFile: FAULT_WORKER });
  t.teardown(() => pool.close());
  const { png } = await gradient();
  await t.rejects(pool.run(withFault(png, 'throw'), opts('inv')), { code: 'PTOON_WORKER_FAILED', statusCode: 500 });
  t.equal((await pool.run(Buffer.from(png), opts('inv'))).width, 48, 'next task after a throw');
  await t.rejects(pool.run(withFault(png, 'exit'), opts('inv')), { code: 'PTOON_WORKER_FAILED' });
  t.equal(pool.stats().workerCrashes, 1);
  t.equal((await pool.run(Buffer.from(png), opts('inv'))).width, 48, 'next task after a crash');
  t.equal(pool.ready, true, 'ready again once the replacement warmed up');
});

t.test('the production worker has no fault injection: a marked upload is just an image', async (t) => {
  const dir = modelsDir(t, [{ manifest: imageManifest('inv', { layout: 'NCHW' }), bytes: buildInvertModel({ layout: 'NCHW', range: '0..1' }) }]);
  const pool = await InferencePool.start(poolSettings({ modelsDirs: [dir], workers: 1 }));
  t.teardown(() => pool.close());
  const { png, raw } = await gradient();
  for (const fault of ['throw', 'exit', 'hang'] as const) {
    const result = await pool.run(withFault(png, fault), opts('inv'), { deadlineMs: 10_000 });
    t.ok((await pixels(result.output)).equals(Buffer.from(raw.map((v) => 255 - v))), `"${fault}" marker: the image is served, inverted`);
  }
  t.equal(pool.stats().workerCrashes, 0, 'no worker died');
});

t.test('two workers run inference concurrently without crashing', async (t) => {
  const dir = modelsDir(t, [{ manifest: imageManifest('slow', { layout: 'NCHW' }), bytes: buildSlowModel() }]);
  const pool = await InferencePool.start(poolSettings({ modelsDirs: [dir], workers: 2, maxQueue: 64 }));
  t.teardown(() => pool.close());
  const { png } = await gradient(256, 256);
  const results = await Promise.all(Array.from({ length: 12 }, () => pool.run(Buffer.from(png), opts('slow'))));
  t.equal(results.length, 12);
  t.ok(results.every((r) => r.width === 256));
  t.equal(pool.stats().completed, 12);
});

t.test('a client that hangs up on a running task does not take its deadline away', async (t) => {
  const dir = modelsDir(t, [{ manifest: imageManifest('inv', { layout: 'NCHW' }), bytes: buildInvertModel({ layout: 'NCHW', range: '0..1' }) }]);
  const pool = await InferencePool.start(poolSettings({ modelsDirs: [dir], workers: 1 }), { workerFile: FAULT_WORKER });
  t.teardown(() => pool.destroy());
  const { png } = await gradient();
  const client = new AbortController();
  const stuck = pool.run(withFault(png, 'hang'), opts('inv'), { deadlineMs: 800, signal: client.signal });
  await new Promise((resolve) => setTimeout(resolve, 200));
  client.abort();
  await t.rejects(stuck, { code: 'PTOON_ABORTED' }, 'the caller is answered at once');
  t.equal(pool.stats().busy, 1, 'the worker is still running the task');
  // The deadline (800 ms) still ends the run: the worker is replaced and serves the next task well before the
  // hang (60 s) would have ended on its own.
  const started = Date.now();
  const next = await pool.run(Buffer.from(png), opts('inv'), { deadlineMs: 10_000 });
  t.equal(next.width, 48);
  t.ok(Date.now() - started < 30_000, `served after ${Date.now() - started} ms, not after the hang's 60 s`);
  t.equal(pool.stats().deadlineKills, 1, 'the hung thread, found in JavaScript, was terminated');
});

t.test('the pool owns the option defaults: its default style, the format\'s quality', async (t) => {
  const dir = modelsDir(t, [{ manifest: imageManifest('alpha', { layout: 'NCHW' }), bytes: buildInvertModel({ layout: 'NCHW', range: '0..1' }) }, { manifest: imageManifest('toon', { layout: 'NCHW' }), bytes: buildInvertModel({ layout: 'NCHW', range: '0..1' }) }]);
  const pool = await InferencePool.start(poolSettings({ modelsDirs: [dir], workers: 1 }));
  t.teardown(() => pool.close());
  t.equal(pool.defaultStyle, 'toon', 'toon where it is served, even when not first');
  t.same(pool.withDefaults({ format: 'webp' }), { format: 'webp', style: 'toon', quality: DEFAULT_QUALITY.webp });
  t.same(pool.withDefaults({ format: 'avif', style: 'alpha', quality: 40 }), { format: 'avif', style: 'alpha', quality: 40 });
  t.throws(() => pool.withDefaults({ format: 'jpeg', style: 'nope' }), { code: 'PTOON_UNKNOWN_STYLE' });
});

/** Niceness of each of this process's threads (field 19 of /proc/self/task/TID/stat), by thread id. */
function threadNiceness(): Map<number, number> {
  const nice = new Map<number, number>();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      nice.set(Number(tid), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]));
    } catch {
      // the thread ended meanwhile
    }
  }
  return nice;
}

t.test('workers lower their own priority (WORKER_NICE); the main thread keeps the process\'s', { skip: process.platform !== 'linux' || getPriority() >= 7 ? 'needs Linux and a process below nice 7' : false }, async (t) => {
  const dir = modelsDir(t, [{ manifest: imageManifest('inv', { layout: 'NCHW' }), bytes: buildInvertModel({ layout: 'NCHW', range: '0..1' }) }]);
  const own = getPriority();
  const before = new Set(threadNiceness().keys());
  const pool = await InferencePool.start(poolSettings({ modelsDirs: [dir], workers: 2, workerNice: 7 }));
  t.teardown(() => pool.close());
  const { png } = await gradient();
  t.equal((await pool.run(png, opts('inv'))).width > 0, true, 'the pool answers');
  const after = threadNiceness();
  const niced = [...after].filter(([tid, nice]) => !before.has(tid) && nice === 7);
  t.ok(niced.length >= 2, `${niced.length} new threads at nice 7: at least the two workers`);
  t.equal(after.get(process.pid), own, 'the main thread is unchanged');
  t.ok([...after].every(([tid, nice]) => nice === own || !before.has(tid)), 'no thread that was there before the pool changed');

  const seen = new Set(threadNiceness().keys());
  const plain = await InferencePool.start(poolSettings({ modelsDirs: [dir], workers: 1, workerNice: 0 }));
  t.teardown(() => plain.close());
  await plain.run((await gradient()).png, opts('inv'));
  const fresh = [...threadNiceness()].filter(([tid]) => !seen.has(tid));
  t.ok(fresh.length >= 1 && fresh.every(([, nice]) => nice === own), `WORKER_NICE=0: the ${fresh.length} new threads keep the process's niceness`);
});
