/**
 * The mask and the blend on synthetic data: a known face placement, constant or noisy colours.
 */
import t from 'tap';
import { ellipseMask, FACE_MASK_GEOMETRY, faceMask } from '../../workers/faces/mask.js';
import { DEFAULT_FACE_OPTIONS, faceToCrop, maskRegion, selectFaces, stylizeFaces } from '../../workers/faces/pipeline.js';
import { alignmentTemplate, applyAffine, composeAffine, invertAffine, type Affine } from '../../workers/faces/similarity.js';
import { warpAffine } from '../../workers/faces/warp.js';
import type { Face } from '../../workers/faces/yunet.js';

const CROP = DEFAULT_FACE_OPTIONS.cropSize;

function rotation(scale: number, degrees: number, tx: number, ty: number): Affine {
  const r = (degrees * Math.PI) / 180;
  return [scale * Math.cos(r), -scale * Math.sin(r), tx, scale * Math.sin(r), scale * Math.cos(r), ty];
}

/** A face whose landmarks are the template moved by `cropToImage` (continuous coordinates). */
function placedFace(cropToImage: Affine, score = 0.9): Face {
  const landmarks = alignmentTemplate(CROP).map((p) => {
    const q = applyAffine(cropToImage, p);
    return { x: q.x + 0.5, y: q.y + 0.5 };
  }) as Face['landmarks'];
  // The box YuNet would give: about the inner face, x 70..218 and y 80..260 of the crop.
  const corners = [[70, 80], [218, 80], [70, 260], [218, 260]].map(([x, y]) => applyAffine(cropToImage, { x: x!, y: y! }));
  const x = Math.min(...corners.map((p) => p.x));
  const y = Math.min(...corners.map((p) => p.y));
  const box = { x, y, width: Math.max(...corners.map((p) => p.x)) - x, height: Math.max(...corners.map((p) => p.y)) - y };
  return { box, score, landmarks };
}

function constant(width: number, height: number, rgb: [number, number, number]): Uint8Array {
  const out = new Uint8Array(width * height * 3);
  for (let i = 0; i < out.length; i += 3) out.set(rgb, i);
  return out;
}

/** The blend weight the pipeline uses at every image pixel for one face. */
function warpedMask(toCrop: Affine, width: number, height: number): Float32Array {
  return warpAffine(faceMask(CROP), toCrop, width, height, 'zero').data;
}

t.test('the mask: 1 in the middle, 0 on the crop border, smooth and symmetric, cached', async (t) => {
  const m = faceMask(CROP);
  t.equal(m, faceMask(CROP), 'cached per size');
  t.equal(m.data.length, CROP * CROP);
  const at = (x: number, y: number) => m.data[y * CROP + x]!;
  t.equal(at(CROP / 2, CROP / 2), 1, 'centre');
  let border = 0;
  for (let i = 0; i < CROP; i++) border = Math.max(border, at(i, 0), at(i, CROP - 1), at(0, i), at(CROP - 1, i));
  t.equal(border, 0, 'the crop border is 0');
  t.ok(m.bounds.x0 > 0 && m.bounds.y0 > 0 && m.bounds.x1 < CROP - 1 && m.bounds.y1 < CROP - 1, `support ${JSON.stringify(m.bounds)} inside the crop`);
  let asym = 0;
  let step = 0;
  let min = 1;
  let max = 0;
  for (let y = 0; y < CROP; y++) {
    for (let x = 0; x < CROP; x++) {
      const v = at(x, y);
      min = Math.min(min, v);
      max = Math.max(max, v);
      asym = Math.max(asym, Math.abs(v - at(CROP - 1 - x, y)), Math.abs(v - at(x, CROP - 1 - y)));
      if (x + 1 < CROP) step = Math.max(step, Math.abs(v - at(x + 1, y)));
      if (y + 1 < CROP) step = Math.max(step, Math.abs(v - at(x, y + 1)));
    }
  }
  t.ok(min === 0 && max === 1, 'values in 0..1');
  t.ok(asym < 1e-6, 'symmetric left-right and top-bottom');
  const feather = FACE_MASK_GEOMETRY.feather * CROP;
  t.ok(step <= 1.6 / feather, `largest step between neighbours ${step.toFixed(4)} (a smoothstep over ${feather.toFixed(0)} px)`);
  // The template's landmarks are all well inside the fully opaque part.
  for (const p of alignmentTemplate(CROP)) t.equal(at(Math.round(p.x), Math.round(p.y)), 1, `landmark (${p.x.toFixed(0)}, ${p.y.toFixed(0)}) is fully covered`);
  t.throws(() => ellipseMask(2, FACE_MASK_GEOMETRY), RangeError);
});

