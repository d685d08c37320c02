#!/usr/bin/env node
// End-to-end benchmark of published ports (port forwarding into a container): a client on the
// host connects to 127.0.0.1:PORT, forwarded to a server in a container (a rootless-style user +
// network namespace), by each implementation one after another, with a table and usernet's
// ratios to slirp4netns and pasta at the end.
//
//   node bench/e2e/publish-throughput.mjs [--time N] [--conn-time N] [--parallel N]
//                                         [--only slirp4netns,pasta,usernet] [--no-jumbo]
//                                         [--jumbo-mtu N] [--pasta-bin PATH] [--json-only]
//
// Implementations (the container gets 10.0.2.100 via 10.0.2.2 from both):
//   slirp4netns  `slirp4netns --configure --mtu=N --ready-fd=3 --api-socket S PID tap0`, then its
//                API's add_hostfwd for each port ({"execute":"add_hostfwd","arguments":{"proto":
//                "tcp","host_addr":"127.0.0.1","host_port":P,"guest_port":G}}), as rootlesskit's
//                port driver "slirp4netns" does.
//   pasta        rootlesskit's pasta wiring (lib.mjs PASTA) with its own port forwarding, one
//                `-t 127.0.0.1/P:G` per port, as Podman's default for rootless pasta does: pasta
//                splices a connection from the host's loopback to the container's loopback
//                (two sockets and splice(2), no frames), its best path. PASTA_BIN or --pasta-bin
//                picks the build.
//   usernet      `usernet daemon`, then `usernet attach --configure -p 127.0.0.1:P:G ...`.
// A fresh NAT process and a fresh container per MTU.
//
// Workloads (host 127.0.0.1:P -> container:G):
//   tcp in    iperf3 TCP, one stream, host client -> container server, receiver Gbit/s, at MTU
//             1500 and 65520 (the container's interface MTU)
//   tcp out   the same with `iperf3 -R` (the container's server sends)
//   conn/s    (MTU 1500) short connections for --conn-time seconds (default 30), --parallel
//             (default 32) in flight: connect, "ping n", read "pong n" and the server's FIN, close.
//             Every refusal, reset or timeout is counted (usernet's requirement: zero).
//   latency   (MTU 1500) sockperf TCP ping-pong through the published port, 14 B and 1 KiB, for
//             --latency-time s each (default 10): p50/p99/p99.9 round trips (server in the
//             container, client on the host)
//   crr       (MTU 1500) connect + request + close, one at a time, for --latency-time s: each
//             connection's time from connect() to the server's FIN, p50/p99 (ms)
// Also reported: the NAT process's CPU (% of one core) during each workload.
//
// Safety: as the other e2e benchmarks: inside a private network namespace whose default routes
// are blackholes (re-executed through test/sandbox/netsandbox.sh unless USERNET_SANDBOX=1 or
// NETSANDBOX=1); clients and listeners on 127.0.0.1 only; every process stopped on exit, failure
// and Ctrl-C. Results go to bench/results/publish-throughput-<date>.json.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { cpus, tmpdir } from 'node:os';
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
const ALL_IMPLS = ['slirp4netns', 'pasta', 'usernet'];
/** usernet's ratios are taken to each of these present in the run. */
const BASELINES = ['slirp4netns', 'pasta'];
const GATEWAY = '10.0.2.2';
const HOST_ADDR = '127.0.0.1';
/** Server ports inside the container. */
const IPERF_PORT = 5201;
const CONN_PORT = 7000;

// ---- usernet CLI contract ----------------------------------------------------------------------
const USERNET = {
  bin: join(ROOT, 'bin', 'usernet.js'),
  built: join(ROOT, 'dist', 'src', 'cli', 'main.js'),
  daemonArgs: ({ socket, stateDir, mtu }) => ['daemon', '--socket', socket, '--state-dir', stateDir, '--log-level', 'info', ...(mtu !== 1500 ? ['--mtu', String(mtu)] : [])],
  isReady: (rec) => rec.msg === 'listening',
  attachArgs: ({ socket, pid, mtu, ports }) => ['attach', '--socket', socket, '--pid', String(pid), '--name', 'c1', '--configure',
    ...(mtu !== 1500 ? ['--mtu', String(mtu)] : []),
    ...ports.flatMap(([host, guest]) => ['-p', `${HOST_ADDR}:${host}:${guest}`])],
  ifname: 'eth0',
};

