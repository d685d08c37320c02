// Shared by the end-to-end benchmarks (bench/e2e/*-throughput.mjs): child processes with their
// output kept as lines, scoped cleanup that also runs on Ctrl-C, the network-sandbox checks and
// re-exec, and a few measuring helpers. Plain JavaScript, so a benchmark runs with `node` alone.
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants as fsc, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SANDBOX_WRAPPER = join(ROOT, 'test', 'sandbox', 'netsandbox.sh');

// The container: a rootless-style user + network namespace; prints "ready" once unshared.
export const CONTAINER_ARGV = ['unshare', '--user', '--map-root-user', '--net', 'sh', '-c', 'echo ready; exec sleep infinity'];

export const shq = (s) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${String(s).replace(/'/g, `'\\''`)}'`);
export const cmdline = (argv) => argv.map(shq).join(' ');
export const firstLine = (s) => String(s).split('\n')[0];
export const round = (x, d = 2) => (x == null || !Number.isFinite(x) ? null : Math.round(x * 10 ** d) / 10 ** d);

export function signalNumber(sig) {
  return { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 }[sig];
}

// ---- logging ---------------------------------------------------------------------------------

let quiet = false;
/** --json-only: progress lines are silenced (warnings are not). */
export function setQuiet(q) { quiet = q; }
export function info(msg) { if (!quiet) process.stderr.write(`[bench] ${msg}\n`); }
export function warn(msg) { process.stderr.write(`[bench] ${msg}\n`); }

// ---- processes and cleanup -------------------------------------------------------------------

export const live = new Set(); // every child process we started and that has not exited yet

export class Proc {
  // argv[0] is the program; stdout/stderr are split into lines kept in a bounded history.
  // extraFds: that many more pipes as fds 3, 4, ... (child.stdio[3] ...), e.g. a ready fd.
  constructor(label, argv, { stdin = 'ignore', keepAll = false, env, extraFds = 0 } = {}) {
    this.label = label;
    this.argv = argv;
    this.keepAll = keepAll;
    this.text = { stdout: '', stderr: '' };
    this.lines = { stdout: [], stderr: [] };
    this.partial = { stdout: '', stderr: '' };
    this.waiters = new Set();
    this.exitInfo = null;
    this.child = spawn(argv[0], argv.slice(1), { stdio: [stdin, 'pipe', 'pipe', ...Array(extraFds).fill('pipe')], env: env ?? process.env });
    live.add(this);
    this.exited = new Promise((res) => {
      const done = (info) => {
        if (this.exitInfo) return;
        for (const s of ['stdout', 'stderr']) if (this.partial[s]) this._line(s, this.partial[s]);
        this.exitInfo = info;
        live.delete(this);
        for (const w of this.waiters) w.onExit(info);
        res(info);
      };
      this.child.on('error', (err) => done({ code: null, signal: null, error: err }));
      // 'close' (not 'exit') so that all output has been read.
      this.child.on('close', (code, signal) => done({ code, signal }));
    });
    for (const s of ['stdout', 'stderr']) {
      this.child[s].setEncoding('utf8');
      this.child[s].on('data', (chunk) => {
        if (this.keepAll) this.text[s] += chunk;
        const parts = (this.partial[s] + chunk).split('\n');
        this.partial[s] = parts.pop();
        for (const l of parts) this._line(s, l);
      });
    }
  }

  get pid() { return this.child.pid; }

  _line(stream, line) {
    const h = this.lines[stream];
    h.push(line);
    if (h.length > 400) h.splice(0, h.length - 200);
    for (const w of this.waiters) w.onLine(stream, line);
  }

  tail(n = 15) {
    const out = [...this.lines.stderr.slice(-n), ...this.lines.stdout.slice(-n)].filter((l) => l.trim());
    return out.length ? out.map((l) => `    | ${l}`).join('\n') : '    | (no output)';
  }

  describeExit(info = this.exitInfo) {
    if (!info) return 'still running';
    if (info.error) return info.error.code === 'ENOENT' ? `${this.argv[0]}: command not found` : info.error.message;
    return info.signal ? `killed by ${info.signal}` : `exited with status ${info.code}`;
  }

  // Resolve with the first line on `stream` (already seen or future) for which pred(line) holds.
  waitLine(stream, pred, timeoutMs, what) {
    for (const l of this.lines[stream]) if (pred(l)) return Promise.resolve(l);
    return new Promise((res, rej) => {
      const w = {
        onLine: (s, l) => { if (s === stream && pred(l)) finish(null, l); },
        onExit: (info) => finish(new Error(`${this.label} ${this.describeExit(info)} before ${what}\n${this.tail()}`)),
      };
      const timer = setTimeout(() => finish(new Error(`${this.label}: no ${what} within ${timeoutMs} ms\n${this.tail()}`)), timeoutMs);
      const finish = (err, l) => {
        clearTimeout(timer);
        this.waiters.delete(w);
        err ? rej(err) : res(l);
      };
      this.waiters.add(w);
      if (this.exitInfo) w.onExit(this.exitInfo);
    });
  }

  // slirp4netns-style readiness: resolve once the child writes "1" to its fd `fd`.
  waitReadyFd(fd, timeoutMs, what) {
    const s = this.child.stdio[fd];
    return new Promise((res, rej) => {
      let got = '';
      let settled = false;
      const finish = (err) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        err ? rej(err) : res();
      };
      const timer = setTimeout(() => finish(new Error(`${this.label}: no ${what} within ${timeoutMs} ms\n${this.tail()}`)), timeoutMs);
      s.setEncoding('utf8');
      s.on('data', (d) => { got += d; if (got.includes('1')) finish(); });
      s.on('end', () => finish(got.includes('1') ? null : new Error(`${this.label} closed its ready fd without writing "1"\n${this.tail()}`)));
      s.on('error', (err) => finish(new Error(`${this.label}: ready fd: ${err.message}`)));
      this.exited.then((i) => finish(new Error(`${this.label} ${this.describeExit(i)} before ${what}\n${this.tail()}`)));
    });
  }

  async stop(signal = 'SIGTERM', graceMs = 3000) {
    if (this.exitInfo) return this.exitInfo;
    try { this.child.kill(signal); } catch {}
    const t = setTimeout(() => { try { this.child.kill('SIGKILL'); } catch {} }, graceMs);
    const info = await this.exited;
    clearTimeout(t);
    return info;
  }
}

