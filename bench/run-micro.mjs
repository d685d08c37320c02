#!/usr/bin/env node
// Runs every micro benchmark (dist/bench/micro/*.bench.js, built by `npm run build`) in its own
// Node process and prints a table; `--json FILE` also writes the rows. Usage:
//   npm run bench:micro [-- --json bench/results/micro.json]
import { spawnSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = join(root, 'dist', 'bench', 'micro');
const files = readdirSync(dir).filter((f) => f.endsWith('.bench.js')).sort();
const rows = [];
for (const file of files) {
  const r = spawnSync(process.execPath, ['--expose-gc', join(dir, file)], { encoding: 'utf8' });
  if (r.status !== 0) {
    console.error(`${file} failed:\n${r.stderr}`);
    process.exit(1);
  }
  for (const line of r.stdout.split('\n')) if (line.startsWith('{')) rows.push(JSON.parse(line));
}
console.log(`node ${process.version}, ${cpus()[0]?.model ?? 'unknown CPU'} x${cpus().length}\n`);
let suite = '';
for (const row of rows) {
  if (row.suite !== suite) {
    suite = row.suite;
    console.log(`\n${suite}`);
  }
  const per = row.nsPerOp >= 1000 ? `${(row.nsPerOp / 1000).toFixed(2)} µs` : `${row.nsPerOp.toFixed(1)} ns`;
  console.log(`  ${row.name.padEnd(62)} ${per.padStart(10)}/op  ±${row.rme.toFixed(1)}%`);
}
const i = process.argv.indexOf('--json');
if (i > 0) writeFileSync(process.argv[i + 1], JSON.stringify({ node: process.version, cpu: cpus()[0]?.model, rows }, null, 2));