// ---- slirp4netns ---------------------------------------------------------------------------------
const SLIRP = {
  args: ({ pid, mtu, apiSocket }) => ['--configure', `--mtu=${mtu}`, '--ready-fd=3', `--api-socket=${apiSocket}`, String(pid), 'tap0'],
  ifname: 'tap0',
};

/** One request on slirp4netns's API socket (one JSON request per connection); resolves with the reply. */
function slirpApi(socketPath, request) {
  return new Promise((resolve, reject) => {
    const s = connect(socketPath);
    let data = '';
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`slirp4netns API: no answer to ${JSON.stringify(request)}`)); }, 10_000);
    s.on('connect', () => s.end(JSON.stringify(request)));
    s.on('data', (d) => (data += d));
    s.on('error', (err) => { clearTimeout(timer); reject(err); });
    s.on('close', () => {
      clearTimeout(timer);
      try { resolve(JSON.parse(data)); } catch { reject(new Error(`slirp4netns API: not JSON: ${data}`)); }
    });
  });
}

// ---- arguments -----------------------------------------------------------------------------------

function usage(code) {
  const text = `usage: node bench/e2e/publish-throughput.mjs [options]
  --time N          seconds per iperf3 run (default 10)
  --conn-time N     seconds of the connection-rate test (default 30)
  --parallel N      connections in flight in the connection-rate test (default 32)
  --only LIST       comma-separated: ${ALL_IMPLS.join(',')} (default all)
  --jumbo-mtu N     MTU of the large-MTU runs (default 65520)
  --no-jumbo        skip the large-MTU runs
  --latency-time N  seconds of each sockperf ping-pong and of the crr test (default 10)
  --no-latency      skip latency14, latency1024 and crr
  --rotate N        start with the N-th implementation (bench/e2e/repeat.mjs varies it per run)
  --pasta-bin PATH  the pasta binary (default $PASTA_BIN or pasta)
  --json-only       print only the results JSON on stdout
  -h, --help        this text
Runs inside a network sandbox (test/sandbox/netsandbox.sh); needs root, iperf3, iproute2,
util-linux (unshare, nsenter), slirp4netns, pasta (passt); usernet built (npm install && npm run build).`;
  (code ? process.stderr : process.stdout).write(text + '\n');
  process.exit(code);
}

function fail(msg) {
  process.stderr.write(`publish-throughput: ${msg}\n`);
  usage(2);
}

function parseArgs(argv) {
  const o = { time: 10, connTime: 30, parallel: 32, only: ALL_IMPLS, jsonOnly: false, jumboMtu: 65520, jumbo: true, latencyTime: 10, latency: true, rotate: 0,
    pastaBin: process.env.PASTA_BIN || 'pasta' };
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
        const only = value().split(',').map((s) => s.trim()).filter(Boolean);
        const bad = only.filter((p) => !ALL_IMPLS.includes(p));
        if (bad.length || !only.length) fail(`--only: unknown implementation(s) ${bad.join(',') || '(none given)'}; known: ${ALL_IMPLS.join(',')}`);
        o.only = ALL_IMPLS.filter((p) => only.includes(p));
        break;
      }
      case '--jumbo-mtu': o.jumboMtu = int(flag, value(), 1501, 65520); break;
      case '--no-jumbo': o.jumbo = false; break;
      case '--json-only': o.jsonOnly = true; break;
      case '--latency-time': o.latencyTime = Number(value()); if (!Number.isInteger(o.latencyTime) || o.latencyTime < 1 || o.latencyTime > 3600) fail('--latency-time must be an integer 1..3600'); break;
      case '--no-latency': o.latency = false; break;
      case '--pasta-bin': o.pastaBin = value(); break;
      case '--rotate': o.rotate = Number(value()); if (!Number.isInteger(o.rotate) || o.rotate < 0) fail('--rotate must be an integer ≥ 0'); break;
      case '-h': case '--help': usage(0); break;
      default: fail(`unknown argument ${a}`);
    }
  }
  return o;
}

