#!/usr/bin/env node
// Many containers at once: does the aggregate hold, and is it shared fairly?
//
//   node bench/e2e/scale.mjs [--pairs N] [--fanout N] [--parallel N] [--time T]
//                            [--only bridge,slirp4netns,usernet] [--json-only] [--rotate N]
//
// Three workloads, each first with one flow alone (the reference), then with all flows at once:
//   pairs    N disjoint container pairs on one switch (default 25): container 2i sends to 2i+1
//            with iperf3 TCP, all pairs at once. Paths: the kernel bridge (veth pairs, host ends
//            on a Linux bridge) and usernet's switch (one daemon, 2N TAP ports).
//   fanout   N containers (default 50) each to its own iperf3 server on the host's 127.0.0.1,
//            through the gateway 10.0.2.2. Paths: usernet's NAT (one daemon, N containers) and
//            slirp4netns (one process per container, as rootless Podman and Docker run it:
//            `slirp4netns --configure --mtu=1500 PID tap0`; its CPU is the sum of all N).
//   parallel one container, `iperf3 -P N` (default 8) to the host through the NAT.
// Reported per workload: the single flow's Gbit/s, the aggregate of all flows, aggregate/single,
// Jain's fairness index over the flows ((Σx)² / (n·Σx²): 1 when equal, 1/n when one flow has
// everything), the slowest and fastest flow, and the switch or NAT process's CPU.
// Goals (issue #12): aggregate within 20 % of one flow's, fairness ≥ 0.9.
//
// Every client runs for --time seconds (default 10); they are started together (within the
// tens of milliseconds that spawning takes), and each flow's rate is its own receiver-side
// average.
//
// Safety: runs inside test/sandbox/netsandbox.sh (a private network namespace whose default
// route is a blackhole; it re-executes itself there); containers are namespaces it creates,
// on 10.0.2.0/24, and everything it starts is stopped on exit. Results go to
// bench/results/scale-<date>.json.

import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import {
  CLK_TCK,
  Proc,
  cpuTicks,
  ROOT,
  Scope,
  abortOnSignals,
  checkSandbox,
  cleanupAll,
  cmdline,
  freePort,
  info,
  parkIfAborting,
  pidEndpoint,
  requireTools,
  round,
  run,
  runInSandbox,
  setQuiet,
  startContainer,
  toolVersion,
  warn,
  withCpu,
  writeResults,
} from './lib.mjs';

const SCRIPT = fileURLToPath(import.meta.url);
const ALL = ['bridge', 'slirp4netns', 'usernet'];
/** Which paths each workload has. */
const PAIRS_PATHS = ['bridge', 'usernet'];
const FANOUT_PATHS = ['slirp4netns', 'usernet'];
const GATEWAY = '10.0.2.2';
const HOST_ADDR = '127.0.0.1';
const USERNET_BIN = join(ROOT, 'bin', 'usernet.js');
const USERNET_BUILT = join(ROOT, 'dist', 'src', 'cli', 'main.js');

function usage(code) {
  (code ? process.stderr : process.stdout).write(`usage: node bench/e2e/scale.mjs [options]
  --pairs N       container pairs at once (default 25; 0 skips)
  --fanout N      containers to N host servers through the NAT at once (default 50; 0 skips)
  --parallel N    iperf3 -P N from one container through the NAT (default 8; 0 skips)
  --time T        seconds per iperf3 run (default 10)
  --only LIST     paths: ${ALL.join(',')} (default all; pairs: bridge, usernet; fanout: slirp4netns, usernet)
  --rotate N      start with the N-th path (bench/e2e/repeat.mjs varies it per run)
  --json-only     print only the results JSON
Runs inside a network sandbox (test/sandbox/netsandbox.sh); needs root, iperf3, iproute2, slirp4netns; usernet built.\n`);
  process.exit(code);
}

