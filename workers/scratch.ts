/**
 * A worker's reusable buffers for the whole-image pass: the float tensor a model reads, the 8-bit pixels its output
 * is unpacked into, and a staging area for the decoded pixels the packing kernel reads. One worker runs one task at a
 * time, so one set per worker thread suffices.
 *
 * Why: at 512x512 a request needs a 3 MiB tensor and 0.75 MiB of pixels. Fresh arrays each time are zero-filled by
 * the allocator, fault their pages in again and load the garbage collector; with a near-free model that was a visible
 * part of a request's cost. Reused buffers are wiped after every task instead (`wipe`), so no pixel of one request
 * outlives it, and they are bounded: a request larger than `maxPixels` gets arrays of its own for that task, which
 * the pipeline wipes and drops, so a single huge image never pins its size in every worker.
 *
 * The buffers live in one WebAssembly memory, so that the SIMD kernels (simd.ts) can pack and unpack in them. It is
 * reserved at the bound (18 bytes a pixel: 18 MiB for 1024 x 1024) on first use; the system backs only the pages a
 * task touches, and `wipe` zero-fills exactly those.
 */
import { pixelKernels, type PixelKernels } from './simd.js';
import type { SimdRoom } from './tensor.js';

/** Pixels (width x height at model size, padding included) that the retained buffers cover: 1024 x 1024. */
export const SCRATCH_MAX_PIXELS = 1024 * 1024;

const PAGE = 65536;

export class Scratch implements SimdRoom {
  private memory: WebAssembly.Memory | undefined;
  private tensorBuffer = new Float32Array(0);
  private pixelBuffer = new Uint8Array(0);
  private stagingBuffer = new Uint8Array(0);
  /** High-water marks of what this task used, so `wipe` touches only that. */
  private tensorUsed = 0;
  private pixelsUsed = 0;
  private stagingUsed = 0;
  private simd: PixelKernels | undefined;

  constructor(private readonly maxPixels = SCRATCH_MAX_PIXELS) {}

  /** The kernels, where this engine has WebAssembly SIMD and the memory exists (after a first `tensor`/`pixels`). */
  get kernels(): PixelKernels | undefined {
    return this.simd;
  }

  get buffer(): ArrayBuffer | undefined {
    return this.memory?.buffer;
  }

  /** Room for a 3-channel float tensor of `pixels` pixels, or undefined when it would exceed the bound. */
  tensor(pixels: number): Float32Array | undefined {
    if (pixels > this.maxPixels) return undefined;
    this.reserve();
    this.tensorUsed = Math.max(this.tensorUsed, pixels * 3);
    return this.tensorBuffer;
  }

  /** Room for `pixels` RGB pixels, or undefined when it would exceed the bound. */
  pixels(pixels: number): Uint8Array | undefined {
    if (pixels > this.maxPixels) return undefined;
    this.reserve();
    this.pixelsUsed = Math.max(this.pixelsUsed, pixels * 3);
    return this.pixelBuffer;
  }

  /**
   * Room for a decoded image of `pixels` RGB pixels in the staging area, where the packing kernel reads it in place
   * (no copy); undefined when it would exceed the bound.
   */
  decoded(pixels: number): Uint8Array | undefined {
    if (pixels > this.maxPixels) return undefined;
    this.reserve();
    this.stagingUsed = Math.max(this.stagingUsed, pixels * 3);
    return this.stagingBuffer.subarray(0, pixels * 3);
  }

  /** Copies 8-bit pixels into the staging area for a kernel; their address, or undefined when they do not fit. */
  stageBytes(bytes: Uint8Array): number | undefined {
    if (this.memory === undefined || bytes.length > this.stagingBuffer.length) return undefined;
    this.stagingBuffer.set(bytes);
    this.stagingUsed = Math.max(this.stagingUsed, bytes.length);
    return this.stagingBuffer.byteOffset;
  }

  /**
   * Copies a model's output into the tensor buffer (the input tensor is not needed any more once the model has run)
   * for a kernel; its address, or undefined when it does not fit.
   */
  stageFloats(values: Float32Array): number | undefined {
    if (this.memory === undefined || values.length > this.tensorBuffer.length) return undefined;
    this.tensorBuffer.set(values);
    this.tensorUsed = Math.max(this.tensorUsed, values.length);
    return this.tensorBuffer.byteOffset;
  }

  /** Zero-fills whatever this task used. Called when every task ends, however it ends. */
  wipe(): void {
    this.tensorBuffer.fill(0, 0, this.tensorUsed);
    this.pixelBuffer.fill(0, 0, this.pixelsUsed);
    this.stagingBuffer.fill(0, 0, this.stagingUsed);
    this.tensorUsed = 0;
    this.pixelsUsed = 0;
    this.stagingUsed = 0;
  }

  /** Tests only: the retained buffers themselves, to prove they hold nothing between tasks. */
  peek(): { tensor: Float32Array; pixels: Uint8Array; staging: Uint8Array } {
    return { tensor: this.tensorBuffer, pixels: this.pixelBuffer, staging: this.stagingBuffer };
  }

  /** The memory, laid out as tensor (12 bytes a pixel), pixels (3) and staging (3); created once, never grown. */
  private reserve(): void {
    if (this.memory !== undefined) return;
    const values = this.maxPixels * 3;
    const bytes = values * 4 + values + values;
    this.memory = new WebAssembly.Memory({ initial: Math.ceil(bytes / PAGE), maximum: Math.ceil(bytes / PAGE) });
    const { buffer } = this.memory;
    this.tensorBuffer = new Float32Array(buffer, 0, values);
    this.pixelBuffer = new Uint8Array(buffer, values * 4, values);
    this.stagingBuffer = new Uint8Array(buffer, values * 5, values);
    this.simd = pixelKernels(this.memory);
  }
}
