// A module hook (test runs only) that puts each TypeScript file's own text into the source map tsx inlines.
//
// tsx compiles with whitespace minified (a module becomes a few long lines) and leaves the map's sourcesContent empty
// unless NODE_V8_COVERAGE is set. tap records coverage through the inspector instead, so its report (c8) finds an
// empty original and maps the whole file to a line or two: every file "100%". With the text in the map, the figure
// is per line of the real source. Reads only the file being loaded; nothing is written.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const INLINE_MAP = /\n\/\/# sourceMappingURL=data:application\/json;base64,([A-Za-z0-9+/=]+)\s*$/;

/** The loaded module with the original text in its inline source map, or the result as it was. */
function withSourceContent(url, result) {
  if (!url.startsWith('file:') || !/\.[cm]?ts$/.test(new URL(url).pathname) || result.source == null) return result;
  const code = typeof result.source === 'string' ? result.source : Buffer.from(result.source).toString('utf8');
  const match = INLINE_MAP.exec(code);
  if (match === null) return result;
  const map = JSON.parse(Buffer.from(match[1], 'base64').toString('utf8'));
  if (!Array.isArray(map.sources) || map.sources.length !== 1 || (map.sourcesContent?.[0] ?? null) !== null) return result;
  map.sourcesContent = [readFileSync(fileURLToPath(url), 'utf8')];
  const inlined = Buffer.from(JSON.stringify(map)).toString('base64');
  return { ...result, source: `${code.slice(0, match.index)}\n//# sourceMappingURL=data:application/json;base64,${inlined}\n` };
}

/** For module.registerHooks (in-thread; where Node has it, tsx uses it). */
export function loadSync(url, context, nextLoad) {
  return withSourceContent(url, nextLoad(url, context));
}

/** For module.register (the hooks thread; Node 20). */
export async function load(url, context, nextLoad) {
  return withSourceContent(url, await nextLoad(url, context));
}
