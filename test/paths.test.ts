/**
 * paths.ts finds the project from source (tsx runs it from the root) and compiled (tsc writes it to dist/paths.js).
 * The compiled case is checked on the file as tsc emits it, placed at dist/paths.js in a fixture folder: its answers
 * must point at that folder, not at dist/ and not at the checkout.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import t from 'tap';
import ts from 'typescript';
import * as paths from '../paths.js';

t.test('from source, the root holds package.json, web/ and the built-in models', async (t) => {
  t.equal(paths.COMPILED, false);
  t.ok(existsSync(paths.PACKAGE_JSON), paths.PACKAGE_JSON);
  t.equal((JSON.parse(readFileSync(paths.PACKAGE_JSON, 'utf8')) as { name: string }).name, 'privatoon');
  t.ok(existsSync(join(paths.WEB_DIR, 'index.html')), 'web/index.html');
  t.ok(existsSync(join(paths.BUILTIN_MODELS_DIR, 'toon.json')), 'models/builtin/toon.json');
  t.equal(paths.moduleFile('workers/entry'), join(paths.PROJECT_ROOT, 'workers', 'entry.ts'));
  t.ok(existsSync(paths.moduleFile('workers/entry')), 'the worker entry, as the pool starts it');
});

t.test('compiled, dist/paths.js answers for the folder above dist/', async (t) => {
  const source = readFileSync(join(paths.PROJECT_ROOT, 'paths.ts'), 'utf8');
  const { outputText } = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2023 } });
  const root = t.testdir({ dist: {} });
  const file = join(root, 'dist', 'paths.js');
  writeFileSync(file, outputText);
  const compiled = (await import(pathToFileURL(file).href)) as typeof paths;
  t.equal(compiled.COMPILED, true);
  t.equal(compiled.PROJECT_ROOT, join(root, '/'));
  t.equal(compiled.PACKAGE_JSON, join(root, 'package.json'));
  t.equal(compiled.WEB_DIR, join(root, 'web'));
  t.equal(compiled.BUILTIN_MODELS_DIR, join(root, 'models', 'builtin'));
  t.equal(compiled.CARTOONGAN_MODELS_DIR, join(root, 'models', 'cartoongan'));
  t.equal(compiled.BENCH_MODELS_DIR, join(root, 'models', 'bench'));
  t.equal(compiled.moduleFile('workers/entry'), join(root, 'dist', 'workers', 'entry.js'));
});
