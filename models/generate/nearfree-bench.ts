/**
 * A near-free model for measuring what every request pays besides the model: one 3x3 depthwise convolution (a soft
 * blur, 27 weights, about 3 ms a run at 512x512 on one thread). With it, decoding, tensor packing and unpacking,
 * encoding, the hand-off to a worker and the HTTP side are nearly all a request costs, so `npm run bench` shows
 * the service's per-request overhead rather than a model's FLOPs.
 *
 * I/O (models/bench/nearfree-bench.json): `image` float32 [1,3,H,W] RGB 0..1 -> `filtered` float32 [1,3,H,W] RGB
 * 0..1, the built-in style's convention (the commonest one: planar, 0..1), any H, W >= 1.
 */
import { GraphBuilder } from './onnx-builder.js';

const OPSET = 13;
/** Binomial 3x3 kernel: weights sum to 1, so the output stays in 0..1 and looks like the photo. */
const KERNEL = [1, 2, 1, 2, 4, 2, 1, 2, 1].map((w) => w / 16);

export function buildNearfreeBenchModel(): Uint8Array {
  const g = new GraphBuilder('nearfree_bench');
  const image = g.input('image', 'float32', [1, 3, 'H', 'W']);
  const weights = g.floats([...KERNEL, ...KERNEL, ...KERNEL], [3, 1, 3, 3]);
  const filtered = g.op('Conv', [image, weights], { group: 3, kernel_shape: [3, 3], pads: [1, 1, 1, 1] });
  g.output(filtered, 'filtered', 'float32', [1, 3, 'H', 'W']);
  return g.build({ opset: OPSET });
}
