import t from 'tap';
import { composeAffine, invertAffine, type Affine } from '../../workers/faces/similarity.js';
import { warpAffine, type Raster } from '../../workers/faces/warp.js';

/** A smooth RGB test image: slow sinusoids, levels 20..235. */
function smooth(width: number, height: number): Raster<Uint8Array> {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      data[i] = Math.round(128 + 100 * Math.sin(x / 13) * Math.cos(y / 17));
      data[i + 1] = Math.round(128 + 90 * Math.cos((x + y) / 21));
      data[i + 2] = Math.round(128 + 80 * Math.sin((x - 2 * y) / 29));
    }
  }
  return { data, width, height, channels: 3 };
}

function rotation(scale: number, degrees: number, tx: number, ty: number): Affine {
  const r = (degrees * Math.PI) / 180;
  return [scale * Math.cos(r), -scale * Math.sin(r), tx, scale * Math.sin(r), scale * Math.cos(r), ty];
}

t.test('identity and integer shifts are exact', async (t) => {
  const img = smooth(40, 30);
  t.same(warpAffine(img, [1, 0, 0, 0, 1, 0], 40, 30).data, img.data, 'identity');
  const shifted = warpAffine(img, [1, 0, 5, 0, 1, 3], 30, 20, 'zero');
  for (let y = 0; y < 20; y++) {
    for (let x = 0; x < 30; x++) {
      for (let c = 0; c < 3; c++) {
        if (shifted.data[(y * 30 + x) * 3 + c] !== img.data[((y + 3) * 40 + x + 5) * 3 + c]) {
          t.fail(`shift: pixel (${x}, ${y})`);
          return;
        }
      }
    }
  }
  t.pass('shift by (5, 3)');
});

t.test('bilinear sampling halfway between pixels averages them, on floats and bytes', async (t) => {
  const f = warpAffine({ data: Float32Array.from([0, 1, 2, 3]), width: 2, height: 2, channels: 1 }, [1, 0, 0.5, 0, 1, 0.5], 1, 1);
  t.ok(f.data instanceof Float32Array);
  t.equal(f.data[0], 1.5);
  const b = warpAffine({ data: Uint8Array.from([10, 20, 30, 41]), width: 2, height: 2, channels: 1 }, [1, 0, 0.5, 0, 1, 0], 1, 2);
  t.ok(b.data instanceof Uint8Array);
  t.same(Array.from(b.data), [15, 36], 'rounded to the nearest level (35.5 -> 36)');
});

t.test('borders: edge repeats the border, zero reads 0', async (t) => {
  const src = { data: Float32Array.from([1, 2, 3, 4]), width: 2, height: 2, channels: 1 };
  // Destination x = -1..2 samples source x - 1 .. x + 2 on row 0.
  const edge = warpAffine(src, [1, 0, -2, 0, 1, 0], 5, 1, 'edge');
  t.same(Array.from(edge.data), [1, 1, 1, 2, 2]);
  const zero = warpAffine(src, [1, 0, -2, 0, 1, 0], 5, 1, 'zero');
  t.same(Array.from(zero.data), [0, 0, 1, 2, 0]);
  const half = warpAffine(src, [1, 0, -0.5, 0, 1, 0], 1, 1, 'zero');
  t.equal(half.data[0], 0.5, 'half a pixel outside: half the weight');
  const far = warpAffine(src, [1, 0, 1000, 0, 1, -1000], 3, 3, 'zero');
  t.ok(far.data.every((v) => v === 0), 'far outside: all 0');
});

t.test('a warp and its inverse round-trip a smooth image', async (t) => {
  const img = smooth(200, 160);
  for (const m of [rotation(1.3, 17, 40, -20), rotation(0.8, -38, 60, 90), rotation(2.1, 95, 300, 10)]) {
    // Forward: output pixel p samples the source at inv(m)(p), i.e. the output is the image moved by m.
    const outW = 480;
    const outH = 480;
    const moved = warpAffine(img, invertAffine(m), outW, outH, 'edge');
    const back = warpAffine(moved, m, img.width, img.height, 'edge');
    let sum = 0;
    let n = 0;
    let worst = 0;
    for (let y = 3; y < img.height - 3; y++) {
      for (let x = 3; x < img.width - 3; x++) {
        // Only where the moved copy holds the whole neighbourhood (away from both images' borders).
        const p = composeAffine(m, [1, 0, x, 0, 1, y]);
        if (p[2] < 3 || p[5] < 3 || p[2] > outW - 4 || p[5] > outH - 4) continue;
        for (let c = 0; c < 3; c++) {
          const i = (y * img.width + x) * 3 + c;
          const d = Math.abs(back.data[i]! - img.data[i]!);
          sum += d;
          worst = Math.max(worst, d);
          n++;
        }
      }
    }
    const mean = sum / n;
    t.ok(n > 200 * 160 * 3 * 0.5, `compared ${n} values`);
    t.ok(mean < 1.5, `scale ${Math.hypot(m[0], m[3]).toFixed(2)}: mean abs diff ${mean.toFixed(3)} levels (worst ${worst})`);
  }
});

t.test('3 channels and 1 channel sample at the same place', async (t) => {
  const img = smooth(50, 50);
  const red = { data: Float32Array.from({ length: 2500 }, (_, i) => img.data[i * 3]!), width: 50, height: 50, channels: 1 };
  const m = rotation(0.9, 33, 12, -7);
  const rgb = warpAffine(img, m, 40, 40, 'zero');
  const r = warpAffine(red, m, 40, 40, 'zero');
  let worst = 0;
  for (let i = 0; i < 1600; i++) worst = Math.max(worst, Math.abs(rgb.data[i * 3]! - r.data[i]!));
  t.ok(worst <= 0.5 + 1e-4, `byte result is the float result rounded (max diff ${worst})`);
});

t.test('rejects bad input', async (t) => {
  t.throws(() => warpAffine({ data: new Uint8Array(5), width: 2, height: 2, channels: 1 }, [1, 0, 0, 0, 1, 0], 2, 2), RangeError);
  t.throws(() => warpAffine({ data: new Uint8Array(4), width: 2, height: 2, channels: 1 }, [1, 0, 0, 0, 1, 0], 2.5, 2), RangeError);
});
