// Test-only: registered after tsx (package.json's tap "node-arg"), so that it wraps tsx's hook; see ./source-content.js.
// tsx itself uses module.registerHooks where Node has it (22.15+, 24) and module.register before: so does this.
import * as module from 'node:module';
import { loadSync } from './source-content.js';

if (typeof module.registerHooks === 'function') module.registerHooks({ load: loadSync });
else module.register('./source-content.js', import.meta.url);
