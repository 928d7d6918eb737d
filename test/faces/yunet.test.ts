import t from 'tap';
import {
  checkYunetOutputs,
  decodeYunet,
  DEFAULT_DETECT_SIDE,
  iou,
  nms,
  scaleFaces,
  YUNET_OUTPUTS,
  yunetDetector,
  yunetInput,
  type Face,
  type OutputTensor,
} from '../../workers/faces/yunet.js';
import { loadRgb, missingShared, openYunet, YUNET } from './real.js';

/** Zeroed outputs for an input of w x h, as the model shapes them. */
function emptyOutputs(w: number, h: number): Record<string, OutputTensor> {
  const out: Record<string, OutputTensor> = {};
  for (const s of [8, 16, 32]) {
    const n = (w / s) * (h / s);
    for (const [name, k] of [['cls', 1], ['obj', 1], ['bbox', 4], ['kps', 10]] as const) out[`${name}_${s}`] = { data: new Float32Array(n * k), dims: [1, n, k] };
  }
  return out;
}

const face = (x: number, y: number, size: number, score: number): Face => ({
  box: { x, y, width: size, height: size },
  score,
  landmarks: [0, 1, 2, 3, 4].map(() => ({ x: x + size / 2, y: y + size / 2 })) as Face['landmarks'],
});

t.test('output names are checked, naming what is missing', async (t) => {
  t.doesNotThrow(() => checkYunetOutputs([...YUNET_OUTPUTS].reverse()));
  t.throws(() => checkYunetOutputs(YUNET_OUTPUTS.filter((n) => n !== 'kps_16' && n !== 'obj_8')), { message: /missing outputs obj_8, kps_16/ });
  t.throws(() => checkYunetOutputs(['output']), { message: /cls_8.*\(the model has: output\)/ });
});

t.test('NMS keeps one of two overlapping boxes, the better one', async (t) => {
  const a = face(100, 100, 50, 0.8);
  const b = face(105, 103, 50, 0.9);
  const c = face(300, 100, 50, 0.7);
  t.ok(iou(a.box, b.box) > 0.3);
  t.equal(iou(a.box, c.box), 0);
  t.ok(Math.abs(iou(a.box, a.box) - 1) < 1e-12);
  const kept = nms([a, b, c], 0.3);
  t.same(kept, [b, c], 'the higher score of the overlapping pair, and the separate box');
  t.same(nms([a, b, c], 0.3, 1), [b], 'topK');
  t.equal(nms([a, b], 0.95).length, 2, 'a looser threshold keeps both');
});

t.test('decoding follows the README: row-major anchors, offsets times stride, sqrt of cls × obj', async (t) => {
  const W = 96;
  const H = 64;
  const out = emptyOutputs(W, H);
  // Stride 16: 6 columns; anchor 9 is column 3, row 1.
  const i = 9;
  out['cls_16']!.data[i] = 0.81;
  out['obj_16']!.data[i] = 1.2; // clamped to 1
  out['bbox_16']!.data.set([0.25, -0.5, Math.log(3), Math.log(4)], i * 4);
  out['kps_16']!.data.set([0, 0, 1, 0, 0.5, 0.5, 0, 1, 1, 1], i * 10);
  // A weaker anchor: below the threshold.
  out['cls_8']!.data[5] = 0.3;
  out['obj_8']!.data[5] = 0.3;
  const faces = decodeYunet(out, W, H);
  t.equal(faces.length, 1);
  const f = faces[0]!;
  t.ok(Math.abs(f.score - 0.9) < 1e-6, `score ${f.score}`);
  const cx = (3 + 0.25) * 16;
  const cy = (1 - 0.5) * 16;
  t.ok(Math.abs(f.box.width - 48) < 1e-4 && Math.abs(f.box.height - 64) < 1e-4, 'size exp(d) * stride');
  t.ok(Math.abs(f.box.x - (cx - 24)) < 1e-4 && Math.abs(f.box.y - (cy - 32)) < 1e-4, 'centre (c + dx) * stride');
  t.same(f.landmarks.map((p) => [p.x, p.y]), [[48, 16], [64, 16], [56, 24], [48, 32], [64, 32]], 'landmarks (c + k) * stride');
  t.equal(decodeYunet(out, W, H, { scoreThreshold: 0.2 }).length, 2, 'a lower threshold lets the weak one in');
  t.throws(() => decodeYunet(out, 100, 64), RangeError, 'input not a multiple of 32');
  t.throws(() => decodeYunet(out, 128, 64), /cls_8 has shape \[1, 96, 1\]; expected \[1, 128, 1\]/, 'shape mismatch is reported');
  const { kps_32: _, ...partial } = out;
  t.throws(() => decodeYunet(partial, W, H), /kps_32/);
});

