#!/usr/bin/env node
// End-to-end switch throughput: the same iperf3 workloads between two "containers" (network
// namespaces) through three switches, one after another, with a table and ratios at the end.
//
//   node bench/e2e/switch-throughput.mjs [--time N] [--only bridge,vde,usernet] [--json-only]
//                                        [--udp-rate RATE] [--jumbo-mtu N] [--no-jumbo]
//
// Paths:
//   bridge        Linux kernel bridge; each container's eth0 is a veth whose peer is a bridge port.
//   vde           vde_switch (vde2 2.3.x) with TAP ports. Wiring: `vde_switch -s CTLDIR -t ubv-a -t ubv-b`
//                 runs in the sandbox's root namespace and opens both TAPs itself (tuntap module);
//                 each TAP is then moved into its container namespace and renamed eth0
//                 (`ip link set ubv-a netns NS name eth0`). The kernel allows moving tun/tap
//                 devices between namespaces, and the switch keeps its fd, so frames go
//                 container kernel -> TAP fd -> vde_switch -> TAP fd -> container kernel, with one
//                 process and no extra hop. This is the standard, documented vde2 way to put a TAP
//                 on a switch (`-t`), and the fastest one: on a 2-vCPU VM it gave 2.2-2.7 Gbit/s
//                 TCP where the alternative below gave 1.25-1.6 Gbit/s (3 s runs).
//                 Readiness: vde_switch takes management commands on stdin; the "1000 Success"
//                 answer to `port/allprint` proves it is in its main loop with both TAPs open.
//   vde-plug2tap  (not run by default; ask with --only) the other common wiring: a plain
//                 `vde_switch -s CTLDIR` plus `vde_plug2tap -s CTLDIR eth0` running inside each
//                 container namespace (vdeplug4's `vde_plug vde://CTLDIR tap://eth0` is equivalent
//                 and measured the same). Every frame then crosses two extra processes and two
//                 unix datagram sockets.
//   usernet       this project's daemon: `usernet daemon`, two rootless-style holders
//                 (`unshare --user --map-root-user --net`), `usernet attach --configure` for each.
//                 The exact CLI lines are in USERNET below; adjust them there if the CLI changes.
//
// Workloads (container A 10.0.2.11 -> container B 10.0.2.12, one stream each):
//   tcp1500   iperf3 TCP at MTU 1500, receiver-side Gbit/s
//   udp64     iperf3 UDP, 64-byte payloads, `-b 0` (unlimited) by default: received packets/s, loss %
//   tcpJumbo  iperf3 TCP at MTU 65520 (vde_switch: unsupported, its frames stop at 1500 bytes)
//   latency14 (MTU 1500) sockperf TCP ping-pong A -> B, 14 B (sockperf's smallest message), for
//             --latency-time s (default 10): p50/p99/p99.9 round trips, container to container
//   pingRtt   (MTU 1500) ping -c 500 -i 0.01 A -> B
// For TCP, cpuSecPerGB is the switch process's CPU seconds per GB received (CPU % / 100 / GB/s).
//
// Safety: everything runs in a private network namespace whose default routes are blackholes.
// Unless USERNET_SANDBOX=1 (or NETSANDBOX=1 from ../shared/tools/netsandbox) is set, the script
// re-executes itself through test/sandbox/netsandbox.sh, then refuses to run if the default
// routes it sees are not blackholes. Container addresses (10.0.2.0/24) exist only inside
// namespaces this script creates (ubench-*), and everything it creates is removed on exit,
// on failure and on Ctrl-C. Results go to bench/results/switch-throughput-<date>.json.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CLK_TCK,
  Proc,
  ROOT,
  Scope,
  abortOnSignals,
  cell,
  checkSandbox,
  cleanupAll,
  cmdline,
  cpuTicks,
  firstLine,
  formatTable,
  info,
  parkIfAborting,
  ratio,
  ratioCell,
  requireTools,
  round,
  run,
  runInSandbox,
  setQuiet,
  toolVersion,
  warn,
  writeResults,
  parseSockperf,
  sockperfReady,
} from './lib.mjs';

const SCRIPT = fileURLToPath(import.meta.url);

const ALL_PATHS = ['bridge', 'vde', 'vde-plug2tap', 'usernet'];
const DEFAULT_PATHS = ['bridge', 'vde', 'usernet'];
const IP_A = '10.0.2.11';
const IP_B = '10.0.2.12';
const PREFIX = 24;

