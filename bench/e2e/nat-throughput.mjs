#!/usr/bin/env node
// End-to-end outbound NAT benchmark: a container (a rootless-style user + network namespace)
// reaches servers on the host's loopback through the gateway address 10.0.2.2, via two NAT
// implementations, one after another, with a table and usernet/slirp4netns ratios at the end.
//
//   node bench/e2e/nat-throughput.mjs [--time N] [--conn-time N] [--only slirp4netns,usernet]
//                                     [--no-jumbo] [--jumbo-mtu N] [--parallel N] [--json-only]
//                                     [--latency-time N] [--no-latency]
//
// Implementations (both map 10.0.2.2 to the host's 127.0.0.1; the container gets 10.0.2.100,
// default route via 10.0.2.2):
//   slirp4netns  `slirp4netns --configure --mtu=N --ready-fd=3 --api-socket S PID tap0` (libslirp,
//                one process, run as root like the container's owner). Ready when it writes "1"
//                to fd 3 (after configuring tap0 and binding the API socket).
//   usernet      this project's daemon: `usernet daemon`, then `usernet attach --configure` for the
//                container. The exact CLI lines are in USERNET below; adjust them there if the
//                CLI changes. Ready when the daemon logs {"msg":"listening"} and attach returns.
// A fresh NAT process and a fresh container per MTU.
//
// Workloads (container -> 10.0.2.2 -> host 127.0.0.1, servers in the sandbox's root namespace):
//   tcp up    iperf3 TCP, one stream, container -> host, receiver-side Gbit/s, at MTU 1500 and 65520
//   tcp down  the same with `iperf3 -R` (host -> container over the container's connection)
//   crr       (MTU 1500) connect+request+close one at a time for --latency-time s: p50/p99 ms
//   load1G/5G (MTU 1500) tcp up at a fixed offered load (iperf3 -b): CPU per GB below saturation
//   conn/s    (MTU 1500) short TCP connections for --conn-time seconds (default 60): a node client
//             in the container keeps --parallel (default 32) connections in flight; each one
//             connects, sends "ping <n>\n", reads the reply and the server's FIN, closes. Reported:
//             completed connections per second, and every refusal/reset/timeout/bad reply (the
//             requirement is zero). The server closes first, as an HTTP/1.0 server does, so the
//             TIME_WAIT states stay on the host side: the container's ephemeral ports (28k, not
//             reusable without TCP timestamps, which libslirp lacks) would otherwise run out after
//             about a minute at 470 conn/s and turn the test into a measure of that.
//   latency   (MTU 1500) sockperf TCP ping-pong, 14 B and 1 KiB, --latency-time s each (default 15:
//             10^5+ samples), p50/p99/p99.9 round trips; and ping -c 500 -i 0.01 10.0.2.2
// Also reported: the NAT process's CPU (% of one core) during each workload.
//
// Safety: everything runs in a private network namespace whose default routes are blackholes.
// Unless USERNET_SANDBOX=1 (or NETSANDBOX=1 from ../shared/tools/netsandbox) is set, the script
// re-executes itself through test/sandbox/netsandbox.sh, then refuses to run if the default
// routes it sees are not blackholes. The servers listen on 127.0.0.1 only; the container's
// 10.0.2.0/24 exists only inside namespaces this script creates; every process it starts
// (containers, NATs, servers, clients) is stopped on exit, on failure and on Ctrl-C, and the
// namespaces die with their last process. Results go to bench/results/nat-throughput-<date>.json.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CONN_CLIENT_JS,
  CONN_SERVER_JS,
  CONTAINER_ARGV,
  Proc,
  ROOT,
  Scope,
  abortOnSignals,
  cell,
  checkSandbox,
  cleanupAll,
  cmdline,
  firstLine,
  formatTable,
  freePort,
  info,
  parkIfAborting,
  pidEndpoint,
  ratio,
  ratioCell,
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
  parseSockperf,
  sockperfReady,
  PASTA,
  preparePastaHost,
  startPasta,
} from './lib.mjs';

const SCRIPT = fileURLToPath(import.meta.url);

const ALL_IMPLS = ['slirp4netns', 'pasta', 'pasta-splice', 'kernel', 'usernet'];
// Baselines that usernet's ratios are taken against, when they ran.
const BASELINES = ['slirp4netns', 'pasta', 'pasta-splice', 'kernel'];
const GATEWAY = '10.0.2.2';
const EXPECTED_IP = '10.0.2.100';
const HOST_ADDR = '127.0.0.1';

// ---- usernet CLI contract: the one place to edit if the CLI differs --------------------------
const USERNET = {
  bin: join(ROOT, 'bin', 'usernet.js'),
  built: join(ROOT, 'dist', 'src', 'cli', 'main.js'),
  // --mtu on the daemon too: it is the default network's MTU (what the gateway and the NAT
  // assume for the subnet); the interface's own MTU is attach --mtu.
  daemonArgs: ({ socket, stateDir, mtu }) => ['daemon', '--socket', socket, '--state-dir', stateDir, '--log-level', 'info',
    ...(mtu !== 1500 ? ['--mtu', String(mtu)] : [])],
  // The daemon logs pino JSON lines to stderr; this predicate says "ready".
  isReady: (rec) => rec.msg === 'listening',
  // No --ip: the first container of the default network gets 10.0.2.100, as with slirp4netns.
  attachArgs: ({ socket, pid, name, mtu }) => ['attach', '--socket', socket, '--pid', String(pid), '--name', name, '--configure',
    ...(mtu !== 1500 ? ['--mtu', String(mtu)] : [])],
  ifname: 'eth0',
  daemonReadyTimeoutMs: 20_000,
  attachTimeoutMs: 30_000,
};

