/**
 * The worker's per-task pipeline, run in-process on real sessions: the reusable buffers (workers/scratch.ts) hold
 * nothing once a task ends, however it ends, and the faster pipeline gives the same picture as the straightforward
 * one it replaced (fresh arrays, per-pixel packing, optimised Huffman tables) at the same settings.
 */
import { readFileSync } from 'node:fs';
import { PerformanceObserver } from 'node:perf_hooks';
import sharp from 'sharp';
import t from 'tap';
import { loadManifests } from '../../models/registry.js';
import { BENCH_MODELS_DIR, BUILTIN_MODELS_DIR } from '../../paths.js';
import type { ModelManifest, TensorSpec } from '../../models/manifest.js';
import type { CartoonizeSuccess } from '../../contract.js';
import { pipeline, type PipelineConfig } from '../../workers/pipeline.js';
import { turboJpeg } from '../../workers/jpeg.js';
import { Scratch } from '../../workers/scratch.js';
import { openSession, type ModelSession } from '../../workers/session.js';
import { fitLongSide, modelSize, padTo } from '../../workers/tensor.js';
import { CAN_FREE_EARLY } from '../../wipe.js';
import { fixtures, sharedImage } from '../helper.js';

const CONFIG: PipelineConfig = { maxInputPixels: 4096 * 4096, maxOutputSide: 4096, maxFaces: 0, minFaceSize: 48 };
const THREADS = { intraOpThreads: 1, interOpThreads: 1, spinning: false };

const manifests = await loadManifests([BUILTIN_MODELS_DIR, BENCH_MODELS_DIR]);
const sessions = new Map<string, ModelSession>();
for (const id of ['toon', 'nearfree-bench', 'dctnet-bench']) {
  const manifest = manifests.find((m) => m.id === id)!;
  sessions.set(id, await openSession(manifest, THREADS));
}
t.teardown(async () => {
  for (const session of sessions.values()) await session.release();
});

const photo = async (width: number, height: number): Promise<Buffer> => {
  const path = sharedImage('astronaut_eileen_collins.png');
  const source = path !== null ? readFileSync(path) : (await fixtures()).png;
  return sharp(source).resize(width, height, { fit: 'cover' }).jpeg({ quality: 90 }).toBuffer();
};

const allZero = (values: ArrayLike<number>): boolean => {
  for (let i = 0; i < values.length; i++) if (values[i] !== 0) return false;
  return true;
};

t.test('the reusable buffers are used for the whole-image pass and hold nothing once the task ends', async (t) => {
  const scratch = new Scratch();
  const model = sessions.get('nearfree-bench')!;
  // Look at what the model is handed, while the task runs.
  let sawScratch = false;
  let sawPixels = false;
  const watched = new Map(sessions);
  watched.set('nearfree-bench', {
    ...model,
    async run(data, dims) {
      sawScratch = data.buffer === scratch.peek().tensor.buffer;
      sawPixels = !allZero(data);
      return model.run(data, dims);
    },
  });
  const input = await photo(512, 384);
  for (const format of ['jpeg', 'png'] as const) {
    const reply = await pipeline(watched, new Uint8Array(input), { style: 'nearfree-bench', format, quality: 85 }, CONFIG, scratch);
    t.ok(reply.ok, `${format}: answered`);
    t.ok(sawScratch && sawPixels, `${format}: the model read the photo from the worker's buffer`);
    const { tensor, pixels, staging } = scratch.peek();
    t.ok(tensor.length >= 512 * 384 * 3 && pixels.length >= 512 * 384 * 3, `${format}: the buffers cover the image`);
    t.ok(allZero(tensor), `${format}: tensor buffer all zero after the task`);
    t.ok(allZero(pixels), `${format}: pixel buffer all zero after the task`);
    t.ok(allZero(staging), `${format}: the kernels' staging area all zero after the task`);
  }
  const encoder = turboJpeg()!.peekOutput();
  t.ok(encoder !== undefined && encoder.length > 0 && allZero(encoder), "the JPEG encoder's retained output buffer was used, kept (never freed: a result is only part of it), and is all zero after the task");
});