// Run a command to completion; reject on failure (unless allowFail) with its output.
export async function run(argv, { timeoutMs = 30_000, allowFail = false, label = argv[0] } = {}) {
  const p = new Proc(label, argv, { keepAll: true });
  let timedOut = false;
  const t = setTimeout(() => { timedOut = true; p.stop('SIGTERM', 2000); }, timeoutMs);
  const info = await p.exited;
  clearTimeout(t);
  const res = { code: info.code, stdout: p.text.stdout, stderr: p.text.stderr };
  if (info.error || timedOut || (!allowFail && info.code !== 0)) {
    const why = timedOut ? `timed out after ${timeoutMs} ms` : p.describeExit(info);
    throw new Error(`\`${cmdline(argv)}\` ${why}${p.text.stderr.trim() ? `:\n${p.tail(8)}` : ''}`);
  }
  return res;
}

// A Scope owns things to undo, undone in reverse order; open scopes are closed on abort.
export const openScopes = new Set();
export class Scope {
  constructor(name) { this.name = name; this.undo = []; openScopes.add(this); }
  defer(what, fn) { this.undo.push({ what, fn }); }
  proc(p) { this.defer(`stop ${p.label}`, () => p.stop()); return p; }
  async close() {
    openScopes.delete(this);
    // Stop processes first (clients, NATs, containers) so that namespaces can really go away.
    const items = this.undo.splice(0).reverse();
    const procsFirst = [...items.filter((i) => i.what.startsWith('stop ')), ...items.filter((i) => !i.what.startsWith('stop '))];
    for (const { what, fn } of procsFirst) {
      try { await fn(); } catch (err) { warn(`cleanup (${this.name}): ${what}: ${firstLine(err.message)}`); }
    }
  }
}