// ---- usernet CLI contract: the one place to edit if the CLI differs --------------------------
const USERNET = {
  bin: join(ROOT, 'bin', 'usernet.js'),
  built: join(ROOT, 'dist', 'src', 'cli', 'main.js'),
  daemonArgs: ({ socket, stateDir }) => ['daemon', '--socket', socket, '--state-dir', stateDir, '--log-level', 'info'],
  // The daemon logs pino JSON lines to stderr; this predicate says "ready".
  isReady: (rec) => rec.msg === 'listening',
  attachArgs: ({ socket, pid, name, cidr, mtu }) => [
    'attach', '--socket', socket, '--pid', String(pid), '--name', name, '--configure', '--ip', cidr,
    ...(mtu !== 1500 ? ['--mtu', String(mtu)] : []),
  ],
  // Container holder: a rootless-style user+net namespace; prints "ready" once unshared.
  holderArgv: ['unshare', '--user', '--map-root-user', '--net', 'sh', '-c', 'echo ready; exec sleep infinity'],
  daemonReadyTimeoutMs: 20_000,
  attachTimeoutMs: 30_000,
};

// ---- arguments -----------------------------------------------------------------------------

function usage(code) {
  const text = `usage: node bench/e2e/switch-throughput.mjs [options]
  --time N          seconds per iperf3 run (default 10)
  --only LIST       comma-separated paths: ${ALL_PATHS.join(',')} (default ${DEFAULT_PATHS.join(',')})
  --json-only       print only the results JSON on stdout (progress is silenced)
  --udp-rate RATE   iperf3 -b for the UDP test (default 0 = unlimited)
  --jumbo-mtu N     MTU of the third workload (default 65520)
  --no-jumbo        skip the large-MTU workload
  --latency-time N  seconds of the sockperf ping-pong (default 10)
  --no-latency      skip latency14 and pingRtt
  --rotate N        start with the N-th path of the list (bench/e2e/repeat.mjs varies it per run)
  -h, --help        this text
Runs inside a network sandbox (test/sandbox/netsandbox.sh); needs root, iperf3, iproute2, vde2.`;
  (code ? process.stderr : process.stdout).write(text + '\n');
  process.exit(code);
}

function parseArgs(argv) {
  const o = { time: 10, only: DEFAULT_PATHS, jsonOnly: false, udpRate: '0', jumboMtu: 65520, jumbo: true, latencyTime: 10, latency: true, rotate: 0 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = () => {
      if (inline !== undefined) return inline;
      if (i + 1 >= argv.length) fail(`${flag} needs a value`);
      return argv[++i];
    };
    switch (flag) {
      case '--time': o.time = Number(value()); if (!Number.isInteger(o.time) || o.time < 1 || o.time > 3600) fail('--time must be an integer 1..3600'); break;
      case '--only': {
        o.only = value().split(',').map((s) => s.trim()).filter(Boolean);
        const bad = o.only.filter((p) => !ALL_PATHS.includes(p));
        if (bad.length || !o.only.length) fail(`--only: unknown path(s) ${bad.join(',') || '(none given)'}; known: ${ALL_PATHS.join(',')}`);
        o.only = ALL_PATHS.filter((p) => o.only.includes(p)); // stable order
        break;
      }
      case '--json-only': o.jsonOnly = true; break;
      case '--udp-rate': o.udpRate = value(); if (!/^\d+(\.\d+)?[KMGkmg]?$/.test(o.udpRate)) fail('--udp-rate: like 0, 500M, 2G'); break;
      case '--jumbo-mtu': o.jumboMtu = Number(value()); if (!Number.isInteger(o.jumboMtu) || o.jumboMtu < 1501 || o.jumboMtu > 65535) fail('--jumbo-mtu must be 1501..65535'); break;
      case '--no-jumbo': o.jumbo = false; break;
      case '--latency-time': o.latencyTime = Number(value()); if (!Number.isInteger(o.latencyTime) || o.latencyTime < 1 || o.latencyTime > 3600) fail('--latency-time must be an integer 1..3600'); break;
      case '--no-latency': o.latency = false; break;
      case '--rotate': o.rotate = Number(value()); if (!Number.isInteger(o.rotate) || o.rotate < 0) fail('--rotate must be an integer ≥ 0'); break;
      case '-h': case '--help': usage(0); break;
      default: fail(`unknown argument ${a}`);
    }
  }
  return o;
}