t.test('a smaller image after a larger one, in the same buffers, gives the same result as in fresh ones', async (t) => {
  const shared = new Scratch();
  const run = (jpeg: Buffer, scratch: Scratch) => pipeline(sessions, new Uint8Array(jpeg), { style: 'toon', format: 'png', quality: 85 }, CONFIG, scratch);
  t.ok((await run(await photo(640, 480), shared)).ok, 'the larger one answered');
  const small = await photo(203, 157);
  const reused = (await run(small, shared)) as CartoonizeSuccess;
  const fresh = (await run(small, new Scratch())) as CartoonizeSuccess;
  t.same(Buffer.from(reused.output), Buffer.from(fresh.output), 'byte for byte the same');
});

t.test('the buffers are wiped when a task fails after packing', async (t) => {
  const scratch = new Scratch();
  const model = sessions.get('toon')!;
  const failing = new Map(sessions);
  failing.set('toon', {
    ...model,
    async run(data, dims) {
      await model.run(data, dims); // the run happened, its pixels are in the buffers
      throw new Error('injected failure after the run');
    },
  });
  await t.rejects(pipeline(failing, new Uint8Array(await photo(256, 256)), { style: 'toon', format: 'jpeg', quality: 85 }, CONFIG, scratch), /injected/);
  t.ok(scratch.peek().tensor.length > 0, 'the tensor buffer was used');
  t.ok(allZero(scratch.peek().tensor), 'tensor buffer all zero');
  t.ok(allZero(scratch.peek().pixels), 'pixel buffer all zero');
  t.ok(allZero(scratch.peek().staging), 'staging area all zero');
});

t.test('an image above the bound gets arrays of its own: the retained buffers do not grow', async (t) => {
  const scratch = new Scratch(100 * 100);
  const reply = await pipeline(sessions, new Uint8Array(await photo(200, 150)), { style: 'nearfree-bench', format: 'png', quality: 85 }, CONFIG, scratch);
  t.ok(reply.ok, 'answered');
  t.equal(scratch.peek().tensor.length, 0, 'no tensor buffer retained');
  t.equal(scratch.peek().pixels.length, 0, 'no pixel buffer retained');
});

const NO_TRANSFER = 'this Node has no ArrayBuffer.prototype.transfer (Node 22 and later): outputs are wiped and left to the collector';

t.test('the model\'s output is freed when the task ends, not left to the collector', { skip: CAN_FREE_EARLY ? false : NO_TRANSFER }, async (t) => {
  const scratch = new Scratch();
  const model = sessions.get('nearfree-bench')!;
  const outputs: Float32Array[] = [];
  const watched = new Map(sessions);
  watched.set('nearfree-bench', {
    ...model,
    async run(data, dims) {
      const result = await model.run(data, dims);
      outputs.push(result.data);
      return result;
    },
  });
  const jpeg = await photo(512, 512);
  const reply = await pipeline(watched, new Uint8Array(jpeg), { style: 'nearfree-bench', format: 'jpeg', quality: 95 }, CONFIG, scratch);
  t.ok(reply.ok, 'answered');
  t.equal(outputs[0]?.length, 0, 'the 3 MiB output is detached: its memory went back when the task ended');

  // Left to the collector, 3 MiB a task made this thread collect every few tasks (32 MiB of new array buffers brings
  // a scavenge on Node 20; Node 24 marked the whole heap instead). Freed at once, a run of tasks needs almost none.
  const collections: string[] = [];
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) collections.push(entry.name);
  });
  observer.observe({ entryTypes: ['gc'] });
  let answered = 0;
  for (let i = 0; i < 60; i++) {
    const answer = await pipeline(watched, new Uint8Array(jpeg), { style: 'nearfree-bench', format: 'jpeg', quality: 95 }, CONFIG, scratch);
    if (answer.ok) answered++;
  }
  await new Promise((resolve) => setTimeout(resolve, 50)); // the observer reports asynchronously
  observer.disconnect();
  t.equal(answered, 60, 'every task answered');
  t.ok(outputs.length === 61 && outputs.every((o) => o.length === 0), 'every output detached');
  t.ok(collections.length <= 6, `${collections.length} collections in 60 tasks at 512x512 (180 MiB of model outputs; 16 measured before the change)`);
});