function parseArgs(argv) {
  const o = { pairs: 25, fanout: 50, parallel: 8, time: 10, only: ALL, rotate: 0, jsonOnly: false };
  const int = (flag, v, lo, hi) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < lo || n > hi) fail(`${flag} must be an integer ${lo}..${hi}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => { if (i + 1 >= argv.length) fail(`${a} needs a value`); return argv[++i]; };
    switch (a) {
      case '--pairs': o.pairs = int(a, next(), 0, 60); break;
      case '--fanout': o.fanout = int(a, next(), 0, 120); break;
      case '--parallel': o.parallel = int(a, next(), 0, 64); break;
      case '--time': o.time = int(a, next(), 1, 3600); break;
      case '--rotate': o.rotate = int(a, next(), 0, 1000); break;
      case '--only': {
        const want = next().split(',').map((s) => s.trim()).filter(Boolean);
        const bad = want.filter((p) => !ALL.includes(p));
        if (bad.length || !want.length) fail(`--only: unknown path(s) ${bad.join(',') || '(none)'}; known: ${ALL.join(',')}`);
        o.only = ALL.filter((p) => want.includes(p));
        break;
      }
      case '--json-only': o.jsonOnly = true; break;
      case '-h': case '--help': usage(0); break;
      default: fail(`unknown argument ${a}`);
    }
  }
  return o;
}

function fail(msg) {
  process.stderr.write(`scale: ${msg}\n`);
  usage(2);
}

const COMMAND = cmdline(['node', relative(process.cwd(), SCRIPT) || SCRIPT, ...process.argv.slice(2)]);
const OPTS = parseArgs(process.argv.slice(2));
setQuiet(OPTS.jsonOnly);

const jain = (xs) => {
  const s = xs.reduce((a, b) => a + b, 0);
  const q = xs.reduce((a, b) => a + b * b, 0);
  return q > 0 ? s * s / (xs.length * q) : null;
};

// ---- topologies ----------------------------------------------------------------------------

// A usernet daemon on a fresh state directory; returns { socket, pid }.
async function startUsernet(scope, tmp) {
  for (const f of [USERNET_BIN, USERNET_BUILT]) {
    if (!existsSync(f)) throw new Error(`usernet is not built: ${relative(ROOT, f)} is missing (run \`npm install && npm run build\`)`);
  }
  const dir = mkdtempSync(join(tmp, 'usernet-'));
  const socket = join(dir, 'usernet.sock');
  const stateDir = join(dir, 'state');
  mkdirSync(stateDir, { recursive: true });
  const d = scope.proc(new Proc('usernet daemon', [process.execPath, USERNET_BIN, 'daemon', '--socket', socket, '--state-dir', stateDir, '--log-level', 'info']));
  await d.waitLine('stderr', (l) => { try { return JSON.parse(l).msg === 'listening'; } catch { return false; } }, 20_000, 'ready log line');
  return { socket, pid: d.pid, proc: d };
}

// N rootless-style containers attached to the daemon's default network; `ip(i)` picks each
// one's address (null: the gateway's DHCP pool gives one, as for `attach --configure`).
async function usernetContainers(scope, daemon, n, ip) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const holder = await startContainer(scope, `container ${i}`);
    const addr = ip(i);
    await run([process.execPath, USERNET_BIN, 'attach', '--socket', daemon.socket, '--pid', String(holder.pid), '--name', `c${i}`, '--configure',
      ...(addr ? ['--ip', `${addr}/24`] : [])], { timeoutMs: 30_000, label: 'usernet attach' });
    const ep = pidEndpoint(holder.pid, 'eth0');
    if (!addr) {
      const r = await run(ep.exec(['ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0']));
      ep.ip = r.stdout.match(/inet (\d+\.\d+\.\d+\.\d+)/)?.[1];
      if (!ep.ip) throw new Error(`container ${i} has no IPv4 address after attach --configure`);
    } else {
      ep.ip = addr;
    }
    out.push(ep);
  }
  return out;
}

