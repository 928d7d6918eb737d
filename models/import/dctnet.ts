/**
 * `privatoon import --dctnet DIR`: a DCT-Net folder as ModelScope publishes it, to the three entries the face-aware
 * pipeline needs. `cartoon_bg.pb` (whole image) and `cartoon_h.pb` (heads) are frozen GraphDefs with input
 * `input_image` (float32 [H, W, 3], 0..255, BGR; the graph adds the batch axis and normalises itself) and output
 * `output_image` (uint8 [H, W, 3]); `alpha.jpg` is the head blend mask.
 *
 * As the reference runs it: short side shrunk to 720 only when larger, padded right and bottom to a multiple of 16
 * with white (255), faces aligned to 288x288 crops, stylised by the head model and blended back with alpha.jpg.
 * Faces are found by the detector the whole-image manifest names (`yunet` by default: its manifest must be in one
 * of the MODELS_DIRS folders).
 */
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { convertGraph } from './convert.js';
import { readGraphDef } from './graphdef.js';
import { sha256, writeModel, type ImportedModel } from './index.js';
import { ImportError } from './tf-graph.js';

export const DCTNET_FILES = { whole: 'cartoon_bg.pb', head: 'cartoon_h.pb', mask: 'alpha.jpg' } as const;
const IO = { input: 'input_image', output: 'output_image' } as const;
/** DCT-Net's aligned head crop. */
export const DCTNET_CROP = 288;

export interface DctnetOptions {
  id: string;
  title?: string | undefined;
  /** The face detector's manifest id (default "yunet"). */
  detector?: string;
}

export async function importDctnet(dir: string, outDir: string, options: DctnetOptions): Promise<ImportedModel[]> {
  const folder = resolve(dir);
  for (const name of Object.values(DCTNET_FILES)) {
    if (!existsSync(join(folder, name))) throw new ImportError(join(folder, name), 'is missing: a ModelScope DCT-Net folder holds cartoon_bg.pb, cartoon_h.pb and alpha.jpg');
  }
  const headId = `${options.id}-head`;
  const maskFile = `${headId}-mask.jpg`;
  const tensor = (name: string) => ({ name, layout: 'NHWC', channels: 'BGR', range: '0..255' });

  const whole = convertGraph(await readGraphDef(join(folder, DCTNET_FILES.whole)), { name: options.id, output: IO.output });
  const head = convertGraph(await readGraphDef(join(folder, DCTNET_FILES.head)), { name: headId, output: IO.output });
  for (const [file, model] of [[DCTNET_FILES.whole, whole], [DCTNET_FILES.head, head]] as const) {
    if (model.input.name !== IO.input) throw new ImportError(join(folder, file), `has input "${model.input.name}"; DCT-Net's is "${IO.input}"`);
  }
  // The mask must decode: checked now rather than at the server's start-up.
  await sharp(await readFile(join(folder, DCTNET_FILES.mask))).metadata().catch((err: Error) => {
    throw new ImportError(join(folder, DCTNET_FILES.mask), `is not a readable image (${err.message})`);
  });
  await mkdir(outDir, { recursive: true });
  await copyFile(join(folder, DCTNET_FILES.mask), join(outDir, maskFile));

  const written = [
    await writeModel(outDir, options.id, whole, {
      id: options.id,
      title: options.title ?? `DCT-Net (${options.id})`,
      file: `${options.id}.onnx`,
      sha256: sha256(whole.onnx),
      role: 'whole',
      input: tensor(IO.input),
      output: { name: IO.output, layout: whole.output.layout },
      size: { maxShortSide: 720, multiple: 16, pad: 255, resizeBack: true },
      head: headId,
      detector: options.detector ?? 'yunet',
    }),
    await writeModel(outDir, headId, head, {
      id: headId,
      title: `${options.title ?? `DCT-Net (${options.id})`}: heads`,
      file: `${headId}.onnx`,
      sha256: sha256(head.onnx),
      role: 'head',
      crop: DCTNET_CROP,
      mask: maskFile,
      input: tensor(IO.input),
      output: { name: IO.output, layout: head.output.layout },
      size: { multiple: 16, pad: 255, resizeBack: true },
    }),
  ];
  return written;
}
