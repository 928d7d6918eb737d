/**
 * The image path of one task, as workers/entry.ts runs it, with the worker's own functions: sniff and header
 * probe (pixel limit), sizes from the model's rules and the request, decode with limits, tensor packing, the model
 * replaced by the identity (the packed tensor read straight back), encode, and the wipes. What it throws is the
 * finding: an ImageInputError is a coded answer (4xx); anything else would reach the client as a 500.
 */
import type { WorkerConfig } from '../../contract.js';
import { decode, encode, probe, type DecodedImage } from '../../workers/image.js';
import { sniffFormat } from '../../contract.js';
import { fitLongSide, fromTensor, modelSize, toTensor } from '../../workers/tensor.js';
import { MODEL_SHAPES, type CaseRequest } from './cases.js';

export type Stage = 'probe' | 'decode' | 'tensor' | 'encode' | 'done';

export type Limits = Pick<WorkerConfig, 'maxInputPixels' | 'maxOutputSide'>;

/** Runs the path; on a throw, `stage.at` says where it stopped. */
export async function imagePath(input: Uint8Array, request: CaseRequest, limits: Limits, stage: { at: Stage }): Promise<void> {
  const shape = MODEL_SHAPES[request.model];
  let image: DecodedImage | undefined;
  let rgb: Uint8Array | undefined;
  try {
    stage.at = 'probe';
    const probed = await probe(input, limits.maxInputPixels);
    const outCap = Math.min(request.maxSize ?? limits.maxOutputSide, limits.maxOutputSide);
    const inner = modelSize(probed.width, probed.height, shape.size, outCap);
    const out = fitLongSide(probed.width, probed.height, outCap);
    stage.at = 'decode';
    image = await decode(input, probed, inner.width, inner.height, limits.maxInputPixels);
    stage.at = 'tensor';
    const tensor = toTensor(image.rgb, image.width, image.height, shape.tensor, shape.size.multiple, shape.size.pad);
    rgb = fromTensor(tensor.data, tensor.dims, shape.tensor, image.width, image.height);
    tensor.data.fill(0);
    stage.at = 'encode';
    const encoded = await encode({ ...image, rgb }, out.width, out.height, request.format, request.quality);
    const sniffed = sniffFormat(encoded);
    encoded.fill(0);
    if (!sniffed.ok || sniffed.format !== request.format) throw new Error(`encode returned ${sniffed.ok ? sniffed.format : sniffed.what}, not ${request.format}`);
    stage.at = 'done';
  } finally {
    input.fill(0);
    image?.rgb.fill(0);
    image?.alpha?.fill(0);
    rgb?.fill(0);
  }
}