/** The pipeline as it was written before the reusable buffers: plain per-pixel loops, fresh arrays, default encoder. */
async function straightforward(manifest: ModelManifest, session: ModelSession, jpeg: Buffer, format: 'jpeg' | 'png', quality: number): Promise<Buffer> {
  const meta = await sharp(jpeg).metadata();
  const inner = modelSize(meta.width!, meta.height!, manifest.size);
  const out = fitLongSide(meta.width!, meta.height!, CONFIG.maxOutputSide);
  const { data: rgb, info } = await sharp(jpeg).rotate().resize(inner.width, inner.height, { fit: 'fill', kernel: 'lanczos3' }).toColourspace('srgb').removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const { width, height } = info;
  const pw = padTo(width, manifest.size.multiple);
  const ph = padTo(height, manifest.size.multiple);
  const [scale, offset] = affine(manifest.input);
  const order = manifest.input.channels === 'RGB' ? [0, 1, 2] : [2, 1, 0];
  const at = (spec: TensorSpec, w: number, h: number, x: number, y: number, c: number) => (spec.layout === 'NCHW' ? c * w * h + y * w + x : (y * w + x) * 3 + c);
  const tensor = new Float32Array(pw * ph * 3);
  for (let y = 0; y < ph; y++) {
    for (let x = 0; x < pw; x++) {
      for (let c = 0; c < 3; c++) {
        const inside = x < width && y < height;
        const level = manifest.size.pad === 'edge' || inside ? rgb[(Math.min(y, height - 1) * width + Math.min(x, width - 1)) * 3 + order[c]!]! : manifest.size.pad;
        tensor[at(manifest.input, pw, ph, x, y, c)] = level * scale + offset;
      }
    }
  }
  const dims = manifest.input.layout === 'NCHW' ? [1, 3, ph, pw] : [1, ph, pw, 3];
  const result = await session.run(tensor, dims);
  const [oScale, oOffset] = affine(manifest.output);
  const pixels = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) {
        const v = (result.data[at(manifest.output, pw, ph, x, y, c)]! - oOffset) / oScale;
        pixels[(y * width + x) * 3 + order[c]!] = Math.max(0, Math.min(255, Math.round(v)));
      }
    }
  }
  let encoder = sharp(pixels, { raw: { width, height, channels: 3 } });
  if (out.width !== width || out.height !== height) encoder = encoder.resize(out.width, out.height, { fit: 'fill', kernel: 'lanczos3' });
  return format === 'jpeg' ? encoder.jpeg({ quality, chromaSubsampling: quality >= 90 ? '4:4:4' : '4:2:0' }).toBuffer() : encoder.png().toBuffer();
}

function affine(spec: Pick<TensorSpec, 'range'>): [number, number] {
  return spec.range === '0..1' ? [1 / 255, 0] : spec.range === '-1..1' ? [2 / 255, -1] : [1, 0];
}

/** Peak signal-to-noise ratio of two encoded images' pixels, dB (Infinity when identical). */
async function psnr(a: Buffer, b: Buffer): Promise<number> {
  const pa = await sharp(a).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const pb = await sharp(b).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  if (pa.info.width !== pb.info.width || pa.info.height !== pb.info.height) return -Infinity;
  let sum = 0;
  for (let i = 0; i < pa.data.length; i++) sum += (pa.data[i]! - pb.data[i]!) ** 2;
  const mse = sum / pa.data.length;
  return mse === 0 ? Infinity : 10 * Math.log10((255 * 255) / mse);
}

t.test('the pipeline gives the picture the straightforward one gives, at the same settings (PSNR > 40 dB)', async (t) => {
  const cases = [
    { style: 'toon', width: 512, height: 512, format: 'jpeg', quality: 85 },
    { style: 'nearfree-bench', width: 509, height: 301, format: 'jpeg', quality: 95 }, // padded to 8: edge margins
    { style: 'dctnet-bench', width: 250, height: 170, format: 'png', quality: 85 }, // NHWC BGR 0..255, white margins
  ] as const;
  for (const c of cases) {
    const manifest = manifests.find((m) => m.id === c.style)!;
    const jpeg = await photo(c.width, c.height);
    const reply = await pipeline(sessions, new Uint8Array(jpeg), { style: c.style, format: c.format, quality: c.quality }, CONFIG, new Scratch());
    t.ok(reply.ok, `${c.style}: answered`);
    const ours = Buffer.from((reply as CartoonizeSuccess).output);
    const reference = await straightforward(manifest, sessions.get(c.style)!, jpeg, c.format, c.quality);
    const db = await psnr(ours, reference);
    t.ok(db > 40, `${c.style} ${c.width}x${c.height} ${c.format} q${c.quality}: PSNR ${db.toFixed(1)} dB against the straightforward pipeline`);
  }
});