t.test('input: BGR planes, 0..255, shrunk to maxSide and zero-padded to multiples of 32', async (t) => {
  const w = 50;
  const h = 20;
  const rgb = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) rgb.set([200, 100, 7], i * 3);
  const full = yunetInput(rgb, w, h, 640);
  t.same(full.dims, [1, 3, 32, 64]);
  t.equal(full.scale, 1);
  const plane = 32 * 64;
  t.same([full.data[0], full.data[plane], full.data[2 * plane]], [7, 100, 200], 'B, G, R planes');
  t.equal(full.data[20 * 64 + 5], 0, 'bottom padding is 0');
  t.equal(full.data[5 * 64 + 55], 0, 'right padding is 0');
  const big = new Uint8Array(1000 * 700 * 3).fill(90);
  const small = yunetInput(big, 1000, 700, 512);
  t.equal(small.scale, 0.512);
  t.same([small.width, small.height], [512, 358]);
  t.same(small.dims, [1, 3, 384, 512]);
  let off = 0;
  for (let y = 0; y < 358; y++) for (let x = 0; x < 512; x++) off = Math.max(off, Math.abs(small.data[y * 512 + x]! - 90));
  t.ok(off < 1e-3, 'area averaging keeps a flat image flat, to its last row');
  const back = scaleFaces([face(51.2, 25.6, 51.2, 0.9)], 0.512)[0]!;
  t.ok(Math.abs(back.box.x - 100) < 1e-9 && Math.abs(back.box.width - 100) < 1e-9 && Math.abs(back.landmarks[0].x - 150) < 1e-9, 'coordinates map back');
});

const skip = missingShared(YUNET);
if (skip !== undefined) {
  t.test('the real detector', { skip }, async () => {});
} else {
  const EXPECTED: Record<string, number> = {
    'dctnet_input_portrait.png': 1,
    'obama_halfbody.jpg': 1,
    'biden_fullbody.jpg': 1,
    'astronaut_eileen_collins.png': 1,
    'obama_biden_two_people.jpg': 2,
    'obama_biden_group_stage.jpg': 3,
    'coffee_no_person.png': 0,
  };

  t.test(`the real YuNet at ${DEFAULT_DETECT_SIDE} px finds the expected faces, with landmarks inside their boxes`, async (t) => {
    const { session, run } = await openYunet();
    t.teardown(() => session.release());
    checkYunetOutputs(session.outputNames);
    const detect = yunetDetector(run);
    // Everything the model scores from 0.3: to show that no face is near the 0.6 threshold.
    const detectAll = yunetDetector(run, { scoreThreshold: 0.3 });
    for (const [name, count] of Object.entries(EXPECTED)) {
      const { rgb, width, height } = await loadRgb(name);
      const faces = await detect(rgb, width, height);
      t.equal(faces.length, count, `${name}: ${count} face${count === 1 ? '' : 's'} (scores ${faces.map((f) => f.score.toFixed(2)).join(', ') || 'none'})`);
      for (const [i, f] of faces.entries()) {
        const { x, y, width: bw, height: bh } = f.box;
        const inside = f.landmarks.every((p) => p.x >= x && p.x <= x + bw && p.y >= y && p.y <= y + bh);
        t.ok(inside, `${name}: face ${i} (${bw.toFixed(0)}x${bh.toFixed(0)} at ${x.toFixed(0)},${y.toFixed(0)}): 5 landmarks inside the box`);
        t.ok(x + bw > 0 && y + bh > 0 && x < width && y < height, `${name}: face ${i} is on the image`);
        const [re, le, nose, rm, lm] = f.landmarks;
        t.ok(re.x < le.x && rm.x < lm.x && nose.y > Math.min(re.y, le.y) && Math.min(rm.y, lm.y) > nose.y - bh * 0.05, `${name}: face ${i}: landmark order`);
      }
      const near = (await detectAll(rgb, width, height)).filter((f) => f.score > 0.5 && f.score < 0.7);
      t.same(near.map((f) => f.score), [], `${name}: no candidate within 0.1 of the threshold`);
    }
  });
}