async function bridgeContainers(scope, n, ip) {
  await run(['ip', 'link', 'add', 'ubs-br', 'type', 'bridge', 'stp_state', '0']);
  scope.defer('delete the bridge', () => run(['ip', 'link', 'del', 'ubs-br'], { allowFail: true }));
  await run(['ip', 'link', 'set', 'ubs-br', 'up']);
  const out = [];
  for (let i = 0; i < n; i++) {
    const holder = await startContainer(scope, `container ${i}`);
    const host = `ubs-v${i}`;
    await run(['ip', 'link', 'add', host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', `/proc/${holder.pid}/ns/net`]);
    await run(['ip', 'link', 'set', host, 'master', 'ubs-br', 'up']);
    const ep = pidEndpoint(holder.pid, 'eth0');
    await run(ep.exec(['ip', 'addr', 'add', `${ip(i)}/24`, 'dev', 'eth0']));
    await run(ep.exec(['ip', 'link', 'set', 'eth0', 'up']));
    ep.ip = ip(i);
    out.push(ep);
  }
  return out;
}

// N containers, each with its own slirp4netns (10.0.2.100 behind 10.0.2.2 in every one);
// returns their endpoints and the slirp4netns PIDs.
async function slirpContainers(scope, n) {
  const eps = [];
  const pids = [];
  for (let i = 0; i < n; i++) {
    const holder = await startContainer(scope, `container ${i}`);
    const nat = scope.proc(new Proc(`slirp4netns ${i}`, ['slirp4netns', '--configure', '--mtu=1500', '--ready-fd=3', String(holder.pid), 'tap0'], { extraFds: 1 }));
    await nat.waitReadyFd(3, 20_000, 'ready fd "1"');
    const ep = pidEndpoint(holder.pid, 'tap0');
    ep.ip = '10.0.2.100';
    eps.push(ep);
    pids.push(nat.pid);
  }
  return { eps, pids };
}

// ---- flows ---------------------------------------------------------------------------------

// The CPU (% of one core) of all of `pids` together around fn(), as withCpu does for one.
async function withCpuOf(pids, fn) {
  if (!Array.isArray(pids)) return withCpu(pids, fn);
  const t0 = pids.map(cpuTicks);
  const w0 = process.hrtime.bigint();
  const r = await fn();
  const wall = Number(process.hrtime.bigint() - w0) / 1e9;
  const t1 = pids.map(cpuTicks);
  const ok = t0.every((t) => t != null) && t1.every((t) => t != null);
  const ticks = ok ? t1.reduce((a, t, i) => a + t - t0[i], 0) : null;
  return { r, natCpuPct: ticks != null ? round((100 * ticks) / CLK_TCK / wall, 0) : null };
}

// Starts one iperf3 server per flow (server i in where(i), bound to bind(i)), then all clients
// at once; returns each flow's receiver Gbit/s and the watched process's CPU.
async function runFlows(flows, watchPid) {
  const scope = new Scope('flows');
  try {
    for (const f of flows) {
      f.port = f.port ?? (await freePort());
      const srv = scope.proc(new Proc('iperf3 server', f.serverExec(['iperf3', '-s', '-1', '--forceflush', '-B', f.bind, '-p', String(f.port)])));
      await srv.waitLine('stdout', (l) => l.includes('Server listening'), 10_000, '"Server listening"');
    }
    const { r: results, natCpuPct } = await withCpuOf(watchPid, () => Promise.all(flows.map((f) =>
      run(f.clientExec(['iperf3', '-c', f.target, '-p', String(f.port), '-t', String(OPTS.time), '-J', '--connect-timeout', '10000', ...(f.args ?? [])]),
        { timeoutMs: (OPTS.time + 60) * 1000, allowFail: true, label: 'iperf3 client' }))));
    const rates = [];
    const streams = [];
    results.forEach((r, i) => {
      let j;
      try { j = JSON.parse(r.stdout); } catch { throw new Error(`flow ${i}: iperf3 gave no JSON (status ${r.code}): ${r.stderr.split('\n')[0]}`); }
      if (j.error) throw new Error(`flow ${i}: iperf3: ${j.error}`);
      rates.push(j.end.sum_received.bits_per_second / 1e9);
      for (const s of j.end.streams ?? []) if (s.receiver?.bits_per_second != null) streams.push(s.receiver.bits_per_second / 1e9);
    });
    return { rates, streams, cpuPct: natCpuPct };
  } finally {
    await scope.close();
  }
}

function summarize(single, all, perStream = false) {
  const xs = perStream ? all.streams : all.rates;
  const aggregate = all.rates.reduce((a, b) => a + b, 0);
  return {
    singleGbps: round(single.rates[0], 3),
    aggregateGbps: round(aggregate, 3),
    aggregateOverSingle: round(aggregate / single.rates[0], 3),
    flows: xs.length,
    jain: round(jain(xs), 3),
    minGbps: round(Math.min(...xs), 3),
    maxGbps: round(Math.max(...xs), 3),
    singleCpuPct: single.cpuPct,
    cpuPct: all.cpuPct,
  };
}

// ---- workloads -----------------------------------------------------------------------------

async function pairs(path, tmp) {
  const n = OPTS.pairs;
  const scope = new Scope(`pairs/${path}`);
  try {
    const ip = (i) => `10.0.2.${10 + i}`;
    let eps;
    let pid = null;
    if (path === 'usernet') {
      const d = await startUsernet(scope, tmp);
      pid = d.pid;
      eps = await usernetContainers(scope, d, 2 * n, ip);
    } else {
      eps = await bridgeContainers(scope, 2 * n, ip);
    }
    const flow = (k) => ({ serverExec: eps[2 * k + 1].exec, bind: eps[2 * k + 1].ip, clientExec: eps[2 * k].exec, target: eps[2 * k + 1].ip });
    info(`pairs/${path}: one pair alone for ${OPTS.time} s`);
    const single = await runFlows([flow(0)], pid);
    info(`pairs/${path}: ${n} pairs at once for ${OPTS.time} s`);
    const all = await runFlows(Array.from({ length: n }, (_, k) => flow(k)), pid);
    return summarize(single, all);
  } finally {
    await scope.close();
  }
}

async function fanout(path, tmp) {
  const n = OPTS.fanout;
  const scope = new Scope(`fanout/${path}`);
  try {
    let eps;
    let watch;
    if (path === 'usernet') {
      const d = await startUsernet(scope, tmp);
      eps = await usernetContainers(scope, d, n, () => null);
      watch = d.pid;
    } else {
      requireTools(['slirp4netns']);
      ({ eps, pids: watch } = await slirpContainers(scope, n));
    }
    const host = (argv) => argv;
    const flow = (k) => ({ serverExec: host, bind: HOST_ADDR, clientExec: eps[k].exec, target: GATEWAY });
    info(`fanout/${path}: one container alone for ${OPTS.time} s`);
    const single = await runFlows([flow(0)], Array.isArray(watch) ? [watch[0]] : watch);
    info(`fanout/${path}: ${n} containers to ${n} host servers at once for ${OPTS.time} s`);
    const all = await runFlows(Array.from({ length: n }, (_, k) => flow(k)), watch);
    return summarize(single, all);
  } finally {
    await scope.close();
  }
}

async function parallel(tmp) {
  const scope = new Scope('parallel');
  try {
    const d = await startUsernet(scope, tmp);
    const [ep] = await usernetContainers(scope, d, 1, () => null);
    const flow = { serverExec: (a) => a, bind: HOST_ADDR, clientExec: ep.exec, target: GATEWAY };
    info(`parallel: one stream for ${OPTS.time} s`);
    const single = await runFlows([{ ...flow }], d.pid);
    info(`parallel: iperf3 -P ${OPTS.parallel} for ${OPTS.time} s`);
    const all = await runFlows([{ ...flow, args: ['-P', String(OPTS.parallel)] }], d.pid);
    return summarize(single, all, true);
  } finally {
    await scope.close();
  }
}

// ---- main ----------------------------------------------------------------------------------

async function main() {
  abortOnSignals();
  let exitCode = 0;
  const tmp = mkdtempSync(join(tmpdir(), 'ubench-scale-'));
  try {
    await checkSandbox();
    requireTools(['ip', 'iperf3', 'nsenter', 'unshare']);
    info(`command: ${COMMAND}`);
    const started = new Date();
    const report = {
      benchmark: 'scale', date: started.toISOString(), command: COMMAND,
      options: { pairs: OPTS.pairs, fanout: OPTS.fanout, parallel: OPTS.parallel, time: OPTS.time },
      host: { kernel: spawnSync('uname', ['-r'], { encoding: 'utf8' }).stdout.trim(), cpus: cpus().length, node: process.version, iperf3: toolVersion(['iperf3', '--version'], /iperf (\S+)/), slirp4netns: toolVersion(['slirp4netns', '--version'], /slirp4netns version (\S+)/) },
      paths: {},
    };
    const jobs = [];
    const rotated = (paths) => {
      const mine = OPTS.only.filter((p) => paths.includes(p));
      return mine.map((_, i) => mine[(i + OPTS.rotate) % mine.length]);
    };
    if (OPTS.pairs) for (const p of rotated(PAIRS_PATHS)) jobs.push([`pairs-${p}`, () => pairs(p, tmp)]);
    if (OPTS.fanout) for (const p of rotated(FANOUT_PATHS)) jobs.push([`fanout-${p}`, () => fanout(p, tmp)]);
    if (OPTS.parallel && OPTS.only.includes('usernet')) jobs.push(['parallel-usernet', () => parallel(tmp)]);
    for (const [id, fn] of jobs) {
      try {
        report.paths[id] = { results: { scale: await fn() } };
        const r = report.paths[id].results.scale;
        info(`${id}: single ${r.singleGbps} Gbit/s, aggregate ${r.aggregateGbps} (${r.aggregateOverSingle}x) over ${r.flows} flows, Jain ${r.jain}, ` +
          `flows ${r.minGbps}..${r.maxGbps}, CPU ${r.singleCpuPct ?? '-'} -> ${r.cpuPct ?? '-'} %`);
      } catch (err) {
        await parkIfAborting();
        report.paths[id] = { results: { scale: { error: err.message } } };
        warn(`${id}: ${err.message}`);
        exitCode = 1;
      }
    }
    report.finished = new Date().toISOString();
    const file = writeResults('scale', started, report);
    if (OPTS.jsonOnly) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    else {
      const rows = Object.entries(report.paths).map(([id, p]) => {
        const r = p.results.scale;
        return r.error ? `${id.padEnd(18)} error: ${r.error}` :
          `${id.padEnd(18)} single ${String(r.singleGbps).padStart(7)}  aggregate ${String(r.aggregateGbps).padStart(7)} (${r.aggregateOverSingle}x)  flows ${r.flows}  Jain ${r.jain}  min..max ${r.minGbps}..${r.maxGbps} Gbit/s  CPU ${r.cpuPct ?? '-'} %`;
      });
      process.stdout.write(['', ...rows, '', `command: ${COMMAND}`, `results: ${relative(process.cwd(), file) || file}`, ''].join('\n'));
    }
  } catch (err) {
    await parkIfAborting();
    warn(`error: ${err.message}`);
    exitCode = 1;
  } finally {
    await cleanupAll();
    rmSync(tmp, { recursive: true, force: true });
  }
  process.exit(exitCode);
}

runInSandbox(SCRIPT, 'scale', COMMAND, main);
