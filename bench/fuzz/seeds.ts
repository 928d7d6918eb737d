/**
 * The seed corpus, encoded with sharp at start (no image files in the repository, none written anywhere): the
 * fixtures the test suite generates (test/helper.ts `fixtures()`, test/workers/image.test.ts) made the same way,
 * plus small images covering what those leave out: progressive and 4:4:4 JPEG, interlaced, 16-bit, grey-alpha,
 * low-bit palette and ICC-tagged PNG, lossless, alpha, animated and metadata-carrying WebP.
 *
 * The same libvips builds the same bytes, so (run seed, case index) names one case on one install.
 */
import sharp, { type Sharp } from 'sharp';
import type { SeedFormat } from './mutators.js';

export interface Seed {
  name: string;
  format: SeedFormat;
  bytes: Uint8Array;
}

/** test/helper.ts: a skin-toned radial gradient with a darker band, 320x240. */
function gradient(width = 320, height = 240): Sharp {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const d = Math.hypot(x - width / 2, y - height / 2) / 200;
      raw.set([Math.round(230 - 90 * d) & 255, Math.round(180 - 80 * d + (y % 40 < 4 ? -40 : 0)) & 255, Math.round(150 - 70 * d) & 255], (y * width + x) * 3);
    }
  }
  return sharp(raw, { raw: { width, height, channels: 3 } });
}

/** test/workers/image.test.ts: left half red, right half blue (orientation changes are visible). */
function halves(width = 40, height = 20): Sharp {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) raw.set(x < width / 2 ? [255, 0, 0] : [0, 0, 255], (y * width + x) * 3);
  }
  return sharp(raw, { raw: { width, height, channels: 3 } });
}

/** A 24x16 picture with a graded alpha channel. */
function translucent(width = 24, height = 16): Sharp {
  const raw = Buffer.alloc(width * height * 4);
  for (let i = 0; i < width * height; i++) raw.set([(i * 7) & 255, 128, (i * 3) & 255, (i * 255) / (width * height)], i * 4);
  return sharp(raw, { raw: { width, height, channels: 4 } });
}

export async function seedCorpus(): Promise<Seed[]> {
  const seeds: Seed[] = [];
  const add = async (name: string, format: SeedFormat, bytes: Promise<Buffer> | Buffer) => {
    const b = await bytes;
    seeds.push({ name, format, bytes: new Uint8Array(b.buffer, b.byteOffset, b.byteLength) });
  };
  const png = await halves().png().toBuffer();
  const jpeg320 = await gradient().jpeg({ quality: 90 }).toBuffer();

  // The test suite's fixtures.
  await add('fixture gradient 320x240 jpeg q90', 'jpeg', jpeg320);
  await add('fixture gradient png', 'png', gradient().png().toBuffer());
  await add('fixture gradient webp', 'webp', gradient().webp().toBuffer());
  await add('fixture truncated jpeg (60%)', 'jpeg', jpeg320.subarray(0, Math.floor(jpeg320.length * 0.6)));
  const noise = Buffer.alloc(4000);
  for (let i = 0; i < noise.length; i++) noise[i] = (i * 7919) % 251;
  await add('fixture corrupt jpeg (magic + noise)', 'jpeg', Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), noise]));
  await add('fixture halves 40x20 png', 'png', png);
  await add('fixture EXIF orientation 6 jpeg', 'jpeg', sharp(png).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toBuffer());
  await add('fixture grey png', 'png', sharp(png).greyscale().png().toBuffer());
  await add('fixture 16-bit png', 'png', sharp(png).toColourspace('rgb16').png().toBuffer());
  await add('fixture palette png', 'png', sharp(png).png({ palette: true, colours: 4 }).toBuffer());
  await add('fixture CMYK jpeg', 'jpeg', sharp(png).toColourspace('cmyk').jpeg().toBuffer());
  await add('fixture grey jpeg', 'jpeg', sharp(png).greyscale().jpeg().toBuffer());
  const alpha = Buffer.alloc(8 * 8 * 4);
  for (let i = 0; i < 64; i++) alpha.set([0, 128, 0, i < 32 ? 0 : 255], i * 4);
  await add('fixture alpha 8x8 png', 'png', sharp(alpha, { raw: { width: 8, height: 8, channels: 4 } }).png().toBuffer());
  await add(
    'fixture EXIF+GPS+ICC+XMP jpeg',
    'jpeg',
    sharp(png)
      .jpeg()
      .withMetadata({ orientation: 3, exif: { IFD0: { Copyright: 'owner', ImageDescription: 'place' }, IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '51/1 30/1 0/1' } } })
      .withIccProfile('p3')
      .withXmp('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description>xmp</rdf:Description></rdf:RDF></x:xmpmeta>')
      .toBuffer(),
  );
  await add('fixture halves 400x300 jpeg', 'jpeg', halves(400, 300).jpeg().toBuffer());
  // The decompression bomb: 25 MP of black in a few kB, refused from its header (mutants may shrink the header).
  await add('fixture bomb 5000x5000 png', 'png', sharp({ create: { width: 5000, height: 5000, channels: 3, background: 'black' } }).png({ compressionLevel: 9 }).toBuffer());

  // What the fixtures leave out.
  await add('progressive jpeg', 'jpeg', gradient(96, 64).jpeg({ progressive: true, quality: 80 }).toBuffer());
  await add('4:4:4 jpeg q100', 'jpeg', gradient(64, 48).jpeg({ quality: 100, chromaSubsampling: '4:4:4' }).toBuffer());
  await add('optimised-scans jpeg', 'jpeg', gradient(64, 48).jpeg({ progressive: true, optimiseScans: true, trellisQuantisation: true }).toBuffer());
  await add('interlaced png', 'png', gradient(48, 32).png({ progressive: true }).toBuffer());
  await add('16-bit RGBA png', 'png', translucent().toColourspace('rgb16').png().toBuffer());
  await add('grey+alpha png', 'png', translucent().greyscale().png().toBuffer());
  await add('1-bit palette png', 'png', halves(16, 8).png({ palette: true, colours: 2 }).toBuffer());
  await add('palette+alpha png', 'png', translucent().png({ palette: true, colours: 8 }).toBuffer());
  await add('ICC+EXIF png', 'png', sharp(png).withIccProfile('p3').withMetadata({ orientation: 8 }).png().toBuffer());
  await add('lossy webp 64x48', 'webp', gradient(64, 48).webp({ quality: 50 }).toBuffer());
  await add('lossless webp', 'webp', gradient(32, 24).webp({ lossless: true }).toBuffer());
  await add('lossy+alpha webp', 'webp', translucent().webp({ quality: 70 }).toBuffer());
  await add('lossless+alpha webp', 'webp', translucent().webp({ lossless: true }).toBuffer());
  await add('ICC+EXIF webp', 'webp', sharp(png).withIccProfile('p3').withMetadata({ orientation: 6 }).webp().toBuffer());
  const frames = await Promise.all([translucent().png().toBuffer(), halves(24, 16).png().toBuffer()]);
  await add('animated webp (2 frames)', 'webp', sharp(frames, { join: { animated: true } }).webp({ loop: 0, delay: [100, 100] }).toBuffer());
  return seeds;
}
