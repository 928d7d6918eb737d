/**
 * The built-in "toon" style: a classic, weight-free cartoon filter written as an ONNX graph, so that it runs
 * through exactly the same pipeline as a learned model (DCT-Net, AnimeGAN) and the service works out of the box.
 *
 *   photo ─ guided filter ×2 ─┬─ quantise colours ──────────────┐
 *                             └─ luminance ─ XDoG ink lines ── × ─ clip ─ cartoon
 *
 * I/O (models/builtin/toon.json): `image` float32 [1,3,H,W] RGB 0..1 → `cartoon` float32 [1,3,H,W] RGB 0..1.
 * Every filter keeps the size and treats borders exactly, so any H, W ≥ 1 works without padding.
 */
import { GraphBuilder, type Value } from './onnx-builder.js';

export interface ToonParams {
  /** Guided filter: box radius in pixels, regularisation (edges with variance above eps survive), passes. */
  smoothRadius: number;
  smoothEps: number;
  smoothPasses: number;
  /** Luminance levels (L + 1 values: 0, 1/L, …, 1), sharpness of the soft steps between them, chroma step. */
  levels: number;
  levelSharpness: number;
  chromaStep: number;
  /** XDoG: inner Gaussian sigma, ratio of the outer one, edge sharpening p, threshold eps, softness phi. */
  inkSigma: number;
  inkK: number;
  inkP: number;
  inkEps: number;
  inkPhi: number;
}

/**
 * Tuned by eye on the photos in ../shared/images at 512–1024 px (the service's sizes); the result on a
 * public-domain portrait is docs/toon-before-after.jpg. Why these values:
 * - smoothing: r 5 and eps 0.008, twice, flattens skin and walls but keeps eyelids, lips and hair strands;
 *   a larger eps washes faces out at 512 px.
 * - 7 luminance levels give 2–4 shading bands on a face; sharpness 200 makes them crisp cel shading, only
 *   anti-aliased over a pixel or two. Chroma on a 0.03 grid keeps skin tones; 0.05 breaks walls into patches.
 * - ink: eps is far below the usual XDoG 0.5, because a high threshold fills every dark area (hair, navy
 *   suits, wood) with black; with eps 0.05 only edges reach it, so p is high (100) to make strong edges dip
 *   below it. sigma 1.2 draws lines about 2 px wide; phi 5 anti-aliases them.
 */
export const TOON_PARAMS: ToonParams = {
  smoothRadius: 5,
  smoothEps: 0.008,
  smoothPasses: 2,
  levels: 7,
  levelSharpness: 200,
  chromaStep: 0.03,
  inkSigma: 1.2,
  inkK: 1.6,
  inkP: 100,
  inkEps: 0.05,
  inkPhi: 5,
};

const OPSET = 13;
/** ITU-R BT.601 luma, the usual weights for "how dark does this look". */
const LUMA = [0.299, 0.587, 0.114];

export function buildToonModel(params: ToonParams = TOON_PARAMS): Uint8Array {
  const g = new GraphBuilder('toon');
  const image = g.input('image', 'float32', [1, 3, 'H', 'W']);

  let smooth = image;
  for (let pass = 0; pass < params.smoothPasses; pass += 1) {
    smooth = guidedFilter(g, smooth, params.smoothRadius, params.smoothEps);
  }
  const luma = g.op('Conv', [smooth, g.floats(LUMA, [1, 3, 1, 1])]);
  const flat = quantise(g, smooth, luma, params);
  const ink = xdog(g, luma, params);

  const cartoon = g.op('Clip', [g.op('Mul', [flat, ink]), g.scalar(0), g.scalar(1)]);
  g.output(cartoon, 'cartoon', 'float32', [1, 3, 'H', 'W']);
  return g.build({ opset: OPSET });
}

/**
 * Mean over a (2r+1)² window. Separable, so it costs 2(2r+1) instead of (2r+1)² reads per pixel; excluding the
 * padding from the count makes it exact at the borders (a border window averages only the pixels it covers).
 */
function boxFilter(g: GraphBuilder, x: Value, r: number): Value {
  const side = 2 * r + 1;
  const rows = g.op('AveragePool', [x], { kernel_shape: [1, side], pads: [0, r, 0, r], count_include_pad: 0 });
  return g.op('AveragePool', [rows], { kernel_shape: [side, 1], pads: [r, 0, r, 0], count_include_pad: 0 });
}

/**
 * Self-guided filter (He et al. 2010), per channel: flattens windows whose variance is below eps and keeps
 * edges whose variance is above it, where a plain blur would smear them.
 */
