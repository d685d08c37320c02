#!/usr/bin/env node
// usernet-slirp4netns: usernet behind slirp4netns's command line and API socket (a drop-in for
// rootlesskit, Podman and rootless Docker). Compiled TypeScript in dist/, built by `npm ci`.
import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/src/slirp/main.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write('usernet-slirp4netns: not built yet (dist/ is missing): run "npm ci" (or "npm run build") in the project directory\n');
  process.exit(1);
}
const { runSlirp4netns } = await import(entry.href);
const status = await runSlirp4netns(process.argv.slice(2), basename(process.argv[1] ?? 'usernet-slirp4netns').replace(/\.js$/, ''));
process.exit(status);
