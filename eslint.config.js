// `npm run lint`: ESLint's and typescript-eslint's recommended rules over the whole tree (service, workers, models,
// tools, tests, benchmarks and the web page). Type checking itself is `npm run typecheck`; this catches what tsc does not.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default defineConfig(
  { ignores: ['dist/', 'node_modules/', '.tap/', 'coverage/', 'test/artifacts/', 'build/'] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: { globals: globals.node },
    rules: {
      // `const { KEY: _, ...rest } = obj` is how the code drops a key (an API key file, NODE_OPTIONS) from a copy.
      '@typescript-eslint/no-unused-vars': ['error', { ignoreRestSiblings: true }],
    },
  },
  {
    // The service and its tools, type-aware: a promise nobody awaits or catches is an unhandled rejection waiting to
    // end the process. (Not over test/ and bench/, where tap's top-level `t.test()` calls are left unawaited by design.)
    files: ['*.ts', 'plugins/**/*.ts', 'routes/**/*.ts', 'pool/**/*.ts', 'workers/**/*.ts', 'models/**/*.ts', 'tools/**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
    },
  },
  {
    // Callbacks passed to Playwright's evaluate() run in the browser; the project's TypeScript has no DOM types.
    files: ['test/e2e/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    // The browser page: a plain module script, no build step.
    files: ['web/**/*.js'],
    languageOptions: { sourceType: 'module', globals: globals.browser },
  },
  {
    files: ['eslint.config.js', 'test/**/*.js'],
    languageOptions: { globals: globals.node },
  },
);
