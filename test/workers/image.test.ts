import sharp from 'sharp';
import t from 'tap';
import { decode, encode, probe } from '../../workers/image.js';
import { sniffFormat } from '../../contract.js';
import { codeOf } from '../fixtures/image-errors.js';

const LIMIT = 4096 * 4096;

/** A 40x20 image: left half red, right half blue, so orientation changes are visible. */
function halves(width = 40, height = 20): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) raw.set(x < width / 2 ? [255, 0, 0] : [0, 0, 255], (y * width + x) * 3);
  }
  return sharp(raw, { raw: { width, height, channels: 3 } }).png().toBuffer();
}

async function fullDecode(bytes: Uint8Array) {
  const p = await probe(bytes, LIMIT);
  return { probe: p, image: await decode(bytes, p, p.width, p.height, LIMIT) };
}


t.test('sniffing accepts JPEG, PNG, WebP and names what it refuses', async (t) => {
  const png = await halves();
  t.same(sniffFormat(png), { ok: true, format: 'png' });
  t.same(sniffFormat(await sharp(png).jpeg().toBuffer()), { ok: true, format: 'jpeg' });
  t.same(sniffFormat(await sharp(png).webp().toBuffer()), { ok: true, format: 'webp' });
  t.same(sniffFormat(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>')), { ok: false, what: 'SVG' });
  t.same(sniffFormat(Buffer.from('  <?xml version="1.0"?><svg/>')), { ok: false, what: 'SVG' });
  t.same(sniffFormat(Buffer.from('GIF89a....')), { ok: false, what: 'GIF' });
  t.same(sniffFormat(new Uint8Array(0)), { ok: false, what: 'an empty file' });
  t.same(sniffFormat(Buffer.from('hello world')), { ok: false, what: 'an unrecognised format' });
});

t.test('SVG is refused before any decoder runs, even with a PNG-looking name', async (t) => {
  t.equal(await codeOf(probe(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'), LIMIT)), 'PTOON_UNSUPPORTED_MEDIA');
  const gif = await sharp({ create: { width: 4, height: 4, channels: 3, background: 'red' } }).gif().toBuffer();
  t.equal(await codeOf(probe(gif, LIMIT)), 'PTOON_UNSUPPORTED_MEDIA');
});

t.test('EXIF orientation is applied before decoding goes on', async (t) => {
  const png = await halves();
  // Orientation 6: the stored image must be turned 90 degrees clockwise to be seen upright.
  const rotated = await sharp(png).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toBuffer();
  const { probe: p, image } = await fullDecode(rotated);
  t.same([p.width, p.height], [20, 40], 'width and height swapped');
  const at = (x: number, y: number) => Array.from(image.rgb.subarray((y * 20 + x) * 3, (y * 20 + x) * 3 + 3));
  t.ok(at(10, 5)[0]! > 200 && at(10, 5)[2]! < 60, 'top is red (was the left)');
  t.ok(at(10, 35)[2]! > 200 && at(10, 35)[0]! < 60, 'bottom is blue (was the right)');
});

t.test('grey, 16-bit, palette and CMYK inputs all become 8-bit sRGB', async (t) => {
  const png = await halves();
  const cases: Record<string, Buffer> = {
    grey: await sharp(png).greyscale().png().toBuffer(),
    sixteenBit: await sharp(png).toColourspace('rgb16').png().toBuffer(),
    palette: await sharp(png).png({ palette: true, colours: 4 }).toBuffer(),
    cmyk: await sharp(png).toColourspace('cmyk').jpeg().toBuffer(),
    greyJpeg: await sharp(png).greyscale().jpeg().toBuffer(),
  };
  for (const [name, bytes] of Object.entries(cases)) {
    const { image } = await fullDecode(bytes);
    t.equal(image.rgb.length, 40 * 20 * 3, `${name}: 3 channels of 8 bits`);
    t.equal(image.alpha, undefined, `${name}: no alpha`);
  }
  const cmyk = (await fullDecode(cases.cmyk!)).image.rgb;
  t.ok(cmyk[0]! > 180 && cmyk[2]! < 90, 'CMYK red stays reddish after conversion');
});

t.test('alpha is kept aside and put back on formats that carry it', async (t) => {
  const raw = Buffer.alloc(8 * 8 * 4);
  for (let i = 0; i < 64; i++) raw.set([0, 128, 0, i < 32 ? 0 : 255], i * 4);
  const png = await sharp(raw, { raw: { width: 8, height: 8, channels: 4 } }).png().toBuffer();
  const { image } = await fullDecode(png);
  t.equal(image.alpha?.length, 64);
  t.equal(image.alpha?.[0], 0);
  t.equal(image.alpha?.[63], 255);
  const outPng = await encode(image, 8, 8, 'png', 90);
  const meta = await sharp(outPng).metadata();
  t.equal(meta.hasAlpha, true, 'PNG keeps alpha');
  const back = await sharp(outPng).raw().toBuffer();
  t.equal(back[3], 0, 'transparent pixel stays transparent');
  const outJpeg = await encode(image, 8, 8, 'jpeg', 90);
  t.equal((await sharp(outJpeg).metadata()).hasAlpha, false, 'JPEG is flattened');
  const flat = await sharp(outJpeg).raw().toBuffer();
  t.ok(flat[0]! > 240 && flat[1]! > 240, 'transparent area flattened onto white');
  t.equal((await sharp(await encode(image, 8, 8, 'webp', 90)).metadata()).hasAlpha, true, 'WebP keeps alpha');
});

t.test('outputs carry no EXIF, XMP, IPTC, ICC or GPS, whatever the input had', async (t) => {
  const png = await halves();
  const tagged = await sharp(png)
    .jpeg()
    .withMetadata({ orientation: 3, exif: { IFD0: { Copyright: 'secret-owner', ImageDescription: 'secret-place' }, IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '51/1 30/1 0/1' } } })
    .withIccProfile('p3')
    .withXmp('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description>secret-xmp</rdf:Description></rdf:RDF></x:xmpmeta>')
    .toBuffer();
  const before = await sharp(tagged).metadata();
  t.ok(before.exif && before.icc && before.xmp, 'the fixture does carry metadata');
  const { image } = await fullDecode(tagged);
  for (const format of ['jpeg', 'png', 'webp'] as const) {
    const out = await encode(image, image.width, image.height, format, 80);
    const meta = await sharp(out).metadata();
    t.equal(meta.exif, undefined, `${format}: no EXIF`);
    t.equal(meta.xmp, undefined, `${format}: no XMP`);
    t.equal(meta.iptc, undefined, `${format}: no IPTC`);
    t.equal(meta.icc, undefined, `${format}: no ICC`);
    t.equal(meta.orientation, undefined, `${format}: no orientation tag`);
    const text = Buffer.from(out).toString('latin1');
    for (const marker of ['Exif', 'secret', 'GPS', 'xmpmeta', 'ICC_PROFILE']) t.notOk(text.includes(marker), `${format}: no "${marker}" bytes`);
  }
});

t.test('corrupt, truncated, oversized and bomb inputs give typed errors', async (t) => {
  const jpeg = await sharp(await halves(400, 300)).jpeg().toBuffer();
  const truncated = jpeg.subarray(0, Math.floor(jpeg.length * 0.6));
  t.equal(await codeOf(fullDecode(truncated)), 'PTOON_BAD_IMAGE', 'truncated JPEG');
  const garbage = Buffer.concat([jpeg.subarray(0, 4), Buffer.alloc(500, 7)]);
  t.equal(await codeOf(fullDecode(garbage)), 'PTOON_BAD_IMAGE', 'JPEG signature then garbage');
  const png = await halves();
  const damaged = Buffer.from(png);
  damaged.fill(0, 40, 80);
  t.equal(await codeOf(fullDecode(damaged)), 'PTOON_BAD_IMAGE', 'damaged PNG');
  // A decompression bomb: 25 megapixels of one colour compress to a few kilobytes.
  const bomb = await sharp({ create: { width: 5000, height: 5000, channels: 3, background: 'black' } }).png({ compressionLevel: 9 }).toBuffer();
  t.ok(bomb.length < 200_000, `bomb is small on the wire (${bomb.length} bytes)`);
  t.equal(await codeOf(probe(bomb, LIMIT)), 'PTOON_TOO_MANY_PIXELS', 'refused from the header');
  t.equal(await codeOf(probe(png, 100)), 'PTOON_TOO_MANY_PIXELS', 'limit is configurable');
});