function guidedFilter(g: GraphBuilder, x: Value, r: number, eps: number): Value {
  const mean = boxFilter(g, x, r);
  const meanSq = boxFilter(g, g.op('Mul', [x, x]), r);
  const variance = g.op('Sub', [meanSq, g.op('Mul', [mean, mean])]);
  const a = g.op('Div', [variance, g.op('Add', [variance, g.scalar(eps)])]);
  const b = g.op('Sub', [mean, g.op('Mul', [a, mean])]);
  return g.op('Add', [g.op('Mul', [boxFilter(g, a, r), x]), boxFilter(g, b, r)]);
}

/**
 * Flat colour areas. Rounding R, G and B separately shifts the hue at a different place in each channel (skin
 * turns into green and violet bands), so the colour is split into luminance and chroma (RGB - Y) instead:
 * luminance gets a few soft steps (the cartoon's shading bands), chroma a fine grid that keeps the hue.
 */
function quantise(g: GraphBuilder, rgb: Value, luma: Value, params: ToonParams): Value {
  const { levels, levelSharpness, chromaStep } = params;
  // Winnemöller's soft quantiser: nearest level plus a steep tanh ramp, so band borders are anti-aliased.
  const nearest = g.op('Div', [g.op('Round', [g.op('Mul', [luma, g.scalar(levels)])]), g.scalar(levels)]);
  const ramp = g.op('Tanh', [g.op('Mul', [g.op('Sub', [luma, nearest]), g.scalar(levelSharpness)])]);
  const lumaLevels = g.op('Add', [nearest, g.op('Mul', [ramp, g.scalar(0.5 / levels)])]);

  const chroma = g.op('Sub', [rgb, luma]);
  const chromaSteps = g.op('Round', [g.op('Div', [chroma, g.scalar(chromaStep)])]);
  const chromaLevels = g.op('Mul', [chromaSteps, g.scalar(chromaStep)]);
  return g.op('Add', [lumaLevels, chromaLevels]);
}

/**
 * Extended difference of Gaussians (Winnemöller et al. 2012) on the luminance: D = (1+p)·G(σ) − p·G(kσ) is the
 * luminance with its edges sharpened; where it falls below eps the pixel is inked, softly (tanh) so lines are
 * anti-aliased. Returns the ink factor, 1 (paper) … 0 (black line).
 */
function xdog(g: GraphBuilder, luma: Value, params: ToonParams): Value {
  const { inkSigma, inkK, inkP, inkEps, inkPhi } = params;
  const inner = gaussian(inkSigma);
  const outer = gaussian(inkSigma * inkK);
  const radius = (outer.length - 1) / 2;
  // The inner kernel, zero-padded to the outer one's length, so both fit in one Conv weight tensor.
  const margin = new Array<number>(radius - (inner.length - 1) / 2).fill(0);
  const innerFull = [...margin, ...inner, ...margin];
  const size = outer.length;

  // Both Gaussians share one pass per axis: rows blur into 2 channels (inner, outer), then the column pass
  // blurs each and combines them with weights (1+p) and -p, so D comes out of a single Conv.
  // Edge padding repeats border pixels, so the image border is not taken for an edge.
  const padded = (x: Value, pads: number[]): Value => g.op('Pad', [x, g.int64s(pads)], { mode: 'edge' });
  const rowWeights = g.floats([...innerFull, ...outer], [2, 1, 1, size]);
  const rows = g.op('Conv', [padded(luma, [0, 0, 0, radius, 0, 0, 0, radius]), rowWeights]);
  const columnWeights = g.floats(
    [...innerFull.map((w) => (1 + inkP) * w), ...outer.map((w) => -inkP * w)],
    [1, 2, size, 1],
  );
  const d = g.op('Conv', [padded(rows, [0, 0, radius, 0, 0, 0, radius, 0]), columnWeights]);

  // 1 + tanh(phi·min(D − eps, 0)): 1 above the threshold, falling smoothly towards 0 below it; never outside 0..1.
  const below = g.op('Min', [g.op('Sub', [d, g.scalar(inkEps)]), g.scalar(0)]);
  return g.op('Add', [g.op('Tanh', [g.op('Mul', [below, g.scalar(inkPhi)])]), g.scalar(1)]);
}

/** Normalised 1-D Gaussian kernel reaching 3 sigma on each side. */
function gaussian(sigma: number): number[] {
  const radius = Math.ceil(3 * sigma);
  const weights = Array.from({ length: 2 * radius + 1 }, (_, i) => Math.exp(-((i - radius) ** 2) / (2 * sigma ** 2)));
  const sum = weights.reduce((s, w) => s + w, 0);
  return weights.map((w) => w / sum);
}