const COMMAND = cmdline(['node', relative(process.cwd(), SCRIPT) || SCRIPT, ...process.argv.slice(2)]);
const OPTS = parseArgs(process.argv.slice(2));
const MTUS = OPTS.jumbo ? [1500, OPTS.jumboMtu] : [1500];
setQuiet(OPTS.jsonOnly);

// ---- the implementations -------------------------------------------------------------------------

async function inspectContainer(ep) {
  const addr = await run(ep.exec(['ip', '-4', '-o', 'addr', 'show', 'dev', ep.ifname]), { allowFail: true });
  const link = await run(ep.exec(['ip', '-o', 'link', 'show', 'dev', ep.ifname]), { allowFail: true });
  const address = addr.stdout.match(/inet (\S+)/)?.[1] ?? null;
  const mtu = Number(link.stdout.match(/\bmtu (\d+)/)?.[1]) || null;
  if (!address) throw new Error(`the container's ${ep.ifname} has no IPv4 address`);
  return { ifname: ep.ifname, address, mtu };
}

const IMPLS = {
  slirp4netns: {
    describe: (mtu) => `slirp4netns ${cmdline(SLIRP.args({ pid: 'PID', mtu, apiSocket: 'API.sock' }))}; add_hostfwd tcp ${HOST_ADDR}:P -> guest port G (as root; container: ${cmdline(CONTAINER_ARGV)})`,
    async start() { requireTools(['slirp4netns']); },
    async setup(scope, mtu, ctx, ports) {
      const dir = mkdtempSync(join(ctx.tmp, `slirp-${mtu}-`));
      const apiSocket = join(dir, 'api.sock');
      const holder = await startContainer(scope, 'container');
      const nat = scope.proc(new Proc('slirp4netns', ['slirp4netns', ...SLIRP.args({ pid: holder.pid, mtu, apiSocket })], { extraFds: 1 }));
      await nat.waitReadyFd(3, 20_000, 'ready fd "1"');
      for (const [host, guest] of ports) {
        const reply = await slirpApi(apiSocket, { execute: 'add_hostfwd', arguments: { proto: 'tcp', host_addr: HOST_ADDR, host_port: host, guest_port: guest } });
        if (reply.return?.id === undefined) throw new Error(`slirp4netns add_hostfwd ${host}->${guest}: ${JSON.stringify(reply)}`);
      }
      return { container: pidEndpoint(holder.pid, SLIRP.ifname), natPid: nat.pid, nat };
    },
  },
  pasta: {
    describe: (mtu) => `${OPTS.pastaBin} ${cmdline(PASTA.args({ pid: 'PID', mtu, pidFile: 'pasta.pid', tcpHost: [`${HOST_ADDR}/P:G`] }))} ` +
      `(one -t per published port; as root; container: ${cmdline(CONTAINER_ARGV)}; host template: a veth uplink on 203.0.113.1/24 with a metric-1000 default route behind the blackhole)`,
    async start() { requireTools([OPTS.pastaBin]); },
    async setup(scope, mtu, ctx, ports) {
      const tcpHost = ports.map(([host, guest]) => `${HOST_ADDR}/${host}:${guest}`);
      const { container, nat } = await startPasta(scope, OPTS.pastaBin, mkdtempSync(join(ctx.tmp, `pasta-${mtu}-`)), { mtu, tcpHost });
      return { container, natPid: nat.pid, nat };
    },
  },
  usernet: {
    describe: (mtu) => `node bin/usernet.js ${cmdline(USERNET.daemonArgs({ socket: 'S', stateDir: 'D', mtu }))}; ` +
      `node bin/usernet.js ${cmdline(USERNET.attachArgs({ socket: 'S', pid: 'PID', mtu, ports: [['P', 'G']] }))} (as root; container: ${cmdline(CONTAINER_ARGV)})`,
    async start() {
      for (const f of [USERNET.bin, USERNET.built]) {
        if (!existsSync(f)) throw new Error(`usernet is not built: ${relative(ROOT, f)} is missing (run \`npm install && npm run build\` in ${ROOT})`);
      }
    },
    async setup(scope, mtu, ctx, ports) {
      const dir = mkdtempSync(join(ctx.tmp, `usernet-${mtu}-`));
      const socket = join(dir, 'usernet.sock');
      const stateDir = join(dir, 'state');
      mkdirSync(stateDir, { recursive: true });
      const d = scope.proc(new Proc('usernet daemon', [process.execPath, USERNET.bin, ...USERNET.daemonArgs({ socket, stateDir, mtu })]));
      await d.waitLine('stderr', (l) => { try { return USERNET.isReady(JSON.parse(l)); } catch { return false; } }, 20_000, 'ready log line');
      const holder = await startContainer(scope, 'container');
      try {
        await run([process.execPath, USERNET.bin, ...USERNET.attachArgs({ socket, pid: holder.pid, mtu, ports })], { timeoutMs: 30_000, label: 'usernet attach' });
      } catch (err) {
        throw new Error(`${err.message}\n  daemon log tail:\n${d.tail(10)}`);
      }
      return { container: pidEndpoint(holder.pid, USERNET.ifname), natPid: d.pid, nat: d };
    },
  },
};

