import t from 'tap';
import { fromTensor, modelSize, padTo, toTensor } from '../../workers/tensor.js';

// A 3x2 image whose every byte is distinct, so any misplaced value is visible.
const W = 3;
const H = 2;
const rgb = Uint8Array.from({ length: W * H * 3 }, (_, i) => i * 10);
const px = (x: number, y: number, c: number) => rgb[(y * W + x) * 3 + c]!;

t.test('NCHW RGB 0..1 puts each channel in its own plane', async (t) => {
  const packed = toTensor(rgb, W, H, { layout: 'NCHW', channels: 'RGB', range: '0..1' });
  t.same(packed.dims, [1, 3, H, W]);
  t.equal(packed.data[0 * 6 + 1 * W + 2], Math.fround(px(2, 1, 0) / 255), 'R of (2,1)');
  t.equal(packed.data[2 * 6 + 0 * W + 1], Math.fround(px(1, 0, 2) / 255), 'B of (1,0)');
});

t.test('NHWC BGR -1..1 interleaves with the channels reversed', async (t) => {
  const packed = toTensor(rgb, W, H, { layout: 'NHWC', channels: 'BGR', range: '-1..1' });
  t.same(packed.dims, [1, H, W, 3]);
  const at = (x: number, y: number, c: number) => packed.data[(y * W + x) * 3 + c]!;
  t.ok(Math.abs(at(1, 1, 0) - (px(1, 1, 2) / 127.5 - 1)) < 1e-6, 'tensor channel 0 is blue');
  t.ok(Math.abs(at(1, 1, 2) - (px(1, 1, 0) / 127.5 - 1)) < 1e-6, 'tensor channel 2 is red');
});

t.test('0..255 keeps levels as they are', async (t) => {
  const packed = toTensor(rgb, W, H, { layout: 'NHWC', channels: 'RGB', range: '0..255' });
  t.same(Array.from(packed.data), Array.from(rgb));
});

t.test('every convention round-trips exactly', async (t) => {
  for (const layout of ['NCHW', 'NHWC'] as const) {
    for (const channels of ['RGB', 'BGR'] as const) {
      for (const range of ['0..1', '-1..1', '0..255'] as const) {
        const spec = { layout, channels, range };
        const packed = toTensor(rgb, W, H, spec, 4, 255);
        t.same(fromTensor(packed.data, packed.dims, spec, W, H), rgb, `${layout} ${channels} ${range}`);
      }
    }
  }
});

t.test('padding goes right and bottom, with a grey level or the edge', async (t) => {
  const white = toTensor(rgb, W, H, { layout: 'NHWC', channels: 'RGB', range: '0..255' }, 4, 255);
  t.same([white.width, white.height], [4, 4]);
  t.same(white.dims, [1, 4, 4, 3]);
  const at = (p: typeof white, x: number, y: number, c: number) => p.data[(y * p.width + x) * 3 + c]!;
  t.equal(at(white, 0, 0, 0), px(0, 0, 0), 'image at the top-left');
  t.equal(at(white, 3, 0, 1), 255, 'right margin white');
  t.equal(at(white, 0, 3, 2), 255, 'bottom margin white');
  const minus = toTensor(rgb, W, H, { layout: 'NCHW', channels: 'RGB', range: '-1..1' }, 4, 255);
  t.equal(minus.data[3], 1, 'white is +1 in -1..1');
  const edge = toTensor(rgb, W, H, { layout: 'NHWC', channels: 'RGB', range: '0..255' }, 4, 'edge');
  t.equal(at(edge, 3, 1, 0), px(2, 1, 0), 'right margin repeats the last column');
  t.equal(at(edge, 1, 3, 1), px(1, 1, 1), 'bottom margin repeats the last row');
  t.equal(at(edge, 3, 3, 2), px(2, 1, 2), 'corner repeats the corner pixel');
});

t.test('fromTensor clamps overshoot, rounds, and maps NaN to 0', async (t) => {
  const data = Float32Array.from([-1.8, 1.5, Number.NaN, 0.001, 0.999, 0]);
  const out = fromTensor(data, [1, 1, 2, 3], { layout: 'NHWC', channels: 'RGB', range: '-1..1' }, 2, 1);
  t.same(Array.from(out), [0, 255, 0, 128, 255, 128]);
});

t.test('fromTensor refuses shapes that do not fit', async (t) => {
  const spec = { layout: 'NCHW', channels: 'RGB', range: '0..1' } as const;
  t.throws(() => fromTensor(new Float32Array(12), [1, 1, 2, 6], spec, 2, 2), /3 output channels/);
  t.throws(() => fromTensor(new Float32Array(12), [1, 3, 2, 2], spec, 3, 2), /smaller/);
});

t.test('modelSize shrinks by the tightest cap and never enlarges', async (t) => {
  t.same(modelSize(1000, 500, { maxShortSide: 720 }), { width: 1000, height: 500 }, 'short side under the cap');
  t.same(modelSize(2000, 1000, { maxShortSide: 720 }), { width: 1440, height: 720 }, 'DCT-Net rule');
  t.same(modelSize(2000, 1000, { maxLongSide: 1024 }), { width: 1024, height: 512 });
  t.same(modelSize(2000, 1000, { maxShortSide: 720 }, 500), { width: 500, height: 250 }, 'output cap is tighter');
  t.same(modelSize(10, 10, { maxLongSide: 1024 }), { width: 10, height: 10 });
  t.equal(padTo(721, 16), 736);
  t.equal(padTo(720, 16), 720);
});