export let aborting = false;
// Once an abort is under way, the normal flow parks here (abort() exits when cleanup is done),
// so that it neither reports the failures caused by the interruption nor writes results.
export const parkIfAborting = () => (aborting ? new Promise(() => {}) : undefined);
export async function abort(reason, code) {
  if (aborting) return;
  aborting = true;
  warn(`${reason}: cleaning up`);
  await cleanupAll();
  process.exit(code);
}

export async function cleanupAll() {
  for (const s of [...openScopes].reverse()) await s.close();
  await Promise.all([...live].map((p) => p.stop('SIGTERM', 2000)));
}

// ---- environment checks ----------------------------------------------------------------------

export async function checkSandbox() {
  if (process.getuid() !== 0) throw new Error('needs root inside the sandbox (it creates namespaces and enters them)');
  const v4 = (await run(['ip', '-4', 'route', 'show', 'default'])).stdout.trim().split('\n').filter(Boolean);
  const v6 = (await run(['ip', '-6', 'route', 'show', 'default'], { allowFail: true })).stdout.trim().split('\n').filter(Boolean);
  const open = [...v4, ...v6].filter((l) => !/^\s*(blackhole|unreachable|prohibit)\b/.test(l));
  if (!v4.length || open.length) {
    throw new Error(`refusing to run: the IPv4/IPv6 default routes here must be blackholes, found:\n` +
      `    ${[...v4, ...v6].join('\n    ') || '(no IPv4 default route)'}\nRun it through test/sandbox/netsandbox.sh.`);
  }
}

export function toolVersion(argv, re) {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: 5000 });
  if (r.error) return null;
  const m = `${r.stdout}\n${r.stderr}`.match(re);
  return m ? m[1] : 'unknown';
}

export function requireTools(names) {
  const missing = names.filter((n) => spawnSync('sh', ['-c', `command -v ${n}`]).status !== 0);
  if (missing.length) throw new Error(`missing tool(s): ${missing.join(', ')}`);
}

// A TCP port free on 127.0.0.1 right now (the sandbox's loopback is ours alone).
export function freePort(host = '127.0.0.1') {
  return new Promise((res, rej) => {
    const s = createServer();
    s.on('error', rej);
    s.listen(0, host, () => { const { port } = s.address(); s.close(() => res(port)); });
  });
}

// ---- measuring ------------------------------------------------------------------------------

export function cpuTicks(pid) {
  if (!pid) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]); // utime + stime (fields 14, 15)
  } catch { return null; }
}
export const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;

// Measures a process's CPU (% of one core) around fn(): { r: fn's result, natCpuPct }.
export async function withCpu(pid, fn) {
  const t0 = cpuTicks(pid);
  const w0 = process.hrtime.bigint();
  const r = await fn();
  const wall = Number(process.hrtime.bigint() - w0) / 1e9;
  const t1 = cpuTicks(pid);
  return { r, natCpuPct: t0 != null && t1 != null ? round((100 * (t1 - t0)) / CLK_TCK / wall, 0) : null };
}

// ---- containers ------------------------------------------------------------------------------

/** A container: a holder process in CONTAINER_ARGV's namespaces, stopped with its scope. */
export async function startContainer(scope, label) {
  const holder = scope.proc(new Proc(label, CONTAINER_ARGV));
  await holder.waitLine('stdout', (l) => l.trim() === 'ready', 10_000, '"ready"');
  return holder;
}

/** Runs commands in a process's network namespace. */
export const pidEndpoint = (pid, ifname) => ({ pid, ifname, exec: (argv) => ['nsenter', '-t', String(pid), '-n', ...argv] });

// ---- pasta (passt's namespace mode), wired as rootlesskit wires it ---------------------------

