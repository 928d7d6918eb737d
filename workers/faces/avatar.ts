/**
 * `crop=face`: a square avatar around the largest face, cut from the finished cartoon (after the head passes are
 * blended), so the face keeps its head-model look. Pure geometry and copying; the caller wipes what it replaces.
 */
import type { DecodedImage } from '../image.js';

/** How much of the picture an avatar shows around the face's box: hair, ears and chin fit in twice its size. */
const AVATAR_FACE_SCALE = 2;

/**
 * The square of an avatar: centred on the face's box, AVATAR_FACE_SCALE times its longer side, shrunk to fit the
 * picture and moved inside it (a face at the edge stays off-centre rather than padded).
 */
export function avatarSquare(box: { x: number; y: number; width: number; height: number }, width: number, height: number): { x: number; y: number; side: number } {
  const side = Math.max(1, Math.min(Math.round(Math.max(box.width, box.height) * AVATAR_FACE_SCALE), width, height));
  const clamp = (start: number, extent: number) => Math.min(Math.max(0, Math.round(start)), extent - side);
  return { x: clamp(box.x + box.width / 2 - side / 2, width), y: clamp(box.y + box.height / 2 - side / 2, height), side };
}

/** A square region of a picture (RGB and alpha), copied: the caller wipes the source. */
export function cropRaster(picture: DecodedImage, square: { x: number; y: number; side: number }): DecodedImage {
  const { x, y, side } = square;
  const rgb = new Uint8Array(side * side * 3);
  const alpha = picture.alpha === undefined ? undefined : new Uint8Array(side * side);
  for (let row = 0; row < side; row++) {
    const from = ((y + row) * picture.width + x) * 3;
    rgb.set(picture.rgb.subarray(from, from + side * 3), row * side * 3);
    if (alpha !== undefined) {
      const fromA = (y + row) * picture.width + x;
      alpha.set(picture.alpha!.subarray(fromA, fromA + side), row * side);
    }
  }
  return { ...picture, rgb, alpha, width: side, height: side };
}

