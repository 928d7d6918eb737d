/**
 * Size limits of the image path found by the fuzzer (npm run bench:fuzz), each with the bytes that showed it, built
 * here deterministically.
 */
import sharp from 'sharp';
import t from 'tap';
import { parsePng, serializePng, writeU32BE } from '../../bench/fuzz/formats.js';
import { MAX_INPUT_SIDE, probe } from '../../workers/image.js';
import { codeOf } from '../fixtures/image-errors.js';

const LIMIT = 4096 * 4096;


/** A small grey+alpha PNG whose IHDR (CRC fixed) claims another size: only the header is read by probe. */
async function pngClaiming(width: number, height: number): Promise<Uint8Array> {
  const raw = Buffer.alloc(24 * 16 * 2, 0x80);
  const png = await sharp(raw, { raw: { width: 24, height: 16, channels: 2 } }).png().toBuffer();
  const chunks = parsePng(new Uint8Array(png))!;
  const ihdr = chunks[0]!.data.slice();
  writeU32BE(ihdr, 0, width);
  writeU32BE(ihdr, 4, height);
  chunks[0] = { ...chunks[0]!, data: ihdr };
  return serializePng(chunks);
}

t.test('a very long side is refused from the header, within the pixel limit', async (t) => {
  // Fuzz case 28817 of seed 1: a bit flip made this 24x16 PNG claim 524312x16 (8.4 MP): 1 s and 620 MiB to fail.
  t.ok(524_312 * 16 <= LIMIT, 'inside the pixel limit');
  t.equal(await codeOf(probe(await pngClaiming(524_312, 16), LIMIT)), 'PTOON_TOO_MANY_PIXELS', 'the fuzz case');
  // A valid 1,000,000 x 16 PNG took 1.4 GB and 3 s to shrink before the cap.
  t.equal(await codeOf(probe(await pngClaiming(1_000_000, 16), LIMIT)), 'PTOON_TOO_MANY_PIXELS', 'wide');
  t.equal(await codeOf(probe(await pngClaiming(16, 1_000_000), LIMIT)), 'PTOON_TOO_MANY_PIXELS', 'tall');
  t.equal(await codeOf(probe(await pngClaiming(MAX_INPUT_SIDE + 1, 16), LIMIT)), 'PTOON_TOO_MANY_PIXELS', 'one pixel over');
  try {
    await probe(await pngClaiming(MAX_INPUT_SIDE + 1, 16), LIMIT);
  } catch (err) {
    t.match((err as Error).message, `a side may be at most ${MAX_INPUT_SIDE} pixels`, 'the message says which limit');
  }
});

t.test('the longest side allowed still decodes', async (t) => {
  const strip = await sharp({ create: { width: MAX_INPUT_SIDE, height: 8, channels: 3, background: 'red' } }).png().toBuffer();
  t.same(await probe(strip, LIMIT), { width: MAX_INPUT_SIDE, height: 8, hasAlpha: false, plainJpeg: false });
});
