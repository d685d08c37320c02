#!/usr/bin/env node
// Repeated side-by-side runs of one end-to-end benchmark, for the "same run, medians of N" rule:
// the script runs N times, each time starting with a different implementation (--rotate i), and
// the medians of every numeric result of every implementation are printed, with the median over
// runs of usernet's per-run ratio to each baseline (a ratio taken inside one run, where both
// saw the same machine, then the median of those).
//
//   node bench/e2e/repeat.mjs [--runs 5] -- nat-throughput.mjs --time 5 --conn-time 5
//
// The script's `--json-only` output is read (added if missing). Results go to
// bench/results/repeat-<script>-<date>.json.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const FIELDS = ['gbps', 'kpps', 'connsPerSec', 'crrP50Ms', 'crrP99Ms', 'natCpuPct', 'p50Us', 'p99Us', 'p999Us', 'avgMs', 'cpuSecPerGB', 'jain', 'aggregateGbps'];
const LOWER_IS_BETTER = new Set(['crrP50Ms', 'crrP99Ms', 'natCpuPct', 'p50Us', 'p99Us', 'p999Us', 'avgMs', 'cpuSecPerGB']);

const argv = process.argv.slice(2);
const sep = argv.indexOf('--');
if (sep < 0) usage('missing "--" before the benchmark script');
const own = argv.slice(0, sep);
const [script, ...scriptArgs] = argv.slice(sep + 1);
if (!script) usage('no benchmark script after "--"');
let runs = 5;
for (let i = 0; i < own.length; i++) {
  if (own[i] === '--runs') runs = Number(own[++i]);
  else usage(`unknown option ${own[i]}`);
}
if (!(Number.isInteger(runs) && runs >= 1)) usage('--runs must be an integer ≥ 1');
if (!scriptArgs.includes('--json-only')) scriptArgs.push('--json-only');

function usage(why) {
  console.error(`repeat: ${why}\nusage: node bench/e2e/repeat.mjs [--runs N] -- SCRIPT.mjs [ARGS]`);
  process.exit(2);
}

function flatten(results) {
  const flat = {};
  for (const [k, v] of Object.entries(results ?? {})) {
    if (v && typeof v === 'object' && !v.error) for (const f of FIELDS) if (typeof v[f] === 'number') flat[`${k}.${f}`] = v[f];
  }
  return flat;
}

const median = (xs) => {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const r3 = (x) => (x == null ? null : Math.round(x * 1000) / 1000);

const perRun = [];
for (let i = 0; i < runs; i++) {
  const r = spawnSync(process.execPath, [join(ROOT, 'bench/e2e', script), ...scriptArgs, '--rotate', String(i)], { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20 });
  let out;
  try { out = JSON.parse(r.stdout); } catch {
    console.error(`run ${i + 1}: ${script} gave no JSON (status ${r.status}): ${r.stderr.split('\n').slice(-5).join('\n')}`);
    continue;
  }
  const impls = Object.fromEntries(Object.entries(out.implementations ?? out.paths ?? {}).map(([id, p]) => [id, flatten(p.results)]));
  perRun.push({ file: out.file, date: out.date, failed: out.failed ?? [], impls });
  console.error(`run ${i + 1}/${runs} done${out.failed?.length ? ` (failed: ${out.failed.join(', ')})` : ''}`);
}
if (!perRun.length) { console.error('repeat: no run gave results'); process.exit(1); }

const ids = [...new Set(perRun.flatMap((p) => Object.keys(p.impls)))];
const keys = [...new Set(perRun.flatMap((p) => Object.values(p.impls).flatMap(Object.keys)))].sort();
const medians = {};
for (const id of ids) {
  medians[id] = {};
  for (const k of keys) medians[id][k] = median(perRun.map((p) => p.impls[id]?.[k]).filter((x) => x !== undefined));
}
// usernet / baseline, per run, then the median.
const ratios = {};
if (ids.includes('usernet')) {
  for (const b of ids.filter((x) => x !== 'usernet')) {
    ratios[`usernet/${b}`] = {};
    for (const k of keys) {
      const xs = perRun.map((p) => (p.impls.usernet?.[k] != null && p.impls[b]?.[k] ? p.impls.usernet[k] / p.impls[b][k] : undefined)).filter((x) => x !== undefined);
      ratios[`usernet/${b}`][k] = r3(median(xs));
    }
  }
}
const result = { benchmark: 'repeat', script, args: scriptArgs, runs: perRun.length, date: new Date().toISOString(), medians, ratios, perRun };
mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
const file = join(ROOT, 'bench/results', `repeat-${script.replace(/\.mjs$/, '')}-${result.date.replace(/[:.]/g, '-')}.json`);
writeFileSync(file, JSON.stringify(result, null, 2));

const w = 14;
console.log(['result'.padEnd(26), ...ids.map((id) => id.padStart(w)), ...Object.keys(ratios).map((r) => r.padStart(w + 6))].join(' '));
for (const k of keys) {
  const f = k.split('.').pop();
  console.log([k.padEnd(26), ...ids.map((id) => String(r3(medians[id][k]) ?? '-').padStart(w)),
    ...Object.values(ratios).map((r) => String(r[k] ?? '-').padStart(w + 6))].join(' ') + (LOWER_IS_BETTER.has(f) ? '  (lower is better)' : ''));
}
console.log(`(medians of ${perRun.length} runs, each run starting with a different implementation; ratios: median of per-run ratios; ${file})`);