function fail(msg) {
  process.stderr.write(`switch-throughput: ${msg}\n`);
  usage(2);
}

// What was typed, give or take the node binary's path; printed at start and end, and saved.
const COMMAND = cmdline(['node', relative(process.cwd(), SCRIPT) || SCRIPT, ...process.argv.slice(2)]);
const OPTS = parseArgs(process.argv.slice(2));
setQuiet(OPTS.jsonOnly);

const ip = (...args) => run(['ip', ...args], { label: 'ip' });

// ---- namespaces and links --------------------------------------------------------------------

async function addNetns(scope, name) {
  // A leftover from an interrupted run inside the same sandbox would make `ip netns add` fail.
  await run(['ip', 'netns', 'del', name], { allowFail: true });
  await ip('netns', 'add', name);
  scope.defer(`delete netns ${name}`, () => ip('netns', 'del', name));
  await ip('-n', name, 'link', 'set', 'lo', 'up');
  return name;
}

async function configureIface(ns, dev, addr, mtu) {
  await ip('-n', ns, 'link', 'set', 'dev', dev, 'mtu', String(mtu));
  await ip('-n', ns, 'addr', 'add', `${addr}/${PREFIX}`, 'dev', dev);
  await ip('-n', ns, 'link', 'set', 'dev', dev, 'up');
}

const netnsEndpoint = (ns, addr) => ({ ip: addr, where: `netns ${ns}`, exec: (argv) => ['ip', 'netns', 'exec', ns, ...argv] });
const pidEndpoint = (pid, addr) => ({ ip: addr, where: `pid ${pid}`, exec: (argv) => ['nsenter', '-t', String(pid), '-n', ...argv] });

async function ifaceKind(ep, dev = 'eth0') {
  const r = await run(ep.exec(['ip', '-d', '-o', 'link', 'show', 'dev', dev]), { allowFail: true });
  const m = r.stdout.match(/\b(tun type tap|tun type tun|veth|bridge)\b/);
  return m ? m[1] : (r.stdout ? 'other' : 'missing');
}

// Follows RTNL link events in a namespace, without a race: when this resolves, the monitor is
// known to be subscribed (it has reported a harmless alias change on `dev`).
async function linkMonitor(scope, ns, dev) {
  const mon = scope.proc(new Proc(`ip monitor (${ns})`, ['ip', '-n', ns, '-o', 'monitor', 'link']));
  await ip('-n', ns, 'link', 'set', 'dev', dev, 'alias', 'ubench-sync');
  await mon.waitLine('stdout', (l) => l.includes(` ${dev}:`), 5000, `link event for ${dev}`);
  mon.lines.stdout.length = 0;
  return mon;
}

// ---- vde_switch helpers ----------------------------------------------------------------------

// vde_switch reads management commands on stdin (and quits on EOF, so stdin stays an open pipe).
// A command's answer ends with "1000 Success"; getting one proves the switch finished its
// start-up (including opening its TAPs) and is in its main loop.
async function vdeCommand(sw, command, timeoutMs = 5000) {
  sw.lines.stdout.length = 0; // one command at a time: the history is now this answer only
  sw.child.stdin.write(`${command}\n`);
  const status = await sw.waitLine('stdout', (l) => /^1\d\d\d /.test(l), timeoutMs, `answer to "${command}"`);
  if (!/^1000 /.test(status)) throw new Error(`vde_switch: "${command}" -> ${status}`);
  return sw.lines.stdout.slice();
}

function startVdeSwitch(scope, label, args) {
  const sw = scope.proc(new Proc(label, ['vde_switch', ...args], { stdin: 'pipe' }));
  sw.child.stdin.on('error', () => {});
  return sw;
}

// ---- the paths -------------------------------------------------------------------------------

