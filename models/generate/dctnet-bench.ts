/**
 * A stand-in for DCT-Net with the real thing's cost: the same texture-translation U-Net (White-box
 * Cartoonization's `unet_generator`, 32 channels, 4 residual blocks, ~1.47 M parameters) and the same I/O
 * convention, but seeded random weights. Load tests and thread-count benchmarks need the FLOPs and memory
 * traffic of a production model, not its look; this way they run without shipping licensed weights.
 *
 * I/O (models/bench/dctnet-bench.json): `input_image` float32 [1,H,W,3] BGR 0..255 →
 * `output_image` float32 [1,H,W,3] 0..255. H and W must be multiples of 4 (two stride-2 levels).
 */
import { GraphBuilder, float, type Value } from './onnx-builder.js';

const OPSET = 13;
const BASE_CHANNELS = 32;
const RESIDUAL_BLOCKS = 4;
const LEAKY_ALPHA = 0.2;
/**
 * He initialisation is scaled down so activations stay near unit scale through the residual blocks (which
 * add their input back) and the final tanh is not saturated at ±1: a saturated output would look constant.
 */
const WEIGHT_GAIN = 0.7;

export function buildDctnetBenchModel(seed = 20220701): Uint8Array {
  const g = new GraphBuilder('dctnet_bench');
  const random = mulberry32(seed);
  let layer = 0;
  const conv = (x: Value, cin: number, cout: number, kernel: number, stride = 1): Value => {
    layer += 1;
    const fanIn = cin * kernel * kernel;
    // Uniform on [-a, a] has standard deviation a/sqrt(3).
    const bound = WEIGHT_GAIN * Math.sqrt(2 / fanIn) * Math.sqrt(3);
    const weights = Float32Array.from({ length: cout * fanIn }, () => (2 * random() - 1) * bound);
    const w = g.initializer(`conv${layer}.weight`, weights, [cout, cin, kernel, kernel]);
    const b = g.initializer(`conv${layer}.bias`, new Float32Array(cout), [cout]);
    const pad = (kernel - 1) / 2;
    const attrs = { kernel_shape: [kernel, kernel], strides: [stride, stride], pads: [pad, pad, pad, pad] };
    return g.op('Conv', [x, w, b], attrs);
  };
  const act = (x: Value): Value => g.op('LeakyRelu', [x], { alpha: float(LEAKY_ALPHA) });
  // TF1's resize_bilinear without half-pixel centres, as in the original network.
  const upsample = (x: Value): Value =>
    g.op('Resize', [x, null, g.floats([1, 1, 2, 2])], { mode: 'linear', coordinate_transformation_mode: 'asymmetric' });

  const c = BASE_CHANNELS;
  const image = g.input('input_image', 'float32', [1, 'H', 'W', 3]);
  const normalised = g.op('Sub', [g.op('Div', [image, g.scalar(127.5)]), g.scalar(1)]);
  const x = g.op('Transpose', [normalised], { perm: [0, 3, 1, 2] });

  const x0 = act(conv(x, 3, c, 7));
  const x1 = act(conv(act(conv(x0, c, c, 3, 2)), c, 2 * c, 3));
  let x2 = act(conv(act(conv(x1, 2 * c, 2 * c, 3, 2)), 2 * c, 4 * c, 3));
  for (let block = 0; block < RESIDUAL_BLOCKS; block += 1) {
    x2 = g.op('Add', [conv(act(conv(x2, 4 * c, 4 * c, 3)), 4 * c, 4 * c, 3), x2]);
  }
  x2 = act(conv(x2, 4 * c, 2 * c, 3));

  let x3 = g.op('Add', [upsample(x2), x1]);
  x3 = act(conv(act(conv(x3, 2 * c, 2 * c, 3)), 2 * c, c, 3));
  let x4 = g.op('Add', [upsample(x3), x0]);
  x4 = g.op('Tanh', [conv(act(conv(x4, c, c, 3)), c, 3, 7)]);

  const pixels = g.op('Mul', [g.op('Add', [x4, g.scalar(1)]), g.scalar(127.5)]);
  g.output(g.op('Transpose', [pixels], { perm: [0, 2, 3, 1] }), 'output_image', 'float32', [1, 'H', 'W', 3]);
  return g.build({ opset: OPSET });
}

/** mulberry32: a tiny, well-known 32-bit PRNG, so the weights (and the file's sha256) depend only on the seed. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
