/**
 * Build step: generates the ONNX files this project ships beside their manifests. Run after `tsc` as
 * `node dist/models/generate/index.js` (part of `npm run build`), or from source with `tsx`.
 *
 * Idempotent: a file is only rewritten when its bytes change, so rebuilds leave timestamps alone.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildDctnetBenchModel } from './dctnet-bench.js';
import { buildNearfreeBenchModel } from './nearfree-bench.js';
import { countParameters } from './onnx-builder.js';
import { buildToonModel } from './toon.js';
import { PROJECT_ROOT } from '../../paths.js';

export { buildDctnetBenchModel, buildNearfreeBenchModel, buildToonModel, countParameters };
export { GraphBuilder } from './onnx-builder.js';
export {
  buildBadRankModel,
  buildChannel0Model,
  buildInvertModel,
  buildQuantizeTestModel,
  buildScaleModel,
  buildSlowModel,
} from './test-models.js';

export interface GeneratedModel {
  /** Path relative to the project root. */
  path: string;
  sha256: string;
  bytes: number;
  parameters: number;
  written: boolean;
}

const SHIPPED_MODELS: readonly { path: string; build: () => Uint8Array }[] = [
  { path: 'models/builtin/toon.onnx', build: buildToonModel },
  { path: 'models/bench/dctnet-bench.onnx', build: buildDctnetBenchModel },
  { path: 'models/bench/nearfree-bench.onnx', build: buildNearfreeBenchModel },
];

export function generateModels(root = PROJECT_ROOT): GeneratedModel[] {
  return SHIPPED_MODELS.map(({ path, build }) => {
    const bytes = build();
    const file = join(root, path);
    const written = !existsSync(file) || !readFileSync(file).equals(bytes);
    if (written) writeFileSync(file, bytes);
    return {
      path,
      sha256: createHash('sha256').update(bytes).digest('hex'),
      bytes: bytes.length,
      parameters: countParameters(bytes),
      written,
    };
  });
}

function isMain(): boolean {
  const script = process.argv[1];
  return script !== undefined && relative(script, fileURLToPath(import.meta.url)) === '';
}

if (isMain()) {
  for (const model of generateModels()) {
    const state = model.written ? 'written' : 'unchanged';
    console.log(`${model.sha256}  ${model.path}  ${model.bytes} bytes, ${model.parameters} parameters, ${state}`);
  }
}
