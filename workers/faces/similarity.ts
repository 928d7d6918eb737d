/**
 * 2-D similarity transforms for face alignment: the least-squares fit of scale, rotation and translation (Umeyama
 * 1991, without reflection) from a face's 5 landmarks to the standard 5-point template, and the small affine algebra
 * the warps need. Pure functions.
 *
 * Coordinates are pixel-index coordinates: the centre of pixel (i, j) is (i, j), as in OpenCV's warpAffine.
 */

export interface Point {
  x: number;
  y: number;
}

/** [a, b, tx, c, d, ty]: maps (x, y) to (a x + b y + tx, c x + d y + ty). */
export type Affine = [a: number, b: number, tx: number, c: number, d: number, ty: number];

/**
 * The usual 112x112 ArcFace 5-point reference (right eye, left eye, nose tip, right and left mouth corners, in image
 * order: the first eye is the one on the image's left), i.e. the 96x112 MTCNN template squared to 112x112.
 */
export const ARCFACE_112: readonly Point[] = Object.freeze([
  { x: 38.2946, y: 51.6963 },
  { x: 73.5318, y: 51.5014 },
  { x: 56.0252, y: 71.7366 },
  { x: 41.5493, y: 92.3655 },
  { x: 70.7299, y: 92.2041 },
]);

/**
 * The 5-point template in a square crop of `cropSize`, shrunk towards the crop's centre by `faceRatio` so that the
 * crop holds the whole head, not only the inner face (DCT-Net: 288 px, ratio 0.75).
 */
export function alignmentTemplate(cropSize: number, faceRatio = 0.75): Point[] {
  if (!(cropSize > 0) || !(faceRatio > 0)) throw new RangeError(`bad template size ${cropSize} or ratio ${faceRatio}`);
  const unit = cropSize / 112;
  return ARCFACE_112.map((p) => ({ x: ((p.x - 56) * faceRatio + 56) * unit, y: ((p.y - 56) * faceRatio + 56) * unit }));
}

/**
 * The similarity (uniform scale, rotation, translation; never a reflection) that maps `src` onto `dst` with the least
 * sum of squared distances. In 2-D, Umeyama's solution has a closed form: with both point sets centred, the linear
 * part is [[p, -q], [q, p]] where p = Σ s·d / Σ |s|² and q = Σ s×d / Σ |s|².
 */
export function estimateSimilarity(src: readonly Point[], dst: readonly Point[]): Affine {
  const n = src.length;
  if (n < 2 || dst.length !== n) throw new RangeError(`need at least 2 matching points, got ${n} and ${dst.length}`);
  let msx = 0;
  let msy = 0;
  let mdx = 0;
  let mdy = 0;
  for (let i = 0; i < n; i++) {
    msx += src[i]!.x;
    msy += src[i]!.y;
    mdx += dst[i]!.x;
    mdy += dst[i]!.y;
  }
  msx /= n;
  msy /= n;
  mdx /= n;
  mdy /= n;
  let dot = 0;
  let cross = 0;
  let norm = 0;
  for (let i = 0; i < n; i++) {
    const sx = src[i]!.x - msx;
    const sy = src[i]!.y - msy;
    const dx = dst[i]!.x - mdx;
    const dy = dst[i]!.y - mdy;
    dot += sx * dx + sy * dy;
    cross += sx * dy - sy * dx;
    norm += sx * sx + sy * sy;
  }
  if (!(norm > 1e-12) || !Number.isFinite(norm)) throw new RangeError('the source points are all at the same place');
  const p = dot / norm;
  const q = cross / norm;
  return [p, -q, mdx - (p * msx - q * msy), q, p, mdy - (q * msx + p * msy)];
}

export function applyAffine(m: Affine, pt: Point): Point {
  return { x: m[0] * pt.x + m[1] * pt.y + m[2], y: m[3] * pt.x + m[4] * pt.y + m[5] };
}

export function invertAffine(m: Affine): Affine {
  const [a, b, tx, c, d, ty] = m;
  const det = a * d - b * c;
  if (!(Math.abs(det) > 1e-300) || !Number.isFinite(det)) throw new RangeError('the affine map is not invertible');
  const ia = d / det;
  const ib = -b / det;
  const ic = -c / det;
  const id = a / det;
  return [ia, ib, -(ia * tx + ib * ty), ic, id, -(ic * tx + id * ty)];
}

/** outer ∘ inner: first `inner`, then `outer`. */
export function composeAffine(outer: Affine, inner: Affine): Affine {
  const [a, b, tx, c, d, ty] = outer;
  const [e, f, ux, g, h, uy] = inner;
  return [a * e + b * g, a * f + b * h, a * ux + b * uy + tx, c * e + d * g, c * f + d * h, c * ux + d * uy + ty];
}