// ---- workloads -----------------------------------------------------------------------------------

/** iperf3 server in the container (one test), client on the host through the published port. */
async function iperfTcp(topo, ctx, reverse) {
  const scope = new Scope('iperf3');
  try {
    const srv = scope.proc(new Proc('iperf3 server', topo.container.exec(['iperf3', '-s', '-1', '--forceflush', '-p', String(IPERF_PORT)])));
    await srv.waitLine('stdout', (l) => l.includes('Server listening'), 10_000, '"Server listening"');
    const argv = ['iperf3', '-c', HOST_ADDR, '-p', String(ctx.iperfHostPort), '-t', String(OPTS.time), '-J', '--connect-timeout', '5000', ...(reverse ? ['-R'] : [])];
    const { r, natCpuPct } = await withCpu(topo.natPid, () => run(argv, { timeoutMs: (OPTS.time + 40) * 1000, allowFail: true, label: 'iperf3 client' }));
    let json;
    try { json = JSON.parse(r.stdout); } catch { throw new Error(`iperf3 client gave no JSON (status ${r.code}): ${firstLine(r.stderr || r.stdout)}`); }
    if (json.error) throw new Error(`iperf3: ${json.error}`);
    if (r.code !== 0) throw new Error(`iperf3 client exited with status ${r.code}`);
    const rx = json.end.sum_received;
    if (!rx?.bytes) throw new Error('TCP connected but no data arrived');
    return { gbps: round(rx.bits_per_second / 1e9, 3), seconds: round(rx.seconds, 2), retransmits: json.end.sum_sent?.retransmits ?? null, natCpuPct, cmd: cmdline(argv) };
  } finally {
    await scope.close();
  }
}

async function connClient(ctx, { parallel, seconds, timeoutMs, count }) {
  const argv = [process.execPath, ctx.clientJs, HOST_ADDR, String(ctx.connHostPort), String(parallel), String(seconds), String(timeoutMs), ...(count ? [String(count)] : [])];
  const r = await run(argv, { timeoutMs: (seconds + timeoutMs / 1000 + 30) * 1000, allowFail: true, label: 'conn client' });
  try { return { ...JSON.parse(r.stdout.trim().split('\n').pop()), cmd: cmdline(argv) }; } catch {
    throw new Error(`conn client gave no result (status ${r.code}): ${firstLine(r.stderr || r.stdout) || '(no output)'}`);
  }
}

async function connRate(topo, ctx) {
  const { r, natCpuPct } = await withCpu(topo.natPid, () => connClient(ctx, { parallel: OPTS.parallel, seconds: OPTS.connTime, timeoutMs: 10_000 }));
  const ps = r.perSecond.slice(0, Math.max(1, Math.floor(r.seconds)));
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
    natCpuPct,
    clientCpuPct: round(r.clientCpuPct, 0),
    cmd: r.cmd,
  };
}