t.test('blending a constant head onto a different constant: no seam, untouched outside', async (t) => {
  const W = 400;
  const H = 300;
  const whiteColour: [number, number, number] = [40, 80, 200];
  const headColour: [number, number, number] = [230, 180, 20];
  const whole = constant(W, H, whiteColour);
  const original = constant(W, H, [128, 128, 128]);
  // A head of about 170 px, turned by 20°.
  const cropToImage = rotation(0.6, 20, 120, 40);
  const face = placedFace(cropToImage);
  const heads: number[] = [];
  const out = await stylizeFaces({
    original,
    result: whole,
    width: W,
    height: H,
    detect: async () => [face],
    runHead: async (crop, size) => {
      heads.push(size);
      t.equal(crop.length, size * size * 3);
      return constant(size, size, headColour);
    },
  });
  t.equal(out.placed.length, 1);
  t.same(heads, [CROP], 'one head pass on a 288 crop');
  t.not(out.rgb, whole, 'a new buffer');
  t.same(whole, constant(W, H, whiteColour), 'the whole result is not modified');
  const toCrop = out.placed[0]!.toCrop;
  t.ok(composeAffine(toCrop, cropToImage).every((v, i) => Math.abs(v - [1, 0, 0, 0, 1, 0][i]!) < 1e-9), 'the alignment recovers the placement');

  const mask = warpedMask(toCrop, W, H);
  let outsideChanged = 0;
  let outside = 0;
  let inside = 0;
  for (let i = 0; i < W * H; i++) {
    if (mask[i] === 0) {
      outside++;
      for (let c = 0; c < 3; c++) if (out.rgb[i * 3 + c] !== whole[i * 3 + c]) outsideChanged++;
    } else if (mask[i] === 1) {
      inside++;
    }
  }
  t.ok(outside > W * H * 0.5 && inside > 5000, `${outside} pixels outside the mask, ${inside} fully inside`);
  t.equal(outsideChanged, 0, 'every pixel outside the mask is identical to the whole result');
  const centre = applyAffine(cropToImage, { x: CROP / 2, y: CROP / 2 });
  const ci = (Math.round(centre.y) * W + Math.round(centre.x)) * 3;
  t.same(Array.from(out.rgb.subarray(ci, ci + 3)), headColour, 'the head colour at the face centre');

  // The largest step between 4-neighbours anywhere (the only edges are across the mask's feather).
  let step = 0;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      for (let c = 0; c < 3; c++) {
        const v = out.rgb[(y * W + x) * 3 + c]!;
        if (x + 1 < W) step = Math.max(step, Math.abs(v - out.rgb[(y * W + x + 1) * 3 + c]!));
        if (y + 1 < H) step = Math.max(step, Math.abs(v - out.rgb[((y + 1) * W + x) * 3 + c]!));
      }
    }
  }
  const full = Math.max(...headColour.map((v, c) => Math.abs(v - whiteColour[c]!)));
  t.ok(step <= full * 0.1, `largest neighbour step ${step} levels, for a colour difference of ${full}`);
});

t.test('pixels outside every mask stay bit-exact on a noisy result, with overlapping faces', async (t) => {
  const W = 360;
  const H = 280;
  let seed = 1;
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const whole = Uint8Array.from({ length: W * H * 3 }, () => Math.floor(rnd() * 256));
  const original = Uint8Array.from({ length: W * H * 3 }, () => Math.floor(rnd() * 256));
  const faces = [placedFace(rotation(0.5, -15, 40, 30), 0.8), placedFace(rotation(0.45, 10, 150, 60), 0.95), placedFace(rotation(0.3, 170, 400, 300), 0.7)];
  const out = await stylizeFaces({
    original,
    result: whole,
    width: W,
    height: H,
    detect: async () => faces,
    runHead: async (crop) => crop.map((v) => 255 - v),
  });
  t.equal(out.placed.length, 3);
  const covered = new Uint8Array(W * H);
  for (const p of out.placed) {
    const m = warpedMask(p.toCrop, W, H);
    for (let i = 0; i < W * H; i++) if (m[i]! > 0) covered[i] = 1;
    // The blend's rectangle holds the whole mask.
    const r = p.region;
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        if (m[y * W + x]! > 0 && (x < r.x || y < r.y || x >= r.x + r.width || y >= r.y + r.height)) {
          t.fail(`mask outside the region at (${x}, ${y})`);
          return;
        }
      }
    }
  }
  let changed = 0;
  let untouched = 0;
  let differ = 0;
  for (let i = 0; i < W * H; i++) {
    const same = out.rgb[i * 3] === whole[i * 3] && out.rgb[i * 3 + 1] === whole[i * 3 + 1] && out.rgb[i * 3 + 2] === whole[i * 3 + 2];
    if (!covered[i]) {
      untouched++;
      if (!same) changed++;
    } else if (!same) differ++;
  }
  t.equal(changed, 0, `all ${untouched} pixels outside every mask are identical`);
  t.ok(differ > 10000, `${differ} pixels inside the masks changed`);
});