// ---- slirp4netns command line ----------------------------------------------------------------
const SLIRP = {
  // fd 3 is the ready fd (a pipe to this script).
  args: ({ pid, mtu, apiSocket }) => ['--configure', `--mtu=${mtu}`, '--ready-fd=3', `--api-socket=${apiSocket}`, String(pid), 'tap0'],
  ifname: 'tap0',
  readyTimeoutMs: 20_000,
};

// ---- pasta: PASTA, startPasta and preparePastaHost in lib.mjs (rootlesskit's wiring) --------

// ---- the kernel's own path, for reference --------------------------------------------------
// What rootful Docker does: a veth pair (container eth0 10.0.2.100/24, host end 10.0.2.2/24) and
// an iptables DNAT in the host's PREROUTING from 10.0.2.2 to 127.0.0.1 (with route_localnet on
// the host end, which loopback destinations from a non-loopback device need). No user space in
// the path: the ceiling every user-mode NAT is measured against.
const KERNEL = { hostIf: 'ubk-host', ifname: 'eth0' };

// ---- arguments -----------------------------------------------------------------------------

function usage(code) {
  const text = `usage: node bench/e2e/nat-throughput.mjs [options]
  --time N          seconds per iperf3 run (default 10)
  --conn-time N     seconds of the connection-rate test (default 60)
  --parallel N      connections in flight in the connection-rate test (default 32)
  --only LIST       comma-separated: ${ALL_IMPLS.join(',')} (default both)
  --jumbo-mtu N     MTU of the large-MTU runs (default 65520)
  --no-jumbo        skip the large-MTU runs
  --latency-time N  seconds of each sockperf ping-pong (default 15: 10^5 samples or more)
  --no-latency      skip the latency workloads (sockperf, ping)
  --workloads LIST  only these workloads: tcpUp,tcpDown,connRate,load1G,load5G,latency14,latency1024,pingRtt,crr
  --rotate N        start with the N-th implementation of the list (repeat.mjs varies it per run,
                    so that no implementation always goes first)
  --pasta-bin PATH  the pasta binary (default $PASTA_BIN or pasta)
  --cc NAME         TCP congestion control in the sandbox and every container (default: the
                    machine's, read from net.ipv4.tcp_congestion_control; must be allowed)
  --json-only       print only the results JSON on stdout (progress is silenced)
  -h, --help        this text
Runs inside a network sandbox (test/sandbox/netsandbox.sh); needs root, iperf3, iproute2,
util-linux (unshare, nsenter), slirp4netns, pasta (passt), iptables; usernet built (npm install && npm run build).`;
  (code ? process.stderr : process.stdout).write(text + '\n');
  process.exit(code);
}