// The wiring rootlesskit uses (pkg/network/pasta): the same 10.0.2.0/24 addresses as slirp4netns,
// the gateway 10.0.2.2 mapped to the host's loopback (pasta's default; --no-map-gw turns it off),
// IPv4 only. Additions the sandbox needs:
//   --runas 0   pasta started as root drops to "nobody" by default, and nobody may not join the
//               container's user namespace (owned by root here, by the user under rootlesskit, who
//               also runs pasta): so it stays the namespace owner, as under rootlesskit.
//   -f -P FILE  stay in the foreground (its PID is the one measured and stopped) and write the
//               PID file once initialised: that is "ready".
// pasta takes its template from the host interface with a default route and refuses to start
// without one ("No external routable interface"); the sandbox's default route is a blackhole, so
// preparePastaHost() adds an uplink veth to a dead-end namespace on 203.0.113.0/24 with a *second*
// default route at metric 1000: pasta finds it, while the blackhole (metric 0) still wins.
// Port forwarding: tcpHost is a list of host-side specs (`127.0.0.1/P:G`: the host's
// 127.0.0.1:P to the container's port G), one `-t` each: pasta rejects a comma list whose items
// carry an address ("Invalid port specifier"). tcpNs is `-T` (the container's loopback ports
// spliced to the host's). PASTA_BIN or a benchmark's --pasta-bin picks another build.
export const PASTA = {
  gateway: '10.0.2.2',
  args: ({ pid, mtu, pidFile, tcpHost = [], tcpNs = 'none' }) => ['--stderr', '-f', '-P', pidFile, '--runas', '0', '--ns-ifname=tap0', `--mtu=${mtu}`, '--config-net',
    '--address=10.0.2.100', '--netmask=24', `--gateway=${PASTA.gateway}`, '--dns-forward=10.0.2.3', '--ipv4-only',
    ...(tcpHost.length ? tcpHost.flatMap((spec) => ['-t', spec]) : ['--tcp-ports=none']), '--udp-ports=none', '-T', String(tcpNs), '-U', 'none', String(pid)],
  ifname: 'tap0',
  readyTimeoutMs: 20_000,
  uplinkNs: 'ubench-uplink',
  uplinkIf: 'ubench-up',
};

/** The host side pasta needs, once per benchmark run (see PASTA), undone by SCOPE. */
export async function preparePastaHost(scope) {
  await run(['ip', 'netns', 'add', PASTA.uplinkNs]);
  scope.defer('delete the uplink namespace', () => run(['ip', 'netns', 'del', PASTA.uplinkNs], { allowFail: true }));
  await run(['ip', 'link', 'add', PASTA.uplinkIf, 'type', 'veth', 'peer', 'name', 'wan0', 'netns', PASTA.uplinkNs]);
  scope.defer('delete the uplink veth', () => run(['ip', 'link', 'del', PASTA.uplinkIf], { allowFail: true }));
  await run(['ip', 'addr', 'add', '203.0.113.1/24', 'dev', PASTA.uplinkIf]);
  await run(['ip', 'link', 'set', PASTA.uplinkIf, 'up']);
  await run(['ip', '-n', PASTA.uplinkNs, 'addr', 'add', '203.0.113.254/24', 'dev', 'wan0']);
  await run(['ip', '-n', PASTA.uplinkNs, 'link', 'set', 'wan0', 'up']);
  await run(['ip', 'route', 'add', 'default', 'via', '203.0.113.254', 'dev', PASTA.uplinkIf, 'metric', '1000']);
  const first = (await run(['ip', '-4', 'route', 'show', 'default'])).stdout.trim().split('\n')[0] ?? '';
  if (!/^blackhole\b/.test(first)) throw new Error(`the blackhole default route no longer comes first: ${first}`);
  // pasta answers ping to its gateway with the host's ICMP echo ("ping") sockets, which
  // net.ipv4.ping_group_range must allow; systemd's default opens it to every group. This
  // network namespace is the sandbox's own.
  await run(['sysctl', '-q', '-w', 'net.ipv4.ping_group_range=0 2147483647']);
}

/**
 * A container with pasta attached (PASTA.args with OPTIONS), ready: the PID file written and
 * tap0 configured. Returns { container, nat } (the endpoint and pasta's Proc).
 */
