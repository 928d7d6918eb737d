// Test-only: registered after tsx (package.json's tap "node-arg"), see ./source-content.js for why.
import { register } from 'node:module';

register('./source-content.js', import.meta.url);