// sockperf ping-pong through the published port: server in the container on IPERF_PORT (free
// between iperf3 tests), client on the host to 127.0.0.1:P.
async function sockperfPingPong(topo, ctx, size) {
  const scope = new Scope('sockperf');
  try {
    const srv = scope.proc(new Proc('sockperf server', topo.container.exec(['sockperf', 'sr', '--tcp', '-i', '0.0.0.0', '-p', String(IPERF_PORT)])));
    await srv.waitLine('stdout', sockperfReady, 10_000, 'sockperf server ready');
    const argv = ['sockperf', 'pp', '--tcp', '-i', HOST_ADDR, '-p', String(ctx.iperfHostPort), '-m', String(size), '-t', String(OPTS.latencyTime), '--full-rtt'];
    const { r, natCpuPct } = await withCpu(topo.natPid, () => run(argv, { timeoutMs: (OPTS.latencyTime + 30) * 1000, allowFail: true, label: 'sockperf client' }));
    const t = parseSockperf(r);
    return { bytes: size, samples: t.samples, p50Us: t.p50, p99Us: t.p99, p999Us: t.p999, natCpuPct, cmd: cmdline(argv) };
  } finally {
    await scope.close();
  }
}

// Connect + request + close, one connection at a time: each one's latency, from the conn client.
async function crr(topo, ctx) {
  const { r, natCpuPct } = await withCpu(topo.natPid, () => connClient(ctx, { parallel: 1, seconds: OPTS.latencyTime, timeoutMs: 10_000 }));
  return { completed: r.completed, errors: r.errorCount, crrP50Ms: r.latencyMs.p50, crrP99Ms: r.latencyMs.p99, connsPerSec: round(r.connsPerSec, 0), natCpuPct, cmd: r.cmd };
}

// The ping-pongs first: they listen on IPERF_PORT in the container, which an iperf3 -R test
// leaves in TIME_WAIT there (the container's server closed first), and sockperf binds without
// SO_REUSEADDR (seen: EADDRINUSE in one run of five).
const WORKLOADS = [
  ...(OPTS.latency ? [
    { id: 'latency14', desc: 'TCP ping-pong 14 B (sockperf)', fn: (t, c) => sockperfPingPong(t, c, 14), mtu1500Only: true },
    { id: 'latency1024', desc: 'TCP ping-pong 1 KiB (sockperf)', fn: (t, c) => sockperfPingPong(t, c, 1024), mtu1500Only: true },
  ] : []),
  { id: 'tcpIn', desc: 'TCP host->container', fn: (t, c) => iperfTcp(t, c, false) },
  { id: 'tcpOut', desc: 'TCP container->host (-R)', fn: (t, c) => iperfTcp(t, c, true) },
  { id: 'connRate', desc: 'connection rate', fn: connRate, mtu1500Only: true },
  ...(OPTS.latency ? [{ id: 'crr', desc: 'connect+request+close, one at a time', fn: crr, mtu1500Only: true }] : []),
];
const resultKey = (w, mtu) => (w.mtu1500Only ? w.id : `${w.id}${mtu}`);