export async function startPasta(scope, bin, dir, options) {
  const pidFile = join(dir, 'pasta.pid');
  const holder = await startContainer(scope, 'container');
  const nat = scope.proc(new Proc('pasta', [bin, ...PASTA.args({ ...options, pid: holder.pid, pidFile })]));
  await waitForFile(pidFile, nat, PASTA.readyTimeoutMs);
  const container = pidEndpoint(holder.pid, PASTA.ifname);
  await waitForAddress(container, nat, PASTA.readyTimeoutMs);
  return { container, nat };
}

// Waits until FILE exists (pasta writes its PID file once initialised), or the process exits.
async function waitForFile(file, proc, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(file)) {
    if (proc.exitInfo) throw new Error(`${proc.label} ${proc.describeExit()} before it was ready:\n${proc.tail(10)}`);
    if (Date.now() > deadline) throw new Error(`${proc.label} not ready after ${timeoutMs} ms (no ${file}):\n${proc.tail(10)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// pasta writes its PID file before --config-net has put the address on the interface (seen
// here: a run in three found tap0 without one): wait for the address and the default route.
async function waitForAddress(ep, proc, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const a = await run(ep.exec(['ip', '-4', '-o', 'addr', 'show', 'dev', ep.ifname]), { allowFail: true });
    const r = await run(ep.exec(['ip', '-4', 'route', 'show', 'default']), { allowFail: true });
    if (/inet /.test(a.stdout) && /default via/.test(r.stdout)) return;
    if (proc.exitInfo) throw new Error(`${proc.label} ${proc.describeExit()} before configuring ${ep.ifname}:\n${proc.tail(10)}`);
    if (Date.now() > deadline) throw new Error(`${proc.label}: ${ep.ifname} not configured after ${timeoutMs} ms`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

// ---- the connection-rate server and client (written to a temp dir, run with this node) --------

// The connection-rate server: argv HOST [PORT] (default any free port). Prints {"listening":PORT} when ready.
// Each connection: read up to "\n", answer "pong <same>\n" and close (FIN) at once, so that the
// server side is the active closer. stdin lines: "stats TAG" prints a stats line; EOF exits.
export const CONN_SERVER_JS = String.raw`
import net from 'node:net';
import readline from 'node:readline';
const host = process.argv[2];
const listenPort = Number(process.argv[3] ?? 0);
let accepted = 0, served = 0, badRequests = 0;
const errors = {};
const server = net.createServer((s) => {
  accepted++;
  s.setNoDelay(true);
  let buf = '';
  s.setEncoding('latin1');
  s.on('data', (d) => {
    buf += d;
    const nl = buf.indexOf('\n');
    if (nl < 0) { if (buf.length > 256) { badRequests++; s.destroy(); } return; }
    const req = buf.slice(0, nl);
    if (!req.startsWith('ping ')) { badRequests++; s.destroy(); return; }
    served++;
    s.end('pong ' + req.slice(5) + '\n');
    buf = '';
  });
  s.on('error', (e) => { errors[e.code || e.message] = (errors[e.code || e.message] || 0) + 1; });
});
server.on('error', (e) => { console.error('conn server: ' + e.message); process.exit(1); });
server.listen({ host, port: listenPort, backlog: 4096 }, () => {
  process.stdout.write(JSON.stringify({ listening: server.address().port }) + '\n');
});
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (l) => {
  const [cmd, tag] = l.trim().split(/\s+/);
  if (cmd === 'stats') {
    const cpu = process.cpuUsage();
    process.stdout.write(JSON.stringify({ stats: tag, accepted, served, badRequests, errors: { ...errors }, cpuUs: cpu.user + cpu.system }) + '\n');
  }
});
rl.on('close', () => process.exit(0));
`;

// The connection-rate client. argv: HOST PORT PARALLEL SECONDS TIMEOUT_MS [COUNT].
// With COUNT, makes that many connections one after another (a probe) instead of a timed run.
// Prints one JSON line: completed, errors by kind, conns/s, latency percentiles, per-second counts.
export const CONN_CLIENT_JS = String.raw`
import net from 'node:net';
import { performance } from 'node:perf_hooks';
const [host, portS, parS, secS, toS, countS] = process.argv.slice(2);
const port = Number(portS), parallel = Number(parS), seconds = Number(secS), timeoutMs = Number(toS);
const count = countS ? Number(countS) : 0;
let completed = 0, seq = 0, started = 0;
const errors = {};
const firstErrors = [];
const lat = [];
const perSecond = [];
const t0 = performance.now();
const cpu0 = process.cpuUsage();
const deadline = t0 + seconds * 1000;
function one() {
  return new Promise((resolve) => {
    const n = ++seq;
    started++;
    const c0 = performance.now();
    const expect = 'pong ' + n + '\n';
    let buf = '', gotEnd = false, done = false;
    const s = net.connect({ host, port });
    s.setNoDelay(true);
    s.setEncoding('latin1');
    const finish = (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const now = performance.now();
      if (err) {
        errors[err] = (errors[err] || 0) + 1;
        if (firstErrors.length < 5) firstErrors.push({ error: err, atMs: Math.round(now - t0), conn: n });
        s.destroy();
      } else {
        completed++;
        lat.push(now - c0);
        const sec = Math.floor((now - t0) / 1000);
        while (perSecond.length <= sec) perSecond.push(0);
        perSecond[sec]++;
      }
      resolve();
    };
    const timer = setTimeout(() => finish(gotEnd ? 'TIMEOUT_CLOSE' : buf ? 'TIMEOUT_FIN' : s.connecting ? 'TIMEOUT_CONNECT' : 'TIMEOUT_REPLY'), timeoutMs);
    s.on('connect', () => s.write('ping ' + n + '\n'));
    s.on('data', (d) => { buf += d; if (buf.length > expect.length) finish('BAD_REPLY'); });
    // The server answers and closes; allowHalfOpen is false, so node closes our side on its FIN.
    s.on('end', () => { gotEnd = true; if (buf !== expect) finish(buf ? 'BAD_REPLY' : 'EOF_WITHOUT_REPLY'); });
    s.on('error', (e) => finish(e.code || e.message));
    s.on('close', (hadError) => finish(hadError ? 'CLOSED_WITH_ERROR' : gotEnd ? null : 'CLOSED_EARLY'));
  });
}
async function worker() {
  if (count) { while (started < count) await one(); return; }
  while (performance.now() < deadline) await one();
}
await Promise.all(Array.from({ length: count ? 1 : parallel }, worker));
const elapsed = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
lat.sort((a, b) => a - b);
const pct = (p) => (lat.length ? Math.round(lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))] * 1000) / 1000 : null);
const errorCount = Object.values(errors).reduce((a, b) => a + b, 0);
process.stdout.write(JSON.stringify({
  completed, errorCount, errors, firstErrors, seconds: elapsed, connsPerSec: completed / elapsed,
  latencyMs: { p50: pct(50), p90: pct(90), p99: pct(99), max: lat.length ? Math.round(lat[lat.length - 1] * 1000) / 1000 : null },
  perSecond, clientCpuPct: (100 * (cpu.user + cpu.system)) / 1e6 / elapsed,
}) + '\n');
process.exit(0);
`;

// ---- entry -----------------------------------------------------------------------------------

/**
 * Runs `main` inside a network sandbox: directly when USERNET_SANDBOX=1 (or NETSANDBOX=1) says
 * this process is in one, else by re-executing the script through test/sandbox/netsandbox.sh.
 */
export function runInSandbox(script, name, command, main) {
  if (process.env.USERNET_SANDBOX === '1' || process.env.NETSANDBOX === '1') {
    main();
    return;
  }
  if (!existsSync(SANDBOX_WRAPPER)) {
    process.stderr.write(`${name}: not inside a network sandbox and ${relative(process.cwd(), SANDBOX_WRAPPER)} is missing.\n` +
      `Run it inside one, e.g.: ../shared/tools/netsandbox ${command}\n`);
    process.exit(2);
  }
  let executable = true;
  try { accessSync(SANDBOX_WRAPPER, fsc.X_OK); } catch { executable = false; }
  const argv = [process.execPath, ...process.execArgv, script, ...process.argv.slice(2)];
  const child = executable ? spawn(SANDBOX_WRAPPER, argv, { stdio: 'inherit' }) : spawn('bash', [SANDBOX_WRAPPER, ...argv], { stdio: 'inherit' });
  // Ctrl-C reaches the whole foreground process group (the inner script cleans up); forward
  // signals sent to this process alone. The inner script tolerates getting one twice.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => { try { child.kill(sig); } catch {} });
  child.on('error', (err) => { process.stderr.write(`${name}: cannot run ${SANDBOX_WRAPPER}: ${err.message}\n`); process.exit(2); });
  child.on('exit', (code, sig) => process.exit(code ?? (sig ? 128 + (signalNumber(sig) ?? 1) : 1)));
}

// ---- sockperf -------------------------------------------------------------------------------

/** The sockperf server's "ready" lines (its versions differ in which one they print). */
export const sockperfReady = (l) => l.includes('sockperf: Warmup') || l.includes('Ready to receive') || l.includes('[tid');

/**
 * The round trips of a `sockperf pp --full-rtt` run, from its output: { samples, avg, p50, p99,
 * p999, max } in µs; throws with sockperf's first line when it failed or printed no summary.
 */
export function parseSockperf(r) {
  const out = r.stdout + r.stderr;
  const num = (re) => { const m = re.exec(out); return m ? Number(m[1]) : null; };
  const p = (q) => num(new RegExp(`percentile ${q.toFixed(3).replace('.', '\\.')} =\\s+([0-9.]+)`));
  const samples = num(/Total (\d+) observations/);
  if (r.code !== 0 || samples === null) throw new Error(`sockperf client failed (status ${r.code}): ${firstLine(r.stderr || r.stdout)}`);
  return { samples, avg: num(/avg-rtt=([0-9.]+)/), p50: p(50), p99: p(99), p999: p(99.9), max: num(/<MAX> observation =\s+([0-9.]+)/) };
}

// ---- reporting -------------------------------------------------------------------------------

/** One measured value for a table: the field of a result, or why there is none. */
export function cell(r, field, digits) {
  if (!r) return 'skipped';
  if (r.unsupported) return 'unsupported';
  if (r.error) return 'error';
  return r[field] == null ? '-' : r[field].toFixed(digits);
}

/** A ratio for a table ('-' when one side is missing). */
export const ratioCell = (x) => (x == null ? '-' : `${x.toFixed(2)}x`);

/** a/b for one field of two results, rounded; null when either is missing. */
export function ratio(a, b, field) {
  const x = a?.[field];
  const y = b?.[field];
  return x != null && y ? round(x / y, 3) : null;
}

/**
 * A text table: `head` and `rows` are arrays of strings (the first column left-aligned, the
 * others right-aligned); a separator goes after the header and after the first `measured` rows
 * (the ratio rows follow).
 */
export function formatTable(head, rows, measured) {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ');
  const sep = widths.map((w) => '-'.repeat(w)).join('-|-');
  const body = rows.map(line);
  if (rows.length > measured) body.splice(measured, 0, sep);
  return [line(head), sep, ...body].join('\n');
}

/** Writes a run's report to bench/results/NAME-<date>.json; returns the file's path. */
export function writeResults(name, started, report) {
  const dir = join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}-${started.toISOString().replace(/\..*$/, '').replace(/:/g, '-')}Z.json`);
  writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
  return file;
}

/** Ctrl-C, SIGTERM and SIGHUP stop every process started and exit with the usual status. */
export function abortOnSignals() {
  process.on('SIGINT', () => abort('interrupted', 130));
  process.on('SIGTERM', () => abort('terminated', 143));
  process.on('SIGHUP', () => abort('hangup', 129));
}
