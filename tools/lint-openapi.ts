/**
 * `npm run lint:openapi`: builds the app as the server does (built-in style, no keys), takes its OpenAPI document
 * (GET /openapi.json) and lints it with Redocly's recommended rules. Exits non-zero on any error; CI runs it.
 * The document is written to a temporary folder for the linter and removed afterwards (it is not user data).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { buildApp } from '../app.js';
import { loadConfig } from '../config.js';
import { PROJECT_ROOT } from '../paths.js';

const app = buildApp(loadConfig({ WORKERS: '1', PORT: '0', METRICS_PORT: '0', LOG_LEVEL: 'silent', ALLOW_ROOT: 'true' }));
await app.ready();
const response = await app.inject({ url: '/openapi.json' });
await app.close();
if (response.statusCode !== 200) throw new Error(`GET /openapi.json answered ${response.statusCode}`);

const dir = mkdtempSync(join(tmpdir(), 'privatoon-openapi-'));
try {
  const file = join(dir, 'openapi.json');
  writeFileSync(file, response.body);
  const require = createRequire(import.meta.url);
  const cli = join(dirname(require.resolve('@redocly/cli/package.json')), 'bin', 'cli.js');
  const run = spawnSync(process.execPath, [cli, 'lint', '--config', join(PROJECT_ROOT, 'redocly.yaml'), '--format', process.argv.includes('--json') ? 'json' : 'codeframe', file], {
    stdio: 'inherit',
    env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' },
  });
  process.exitCode = run.status ?? 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
