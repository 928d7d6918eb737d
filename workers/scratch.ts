/**
 * A worker's reusable buffers for the whole-image pass: the float tensor a model reads and the 8-bit pixels its
 * output is unpacked into. One worker runs one task at a time, so one set per worker thread suffices.
 *
 * Why: at 512x512 a request needs a 3 MiB tensor and 0.75 MiB of pixels. Fresh arrays each time are zero-filled by
 * the allocator, fault their pages in again and load the garbage collector; with a near-free model that was a visible
 * part of a request's cost. Reused buffers are wiped after every task instead (`wipe`), so no pixel of one request
 * outlives it, and they are bounded: a request larger than `maxPixels` gets arrays of its own for that task, which
 * the pipeline wipes and drops, so a single huge image never pins its size in every worker.
 */

/** Pixels (width x height at model size, padding included) that the retained buffers cover: 1024 x 1024. */
export const SCRATCH_MAX_PIXELS = 1024 * 1024;

export class Scratch {
  private tensorBuffer = new Float32Array(0);
  private pixelBuffer = new Uint8Array(0);
  /** High-water marks of what this task used, so `wipe` touches only that. */
  private tensorUsed = 0;
  private pixelsUsed = 0;

  constructor(private readonly maxPixels = SCRATCH_MAX_PIXELS) {}

  /** Room for a 3-channel float tensor of `pixels` pixels, or undefined when it would exceed the bound. */
  tensor(pixels: number): Float32Array | undefined {
    if (pixels > this.maxPixels) return undefined;
    if (this.tensorBuffer.length < pixels * 3) this.tensorBuffer = new Float32Array(pixels * 3);
    this.tensorUsed = Math.max(this.tensorUsed, pixels * 3);
    return this.tensorBuffer;
  }

  /** Room for `pixels` RGB pixels, or undefined when it would exceed the bound. */
  pixels(pixels: number): Uint8Array | undefined {
    if (pixels > this.maxPixels) return undefined;
    if (this.pixelBuffer.length < pixels * 3) this.pixelBuffer = new Uint8Array(pixels * 3);
    this.pixelsUsed = Math.max(this.pixelsUsed, pixels * 3);
    return this.pixelBuffer;
  }

  /** Zero-fills whatever this task used. Called when every task ends, however it ends. */
  wipe(): void {
    this.tensorBuffer.fill(0, 0, this.tensorUsed);
    this.pixelBuffer.fill(0, 0, this.pixelsUsed);
    this.tensorUsed = 0;
    this.pixelsUsed = 0;
  }

  /** Tests only: the retained buffers themselves, to prove they hold nothing between tasks. */
  peek(): { tensor: Float32Array; pixels: Uint8Array } {
    return { tensor: this.tensorBuffer, pixels: this.pixelBuffer };
  }
}
