import t from 'tap';
import {
  alignmentTemplate,
  applyAffine,
  ARCFACE_112,
  composeAffine,
  estimateSimilarity,
  invertAffine,
  type Affine,
  type Point,
} from '../../workers/faces/similarity.js';

function similarity(scale: number, degrees: number, tx: number, ty: number): Affine {
  const r = (degrees * Math.PI) / 180;
  const p = scale * Math.cos(r);
  const q = scale * Math.sin(r);
  return [p, -q, tx, q, p, ty];
}

const close = (a: readonly number[], b: readonly number[], eps: number) => a.length === b.length && a.every((v, i) => Math.abs(v - b[i]!) <= eps);

t.test('recovers a known rotation, scale and shift exactly', async (t) => {
  const cases: Array<[number, number, number, number]> = [
    [1, 0, 0, 0],
    [1.7, 23, 12.5, -40],
    [0.31, -151, 640.25, 17],
    [4.2, 179.5, -3, 1200],
  ];
  const src: Point[] = [
    { x: 103.2, y: 135.7 },
    { x: 171.6, y: 135.2 },
    { x: 137.4, y: 174.5 },
    { x: 109.9, y: 214.2 },
    { x: 166.2, y: 213.9 },
  ];
  for (const [s, deg, tx, ty] of cases) {
    const truth = similarity(s, deg, tx, ty);
    const dst = src.map((p) => applyAffine(truth, p));
    const fit = estimateSimilarity(src, dst);
    t.ok(close(fit, truth, 1e-9), `scale ${s}, ${deg}°, (${tx}, ${ty}): ${fit.map((v) => v.toFixed(12)).join(', ')}`);
    t.ok(Math.abs(Math.hypot(fit[0], fit[3]) - s) < 1e-9, 'scale');
  }
});

t.test('is the least-squares fit on noisy points, and never a reflection', async (t) => {
  const src = ARCFACE_112.map((p) => ({ ...p }));
  const truth = similarity(2.3, 37, 50, 80);
  let seed = 7;
  const noise = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648 - 0.5) * 3;
  const dst = src.map((p) => {
    const q = applyAffine(truth, p);
    return { x: q.x + noise(), y: q.y + noise() };
  });
  const fit = estimateSimilarity(src, dst);
  const cost = (m: Affine) => src.reduce((sum, p, i) => {
    const q = applyAffine(m, p);
    return sum + (q.x - dst[i]!.x) ** 2 + (q.y - dst[i]!.y) ** 2;
  }, 0);
  const best = cost(fit);
  // Perturbing any of the 4 similarity parameters makes it worse.
  const [p, mq, tx, q, , ty] = fit;
  for (const [dp, dq, dx, dy] of [[1e-4, 0, 0, 0], [-1e-4, 0, 0, 0], [0, 1e-4, 0, 0], [0, -1e-4, 0, 0], [0, 0, 1e-3, 0], [0, 0, -1e-3, 0], [0, 0, 0, 1e-3], [0, 0, 0, -1e-3]] as const) {
    const m: Affine = [p + dp, mq - dq, tx + dx, q + dq, p + dp, ty + dy];
    t.ok(cost(m) > best, `perturbation ${[dp, dq, dx, dy].join(',')} costs more`);
  }
  // A mirrored target: the fit stays a rotation (positive determinant).
  const mirrored = dst.map((pt) => ({ x: -pt.x, y: pt.y }));
  const m = estimateSimilarity(src, mirrored);
  t.ok(m[0] * m[4] - m[1] * m[3] >= 0, 'no reflection');
  t.equal(m[0], m[4], 'linear part is [[p, -q], [q, p]]');
  t.equal(m[1], -m[3]);
});

t.test('inverse and composition', async (t) => {
  const m = similarity(1.37, 61, -12, 33.5);
  const inv = invertAffine(m);
  t.ok(close(composeAffine(m, inv), [1, 0, 0, 0, 1, 0], 1e-12), 'm ∘ m⁻¹ = identity');
  t.ok(close(composeAffine(inv, m), [1, 0, 0, 0, 1, 0], 1e-12), 'm⁻¹ ∘ m = identity');
  const general: Affine = [1.2, 0.3, 5, -0.7, 0.9, -2];
  const p = { x: 17, y: -4 };
  const back = applyAffine(invertAffine(general), applyAffine(general, p));
  t.ok(Math.abs(back.x - p.x) < 1e-12 && Math.abs(back.y - p.y) < 1e-12, 'general affine round trip');
  const shift: Affine = [1, 0, 10, 0, 1, 20];
  const q = applyAffine(composeAffine(m, shift), p);
  const r = applyAffine(m, { x: p.x + 10, y: p.y + 20 });
  t.ok(Math.abs(q.x - r.x) < 1e-12 && Math.abs(q.y - r.y) < 1e-12, 'compose applies inner first');
  t.throws(() => invertAffine([1, 2, 0, 2, 4, 0]), RangeError, 'singular');
  t.throws(() => estimateSimilarity([{ x: 1, y: 1 }, { x: 1, y: 1 }], [{ x: 0, y: 0 }, { x: 3, y: 1 }]), RangeError, 'degenerate source');
  t.throws(() => estimateSimilarity([{ x: 1, y: 1 }], [{ x: 0, y: 0 }]), RangeError, 'one point');
});

t.test('the DCT-Net template: ArcFace points shrunk by 0.75 about the centre, scaled to the crop', async (t) => {
  const tpl = alignmentTemplate(288);
  t.equal(tpl.length, 5);
  const expect = (p: Point) => ({ x: ((p.x - 56) * 0.75 + 56) * (288 / 112), y: ((p.y - 56) * 0.75 + 56) * (288 / 112) });
  for (let i = 0; i < 5; i++) t.ok(close([tpl[i]!.x, tpl[i]!.y], [expect(ARCFACE_112[i]!).x, expect(ARCFACE_112[i]!).y], 1e-12), `point ${i}`);
  t.ok(Math.abs(tpl[0]!.x - 109.8539) < 1e-3 && Math.abs(tpl[0]!.y - 135.7) < 1e-3, 'right eye near (109.85, 135.70)');
  t.ok(tpl[0]!.x < tpl[1]!.x && tpl[3]!.x < tpl[4]!.x && tpl[2]!.y > tpl[0]!.y && tpl[3]!.y > tpl[2]!.y, 'image order: eyes left to right, nose, mouth');
  const unit = alignmentTemplate(112, 1);
  t.ok(close(unit.flatMap((p) => [p.x, p.y]), ARCFACE_112.flatMap((p) => [p.x, p.y]), 1e-12), 'ratio 1 at 112 is the reference itself');
});