t.test('face selection: size floor, the largest first, at most maxFaces', async (t) => {
  const face = (size: number, score: number): Face => placedFace([size / 100, 0, 10, 0, size / 100, 10], score);
  const faces = [face(25, 0.99), face(120, 0.7), face(80, 0.9), face(200, 0.8), face(121, 0.95)];
  const width = (f: Face) => Math.round(f.box.width);
  t.same(selectFaces(faces, 8, 48).map(width), [200, 121, 120, 80].map((s) => width(face(s, 0))));
  t.same(selectFaces(faces, 2, 48).map(width), [200, 121].map((s) => width(face(s, 0))));
  t.same(selectFaces(faces, 8, 1e6), []);

  const W = 200;
  const H = 200;
  const whole = constant(W, H, [1, 2, 3]);
  let calls = 0;
  const run = (opts: object) =>
    stylizeFaces({ original: whole, result: whole, width: W, height: H, detect: async () => faces, runHead: async (c) => (calls++, c), ...opts });
  t.equal((await run({ maxFaces: 1 })).placed.length, 1);
  t.equal(calls, 1, 'one head pass');
  const none = await run({ minFaceSize: 1e6 });
  t.equal(none.placed.length, 0);
  t.same(none.rgb, whole, 'no face: the whole result, copied');
  t.not(none.rgb, whole);
  await t.rejects(run({ maxFaces: 1, cropSize: 64 }).then(() => stylizeFaces({ original: whole, result: whole, width: W, height: H, detect: async () => faces, runHead: async () => new Uint8Array(10) })), RangeError, 'a head result of the wrong size');
  await t.rejects(stylizeFaces({ original: whole, result: whole, width: W + 1, height: H, detect: async () => [], runHead: async (c) => c }), RangeError);
});

t.test('a face partly off the image, and one entirely off it', async (t) => {
  const W = 160;
  const H = 120;
  const whole = constant(W, H, [10, 20, 30]);
  const partial = placedFace(rotation(0.5, 0, -60, -50));
  const gone = placedFace(rotation(0.5, 0, 5000, 5000));
  const out = await stylizeFaces({ original: whole, result: whole, width: W, height: H, detect: async () => [partial, gone], runHead: async (c) => c.fill(250) });
  t.equal(out.placed.length, 1, 'the off-image face is skipped');
  const r = maskRegion(faceToCrop(partial, CROP, 0.75), CROP, W, H);
  t.ok(r.x === 0 && r.y === 0 && r.width > 0 && r.width <= W && r.height <= H, `region clipped to the image: ${JSON.stringify(r)}`);
  t.equal(out.rgb[0], 250, 'the visible part is blended');
  t.ok(invertAffine(out.placed[0]!.toCrop).every(Number.isFinite));
});

t.test('faces found beforehand skip detection', async (t) => {
  const W = 300;
  const H = 300;
  const whole = constant(W, H, [9, 9, 9]);
  const f = placedFace(rotation(0.6, 0, 60, 50));
  let detected = 0;
  const detect = async () => {
    detected++;
    return [];
  };
  const out = await stylizeFaces({ original: whole, result: whole, width: W, height: H, faces: [f], detect, runHead: async (c) => c.fill(200) });
  t.equal(out.placed.length, 1);
  t.equal(detected, 0, 'the detector is not run');
  await t.rejects(stylizeFaces({ original: whole, result: whole, width: W, height: H, runHead: async (c) => c }), TypeError);
});

t.test('faces handed in are used as selected: the caller selects once (workers/pipeline.ts)', async (t) => {
  const W = 300;
  const H = 300;
  const whole = constant(W, H, [9, 9, 9]);
  const faces = [placedFace(rotation(0.6, 0, 60, 50)), placedFace(rotation(0.5, 0, 150, 150))];
  // Limits that would drop both faces if they were applied again.
  const out = await stylizeFaces({ original: whole, result: whole, width: W, height: H, faces, maxFaces: 0, minFaceSize: 4096, runHead: async (c) => c.fill(200) });
  t.equal(out.placed.length, 2, 'both faces are placed');
  const detected = await stylizeFaces({ original: whole, result: whole, width: W, height: H, detect: async () => faces, maxFaces: 0, minFaceSize: 4096, runHead: async (c) => c.fill(200) });
  t.equal(detected.placed.length, 0, 'faces it detects itself are selected');
});
