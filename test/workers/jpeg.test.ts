/**
 * The TurboJPEG fast path (workers/jpeg.ts) gives exactly what sharp gives, takes only the JPEGs it reads as sharp
 * does, and hands every other file (and every file it stops at) to sharp, whose answer is then the service's.
 */
import { readFileSync } from 'node:fs';
import sharp, { type JpegOptions } from 'sharp';
import t from 'tap';
import { decode, encode, probe } from '../../workers/image.js';
import { plainMarkers, turboJpeg } from '../../workers/jpeg.js';
import { sharedImage } from '../helper.js';

const LIMIT = 4096 * 4096;

/** A photo where the shared images are present, else a busy synthetic picture (edges and gradients). */
async function picture(width: number, height: number): Promise<Buffer> {
  const path = sharedImage('obama_halfbody.jpg');
  if (path !== null) return sharp(readFileSync(path)).resize(width, height, { fit: 'cover' }).removeAlpha().raw().toBuffer();
  const raw = Buffer.alloc(width * height * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 7 + (i >> 7) * 13 + ((i / (width * 3)) | 0)) & 255;
  return raw;
}

const rawJpeg = (raw: Buffer, width: number, height: number, options: JpegOptions) =>
  sharp(raw, { raw: { width, height, channels: 3 } }).jpeg(options).toBuffer();

const sharpDecode = async (jpeg: Uint8Array) => sharp(jpeg).removeAlpha().toColourspace('srgb').raw().toBuffer();

const zero = (bytes: Uint8Array) => bytes.every((b) => b === 0);

t.test('the library loads on this platform (else the fast path is silently off)', async (t) => {
  t.not(turboJpeg(), undefined, 'libturbojpeg from @julusian/jpeg-turbo, through koffi');
});

t.test('decoding is bit-identical to sharp for the plain JPEGs it takes', async (t) => {
  const turbo = turboJpeg()!;
  const cases = [
    { width: 512, height: 512, options: { quality: 90 } },
    { width: 512, height: 512, options: { quality: 95, chromaSubsampling: '4:4:4' } },
    { width: 509, height: 301, options: { quality: 75 } }, // sides that are not a multiple of the MCU
    { width: 64, height: 720, options: { quality: 100, chromaSubsampling: '4:4:4' } },
  ] as const;
  for (const c of cases) {
    const jpeg = await rawJpeg(await picture(c.width, c.height), c.width, c.height, c.options);
    const probed = await probe(jpeg, LIMIT);
    t.ok(probed.plainJpeg, `${c.width}x${c.height} q${c.options.quality}: plain`);
    const into = new Uint8Array(c.width * c.height * 3);
    t.ok(turbo.decodeInto(jpeg, c.width, c.height, into), 'decoded by TurboJPEG');
    t.same(Buffer.from(into), await sharpDecode(jpeg), 'the same bytes as sharp');
    const room = new Uint8Array(c.width * c.height * 3);
    const decoded = await decode(jpeg, probed, c.width, c.height, LIMIT, room);
    t.equal(decoded.rgb.buffer, room.buffer, 'decode() puts it straight into the room it is given');
  }
  const grey = await sharp(await picture(320, 240), { raw: { width: 320, height: 240, channels: 3 } }).greyscale().jpeg({ quality: 90 }).toBuffer();
  const probed = await probe(grey, LIMIT);
  t.ok(probed.plainJpeg, 'a greyscale JPEG is plain');
  const decoded = await decode(grey, probed, 320, 240, LIMIT);
  t.same(Buffer.from(decoded.rgb), await sharpDecode(grey), 'greyscale: grey RGB, as sharp makes it');
});

t.test('encoding gives the pixels sharp gives at the same quality and subsampling', async (t) => {
  const turbo = turboJpeg()!;
  const raw = await picture(512, 384);
  for (const [quality, chromaSubsampling] of [
    [85, '4:2:0'],
    [95, '4:4:4'],
  ] as const) {
    const ours = Buffer.from(turbo.encode(raw, 512, 384, quality, chromaSubsampling));
    const theirs = await rawJpeg(raw, 512, 384, { quality, chromaSubsampling, optimiseCoding: false });
    t.same(await sharpDecode(ours), await sharpDecode(theirs), `q${quality} ${chromaSubsampling}: identical pixels`);
    const meta = await sharp(ours).metadata();
    t.match(meta, { format: 'jpeg', width: 512, height: 384, isProgressive: false, chromaSubsampling }, 'baseline, the subsampling asked');
    t.equal(meta.exif ?? meta.icc ?? meta.xmp, undefined, 'no metadata');
  }
  const image = { rgb: new Uint8Array(raw), alpha: undefined, width: 512, height: 384 };
  const viaEncode = await encode(image, 512, 384, 'jpeg', 95);
  t.same(await sharpDecode(viaEncode), await sharpDecode(await rawJpeg(raw, 512, 384, { quality: 95, chromaSubsampling: '4:4:4' })), 'encode() at model size takes it');
});