const PATHS = {
  bridge: {
    label: 'kernel bridge',
    wiring: 'veth pairs, host ends enslaved to a Linux bridge (STP off)',
    supportsMtu: () => true,
    async setup(scope, mtu) {
      const br = 'ubench-br0';
      await run(['ip', 'link', 'del', br], { allowFail: true });
      await ip('link', 'add', br, 'type', 'bridge', 'stp_state', '0');
      scope.defer(`delete ${br}`, () => ip('link', 'del', br));
      const ends = [];
      for (const [side, addr] of [['a', IP_A], ['b', IP_B]]) {
        const ns = await addNetns(scope, `ubench-bridge-${side}`);
        const host = `ubbr-${side}`;
        await ip('link', 'add', host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
        scope.defer(`delete ${host}`, () => run(['ip', 'link', 'del', host], { allowFail: true }));
        await ip('link', 'set', 'dev', host, 'mtu', String(mtu), 'master', br, 'up');
        await configureIface(ns, 'eth0', addr, mtu);
        ends.push(netnsEndpoint(ns, addr));
      }
      await ip('link', 'set', 'dev', br, 'mtu', String(mtu), 'up');
      return { a: ends[0], b: ends[1] };
    },
  },

  vde: {
    label: 'vde_switch',
    wiring: 'vde_switch -t TAP (switch opens the TAPs, which are then moved into the containers as eth0)',
    supportsMtu: (mtu) => mtu <= 1500 || 'unsupported (vde_switch frames are limited to MTU 1500)',
    async setup(scope, mtu, ctx) {
      const dir = mkdtempSync(join(ctx.tmp, 'vde-'));
      const taps = ['ubv-a', 'ubv-b'];
      for (const t of taps) await run(['ip', 'link', 'del', t], { allowFail: true });
      const sw = startVdeSwitch(scope, 'vde_switch', ['-s', join(dir, 'ctl'), ...taps.flatMap((t) => ['-t', t])]);
      const ports = (await vdeCommand(sw, 'port/allprint')).join('\n');
      for (const t of taps) if (!new RegExp(`module tuntap\\s*: ${t}$`, 'm').test(ports)) throw new Error(`vde_switch did not open TAP ${t}:\n${ports}`);
      const ends = [];
      for (const [i, [side, addr]] of [['a', IP_A], ['b', IP_B]].entries()) {
        const ns = await addNetns(scope, `ubench-vde-${side}`);
        await ip('link', 'set', 'dev', taps[i], 'netns', ns, 'name', 'eth0');
        await configureIface(ns, 'eth0', addr, mtu);
        ends.push(netnsEndpoint(ns, addr));
      }
      return { a: ends[0], b: ends[1], switchPid: sw.pid };
    },
  },

  'vde-plug2tap': {
    label: 'vde_switch+plug2tap',
    wiring: 'vde_switch -s CTL; vde_plug2tap -s CTL eth0 inside each container namespace',
    supportsMtu: (mtu) => mtu <= 1500 || 'unsupported (vde_switch frames are limited to MTU 1500)',
    async setup(scope, mtu, ctx) {
      const dir = mkdtempSync(join(ctx.tmp, 'vde-'));
      const ctl = join(dir, 'ctl');
      const sw = startVdeSwitch(scope, 'vde_switch', ['-s', ctl]);
      await vdeCommand(sw, 'showinfo');
      const ends = [];
      for (const [side, addr] of [['a', IP_A], ['b', IP_B]]) {
        const ns = await addNetns(scope, `ubench-vdeplug-${side}`);
        // Pre-create the TAP so it can be configured and watched; vde_plug2tap attaches to it by
        // name, and the carrier goes up once it holds the fd.
        await ip('-n', ns, 'tuntap', 'add', 'dev', 'eth0', 'mode', 'tap');
        await configureIface(ns, 'eth0', addr, mtu);
        const mon = await linkMonitor(scope, ns, 'eth0');
        const plug = scope.proc(new Proc(`vde_plug2tap (${ns})`, ['ip', 'netns', 'exec', ns, 'vde_plug2tap', '-s', ctl, 'eth0']));
        await Promise.race([
          mon.waitLine('stdout', (l) => / eth0:.*LOWER_UP/.test(l), 10_000, 'carrier on eth0'),
          plug.exited.then((i) => { throw new Error(`${plug.label} ${plug.describeExit(i)}\n${plug.tail()}`); }),
        ]);
        await mon.stop();
        ends.push(netnsEndpoint(ns, addr));
      }
      return { a: ends[0], b: ends[1], switchPid: sw.pid };
    },
  },

  usernet: {
    label: 'usernet',
    wiring: 'usernet daemon; rootless-style holders (unshare --user --map-root-user --net); usernet attach --configure',
    supportsMtu: () => true,
    // A fresh daemon per topology (per MTU), so that ports of the previous topology cannot
    // linger (e.g. two containers answering for 10.0.2.12) whatever the daemon's reaping does.
    async start() {
      for (const f of [USERNET.bin, USERNET.built]) {
        if (!existsSync(f)) throw new Error(`usernet is not built: ${relative(ROOT, f)} is missing (run \`npm install && npm run build\` in ${ROOT})`);
      }
    },
    async setup(scope, mtu, ctx) {
      const dir = mkdtempSync(join(ctx.tmp, 'usernet-'));
      const socket = join(dir, 'usernet.sock');
      const stateDir = join(dir, 'state');
      mkdirSync(stateDir, { recursive: true });
      const d = scope.proc(new Proc('usernet daemon', [process.execPath, USERNET.bin, ...USERNET.daemonArgs({ socket, stateDir })]));
      await d.waitLine('stderr', (l) => { try { return USERNET.isReady(JSON.parse(l)); } catch { return false; } },
        USERNET.daemonReadyTimeoutMs, 'ready log line');
      const ends = [];
      for (const [side, addr] of [['a', IP_A], ['b', IP_B]]) {
        const holder = scope.proc(new Proc(`holder ${side}`, USERNET.holderArgv));
        await holder.waitLine('stdout', (l) => l.trim() === 'ready', 10_000, '"ready"');
        const argv = [process.execPath, USERNET.bin, ...USERNET.attachArgs({ socket, pid: holder.pid, name: `ubench-${side}`, cidr: `${addr}/${PREFIX}`, mtu })];
        let r;
        try {
          r = await run(argv, { timeoutMs: USERNET.attachTimeoutMs, label: 'usernet attach' });
        } catch (err) {
          throw new Error(`${err.message}${d.exitInfo ? `\nusernet daemon ${d.describeExit()}` : ''}\n  daemon log tail:\n${d.tail(10)}`);
        }
        const ep = pidEndpoint(holder.pid, addr);
        ep.port = r.stdout.trim().split('\n').pop();
        ends.push(ep);
      }
      return { a: ends[0], b: ends[1], switchPid: d.pid };
    },
  },
};

// ---- workloads -------------------------------------------------------------------------------

// One iperf3 test: server in B (waits for its "Server listening" line), client in A, JSON result.
async function iperf(topo, clientArgs, switchPid) {
  const scope = new Scope('iperf3');
  try {
    const srv = scope.proc(new Proc('iperf3 server', topo.b.exec(['iperf3', '-s', '-1', '--forceflush', '-B', topo.b.ip])));
    await srv.waitLine('stdout', (l) => l.includes('Server listening'), 10_000, '"Server listening"');
    const argv = topo.a.exec(['iperf3', '-c', topo.b.ip, '-t', String(OPTS.time), '-J', '--connect-timeout', '5000', ...clientArgs]);
    const t0 = cpuTicks(switchPid);
    const w0 = process.hrtime.bigint();
    const r = await run(argv, { timeoutMs: (OPTS.time + 40) * 1000, allowFail: true, label: 'iperf3 client' });
    const wall = Number(process.hrtime.bigint() - w0) / 1e9;
    const t1 = cpuTicks(switchPid);
    let json;
    try { json = JSON.parse(r.stdout); } catch { throw new Error(`iperf3 client gave no JSON (status ${r.code}): ${firstLine(r.stderr || r.stdout)}`); }
    if (json.error) throw new Error(`iperf3: ${json.error}`);
    if (r.code !== 0) throw new Error(`iperf3 client exited with status ${r.code}`);
    const switchCpuPct = t0 != null && t1 != null ? round((100 * (t1 - t0)) / CLK_TCK / wall, 0) : null;
    return { json, switchCpuPct };
  } finally {
    await scope.close();
  }
}

async function tcpTest(topo, sw) {
  const { json, switchCpuPct } = await iperf(topo, [], sw);
  const rx = json.end.sum_received;
  const tx = json.end.sum_sent;
  if (!rx?.bytes) throw new Error(`TCP connected but no data arrived (${tx?.retransmits ?? '?'} retransmits): are large frames dropped on the path?`);
  return {
    gbps: round(rx.bits_per_second / 1e9, 3),
    seconds: round(rx.seconds, 2),
    retransmits: tx.retransmits ?? null,
    senderCpuPct: round(json.end.cpu_utilization_percent?.host_total, 0),
    receiverCpuPct: round(json.end.cpu_utilization_percent?.remote_total, 0),
    switchCpuPct,
    cpuSecPerGB: switchCpuPct != null && rx.bits_per_second > 0 ? round(switchCpuPct / 100 / (rx.bits_per_second / 8e9), 3) : null,
  };
}

// sockperf ping-pong, server in B, client in A: round trips container to container.
async function latencyTest(topo, switchPid) {
  const scope = new Scope('sockperf');
  try {
    const port = 11111;
    const srv = scope.proc(new Proc('sockperf server', topo.b.exec(['sockperf', 'sr', '--tcp', '-i', topo.b.ip, '-p', String(port)])));
    await srv.waitLine('stdout', sockperfReady, 10_000, 'sockperf server ready');
    const argv = topo.a.exec(['sockperf', 'pp', '--tcp', '-i', topo.b.ip, '-p', String(port), '-m', '14', '-t', String(OPTS.latencyTime), '--full-rtt']);
    const t0 = cpuTicks(switchPid);
    const w0 = process.hrtime.bigint();
    const r = await run(argv, { timeoutMs: (OPTS.latencyTime + 30) * 1000, allowFail: true, label: 'sockperf client' });
    const wall = Number(process.hrtime.bigint() - w0) / 1e9;
    const t1 = cpuTicks(switchPid);
    const t = parseSockperf(r);
    return { bytes: 14, samples: t.samples, p50Us: t.p50, p99Us: t.p99, p999Us: t.p999, maxUs: t.max,
      switchCpuPct: t0 != null && t1 != null ? round((100 * (t1 - t0)) / CLK_TCK / wall, 0) : null, cmd: cmdline(argv) };
  } finally {
    await scope.close();
  }
}

async function pingTest(topo) {
  const argv = topo.a.exec(['ping', '-n', '-q', '-c', '500', '-i', '0.01', topo.b.ip]);
  const r = await run(argv, { timeoutMs: 60_000, allowFail: true, label: 'ping' });
  const m = /= ([0-9.]+)\/([0-9.]+)\/([0-9.]+)\/([0-9.]+) ms/.exec(r.stdout);
  if (!m) throw new Error(`ping failed (status ${r.code}): ${firstLine(r.stderr || r.stdout)}`);
  return { avgMs: Number(m[2]), minMs: Number(m[1]), maxMs: Number(m[3]), mdevMs: Number(m[4]), cmd: cmdline(argv) };
}

async function udpTest(topo, sw) {
  const { json, switchCpuPct } = await iperf(topo, ['-u', '-l', '64', '-b', OPTS.udpRate], sw);
  const rx = json.end.sum_received ?? json.end.sum;
  const tx = json.end.sum_sent ?? json.end.sum;
  const received = rx.packets - rx.lost_packets;
  return {
    kpps: round(received / rx.seconds / 1000, 1),
    sentKpps: round(tx.packets / tx.seconds / 1000, 1),
    lossPct: round(rx.lost_percent, 1),
    packets: rx.packets,
    lost: rx.lost_packets,
    seconds: round(rx.seconds, 2),
    senderCpuPct: round(json.end.cpu_utilization_percent?.host_total, 0),
    receiverCpuPct: round(json.end.cpu_utilization_percent?.remote_total, 0),
    switchCpuPct,
  };
}

async function sanityPing(topo) {
  // Also resolves ARP before the first measurement. -w bounds the wait; -c 1 stops at the first reply.
  const r = await run(topo.a.exec(['ping', '-n', '-c', '1', '-w', '5', topo.b.ip]), { allowFail: true, timeoutMs: 10_000, label: 'ping' });
  if (r.code !== 0) throw new Error(`no connectivity: ping ${topo.a.ip} -> ${topo.b.ip} failed (${topo.a.where} -> ${topo.b.where})`);
}

const WORKLOADS = [
  { id: 'tcp1500', mtu: 1500, desc: 'TCP @1500', fn: tcpTest },
  { id: 'udp64', mtu: 1500, desc: 'UDP 64B', fn: udpTest },
  { id: 'tcpJumbo', mtu: null /* OPTS.jumboMtu */, desc: 'TCP @jumbo', fn: tcpTest },
  { id: 'latency14', mtu: 1500, desc: 'TCP ping-pong 14 B (sockperf)', fn: latencyTest, latency: true },
  { id: 'pingRtt', mtu: 1500, desc: 'ping', fn: pingTest, latency: true },
];

async function runPath(id, ctx) {
  const path = PATHS[id];
  const out = { label: path.label, wiring: path.wiring, results: {} };
  const workloads = WORKLOADS.filter((w) => (w.id !== 'tcpJumbo' || OPTS.jumbo) && (!w.latency || OPTS.latency)).map((w) => ({ ...w, mtu: w.mtu ?? OPTS.jumboMtu }));
  const pathScope = new Scope(id);
  try {
    try {
      if (path.start) await path.start(pathScope, ctx);
    } catch (err) {
      await parkIfAborting();
      for (const w of workloads) out.results[w.id] = { error: err.message };
      warn(`${id}: ${err.message}`);
      return out;
    }
    for (const mtu of [...new Set(workloads.map((w) => w.mtu))]) {
      const here = workloads.filter((w) => w.mtu === mtu);
      const ok = path.supportsMtu(mtu);
      if (ok !== true) {
        for (const w of here) out.results[w.id] = { unsupported: ok, mtu };
        info(`${id} @${mtu}: ${ok}`);
        continue;
      }
      const scope = new Scope(`${id}@${mtu}`);
      try {
        info(`${id} @${mtu}: setting up`);
        let topo;
        try {
          topo = await path.setup(scope, mtu, ctx);
          await sanityPing(topo);
        } catch (err) {
          await parkIfAborting();
          for (const w of here) out.results[w.id] = { error: err.message, mtu };
          warn(`${id} @${mtu}: setup failed: ${err.message}`);
          continue;
        }
        const kind = await ifaceKind(topo.a);
        out.iface = out.iface ?? kind;
        if (topo.a.port) out.ports = [topo.a.port, topo.b.port];
        for (const w of here) {
          info(`${id}: ${w.desc.replace('jumbo', String(mtu))} for ${OPTS.time} s`);
          try {
            out.results[w.id] = { mtu, ...(await w.fn(topo, topo.switchPid)) };
            info(`${id}: ${w.id} -> ${summary(out.results[w.id])}`);
          } catch (err) {
            await parkIfAborting();
            out.results[w.id] = { error: err.message, mtu };
            warn(`${id}: ${w.id} failed: ${err.message}`);
          }
        }
      } finally {
        await scope.close();
      }
    }
    if (path.stop) await path.stop(pathScope, ctx);
    return out;
  } finally {
    await pathScope.close();
  }
}

function summary(r) {
  const cpu = r.switchCpuPct != null ? `, switch process CPU ${r.switchCpuPct}%` : '';
  if (r.gbps != null) return `${r.gbps} Gbit/s (retransmits ${r.retransmits}${cpu})`;
  if (r.p50Us != null) return `14 B round trip p50 ${r.p50Us} µs, p99 ${r.p99Us} µs, p99.9 ${r.p999Us} µs over ${r.samples} samples${cpu}`;
  if (r.avgMs != null) return `ping avg ${r.avgMs} ms (min ${r.minMs}, max ${r.maxMs})`;
  if (r.kpps != null) return `${r.kpps} kpps received of ${r.sentKpps} kpps sent, loss ${r.lossPct}%${cpu ? ` (${cpu.slice(2)})` : ''}`;
  return JSON.stringify(r);
}

// ---- report ----------------------------------------------------------------------------------

function computeRatios(paths) {
  const ratios = {};
  for (const base of ['vde', 'bridge']) {
    if (!paths.usernet || !paths[base]) continue;
    const u = paths.usernet.results;
    const v = paths[base].results;
    ratios[`usernet/${base}`] = {
      tcp1500: ratio(u.tcp1500, v.tcp1500, 'gbps'),
      udp64: ratio(u.udp64, v.udp64, 'kpps'),
      tcpJumbo: ratio(u.tcpJumbo, v.tcpJumbo, 'gbps'),
    };
  }
  return ratios;
}

function table(report) {
  const jumbo = `TCP Gbit/s @${OPTS.jumboMtu}`;
  const head = ['path', 'TCP Gbit/s @1500', 'UDP 64B kpps', 'UDP loss %', jumbo];
  const rows = Object.entries(report.paths).map(([, p]) => [
    p.label, cell(p.results.tcp1500, 'gbps', 2), cell(p.results.udp64, 'kpps', 1), cell(p.results.udp64, 'lossPct', 1), cell(p.results.tcpJumbo, 'gbps', 2),
  ]);
  for (const [name, r] of Object.entries(report.ratios)) rows.push([name.replace('vde', 'vde_switch'), ratioCell(r.tcp1500), ratioCell(r.udp64), '', ratioCell(r.tcpJumbo)]);
  return formatTable(head, rows, Object.keys(report.paths).length);
}

// ---- main ------------------------------------------------------------------------------------

async function main() {
  abortOnSignals();
  let exitCode = 0;
  const top = new Scope('main');
  const tmp = mkdtempSync(join(tmpdir(), 'ubench-'));
  top.defer('remove temp dir', () => rmSync(tmp, { recursive: true, force: true }));
  try {
    await checkSandbox();
    requireTools(['ip', 'iperf3', 'ping', 'nsenter', 'unshare', ...(OPTS.only.some((p) => p.startsWith('vde')) ? ['vde_switch'] : []),
      ...(OPTS.only.includes('vde-plug2tap') ? ['vde_plug2tap'] : [])]);
    info(`command: ${COMMAND}`);
    const started = new Date();
    const report = {
      benchmark: 'switch-throughput',
      date: started.toISOString(),
      command: COMMAND,
      cwd: process.cwd(),
      options: { time: OPTS.time, only: OPTS.only, udpRate: OPTS.udpRate, jumboMtu: OPTS.jumbo ? OPTS.jumboMtu : null },
      host: {
        kernel: spawnSync('uname', ['-r'], { encoding: 'utf8' }).stdout.trim(),
        cpus: cpus().length,
        cpuModel: cpus()[0]?.model ?? null,
        node: process.version,
        iperf3: toolVersion(['iperf3', '--version'], /iperf (\S+)/),
        vde_switch: toolVersion(['vde_switch', '--version'], /VDE (\S+)/) ?? null,
      },
      addresses: { a: `${IP_A}/${PREFIX}`, b: `${IP_B}/${PREFIX}` },
      paths: {},
      ratios: {},
    };
    const order = OPTS.only.map((_, i) => OPTS.only[(i + OPTS.rotate) % OPTS.only.length]);
    for (const id of order) {
      info(`=== ${id} (${PATHS[id].wiring})`);
      report.paths[id] = await runPath(id, { tmp });
    }
    await parkIfAborting();
    report.ratios = computeRatios(report.paths);
    report.finished = new Date().toISOString();
    const failed = Object.entries(report.paths).flatMap(([id, p]) => Object.entries(p.results).filter(([, r]) => r.error).map(([w]) => `${id}/${w}`));
    if (failed.length) { exitCode = 1; report.failed = failed; }

    const file = writeResults('switch-throughput', started, report);

    if (OPTS.jsonOnly) {
      process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    } else {
      const out = [];
      out.push('', `switch throughput: iperf3 ${report.host.iperf3}, ${OPTS.time} s per run, one stream, ${IP_A} -> ${IP_B}; ${report.host.cpus} CPUs, kernel ${report.host.kernel}`, '');
      out.push(table(report), '');
      for (const [id, p] of Object.entries(report.paths)) {
        out.push(`${id}: ${p.wiring}${p.iface ? ` [eth0: ${p.iface}]` : ''}`);
        for (const [w, r] of Object.entries(p.results)) {
          if (r.error) out.push(`  ${w}: error: ${r.error.split('\n').join('\n    ')}`);
          else if (r.unsupported) out.push(`  ${w}: ${r.unsupported}`);
          else out.push(`  ${w}: ${summary(r)}`);
        }
      }
      out.push('', `command: ${COMMAND}`, `results: ${relative(process.cwd(), file) || file}`, '');
      process.stdout.write(out.join('\n'));
    }
    if (failed.length) warn(`failed: ${failed.join(', ')}`);
  } catch (err) {
    await parkIfAborting();
    warn(`error: ${err.message}`);
    exitCode = 1;
  } finally {
    await cleanupAll();
    await top.close();
  }
  process.exit(exitCode);
}

// ---- entry: re-exec inside the sandbox, or run (last, so that every class above is defined) --

runInSandbox(SCRIPT, 'switch-throughput', COMMAND, main);