function parseArgs(argv) {
  const o = { time: 10, connTime: 60, parallel: 32, only: ALL_IMPLS, jsonOnly: false, jumboMtu: 65520, jumbo: true, latencyTime: 15, latency: true,
    pastaBin: process.env.PASTA_BIN || 'pasta', cc: null };
  const int = (flag, v, lo, hi) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < lo || n > hi) fail(`${flag} must be an integer ${lo}..${hi}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = () => {
      if (inline !== undefined) return inline;
      if (i + 1 >= argv.length) fail(`${flag} needs a value`);
      return argv[++i];
    };
    switch (flag) {
      case '--time': o.time = int(flag, value(), 1, 3600); break;
      case '--conn-time': o.connTime = int(flag, value(), 1, 3600); break;
      case '--parallel': o.parallel = int(flag, value(), 1, 1024); break;
      case '--only': {
        o.only = value().split(',').map((s) => s.trim()).filter(Boolean);
        const bad = o.only.filter((p) => !ALL_IMPLS.includes(p));
        if (bad.length || !o.only.length) fail(`--only: unknown implementation(s) ${bad.join(',') || '(none given)'}; known: ${ALL_IMPLS.join(',')}`);
        o.only = ALL_IMPLS.filter((p) => o.only.includes(p)); // stable order
        break;
      }
      case '--jumbo-mtu': o.jumboMtu = int(flag, value(), 1501, 65520); break;
      case '--no-jumbo': o.jumbo = false; break;
      case '--latency-time': o.latencyTime = int(flag, value(), 1, 3600); break;
      case '--no-latency': o.latency = false; break;
      case '--workloads': o.workloads = value().split(',').map((x) => x.trim()).filter(Boolean); break;
      case '--pasta-bin': o.pastaBin = value(); break;
      case '--rotate': o.rotate = int(flag, value(), 0, 1000); break;
      case '--cc': o.cc = value(); if (!/^[a-z0-9_]+$/.test(o.cc)) fail('--cc takes a congestion control name'); break;
      case '--json-only': o.jsonOnly = true; break;
      case '-h': case '--help': usage(0); break;
      default: fail(`unknown argument ${a}`);
    }
  }
  return o;
}

function fail(msg) {
  process.stderr.write(`nat-throughput: ${msg}\n`);
  usage(2);
}

// What was typed, give or take the node binary's path; printed at start and end, and saved.
const COMMAND = cmdline(['node', relative(process.cwd(), SCRIPT) || SCRIPT, ...process.argv.slice(2)]);
const OPTS = parseArgs(process.argv.slice(2));
setQuiet(OPTS.jsonOnly);
const MTUS = OPTS.jumbo ? [1500, OPTS.jumboMtu] : [1500];


// What the NAT configured: address, MTU, default route. An error if the route is not via 10.0.2.2.
async function inspectContainer(ep) {
  const addr = await run(ep.exec(['ip', '-4', '-o', 'addr', 'show', 'dev', ep.ifname]), { allowFail: true });
  const link = await run(ep.exec(['ip', '-d', '-o', 'link', 'show', 'dev', ep.ifname]), { allowFail: true });
  const route = await run(ep.exec(['ip', '-4', 'route', 'show', 'default']), { allowFail: true });
  const address = addr.stdout.match(/inet (\S+)/)?.[1] ?? null;
  const mtu = Number(link.stdout.match(/\bmtu (\d+)/)?.[1]) || null;
  const kind = link.stdout.match(/\b(tun type tap|tun type tun|veth)\b/)?.[1] ?? (link.stdout ? 'other' : 'missing');
  const gw = route.stdout.match(/default via (\S+)/)?.[1] ?? null;
  if (!address || gw !== GATEWAY) {
    throw new Error(`the container is not configured: ${ep.ifname} ${address ?? 'has no IPv4 address'}, ` +
      `default route ${gw ? `via ${gw}` : 'missing'} (expected via ${GATEWAY})`);
  }
  return { ifname: ep.ifname, kind, address, mtu, gateway: gw };
}

// ---- the implementations ---------------------------------------------------------------------

const IMPLS = {
  slirp4netns: {
    label: 'slirp4netns',
    describe: (mtu) => `slirp4netns ${cmdline(SLIRP.args({ pid: 'PID', mtu, apiSocket: 'API.sock' }))} (as root; container: ${cmdline(CONTAINER_ARGV)})`,
    async start() {
      requireTools(['slirp4netns']);
    },
    async setup(scope, mtu, ctx) {
      const dir = mkdtempSync(join(ctx.tmp, `slirp-${mtu}-`));
      const holder = await startContainer(scope, 'container');
      const argv = ['slirp4netns', ...SLIRP.args({ pid: holder.pid, mtu, apiSocket: join(dir, 'api.sock') })];
      const nat = scope.proc(new Proc('slirp4netns', argv, { extraFds: 1 }));
      await nat.waitReadyFd(3, SLIRP.readyTimeoutMs, 'ready fd "1"');
      return { container: pidEndpoint(holder.pid, SLIRP.ifname), natPid: nat.pid, nat };
    },
  },

  pasta: {
    label: 'pasta',
    describe: (mtu) => `${OPTS.pastaBin} ${cmdline(PASTA.args({ pid: 'PID', mtu, pidFile: 'pasta.pid' }))} (as root; container: ${cmdline(CONTAINER_ARGV)}; ` +
      'host template: a veth uplink on 203.0.113.1/24 with a metric-1000 default route behind the blackhole)',
    async start() {
      requireTools([OPTS.pastaBin]);
    },
    async setup(scope, mtu, ctx) {
      const { container, nat } = await startPasta(scope, OPTS.pastaBin, mkdtempSync(join(ctx.tmp, `pasta-${mtu}-`)), { mtu });
      return { container, natPid: nat.pid, nat };
    },
  },

  // pasta's own fast path for local traffic: the container connects to ITS 127.0.0.1:PORT, which
  // pasta (-T PORT) forwards to the host's 127.0.0.1:PORT by splice(2) between two sockets; no
  // frames, no TAP. The best numbers pasta publishes are of this path; it covers only the ports
  // named in advance and only loopback to loopback, so it is reported beside the gateway path,
  // not instead of it. The ping row is still to the gateway over the TAP.
  'pasta-splice': {
    label: 'pasta (-T splice)',
    describe: (mtu) => `${OPTS.pastaBin} ${cmdline(PASTA.args({ pid: 'PID', mtu, pidFile: 'pasta.pid', tcpNs: 'PORTS' }))} (as pasta, but the container ` +
      `connects to its own 127.0.0.1:PORT, forwarded with -T to the host's 127.0.0.1:PORT)`,
    async start() {
      requireTools([OPTS.pastaBin]);
    },
    async setup(scope, mtu, ctx) {
      const ports = [];
      while (ports.length < 4) { const p = await freePort(); if (!ports.includes(p) && p !== ctx.connPort) ports.push(p); }
      const tcpNs = [ctx.connPort, ...ports].join(',');
      const { container, nat } = await startPasta(scope, OPTS.pastaBin, mkdtempSync(join(ctx.tmp, `pasta-splice-${mtu}-`)), { mtu, tcpNs });
      return { container, natPid: nat.pid, nat, target: HOST_ADDR, ports };
    },
  },

  kernel: {
    label: 'kernel (veth+DNAT)',
    describe: (mtu) => `ip link add ${KERNEL.hostIf} mtu ${mtu} type veth peer name eth0 netns PID; ` +
      `iptables -t nat -A PREROUTING -i ${KERNEL.hostIf} -d ${GATEWAY} -j DNAT --to-destination ${HOST_ADDR}; sysctl net.ipv4.conf.${KERNEL.hostIf}.route_localnet=1 ` +
      `(container: ${cmdline(CONTAINER_ARGV)})`,
    async start() {
      requireTools(['iptables', 'sysctl']);
    },
    async setup(scope, mtu) {
      const holder = await startContainer(scope, 'container');
      const ns = `/proc/${holder.pid}/ns/net`;
      const c = pidEndpoint(holder.pid, KERNEL.ifname);
      const h = KERNEL.hostIf;
      const rule = ['PREROUTING', '-i', h, '-d', GATEWAY, '-p', 'tcp', '-j', 'DNAT', '--to-destination', HOST_ADDR];
      await run(['ip', 'link', 'add', h, 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', KERNEL.ifname, 'mtu', String(mtu), 'netns', ns]);
      scope.defer(`delete ${h}`, () => run(['ip', 'link', 'del', h], { allowFail: true }));
      await run(['ip', 'addr', 'add', `${GATEWAY}/24`, 'dev', h]);
      await run(['ip', 'link', 'set', h, 'up']);
      await run(['sysctl', '-q', '-w', `net.ipv4.conf.${h}.route_localnet=1`]);
      await run(['iptables', '-t', 'nat', '-A', ...rule]);
      scope.defer('delete the DNAT rule', () => run(['iptables', '-t', 'nat', '-D', ...rule], { allowFail: true }));
      await run(c.exec(['ip', 'addr', 'add', `${EXPECTED_IP}/24`, 'dev', KERNEL.ifname]));
      await run(c.exec(['ip', 'link', 'set', KERNEL.ifname, 'up']));
      await run(c.exec(['ip', 'route', 'add', 'default', 'via', GATEWAY]));
      // The kernel answers ICMP to 10.0.2.2 itself (it is the host end's address): the
      // counterpart of the gateway answering ping in the user-mode NATs.
      return { container: c, natPid: null, nat: { label: 'kernel', exitInfo: null } };
    },
  },

  usernet: {
    label: 'usernet',
    describe: (mtu) => `node bin/usernet.js ${cmdline(USERNET.daemonArgs({ socket: 'S', stateDir: 'D', mtu }))}; ` +
      `node bin/usernet.js ${cmdline(USERNET.attachArgs({ socket: 'S', pid: 'PID', name: 'c1', mtu }))} (as root; container: ${cmdline(CONTAINER_ARGV)})`,
    async start() {
      for (const f of [USERNET.bin, USERNET.built]) {
        if (!existsSync(f)) throw new Error(`usernet is not built: ${relative(ROOT, f)} is missing (run \`npm install && npm run build\` in ${ROOT})`);
      }
    },
    // A fresh daemon per MTU (the default network's MTU is a daemon flag).
    async setup(scope, mtu, ctx) {
      const dir = mkdtempSync(join(ctx.tmp, `usernet-${mtu}-`));
      const socket = join(dir, 'usernet.sock');
      const stateDir = join(dir, 'state');
      mkdirSync(stateDir, { recursive: true });
      const d = scope.proc(new Proc('usernet daemon', [process.execPath, USERNET.bin, ...USERNET.daemonArgs({ socket, stateDir, mtu })]));
      await d.waitLine('stderr', (l) => { try { return USERNET.isReady(JSON.parse(l)); } catch { return false; } },
        USERNET.daemonReadyTimeoutMs, 'ready log line');
      const holder = await startContainer(scope, 'container');
      const argv = [process.execPath, USERNET.bin, ...USERNET.attachArgs({ socket, pid: holder.pid, name: 'c1', mtu })];
      try {
        await run(argv, { timeoutMs: USERNET.attachTimeoutMs, label: 'usernet attach' });
      } catch (err) {
        throw new Error(`${err.message}${d.exitInfo ? `\nusernet daemon ${d.describeExit()}` : ''}\n  daemon log tail:\n${d.tail(10)}`);
      }
      return { container: pidEndpoint(holder.pid, USERNET.ifname), natPid: d.pid, nat: d };
    },
  },
};

// The port a workload's server listens on: any free one, unless the implementation forwards only
// a fixed set (pasta-splice's -T list), then the next of those in turn.
async function serverPort(topo) {
  if (!topo.ports) return freePort();
  const p = topo.ports[topo.nextPort++ % topo.ports.length];
  return p;
}

// ---- workloads -------------------------------------------------------------------------------

// One iperf3 TCP test: server on the host's 127.0.0.1 (waits for "Server listening"), client in
// the container to 10.0.2.2, JSON result; reverse = `-R` (the server sends).
async function iperfTcp(topo, reverse, rate = null) {
  const scope = new Scope('iperf3');
  try {
    const port = await serverPort(topo);
    const srv = scope.proc(new Proc('iperf3 server', ['iperf3', '-s', '-1', '--forceflush', '-B', HOST_ADDR, '-p', String(port)]));
    await srv.waitLine('stdout', (l) => l.includes('Server listening'), 10_000, '"Server listening"');
    const argv = topo.container.exec(['iperf3', '-c', topo.target, '-p', String(port), '-t', String(OPTS.time), '-J', '--connect-timeout', '5000',
      ...(reverse ? ['-R'] : []), ...(rate ? ['-b', rate] : [])]);
    const { r, natCpuPct } = await withCpu(topo.natPid, () => run(argv, { timeoutMs: (OPTS.time + 40) * 1000, allowFail: true, label: 'iperf3 client' }));
    let json;
    try { json = JSON.parse(r.stdout); } catch { throw new Error(`iperf3 client gave no JSON (status ${r.code}): ${firstLine(r.stderr || r.stdout)}`); }
    if (json.error) throw new Error(`iperf3: ${json.error}`);
    if (r.code !== 0) throw new Error(`iperf3 client exited with status ${r.code}`);
    const rx = json.end.sum_received;
    const tx = json.end.sum_sent;
    if (!rx?.bytes) throw new Error(`TCP connected but no data arrived (${tx?.retransmits ?? '?'} retransmits)`);
    return {
      gbps: round(rx.bits_per_second / 1e9, 3),
      seconds: round(rx.seconds, 2),
      // Retransmits are counted by the sender: the container in the forward direction; in -R,
      // iperf3 reports the server's (host loopback) count, which says little about the NAT.
      retransmits: tx.retransmits ?? null,
      natCpuPct,
      // The NAT process's CPU seconds per GB delivered: CPU share / (GB per second).
      cpuSecPerGB: natCpuPct != null && rx.bits_per_second > 0 ? round(natCpuPct / 100 / (rx.bits_per_second / 8e9), 3) : null,
      offered: rate,
      cmd: cmdline(argv),
    };
  } finally {
    await scope.close();
  }
}

const tcpUp = (topo) => iperfTcp(topo, false);
const tcpDown = (topo) => iperfTcp(topo, true);

async function connClient(topo, ctx, { parallel, seconds, timeoutMs, count }) {
  const argv = topo.container.exec([process.execPath, ctx.clientJs, topo.target, String(ctx.connPort), String(parallel), String(seconds), String(timeoutMs),
    ...(count ? [String(count)] : [])]);
  const r = await run(argv, { timeoutMs: (seconds + timeoutMs / 1000 + 30) * 1000, allowFail: true, label: 'conn client' });
  try { return { ...JSON.parse(r.stdout.trim().split('\n').pop()), cmd: cmdline(argv) }; } catch {
    throw new Error(`conn client gave no result (status ${r.code}): ${firstLine(r.stderr || r.stdout) || '(no output)'}`);
  }
}

let statsSeq = 0;
async function serverStats(srv) {
  const tag = `s${++statsSeq}`;
  srv.child.stdin.write(`stats ${tag}\n`);
  const line = await srv.waitLine('stdout', (l) => l.includes(`"stats":"${tag}"`), 10_000, 'stats line');
  return JSON.parse(line);
}

async function connRate(topo, ctx) {
  const before = await serverStats(ctx.connServer);
  const { r, natCpuPct } = await withCpu(topo.natPid, () => connClient(topo, ctx, { parallel: OPTS.parallel, seconds: OPTS.connTime, timeoutMs: 10_000 }));
  const after = await serverStats(ctx.connServer);
  // Sockets left in TIME_WAIT inside the container (the server closes first, so expect ~0).
  const tw = await run(topo.container.exec(['ss', '-Htan', 'state', 'time-wait']), { allowFail: true, label: 'ss' });
  const serverErrors = {};
  for (const [k, v] of Object.entries(after.errors)) if (v - (before.errors[k] ?? 0)) serverErrors[k] = v - (before.errors[k] ?? 0);
  const ps = r.perSecond.slice(0, Math.max(1, Math.floor(r.seconds))); // whole seconds only
  return {
    connsPerSec: round(r.connsPerSec, 0),
    completed: r.completed,
    errors: r.errorCount,
    errorsByKind: r.errors,
    firstErrors: r.firstErrors,
    seconds: round(r.seconds, 2),
    parallel: OPTS.parallel,
    latencyMs: r.latencyMs,
    perSecondMin: ps.length ? Math.min(...ps) : null,
    perSecondMax: ps.length ? Math.max(...ps) : null,
    perSecond: r.perSecond,
    natCpuPct,
    clientCpuPct: round(r.clientCpuPct, 0),
    containerTimeWait: tw.code === 0 ? tw.stdout.split('\n').filter((l) => l.trim()).length : null,
    server: {
      cpuPct: round((100 * (after.cpuUs - before.cpuUs)) / 1e6 / r.seconds, 0),
      accepted: after.accepted - before.accepted,
      served: after.served - before.served,
      badRequests: after.badRequests - before.badRequests,
      errors: serverErrors,
    },
    cmd: r.cmd,
  };
}

// Before measuring: one short TCP connection through the NAT, with a useful message if it fails.
async function probe(topo, ctx, id) {
  const r = await connClient(topo, ctx, { parallel: 1, seconds: 0, timeoutMs: 5000, count: 1 });
  if (r.completed === 1) return;
  const ping = await run(topo.container.exec(['ping', '-n', '-c', '1', '-w', '3', GATEWAY]), { allowFail: true, timeoutMs: 10_000, label: 'ping' });
  const kinds = Object.keys(r.errors).join(', ') || 'no answer';
  throw new Error(`no TCP connection from the container to ${topo.target}:${ctx.connPort} (the host's ${HOST_ADDR}:${ctx.connPort}): ${kinds}; ` +
    `ping ${GATEWAY} ${ping.code === 0 ? 'answers' : 'gets no answer'}` +
    (id === 'usernet' ? '. Is usernet\'s outbound NAT (10.0.2.2 -> host loopback) implemented and wired into the daemon yet?' : ''));
}

// TCP request/response latency: sockperf ping-pong (TCP_NODELAY both ends, one message in
// flight), server on the host's 127.0.0.1, client in the container to 10.0.2.2, for
// --latency-time seconds after sockperf's warm-up; full round-trip times. 14 bytes is sockperf's
// smallest message (its own header), so it stands for "1 byte".
async function sockperfPingPong(topo, size) {
  const scope = new Scope('sockperf');
  try {
    const port = await serverPort(topo);
    const srv = scope.proc(new Proc('sockperf server', ['sockperf', 'sr', '--tcp', '-i', HOST_ADDR, '-p', String(port)]));
    await srv.waitLine('stdout', sockperfReady, 10_000, 'sockperf server ready');
    const argv = topo.container.exec(['sockperf', 'pp', '--tcp', '-i', topo.target, '-p', String(port), '-m', String(size), '-t', String(OPTS.latencyTime), '--full-rtt']);
    const { r, natCpuPct } = await withCpu(topo.natPid, () => run(argv, { timeoutMs: (OPTS.latencyTime + 30) * 1000, allowFail: true, label: 'sockperf client' }));
    const rttUs = parseSockperf(r);
    const samples = rttUs.samples;
    return { bytes: size, samples, rttUs, p50Us: rttUs.p50, p99Us: rttUs.p99, p999Us: rttUs.p999, natCpuPct, cmd: cmdline(argv) };
  } finally {
    await scope.close();
  }
}

// ICMP echo RTT to the gateway address (both implementations answer it themselves): 500 pings, 10 ms apart.
async function pingRtt(topo) {
  const argv = topo.container.exec(['ping', '-n', '-q', '-c', '500', '-i', '0.01', GATEWAY]);
  const r = await run(argv, { timeoutMs: 60_000, allowFail: true, label: 'ping' });
  const m = /= ([0-9.]+)\/([0-9.]+)\/([0-9.]+)\/([0-9.]+) ms/.exec(r.stdout);
  const lost = /(\d+)% packet loss/.exec(r.stdout);
  if (!m) throw new Error(`ping failed (status ${r.code}): ${firstLine(r.stderr || r.stdout)}`);
  return { rttMs: { min: Number(m[1]), avg: Number(m[2]), max: Number(m[3]), mdev: Number(m[4]) }, avgMs: Number(m[2]), lossPct: lost ? Number(lost[1]) : null, cmd: cmdline(argv) };
}

// Connect + request + close, one connection at a time, for --latency-time s: each connection's
// time from connect() to the server's FIN (the conn client's latency), p50/p99 in ms.
async function crr(topo, ctx) {
  const { r, natCpuPct } = await withCpu(topo.natPid, () => connClient(topo, ctx, { parallel: 1, seconds: OPTS.latencyTime, timeoutMs: 10_000 }));
  return { completed: r.completed, errors: r.errorCount, crrP50Ms: r.latencyMs.p50, crrP99Ms: r.latencyMs.p99, connsPerSec: round(r.connsPerSec, 0), natCpuPct, cmd: r.cmd };
}

const WORKLOADS = [
  { id: 'tcpUp', desc: 'TCP container->host', fn: tcpUp },
  { id: 'tcpDown', desc: 'TCP host->container (-R)', fn: tcpDown },
  { id: 'connRate', desc: 'connection rate', fn: connRate, mtu1500Only: true },
  // Fixed offered loads, for CPU per GB below saturation (a NAT that saturates below the rate
  // reports what it delivered).
  { id: 'load1G', desc: 'TCP container->host at iperf3 -b 1G', fn: (topo) => iperfTcp(topo, false, '1G'), mtu1500Only: true },
  { id: 'load5G', desc: 'TCP container->host at iperf3 -b 5G', fn: (topo) => iperfTcp(topo, false, '5G'), mtu1500Only: true },
  ...(OPTS.latency
    ? [
        { id: 'latency14', desc: 'TCP ping-pong latency, 14 B (sockperf)', fn: (topo) => sockperfPingPong(topo, 14), mtu1500Only: true, seconds: () => OPTS.latencyTime },
        { id: 'latency1024', desc: 'TCP ping-pong latency, 1 KiB (sockperf)', fn: (topo) => sockperfPingPong(topo, 1024), mtu1500Only: true, seconds: () => OPTS.latencyTime },
        { id: 'pingRtt', desc: 'ICMP echo RTT to 10.0.2.2', fn: pingRtt, mtu1500Only: true, seconds: () => 5 },
        { id: 'crr', desc: 'connect+request+close, one at a time', fn: crr, mtu1500Only: true, seconds: () => OPTS.latencyTime },
      ]
    : []),
];

// Result keys: tcpUp1500, tcpDown1500, connRate, tcpUp<jumbo>, tcpDown<jumbo>.
const resultKey = (w, mtu) => (w.mtu1500Only ? w.id : `${w.id}${mtu}`);

async function runImpl(id, ctx) {
  const impl = IMPLS[id];
  const out = { label: impl.label, commands: Object.fromEntries(MTUS.map((m) => [m, impl.describe(m)])), container: {}, results: {} };
  const planned = (mtu) => WORKLOADS.filter((w) => (!w.mtu1500Only || mtu === 1500) && (!OPTS.workloads || OPTS.workloads.includes(w.id)));
  const failAll = (mtus, err) => { for (const m of mtus) for (const w of planned(m)) out.results[resultKey(w, m)] = { error: err.message, mtu: m }; };
  try {
    await impl.start();
  } catch (err) {
    await parkIfAborting();
    failAll(MTUS, err);
    warn(`${id}: ${err.message}`);
    return out;
  }
  for (const mtu of MTUS) {
    const scope = new Scope(`${id}@${mtu}`);
    try {
      info(`${id} @${mtu}: setting up`);
      let topo;
      try {
        topo = await impl.setup(scope, mtu, ctx);
        topo.target ??= GATEWAY;
        topo.nextPort = 0;
        if (OPTS.cc) await run(topo.container.exec(['sysctl', '-q', '-w', `net.ipv4.tcp_congestion_control=${OPTS.cc}`]));
        out.container[mtu] = await inspectContainer(topo.container);
        info(`${id} @${mtu}: container ${out.container[mtu].ifname} ${out.container[mtu].address} mtu ${out.container[mtu].mtu} via ${GATEWAY}; probing TCP`);
        await probe(topo, ctx, id);
      } catch (err) {
        await parkIfAborting();
        failAll([mtu], err);
        warn(`${id} @${mtu}: setup failed: ${err.message}`);
        continue;
      }
      for (const w of planned(mtu)) {
        const key = resultKey(w, mtu);
        const secs = w.seconds ? w.seconds() : w.id === 'connRate' ? OPTS.connTime : OPTS.time;
        info(`${id} @${mtu}: ${w.desc} for ${secs} s`);
        try {
          out.results[key] = { mtu, ...(await w.fn(topo, ctx)) };
          info(`${id} @${mtu}: ${w.id} -> ${summary(out.results[key])}`);
        } catch (err) {
          await parkIfAborting();
          out.results[key] = { error: err.message, mtu };
          warn(`${id} @${mtu}: ${w.id} failed: ${err.message}`);
        }
        if (topo.nat.exitInfo) {
          // The NAT died: nothing more can be measured in this topology.
          const err = new Error(`${topo.nat.label} ${topo.nat.describeExit()}\n${topo.nat.tail(10)}`);
          for (const rest of planned(mtu)) if (!out.results[resultKey(rest, mtu)]) out.results[resultKey(rest, mtu)] = { error: err.message, mtu };
          warn(`${id} @${mtu}: ${err.message}`);
          break;
        }
      }
    } finally {
      await scope.close();
    }
  }
  return out;
}

function summary(r) {
  if (r.crrP50Ms != null) return `connect+request+close p50 ${r.crrP50Ms} ms, p99 ${r.crrP99Ms} ms over ${r.completed} connections, errors ${r.errors}`;
  const cpu = r.natCpuPct != null ? `, NAT process CPU ${r.natCpuPct}%` : '';
  if (r.gbps != null) return `${r.gbps} Gbit/s (sender retransmits ${r.retransmits}${cpu})`;
  if (r.rttUs) return `${r.bytes} B round trip: p50 ${r.rttUs.p50} µs, p99 ${r.rttUs.p99} µs, p99.9 ${r.rttUs.p999} µs, max ${r.rttUs.max} µs over ${r.samples} samples${cpu}`;
  if (r.rttMs) return `ping rtt min/avg/max/mdev ${r.rttMs.min}/${r.rttMs.avg}/${r.rttMs.max}/${r.rttMs.mdev} ms, loss ${r.lossPct}%`;
  if (r.connsPerSec != null) {
    const l = r.latencyMs;
    return `${r.connsPerSec} conn/s (${r.completed} in ${r.seconds} s, ${r.parallel} in flight), errors ${r.errors}` +
      `${r.errors ? ` ${JSON.stringify(r.errorsByKind)}` : ''}; per second ${r.perSecondMin}..${r.perSecondMax}; ` +
      `latency p50 ${l.p50} ms p99 ${l.p99} ms max ${l.max} ms${cpu}, client CPU ${r.clientCpuPct}%, server CPU ${r.server.cpuPct}%` +
      `${r.containerTimeWait != null ? `; TIME_WAIT left in the container: ${r.containerTimeWait}` : ''}`;
  }
  return JSON.stringify(r);
}

// ---- report ----------------------------------------------------------------------------------

function columns() {
  const cols = [];
  for (const mtu of MTUS) {
    cols.push({ key: `tcpUp${mtu}`, head: `ctr->host Gbit/s @${mtu}`, field: 'gbps', digits: 2 });
    cols.push({ key: `tcpDown${mtu}`, head: `-R host->ctr @${mtu}`, field: 'gbps', digits: 2 });
  }
  cols.push({ key: 'connRate', head: 'conn/s', field: 'connsPerSec', digits: 0 });
  cols.push({ key: 'connRate', head: 'conn errors', field: 'errors', digits: 0, noRatio: true });
  if (OPTS.latency) {
    // Latencies: lower is better, so no usernet/slirp4netns ratio in this row (see the JSON).
    cols.push({ key: 'latency14', head: '14B rtt p50 µs', field: 'p50Us', digits: 1, noRatio: true });
    cols.push({ key: 'latency14', head: 'p99', field: 'p99Us', digits: 1, noRatio: true });
    cols.push({ key: 'latency14', head: 'p99.9', field: 'p999Us', digits: 1, noRatio: true });
    cols.push({ key: 'latency1024', head: '1KiB p50', field: 'p50Us', digits: 1, noRatio: true });
    cols.push({ key: 'latency1024', head: 'p99', field: 'p99Us', digits: 1, noRatio: true });
    cols.push({ key: 'pingRtt', head: 'ping ms', field: 'avgMs', digits: 3, noRatio: true });
  }
  return cols;
}

// usernet against each baseline that ran, column by column: the throughput columns in `ratios`
// (higher is better, shown in the table), the latency columns in `latencyRatios` (lower is
// better, in the JSON only).
function usernetRatios(impls, wanted) {
  if (!impls.usernet) return {};
  const out = {};
  for (const b of BASELINES.filter((x) => impls[x])) {
    const r = {};
    for (const c of columns().filter(wanted)) r[c.noRatio ? `${c.key}.${c.field}` : c.key] = ratio(impls.usernet.results[c.key], impls[b].results[c.key], c.field);
    out[`usernet/${b}`] = r;
  }
  return out;
}
const computeRatios = (impls) => usernetRatios(impls, (c) => !c.noRatio);
const computeLatencyRatios = (impls) => usernetRatios(impls, (c) => c.noRatio && c.field !== 'errors');

function table(report) {
  const cols = columns();
  const head = ['implementation', ...cols.map((c) => c.head)];
  const rows = Object.values(report.implementations).map((p) => [p.label, ...cols.map((c) => cell(p.results[c.key], c.field, c.digits))]);
  for (const [name, r] of Object.entries(report.ratios)) rows.push([name, ...cols.map((c) => (c.noRatio ? '' : ratioCell(r[c.key])))]);
  return formatTable(head, rows, Object.keys(report.implementations).length);
}

// ---- main ------------------------------------------------------------------------------------

async function main() {
  abortOnSignals();
  let exitCode = 0;
  const top = new Scope('main');
  const tmp = mkdtempSync(join(tmpdir(), 'ubench-nat-'));
  top.defer('remove temp dir', () => rmSync(tmp, { recursive: true, force: true }));
  try {
    await checkSandbox();
    requireTools(['ip', 'ss', 'iperf3', 'ping', 'nsenter', 'unshare', 'getconf', ...(OPTS.latency ? ['sockperf'] : [])]);
    info(`command: ${COMMAND}`);
    const started = new Date();

    // The connection-rate server, shared by every run: on 127.0.0.1 of the sandbox's root namespace.
    const serverJs = join(tmp, 'conn-server.mjs');
    const clientJs = join(tmp, 'conn-client.mjs');
    writeFileSync(serverJs, CONN_SERVER_JS);
    writeFileSync(clientJs, CONN_CLIENT_JS);
    const connServer = top.proc(new Proc('conn server', [process.execPath, serverJs, HOST_ADDR], { stdin: 'pipe' }));
    connServer.child.stdin.on('error', () => {});
    const connPort = JSON.parse(await connServer.waitLine('stdout', (l) => l.startsWith('{"listening"'), 10_000, 'listening line')).listening;
    const ctx = { tmp, clientJs, connServer, connPort };
    if (OPTS.only.some((i) => i.startsWith('pasta'))) {
      await preparePastaHost(top);
    }
    if (OPTS.cc) await run(['sysctl', '-q', '-w', `net.ipv4.tcp_congestion_control=${OPTS.cc}`]);

    const report = {
      benchmark: 'nat-throughput',
      date: started.toISOString(),
      command: COMMAND,
      cwd: process.cwd(),
      congestionControl: OPTS.cc ?? spawnSync('sysctl', ['-n', 'net.ipv4.tcp_congestion_control'], { encoding: 'utf8' }).stdout.trim(),
      options: { time: OPTS.time, connTime: OPTS.connTime, parallel: OPTS.parallel, only: OPTS.only, mtus: MTUS },
      host: {
        kernel: spawnSync('uname', ['-r'], { encoding: 'utf8' }).stdout.trim(),
        cpus: cpus().length,
        cpuModel: cpus()[0]?.model ?? null,
        node: process.version,
        iperf3: toolVersion(['iperf3', '--version'], /iperf (\S+)/),
        slirp4netns: toolVersion(['slirp4netns', '--version'], /slirp4netns version (\S+)/),
        libslirp: toolVersion(['slirp4netns', '--version'], /libslirp: (\S+)/),
        pasta: OPTS.only.includes('pasta') ? { bin: OPTS.pastaBin, version: toolVersion([OPTS.pastaBin, '--version'], /pasta (\S+)/) } : undefined,
      },
      path: `container (${CONTAINER_ARGV.slice(0, 4).join(' ')}) -> ${GATEWAY} -> host ${HOST_ADDR}; conn server ${HOST_ADDR}:${connPort}`,
      implementations: {},
      ratios: {},
    };
    const order = OPTS.only.map((_, i) => OPTS.only[(i + (OPTS.rotate ?? 0)) % OPTS.only.length]);
    for (const id of order) {
      info(`=== ${id}`);
      report.implementations[id] = await runImpl(id, ctx);
    }
    await parkIfAborting();
    report.ratios = computeRatios(report.implementations);
    report.latencyRatios = computeLatencyRatios(report.implementations);
    report.finished = new Date().toISOString();
    const failed = Object.entries(report.implementations).flatMap(([id, p]) => Object.entries(p.results).filter(([, r]) => r.error).map(([w]) => `${id}/${w}`));
    // "No refusals" is part of the requirement for usernet; slirp4netns's count is reported as measured.
    const connErrors = Object.fromEntries(Object.entries(report.implementations).map(([id, p]) => [id, p.results.connRate?.errors ?? null]));
    report.connErrors = connErrors;
    if (connErrors.usernet) failed.push(`usernet/connRate (${connErrors.usernet} failed connections)`);
    if (failed.length) { exitCode = 1; report.failed = failed; }

    const file = writeResults('nat-throughput', started, report);

    if (OPTS.jsonOnly) {
      process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    } else {
      const out = [];
      out.push('', `NAT throughput: container -> ${GATEWAY} -> host ${HOST_ADDR}; iperf3 ${report.host.iperf3}, ${OPTS.time} s per run, one stream, ` +
        `receiver Gbit/s; connection rate ${OPTS.connTime} s, ${OPTS.parallel} in flight; ${report.host.cpus} CPUs, kernel ${report.host.kernel}`, '');
      out.push(table(report), '');
      for (const [id, p] of Object.entries(report.implementations)) {
        out.push(`${id}: ${p.commands[1500]}`);
        for (const [mtu, c] of Object.entries(p.container)) out.push(`  container @${mtu}: ${c.ifname} (${c.kind}) ${c.address} mtu ${c.mtu}, default via ${c.gateway}`);
        for (const [w, r] of Object.entries(p.results)) {
          if (r.error) out.push(`  ${w}: error: ${r.error.split('\n').join('\n    ')}`);
          else out.push(`  ${w}: ${summary(r)}`);
        }
      }
      out.push('');
      for (const [id, n] of Object.entries(connErrors)) {
        if (n != null) out.push(`no refused/failed connections: ${id} ${n === 0 ? 'yes' : `NO (${n}: ${JSON.stringify(report.implementations[id].results.connRate.errorsByKind)})`}`);
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

runInSandbox(SCRIPT, 'nat-throughput', COMMAND, main);