t.test('anything not plain goes to sharp, which decides as before', async (t) => {
  const raw = await picture(200, 150);
  const base = sharp(raw, { raw: { width: 200, height: 150, channels: 3 } });
  const notPlain = {
    progressive: await base.clone().jpeg({ progressive: true }).toBuffer(),
    'EXIF orientation 6': await base.clone().jpeg().withMetadata({ orientation: 6 }).toBuffer(),
    'an ICC profile': await base.clone().jpeg().withIccProfile('p3').toBuffer(),
    CMYK: await base.clone().toColourspace('cmyk').jpeg().toBuffer(),
    PNG: await base.clone().png().toBuffer(),
  };
  for (const [what, bytes] of Object.entries(notPlain)) {
    const probed = await probe(bytes, LIMIT);
    t.notOk(probed.plainJpeg, `${what}: not plain`);
    const room = new Uint8Array(200 * 150 * 3);
    const decoded = await decode(bytes, probed, probed.width, probed.height, LIMIT, room);
    t.ok(zero(room), `${what}: the room was not used`);
    t.equal(decoded.width * decoded.height, 200 * 150, `${what}: decoded by sharp`);
  }
});

t.test('a file TurboJPEG stops at is wiped from the room and answered by sharp', async (t) => {
  const turbo = turboJpeg()!;
  const jpeg = await rawJpeg(await picture(200, 150), 200, 150, { quality: 90 });
  // 64 bytes before the end marker: libjpeg warns ("extraneous bytes"); libvips reads the picture anyway. (A few
  // bytes may be taken into the entropy decoder's look-ahead without a warning, depending on the picture: 64 cannot.)
  const filler = Buffer.from(Array.from({ length: 64 }, (_, i) => i + 1));
  const junk = Buffer.concat([jpeg.subarray(0, jpeg.length - 2), filler, jpeg.subarray(jpeg.length - 2)]);
  const room = new Uint8Array(200 * 150 * 3);
  t.notOk(turbo.decodeInto(junk, 200, 150, room), 'TurboJPEG stops at the warning');
  t.ok(zero(room), 'whatever it had decoded is wiped');
  const probed = await probe(junk, LIMIT);
  const decoded = await decode(junk, probed, 200, 150, LIMIT, room);
  t.same(Buffer.from(decoded.rgb), await sharpDecode(junk), "sharp's answer, as before");

  const truncated = jpeg.subarray(0, Math.floor(jpeg.length * 0.6));
  room.fill(0);
  t.notOk(turbo.decodeInto(truncated, 200, 150, room), 'a truncated file is refused');
  t.ok(zero(room), 'and the half it read is wiped');
  await t.rejects(decode(truncated, await probe(truncated, LIMIT), 200, 150, LIMIT, room), { code: 'PTOON_BAD_IMAGE' }, 'sharp refuses it: 400, as before');
  t.notOk(turbo.decodeInto(jpeg, 100, 150, new Uint8Array(100 * 150 * 3)), 'a size other than the header says is refused');
});

t.test("a plain JPEG's size is read from its header segments, without sharp, under the same limits", async (t) => {
  const raw = await picture(300, 200);
  const plain = await rawJpeg(raw, 300, 200, { quality: 90 });
  t.ok(plainMarkers(plain), 'no EXIF, ICC or Adobe segment; a baseline frame');
  t.same(turboJpeg()!.plainHeader(plain), { width: 300, height: 200 }, "TurboJPEG's header");
  t.same(await probe(plain, LIMIT), { width: 300, height: 200, hasAlpha: false, plainJpeg: true }, 'probe() answers from it');
  await t.rejects(probe(plain, 300 * 200 - 1), { code: 'PTOON_TOO_MANY_PIXELS', message: /300x200 pixels; the limit is 59999 pixels/ }, 'the pixel limit holds on this path');

  const withExif = await sharp(raw, { raw: { width: 300, height: 200, channels: 3 } }).jpeg().withExif({ IFD0: { Copyright: 'test' } }).toBuffer();
  t.notOk(plainMarkers(withExif), 'EXIF (it may hold an orientation): sharp reads the header');
  t.same(await probe(withExif, LIMIT), { width: 300, height: 200, hasAlpha: false, plainJpeg: true }, 'no orientation in it: still plain, as sharp reads it');
  const withIcc = await sharp(raw, { raw: { width: 300, height: 200, channels: 3 } }).jpeg().withIccProfile('p3').toBuffer();
  t.notOk(plainMarkers(withIcc), 'an ICC profile: sharp');
  t.notOk(plainMarkers(await sharp(raw, { raw: { width: 300, height: 200, channels: 3 } }).jpeg({ progressive: true }).toBuffer()), 'a progressive frame: sharp');

  // Damaged header segments: any doubt goes to sharp, which answers as it always has.
  const overrun = Buffer.from(plain);
  overrun[4] = 0xff; // the first segment's length now runs past the end of the file
  t.notOk(plainMarkers(overrun), 'a segment running past the end: not plain');
  t.notOk(plainMarkers(plain.subarray(0, 40)), 'a header cut before the scan: not plain');
  const notMarker = Buffer.from(plain);
  notMarker[2] = 0x00;
  t.notOk(plainMarkers(notMarker), 'a byte where a marker should be: not plain');
  await t.rejects(probe(plain.subarray(0, 40), LIMIT), { code: 'PTOON_BAD_IMAGE' }, 'a header cut short: 400 from sharp, as before');
});
