/**
 * Tiny models whose output is known exactly, for the pipeline's convention tests: each one makes a specific
 * mistake visible (a wrong value range, a swapped channel order, a missing clamp, a blocked worker, a bad
 * manifest). Generated in memory by the tests; never shipped.
 */
import { GraphBuilder, float, type Dim, type Value } from './onnx-builder.js';
import type { Layout, ValueRange } from '../manifest.js';

const OPSET = 13;

const RANGE_BOUNDS: Record<ValueRange, readonly [number, number]> = {
  '0..1': [0, 1],
  '-1..1': [-1, 1],
  '0..255': [0, 255],
};

function imageDims(layout: Layout): Dim[] {
  return layout === 'NCHW' ? [1, 3, 'H', 'W'] : [1, 'H', 'W', 3];
}

export interface InvertSpec {
  layout: Layout;
  range: ValueRange;
  inputName?: string;
  outputName?: string;
}

/** output = (lo + hi) − input: black ↔ white in the declared range, so a wrong range shows as a wrong level. */
export function buildInvertModel(spec: InvertSpec): Uint8Array {
  const [lo, hi] = RANGE_BOUNDS[spec.range];
  const dims = imageDims(spec.layout);
  const g = new GraphBuilder('invert');
  const x = g.input(spec.inputName ?? 'input', 'float32', dims);
  g.output(g.op('Sub', [g.scalar(lo + hi), x]), spec.outputName ?? 'output', 'float32', dims);
  return g.build({ opset: OPSET });
}

/** Copies channel 0 into all three output channels: a red input stays grey-red only if RGB/BGR match. */
export function buildChannel0Model(spec: { layout: Layout }): Uint8Array {
  const dims = imageDims(spec.layout);
  const g = new GraphBuilder('channel0');
  const x = g.input('input', 'float32', dims);
  const channelAxis = spec.layout === 'NCHW' ? 1 : 3;
  g.output(g.op('Gather', [x, g.int64s([0, 0, 0])], { axis: channelAxis }), 'output', 'float32', dims);
  return g.build({ opset: OPSET });
}

/** output = input × factor (NCHW), to push values outside the declared range and test clamping. */
export function buildScaleModel(factor: number): Uint8Array {
  const dims = imageDims('NCHW');
  const g = new GraphBuilder('scale');
  const x = g.input('input', 'float32', dims);
  g.output(g.op('Mul', [x, g.scalar(factor)]), 'output', 'float32', dims);
  return g.build({ opset: OPSET });
}

/** About 250 ms at 512x512 on one thread of a 2-core AMD EPYC; the cost is linear in layers and pixels. */
const SLOW_LAYERS = 150;

/**
 * An exact identity (NCHW) that is deliberately expensive: a stack of full-resolution 3x3 convolutions whose
 * kernels only pass each channel's centre tap. Keeps a worker busy for a predictable time at 512x512.
 */
export function buildSlowModel(): Uint8Array {
  const dims = imageDims('NCHW');
  const g = new GraphBuilder('slow');
  const identity = new Float32Array(3 * 3 * 3 * 3);
  for (let c = 0; c < 3; c += 1) identity[((c * 3 + c) * 3 + 1) * 3 + 1] = 1;
  const w = g.initializer('identity', identity, [3, 3, 3, 3]);
  let x = g.input('input', 'float32', dims);
  for (let layer = 0; layer < SLOW_LAYERS; layer += 1) {
    x = g.op('Conv', [x, w], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] });
  }
  g.output(x, 'output', 'float32', dims);
  return g.build({ opset: OPSET });
}

/** An input of rank 2 where an image model needs rank 4: the registry must refuse it at load time. */
export function buildBadRankModel(): Uint8Array {
  const g = new GraphBuilder('bad_rank');
  const x = g.input('input', 'float32', ['H', 'W']);
  g.output(g.op('Identity', [x]), 'output', 'float32', ['H', 'W']);
  return g.build({ opset: OPSET });
}

/**
 * A small U-Net of the DCT-Net kind for the quantizer's tests (NCHW RGB, -1..1, sides a multiple of 2): 7x7 and 3x3
 * convolutions, LeakyReLU, a stride-2 level, a residual Add, a bilinear 2x upsample with a skip Add, Tanh.
 * `outlier` scales one channel of the first convolution by 1000 and the next convolution's weights for that channel
 * by 1/1000: the same fp32 result, but one activation tensor whose range no 8-bit step can cover. `relu` uses
 * ReLU instead of LeakyReLU.
 */
export function buildQuantizeTestModel(opts: { outlier?: boolean; relu?: boolean; seed?: number } = {}): Uint8Array {
  const g = new GraphBuilder('quantize_test');
  let state = (opts.seed ?? 7) >>> 0;
  const random = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 4294967296;
  };
  let layer = 0;
  const conv = (x: Value, cin: number, cout: number, kernel: number, stride = 1, scaleOut?: (o: number) => number, scaleIn?: (i: number) => number): Value => {
    layer += 1;
    const bound = 0.7 * Math.sqrt(6 / (cin * kernel * kernel));
    const w = Float32Array.from({ length: cout * cin * kernel * kernel }, (_, k) => {
      const o = Math.floor(k / (cin * kernel * kernel));
      const i = Math.floor(k / (kernel * kernel)) % cin;
      return (2 * random() - 1) * bound * (scaleOut?.(o) ?? 1) * (scaleIn?.(i) ?? 1);
    });
    const b = Float32Array.from({ length: cout }, (_, o) => (random() - 0.5) * 0.1 * (scaleOut?.(o) ?? 1));
    const pad = (kernel - 1) / 2;
    return g.op('Conv', [x, g.initializer(`conv${layer}.weight`, w, [cout, cin, kernel, kernel]), g.initializer(`conv${layer}.bias`, b, [cout])], {
      kernel_shape: [kernel, kernel],
      strides: [stride, stride],
      pads: [pad, pad, pad, pad],
    });
  };
  const act = (x: Value) => (opts.relu ? g.op('Relu', [x]) : g.op('LeakyRelu', [x], { alpha: float(0.2) }));
  const big = opts.outlier ? (c: number) => (c === 0 ? 1000 : 1) : undefined;
  const small = opts.outlier ? (c: number) => (c === 0 ? 1 / 1000 : 1) : undefined;
  const dims = imageDims('NCHW');
  const x = g.input('input', 'float32', dims);
  const x0 = act(conv(x, 3, 8, 7, 1, big));
  const x1 = act(conv(x0, 8, 16, 3, 2, undefined, small));
  const x2 = g.op('Add', [conv(act(conv(x1, 16, 16, 3)), 16, 16, 3), x1]);
  const up = g.op('Resize', [act(conv(x2, 16, 8, 3)), null, g.floats([1, 1, 2, 2])], { mode: 'linear', coordinate_transformation_mode: 'asymmetric' });
  const y = g.op('Tanh', [conv(act(conv(g.op('Add', [up, x0]), 8, 8, 3, 1, undefined, small)), 8, 3, 7)]);
  g.output(y, 'output', 'float32', dims);
  return g.build({ opset: OPSET });
}
