#!/usr/bin/env node
// Interleaved before/after runs of one end-to-end benchmark, for "unchanged" claims: the same
// benchmark script from two checkouts (e.g. this commit and the one before, as git worktrees),
// run alternately N times each (B A A B B A …, so neither side always goes first), medians
// and the after/before ratio of every numeric result of usernet.
//
//   node bench/e2e/interleave.mjs --before DIR --after DIR [--runs 5] [--impl usernet] -- \
//        nat-throughput.mjs --only usernet --time 5 --conn-time 10 --no-jumbo
//
// Each DIR must be a built checkout (npm run build) with node_modules. The script's own
// `--json-only` output is read; it is added if missing. Results go to
// bench/results/interleave-<script>-<date>.json.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const argv = process.argv.slice(2);
const sep = argv.indexOf('--');
if (sep < 0) usage('missing "--" before the benchmark script');
const own = argv.slice(0, sep);
const [script, ...scriptArgs] = argv.slice(sep + 1);
if (!script) usage('no benchmark script after "--"');
const opt = { runs: 5, impl: 'usernet', before: '', after: '' };
for (let i = 0; i < own.length; i++) {
  const v = own[i + 1];
  if (own[i] === '--before') (opt.before = resolve(v)), i++;
  else if (own[i] === '--after') (opt.after = resolve(v)), i++;
  else if (own[i] === '--runs') (opt.runs = Number(v)), i++;
  else if (own[i] === '--impl') (opt.impl = v), i++;
  else usage(`unknown option ${own[i]}`);
}
if (!opt.before || !opt.after || !(opt.runs >= 1)) usage('--before and --after are required, --runs must be ≥ 1');
if (!scriptArgs.includes('--json-only')) scriptArgs.push('--json-only');

function usage(why) {
  console.error(`interleave: ${why}\nusage: node bench/e2e/interleave.mjs --before DIR --after DIR [--runs N] [--impl NAME] -- SCRIPT.mjs [ARGS]`);
  process.exit(2);
}

function runOnce(dir) {
  const r = spawnSync(process.execPath, [join(dir, 'bench/e2e', script), ...scriptArgs], { cwd: dir, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${script} in ${dir} failed (${r.status}): ${r.stderr.split('\n').slice(-5).join('\n')}`);
  const out = JSON.parse(r.stdout);
  const res = out.implementations?.[opt.impl]?.results ?? out.paths?.[opt.impl]?.results;
  if (!res) throw new Error(`${script}: no results for ${opt.impl} in its output`);
  const flat = {};
  for (const [k, v] of Object.entries(res)) {
    if (v && typeof v === 'object' && !v.error) {
      for (const [f, x] of Object.entries(v)) if (typeof x === 'number' && ['gbps', 'connsPerSec', 'kpps', 'natCpuPct', 'p50Us', 'p99Us', 'p999Us', 'avgMs'].includes(f)) flat[`${k}.${f}`] = x;
    }
  }
  return flat;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const samples = { before: [], after: [] };
for (let i = 0; i < opt.runs; i++) {
  const order = i % 2 === 0 ? ['before', 'after'] : ['after', 'before'];
  for (const side of order) {
    const flat = runOnce(opt[side]);
    samples[side].push(flat);
    console.error(`run ${i + 1}/${opt.runs} ${side}: ${Object.entries(flat).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  }
}
const keys = [...new Set(samples.before.flatMap(Object.keys))];
const table = {};
for (const k of keys) {
  const b = median(samples.before.map((s) => s[k]).filter((x) => x !== undefined));
  const a = median(samples.after.map((s) => s[k]).filter((x) => x !== undefined));
  table[k] = { before: b, after: a, ratio: Math.round((a / b) * 1000) / 1000 };
}
const result = { benchmark: 'interleave', script, args: scriptArgs, runs: opt.runs, before: opt.before, after: opt.after, date: new Date().toISOString(), medians: table, samples };
mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
const file = join(ROOT, 'bench/results', `interleave-${script.replace(/\.mjs$/, '')}-${result.date.replace(/[:.]/g, '-')}.json`);
writeFileSync(file, JSON.stringify(result, null, 2));
console.log(`${'result'.padEnd(28)} ${'before'.padStart(10)} ${'after'.padStart(10)} ${'after/before'.padStart(13)}`);
for (const [k, v] of Object.entries(table)) console.log(`${k.padEnd(28)} ${String(v.before).padStart(10)} ${String(v.after).padStart(10)} ${String(v.ratio).padStart(13)}`);
console.log(`(medians of ${opt.runs} interleaved runs each; ${file})`);
