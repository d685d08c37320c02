#!/usr/bin/env node
// The usernet command. The code is TypeScript compiled to dist/ by `npm ci` / `npm run build`.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write('usernet: not built yet (dist/ is missing): run "npm ci" (or "npm run build") in the project directory\n');
  process.exit(1);
}
const { run } = await import(entry.href);
run(process.argv.slice(2));