async function runImpl(id, ctx) {
  const impl = IMPLS[id];
  const out = { label: id, commands: Object.fromEntries(MTUS.map((m) => [m, impl.describe(m)])), container: {}, results: {} };
  const planned = (mtu) => WORKLOADS.filter((w) => !w.mtu1500Only || mtu === 1500);
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
        ctx.iperfHostPort = await freePort(HOST_ADDR);
        ctx.connHostPort = await freePort(HOST_ADDR);
        topo = await impl.setup(scope, mtu, ctx, [[ctx.iperfHostPort, IPERF_PORT], [ctx.connHostPort, CONN_PORT]]);
        out.container[mtu] = await inspectContainer(topo.container);
        // The connection-rate server in the container, for this topology.
        const connServer = scope.proc(new Proc('conn server', topo.container.exec([process.execPath, ctx.serverJs, '0.0.0.0', String(CONN_PORT)]), { stdin: 'pipe' }));
        connServer.child.stdin.on('error', () => {});
        await connServer.waitLine('stdout', (l) => l.startsWith('{"listening"'), 10_000, 'listening line');
        const probe = await connClient(ctx, { parallel: 1, seconds: 0, timeoutMs: 5000, count: 1 });
        if (probe.completed !== 1) throw new Error(`no connection through ${HOST_ADDR}:${ctx.connHostPort} to the container: ${Object.keys(probe.errors).join(', ') || 'no answer'}`);
        info(`${id} @${mtu}: container ${out.container[mtu].ifname} ${out.container[mtu].address} mtu ${out.container[mtu].mtu}; published ${HOST_ADDR}:${ctx.iperfHostPort}->${IPERF_PORT}, ${HOST_ADDR}:${ctx.connHostPort}->${CONN_PORT}`);
      } catch (err) {
        await parkIfAborting();
        failAll([mtu], err);
        warn(`${id} @${mtu}: setup failed: ${err.message}`);
        continue;
      }
      for (const w of planned(mtu)) {
        const key = resultKey(w, mtu);
        info(`${id} @${mtu}: ${w.desc} for ${w.id === 'connRate' ? OPTS.connTime : OPTS.time} s`);
        try {
          out.results[key] = { mtu, ...(await w.fn(topo, ctx)) };
          info(`${id} @${mtu}: ${w.id} -> ${summary(out.results[key])}`);
        } catch (err) {
          await parkIfAborting();
          out.results[key] = { error: err.message, mtu };
          warn(`${id} @${mtu}: ${w.id} failed: ${err.message}`);
        }
        if (topo.nat.exitInfo) {
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
  if (r.p50Us != null && r.rttUs == null) return `${r.bytes} B round trip: p50 ${r.p50Us} µs, p99 ${r.p99Us} µs, p99.9 ${r.p999Us} µs over ${r.samples} samples`;
  const cpu = r.natCpuPct != null ? `, NAT process CPU ${r.natCpuPct}%` : '';
  if (r.gbps != null) return `${r.gbps} Gbit/s (sender retransmits ${r.retransmits}${cpu})`;
  if (r.connsPerSec != null) {
    const l = r.latencyMs;
    return `${r.connsPerSec} conn/s (${r.completed} in ${r.seconds} s, ${r.parallel} in flight), errors ${r.errors}` +
      `${r.errors ? ` ${JSON.stringify(r.errorsByKind)}` : ''}; per second ${r.perSecondMin}..${r.perSecondMax}; ` +
      `latency p50 ${l.p50} ms p99 ${l.p99} ms max ${l.max} ms${cpu}, client CPU ${r.clientCpuPct}%`;
  }
  return JSON.stringify(r);
}

// ---- report --------------------------------------------------------------------------------------

function columns() {
  const cols = [];
  for (const mtu of MTUS) {
    cols.push({ key: `tcpIn${mtu}`, head: `host->ctr Gbit/s @${mtu}`, field: 'gbps', digits: 2 });
    cols.push({ key: `tcpOut${mtu}`, head: `-R ctr->host @${mtu}`, field: 'gbps', digits: 2 });
  }
  cols.push({ key: 'connRate', head: 'conn/s', field: 'connsPerSec', digits: 0 });
  cols.push({ key: 'connRate', head: 'conn errors', field: 'errors', digits: 0, noRatio: true });
  if (OPTS.latency) {
    for (const b of [14, 1024]) for (const f of ['p50Us', 'p99Us']) cols.push({ key: `latency${b}`, head: `${b} B ${f.slice(0, -2)} µs`, field: f, digits: 0 });
    cols.push({ key: 'crr', head: 'crr p99 ms', field: 'crrP99Ms', digits: 2 });
  }
  return cols;
}

function table(report) {
  const cols = columns();
  const head = ['implementation', ...cols.map((c) => c.head)];
  const rows = Object.values(report.implementations).map((p) => [p.label, ...cols.map((c) => cell(p.results[c.key], c.field, c.digits))]);
  for (const [name, r] of Object.entries(report.ratios)) rows.push([name, ...cols.map((c) => (c.noRatio ? '' : ratioCell(r[c.key])))]);
  return formatTable(head, rows, Object.keys(report.implementations).length);
}

function computeRatios(impls) {
  if (!impls.usernet) return {};
  const out = {};
  for (const b of BASELINES.filter((id) => impls[id])) {
    const r = {};
    for (const c of columns()) if (!c.noRatio) r[c.key] = ratio(impls.usernet.results[c.key], impls[b].results[c.key], c.field);
    out[`usernet/${b}`] = r;
  }
  return out;
}

// ---- main ----------------------------------------------------------------------------------------

async function main() {
  abortOnSignals();
  let exitCode = 0;
  const top = new Scope('main');
  const tmp = mkdtempSync(join(tmpdir(), 'ubench-publish-'));
  top.defer('remove temp dir', () => rmSync(tmp, { recursive: true, force: true }));
  try {
    await checkSandbox();
    requireTools(['ip', 'iperf3', 'nsenter', 'unshare', 'getconf']);
    info(`command: ${COMMAND}`);
    const started = new Date();
    const serverJs = join(tmp, 'conn-server.mjs');
    const clientJs = join(tmp, 'conn-client.mjs');
    writeFileSync(serverJs, CONN_SERVER_JS);
    writeFileSync(clientJs, CONN_CLIENT_JS);
    const ctx = { tmp, serverJs, clientJs, iperfHostPort: 0, connHostPort: 0 };
    const report = {
      benchmark: 'publish-throughput',
      date: started.toISOString(),
      command: COMMAND,
      options: { time: OPTS.time, connTime: OPTS.connTime, parallel: OPTS.parallel, only: OPTS.only, mtus: MTUS },
      host: {
        kernel: spawnSync('uname', ['-r'], { encoding: 'utf8' }).stdout.trim(),
        cpus: cpus().length,
        cpuModel: cpus()[0]?.model ?? null,
        node: process.version,
        iperf3: toolVersion(['iperf3', '--version'], /iperf (\S+)/),
        slirp4netns: toolVersion(['slirp4netns', '--version'], /slirp4netns version (\S+)/),
        libslirp: toolVersion(['slirp4netns', '--version'], /libslirp: (\S+)/),
        pasta: OPTS.only.includes('pasta') ? { bin: OPTS.pastaBin, version: toolVersion([OPTS.pastaBin, '--version'], /pasta (\S+)/) } : null,
      },
      path: `host client -> ${HOST_ADDR}:P (published) -> container ${IPERF_PORT}/${CONN_PORT}`,
      implementations: {},
      ratios: {},
    };
    if (OPTS.only.includes('pasta')) await preparePastaHost(top);
    const order = OPTS.only.map((_, i) => OPTS.only[(i + OPTS.rotate) % OPTS.only.length]);
    for (const id of order) {
      info(`=== ${id}`);
      report.implementations[id] = await runImpl(id, ctx);
    }
    await parkIfAborting();
    report.ratios = computeRatios(report.implementations);
    report.finished = new Date().toISOString();
    const failed = Object.entries(report.implementations).flatMap(([id, p]) => Object.entries(p.results).filter(([, r]) => r.error).map(([w]) => `${id}/${w}`));
    const connErrors = Object.fromEntries(Object.entries(report.implementations).map(([id, p]) => [id, p.results.connRate?.errors ?? null]));
    report.connErrors = connErrors;
    if (connErrors.usernet) failed.push(`usernet/connRate (${connErrors.usernet} failed connections)`);
    if (failed.length) { exitCode = 1; report.failed = failed; }
    const file = writeResults('publish-throughput', started, report);
    if (OPTS.jsonOnly) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    else {
      const out = ['', `Published ports: host client -> ${HOST_ADDR}:P -> container; iperf3 ${report.host.iperf3}, ${OPTS.time} s per run, one stream, receiver Gbit/s; ` +
        `connection rate ${OPTS.connTime} s, ${OPTS.parallel} in flight; ${report.host.cpus} CPUs, kernel ${report.host.kernel}`, '', table(report), ''];
      for (const [id, p] of Object.entries(report.implementations)) {
        out.push(`${id}: ${p.commands[1500]}`);
        for (const [mtu, c] of Object.entries(p.container)) out.push(`  container @${mtu}: ${c.ifname} ${c.address} mtu ${c.mtu}`);
        for (const [w, r] of Object.entries(p.results)) out.push(r.error ? `  ${w}: error: ${r.error.split('\n').join('\n    ')}` : `  ${w}: ${summary(r)}`);
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

runInSandbox(SCRIPT, 'publish-throughput', COMMAND, main);
