#!/usr/bin/env node
// bench/e2e/soak.mjs: usernet under a long and hostile load, to prove that nothing leaks and
// nothing drifts (issue #10). Three phases, each measured and checked:
//
//   connections  C containers x N TCP connections at once through the NAT (container -> 10.0.2.2
//                -> a server on the host's loopback), held H seconds, then closed. Daemon RSS
//                (peak) under 256 MiB; every connection opens and answers; afterwards the host
//                sockets and the daemon's fds are back to their baseline and every conntrack
//                entry left is in TIME_WAIT, holding nothing; they expire after the transitory
//                timeout, 240 s (RFC 5382 REQ-5), and the table is back to its baseline.
//   churn        K attach/detach cycles of one container (each with a published port and a NAT
//                flow) and D containers killed (SIGKILL) while attached: no fd, TAP, listener,
//                conntrack entry or state-file entry left (/proc/PID/fd counted before and after).
//   kills        the daemon SIGKILLed at M moments drawn from a logged seed, while a container
//                holds an idle connection through the NAT, a published port is fetched from the
//                host and another port is published and unpublished in a loop. After each restart:
//                every attachment, published port and DHCP lease in the state file is live
//                (`ports`, `publish --list`, `network inspect`) and nothing live is missing from
//                the file; the idle connection is reset towards the container within 1 s.
//
// The client program for the connections is a Node script (written to a temp dir) run in each
// container; it and the server each hold one fd per connection, the daemon one per connection
// (its host socket): the sandbox's RLIMIT_NOFILE (Node raises its soft limit to the hard one)
// must exceed connections + ~100. The script checks it.
//
// Usage (as root; it enters the network sandbox itself):
//   npm run bench:soak [-- --connections 2500 --containers 4 --hold 30 --cycles 1000 --deaths 200 --kills 20 --seed N]
// The e2e test test/e2e/soak.test.ts runs runSoak() at a reduced size.
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from '../../dist/src/control/client.js';
import { CONTAINER_ARGV, Proc, ROOT, Scope, abortOnSignals, checkSandbox, cleanupAll, freePort, info, round, run, runInSandbox, writeResults } from './lib.mjs';

const CLI = join(ROOT, 'bin', 'usernet.js');
const GATEWAY = '10.0.2.2';
/** How long closed connections' TIME_WAIT entries may take to go: the 240 s timeout, plus slack. */
const EXPIRY_WAIT_MS = 260_000;

// ---- programs run in the containers and on the host ------------------------------------------

// The host server: argv PORT. Echoes what it reads; stdin "stats" prints {"open":N,"accepted":N}.
const SERVER_JS = String.raw`
import net from 'node:net';
import readline from 'node:readline';
let open = 0, accepted = 0;
const server = net.createServer((s) => {
  open++; accepted++;
  s.on('data', (d) => s.write(d));
  s.on('end', () => s.end());
  s.on('error', () => {});
  s.on('close', () => open--);
});
server.listen({ host: '127.0.0.1', port: Number(process.argv[2]), backlog: 8192 }, () => console.log(JSON.stringify({ listening: true })));
readline.createInterface({ input: process.stdin }).on('line', () => console.log(JSON.stringify({ open, accepted })));
`;

// The connection holder: argv HOST PORT N. Opens N connections (at most 512 connecting at once),
// each writes one byte and waits for its echo; prints {"open":N,"failed":N,"errors":{}}. On a
// stdin line "close" ends them all and prints {"closed":N,"errors":{}} once every one is closed.
const HOLDER_JS = String.raw`
import net from 'node:net';
import readline from 'node:readline';
const [host, port, n] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const sockets = [];
const errors = {};
let ok = 0, failed = 0, next = 0;
const count = (e) => { const k = e.code || e.message; errors[k] = (errors[k] || 0) + 1; };
function one() {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    let done = false;
    const finish = (good) => { if (done) return; done = true; good ? ok++ : failed++; resolve(); };
    s.once('connect', () => s.write('x'));
    s.once('data', () => { sockets.push(s); finish(true); });
    s.on('error', (e) => { count(e); finish(false); });
    s.setTimeout(30000, () => { count({ code: 'TIMEOUT' }); s.destroy(); finish(false); });
  });
}
async function worker() { while (next < n) { next++; await one(); } }
await Promise.all(Array.from({ length: Math.min(512, n) }, worker));
for (const s of sockets) s.setTimeout(0);
console.log(JSON.stringify({ open: ok, failed, errors }));
readline.createInterface({ input: process.stdin }).on('line', async (l) => {
  if (l.trim() !== 'close') return;
  const closeErrors = {};
  await Promise.all(sockets.map((s) => new Promise((resolve) => {
    s.on('error', (e) => { const k = e.code || e.message; closeErrors[k] = (closeErrors[k] || 0) + 1; });
    s.on('close', resolve);
    s.end();
  })));
  console.log(JSON.stringify({ closed: sockets.length, errors: closeErrors }));
});
`;

// The idle reader (kills phase): argv HOST PORT. Connects, prints {"connected":T}, waits to read;
// when the connection dies prints {"ended":"reset"|"eof"|code,"at":T} and connects again.
const READER_JS = String.raw`
import net from 'node:net';
const [host, port] = [process.argv[2], Number(process.argv[3])];
function connect() {
  const s = net.connect({ host, port });
  let ended = false;
  const end = (how) => { if (ended) return; ended = true; console.log(JSON.stringify({ ended: how, at: Date.now() })); s.destroy(); setImmediate(connect); };
  s.once('connect', () => console.log(JSON.stringify({ connected: Date.now() })));
  s.on('data', () => {});
  s.on('end', () => end('eof'));
  s.on('error', (e) => end(e.code === 'ECONNRESET' ? 'reset' : e.code || e.message));
}
connect();
`;

// ---- helpers ---------------------------------------------------------------------------------

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const rssMiB = (pid) => round(Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024, 1);
/**
 * The daemon's open fds, less the control connections (unix sockets on its control socket path,
 * from /proc/PID/net/unix): a request's own connection may still be closing when this counts.
 */
function fdCount(pid, controlSocket) {
  const control = new Set();
  if (controlSocket) {
    for (const line of readFileSync(`/proc/${pid}/net/unix`, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[7] === controlSocket) control.add(f[6]);
    }
  }
  let n = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target = '';
    try { target = readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { continue; }
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    if (inode && control.has(inode)) continue;
    n++;
  }
  return n;
}
function tunFds(pid) {
  let n = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try { if (readlinkSync(`/proc/${pid}/fd/${fd}`) === '/dev/net/tun') n++; } catch {}
  }
  return n;
}
/** Established TCP sockets to 127.0.0.1:PORT in this namespace (the NAT's host sockets). */
async function hostSockets(port) {
  const r = await run(['ss', '-Htn', 'state', 'established', `( dport = :${port} )`]);
  return r.stdout.split('\n').filter((l) => l.trim()).length;
}

class UsernetDaemon {
  constructor(scope, dir) {
    this.scope = scope;
    this.socket = join(dir, 'usernet.sock');
    this.stateDir = join(dir, 'state');
    this.proc = null;
  }
  async start() {
    this.proc = this.scope.proc(new Proc('usernet daemon', [process.execPath, CLI, 'daemon', '--socket', this.socket, '--state-dir', this.stateDir, '--log-level', 'info'], { keepAll: false }));
    await this.proc.waitLine('stderr', (l) => l.includes('"msg":"listening"'), 30_000, 'the "listening" log line');
    return this;
  }
  get pid() { return this.proc.pid; }
  api(method, params = {}) { return request(this.socket, method, params); }
  /** The first log line (seen or to come) that pred holds for. */
  waitLog(pred, timeoutMs, what) {
    return this.proc.waitLine('stderr', (l) => { try { return pred(JSON.parse(l)); } catch { return false; } }, timeoutMs, what);
  }
  state() { return JSON.parse(readFileSync(join(this.stateDir, 'state.json'), 'utf8')); }
  async kill() {
    this.proc.child.kill('SIGKILL');
    await this.proc.exited;
  }
}

async function startContainer(scope, label) {
  const holder = scope.proc(new Proc(label, CONTAINER_ARGV));
  await holder.waitLine('stdout', (l) => l.trim() === 'ready', 10_000, '"ready"');
  return holder;
}
const inContainer = (pid, argv) => ['nsenter', '-t', String(pid), '-n', ...argv];

// ---- the phases ------------------------------------------------------------------------------

async function connectionsPhase(o, tmp, fail) {
  const scope = new Scope('connections');
  try {
    const d = await new UsernetDaemon(scope, mkdtempSync(join(tmp, 'conn-'))).start();
    const port = await freePort();
    writeFileSync(join(tmp, 'server.mjs'), SERVER_JS);
    writeFileSync(join(tmp, 'holder.mjs'), HOLDER_JS);
    const server = scope.proc(new Proc('server', [process.execPath, join(tmp, 'server.mjs'), String(port)], { stdin: 'pipe' }));
    await server.waitLine('stdout', (l) => l.includes('listening'), 10_000, 'listening');
    const holders = [];
    for (let i = 0; i < o.containers; i++) {
      const c = await startContainer(scope, `container ${i}`);
      await d.api('attach', { pid: c.pid, name: `h${i}`, configure: true });
      holders.push(c);
    }
    const base = { rss: rssMiB(d.pid), fds: fdCount(d.pid, d.socket), conntrack: (await d.api('status')).conntrack.entries, hostSockets: await hostSockets(port) };
    info(`connections: baseline ${JSON.stringify(base)}; opening ${o.containers} x ${o.connections}`);
    let peakRss = base.rss;
    const sampler = setInterval(() => { peakRss = Math.max(peakRss, rssMiB(d.pid)); }, 250);
    const t0 = Date.now();
    const clients = holders.map((c, i) => scope.proc(new Proc(`holder ${i}`, inContainer(c.pid, [process.execPath, join(tmp, 'holder.mjs'), GATEWAY, String(port), String(o.connections)]), { stdin: 'pipe' })));
    const opened = (await Promise.all(clients.map((p) => p.waitLine('stdout', (l) => l.startsWith('{"open"'), 600_000, 'its open count')))).map((l) => JSON.parse(l));
    const openMs = Date.now() - t0;
    const total = o.containers * o.connections;
    const openCount = opened.reduce((a, r) => a + r.open, 0);
    const held = { conntrack: (await d.api('status')).conntrack.entries, hostSockets: await hostSockets(port), fds: fdCount(d.pid, d.socket), rss: rssMiB(d.pid) };
    info(`connections: ${openCount}/${total} open in ${openMs} ms; ${JSON.stringify(held)}; holding ${o.holdSeconds} s`);
    if (openCount !== total) fail('connections', `${total - openCount} of ${total} connections failed: ${JSON.stringify(opened.map((r) => r.errors))}`);
    if (held.conntrack - base.conntrack < openCount) fail('connections', `conntrack has ${held.conntrack - base.conntrack} new entries for ${openCount} open connections`);
    if (held.hostSockets - base.hostSockets < openCount) fail('connections', `${held.hostSockets - base.hostSockets} host sockets for ${openCount} open connections`);
    // The hold is the scenario: connections open and idle for that long.
    await new Promise((r) => setTimeout(r, o.holdSeconds * 1000));
    const stillOpen = JSON.parse(await (async () => { server.child.stdin.write('stats\n'); return server.waitLine('stdout', (l) => l.startsWith('{"open"'), 10_000, 'stats'); })());
    if (stillOpen.open - base.hostSockets < openCount) fail('connections', `after the hold the server has ${stillOpen.open} connections open, not ${openCount}`);
    const t1 = Date.now();
    for (const p of clients) p.child.stdin.write('close\n');
    const closed = (await Promise.all(clients.map((p) => p.waitLine('stdout', (l) => l.startsWith('{"closed"'), 600_000, 'its closed count')))).map((l) => JSON.parse(l));
    const closeMs = Date.now() - t1;
    clearInterval(sampler);
    peakRss = Math.max(peakRss, rssMiB(d.pid));
    // Every container socket is closed, so every FIN the NAT had to send has reached the
    // container; the NAT's host sockets close as their last FIN is acknowledged. The settle loop
    // only waits for that last step (it measures how long it took).
    const tSettle = Date.now();
    let after;
    for (;;) {
      const st = await d.api('conntrack.list', {});
      const notTimeWait = st.entries.filter((e) => e.state && e.state !== 'TIME_WAIT' && e.state !== 'CLOSE').length;
      after = { fds: fdCount(d.pid, d.socket), hostSockets: await hostSockets(port), conntrack: st.count, conntrackNotTimeWait: notTimeWait, rss: rssMiB(d.pid) };
      if ((after.fds <= base.fds && after.hostSockets <= base.hostSockets && notTimeWait === 0) || Date.now() - tSettle > 10_000) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const settleMs = Date.now() - tSettle;
    const closeErrors = closed.map((r) => r.errors).filter((e) => Object.keys(e).length);
    if (closeErrors.length) fail('connections', `errors while closing: ${JSON.stringify(closeErrors)}`);
    if (after.fds > base.fds) fail('connections', `daemon fds ${after.fds} after closing, ${base.fds} before`);
    if (after.hostSockets > base.hostSockets) fail('connections', `${after.hostSockets} host sockets still established after closing (${base.hostSockets} before)`);
    if (after.conntrackNotTimeWait > 0) fail('connections', `${after.conntrackNotTimeWait} conntrack entries neither TIME_WAIT nor closed after closing`);
    if (peakRss > o.maxRssMiB) fail('connections', `daemon RSS peaked at ${peakRss} MiB (limit ${o.maxRssMiB})`);
    // TIME_WAIT entries hold no socket and no fd; they expire after the transitory timeout,
    // 240 s (RFC 5382 REQ-5; Linux's nf_conntrack_tcp_timeout_time_wait is 120 s). With
    // waitExpiry, the table must be back to its baseline soon after (the sweep runs every second).
    let expired = null;
    if (o.waitExpiry) {
      const tExpire = Date.now();
      let count = after.conntrack;
      while (count > base.conntrack && Date.now() - tExpire < EXPIRY_WAIT_MS) {
        await new Promise((r) => setTimeout(r, 1000));
        count = (await d.api('status')).conntrack.entries;
      }
      expired = { afterMs: Date.now() - tExpire, conntrack: count, fds: fdCount(d.pid, d.socket), rss: rssMiB(d.pid) };
      info(`connections: ${JSON.stringify(expired)} once TIME_WAIT expired`);
      if (count > base.conntrack) fail('connections', `${count} conntrack entries ${EXPIRY_WAIT_MS / 1000} s after closing, ${base.conntrack} before`);
    }
    return { total, open: openCount, openMs, closeMs, settleMs, baseline: base, held, after, expired, peakRssMiB: peakRss };
  } finally {
    await scope.close();
  }
}

/** What the daemon holds, for before/after comparisons. */
async function holdings(d) {
  const status = await d.api('status');
  const published = await d.api('publish.list', {});
  const state = d.state();
  return { fds: fdCount(d.pid, d.socket), tunFds: tunFds(d.pid), conntrack: status.conntrack.entries, published: published.ports.length, attachments: status.attachments, stateAttachments: state.attachments.length, rss: rssMiB(d.pid) };
}

async function churnPhase(o, tmp, fail) {
  const scope = new Scope('churn');
  try {
    const d = await new UsernetDaemon(scope, mkdtempSync(join(tmp, 'churn-'))).start();
    const udpPort = await freePort();
    // A UDP sink on the host's loopback: each cycle's flow is one datagram to it through the NAT.
    const sink = scope.proc(new Proc('udp sink', ['socat', '-u', `UDP-RECV:${udpPort},bind=127.0.0.1`, 'OPEN:/dev/null']));
    void sink;
    const c = await startContainer(scope, 'cycled');
    const flow = (pid) => run(inContainer(pid, ['bash', '-c', `echo x > /dev/udp/${GATEWAY}/${udpPort}`]), { label: 'udp flow' });
    // One cycle first, so that lazily made things (sockets, buffers) exist in the baseline.
    const cycle = async (name, pid) => {
      await d.api('attach', { pid, name, configure: true, publish: ['127.0.0.1::80'] });
      await flow(pid);
      await d.api('detach', { name });
    };
    await cycle('warm', c.pid);
    const base = await holdings(d);
    info(`churn: baseline ${JSON.stringify(base)}; ${o.cycles} attach/detach cycles`);
    const t0 = Date.now();
    const fdsEvery = [];
    for (let i = 0; i < o.cycles; i++) {
      await cycle(`cyc${i}`, c.pid);
      if ((i + 1) % Math.max(1, Math.floor(o.cycles / 10)) === 0) fdsEvery.push(fdCount(d.pid, d.socket));
    }
    const cyclesMs = Date.now() - t0;
    const afterCycles = await holdings(d);
    info(`churn: after cycles ${JSON.stringify(afterCycles)} (${cyclesMs} ms); ${o.deaths} containers killed while attached`);
    const t1 = Date.now();
    const batch = 4;
    for (let i = 0; i < o.deaths; i += batch) {
      await Promise.all(Array.from({ length: Math.min(batch, o.deaths - i) }, async (_, k) => {
        const name = `dead${i + k}`;
        const holder = await startContainer(scope, name);
        await d.api('attach', { pid: holder.pid, name, configure: true, publish: ['127.0.0.1::80'] });
        await flow(holder.pid);
        const gone = d.waitLog((l) => l.msg === 'container gone: port removed' && l.port === name, 10_000, `${name} removed`);
        holder.child.kill('SIGKILL');
        await gone;
      }));
    }
    const deathsMs = Date.now() - t1;
    const after = await holdings(d);
    info(`churn: after deaths ${JSON.stringify(after)} (${deathsMs} ms)`);
    for (const [label, h] of [['cycles', afterCycles], ['deaths', after]]) {
      for (const k of ['fds', 'tunFds', 'conntrack', 'published', 'attachments', 'stateAttachments']) {
        if (h[k] > base[k]) fail('churn', `after the ${label}: ${k} ${h[k]}, baseline ${base[k]}`);
      }
    }
    return { cycles: o.cycles, deaths: o.deaths, cyclesMs, deathsMs, baseline: base, afterCycles, after, fdsEvery };
  } finally {
    await scope.close();
  }
}

/** Compares the live daemon with its state file; returns the differences found. */
async function drift(d, expectedNames) {
  const problems = [];
  const state = d.state();
  const ports = (await d.api('ports')).ports.filter((p) => p.kind === 'container');
  const live = new Map(ports.map((p) => [p.name, p]));
  const recorded = new Set(state.attachments.map((a) => a.name));
  for (const n of expectedNames) if (!recorded.has(n)) problems.push(`attachment ${n} missing from the state file`);
  for (const a of state.attachments) {
    const p = live.get(a.name);
    if (!p) problems.push(`attachment ${a.name} is in the state file but not attached`);
    else if (p.state !== 'up') problems.push(`attachment ${a.name} is ${p.state}: ${p.error ?? ''}`);
  }
  for (const name of live.keys()) if (!recorded.has(name)) problems.push(`port ${name} is attached but not in the state file`);
  const key = (m) => `${m.proto}/${m.hostIp}:${m.hostPort}->${m.containerPort}`;
  const filePorts = new Set(state.attachments.flatMap((a) => (a.ports ?? []).map(key)));
  const listed = (await d.api('publish.list', {})).ports;
  const livePorts = new Set(listed.map((p) => key(p)));
  for (const k of filePorts) if (!livePorts.has(k)) problems.push(`published port ${k} is in the state file but not published`);
  for (const p of listed) {
    if (!filePorts.has(key(p))) problems.push(`published port ${key(p)} is live but not in the state file`);
    if (p.state !== 'listening') problems.push(`published port ${key(p)} is ${p.state}: ${p.error ?? ''}`);
  }
  const inspect = await d.api('network.inspect', { name: 'default' });
  const liveLeases = new Set(inspect.addresses.filter((a) => a.kind === 'lease' && a.bound).map((a) => `${a.mac}=${a.ip}`));
  const fileLeases = new Set(state.leases.filter((l) => l.network === 'default' && l.expiresAt > Date.now()).map((l) => `${l.mac}=${l.ip}`));
  for (const l of fileLeases) if (!liveLeases.has(l)) problems.push(`lease ${l} is in the state file but not held`);
  for (const l of liveLeases) if (!fileLeases.has(l)) problems.push(`lease ${l} is held but not in the state file`);
  return { problems, attachments: state.attachments.length, published: listed.length, leases: liveLeases.size };
}

async function killsPhase(o, tmp, fail) {
  const scope = new Scope('kills');
  try {
    const d = await new UsernetDaemon(scope, mkdtempSync(join(tmp, 'kills-'))).start();
    const random = mulberry32(o.seed);
    info(`kills: ${o.kills} SIGKILLs, moments drawn with seed ${o.seed}`);
    const holdPort = await freePort();
    writeFileSync(join(tmp, 'server.mjs'), SERVER_JS);
    writeFileSync(join(tmp, 'reader.mjs'), READER_JS);
    // The host: a server the idle reader connects to (it never sends), and a web page to fetch.
    const server = scope.proc(new Proc('hold server', [process.execPath, join(tmp, 'server.mjs'), String(holdPort)], { stdin: 'pipe' }));
    await server.waitLine('stdout', (l) => l.includes('listening'), 10_000, 'listening');
    const [a, b, l] = [await startContainer(scope, 'reader'), await startContainer(scope, 'web'), await startContainer(scope, 'dhcp')];
    await d.api('attach', { pid: a.pid, name: 'reader', configure: true });
    const webPort = await freePort();
    await d.api('attach', { pid: b.pid, name: 'web', configure: true, publish: [`127.0.0.1:${webPort}:80`] });
    await d.api('attach', { pid: l.pid, name: 'dhcp', address: false });
    await run(inContainer(l.pid, ['ip', 'link', 'set', 'eth0', 'up']));
    await run(inContainer(l.pid, ['busybox', 'udhcpc', '-i', 'eth0', '-n', '-q', '-f', '-t', '5', '-T', '1', '-s', '/bin/true']), { timeoutMs: 30_000, label: 'udhcpc' });
    await d.waitLog((x) => x.msg === 'leases saved', 5_000, 'the lease saved');
    const web = scope.proc(new Proc('web server', inContainer(b.pid, ['python3', '-u', '-m', 'http.server', '80', '--bind', '0.0.0.0', '--directory', tmp])));
    await web.waitLine('stdout', (x) => x.startsWith('Serving HTTP'), 10_000, '"Serving HTTP"');
    const reader = scope.proc(new Proc('idle reader', inContainer(a.pid, [process.execPath, join(tmp, 'reader.mjs'), GATEWAY, String(holdPort)])));
    const expected = ['reader', 'web', 'dhcp'];
    let running = true;
    let churned = 0;
    let fetched = 0;
    // Publishing churn and fetches through the published port, while the daemon lives and dies.
    // `hold` pauses the churn (the books are compared meanwhile): set it, await `held`.
    let hold = null;
    const churnPort = await freePort();
    const churn = (async () => {
      const spec = [`127.0.0.1:${churnPort}:81`];
      while (running) {
        if (hold) {
          hold.resolve();
          await hold.released;
          continue;
        }
        // Either call may fail while the daemon is down, or find the port (un)published already
        // because a kill fell between the two: both are fine, the loop goes on.
        try { await d.api('publish', { name: 'web', specs: spec }); churned++; } catch { await new Promise((r) => setTimeout(r, 20)); }
        try { await d.api('unpublish', { name: 'web', specs: spec }); } catch { await new Promise((r) => setTimeout(r, 20)); }
      }
    })();
    const pauseChurn = async () => {
      let resolve, release;
      const held = new Promise((r) => (resolve = r));
      const released = new Promise((r) => (release = r));
      hold = { resolve, released, release };
      await held;
      return () => { const h = hold; hold = null; h.release(); };
    };
    const fetcher = (async () => {
      while (running) {
        const r = await run(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-m', '2', `http://127.0.0.1:${webPort}/`], { allowFail: true, label: 'curl' });
        if (r.stdout === '200') fetched++;
        else await new Promise((res) => setTimeout(res, 20));
      }
    })();
    const results = [];
    for (let i = 0; i < o.kills; i++) {
      await reader.waitLine('stdout', (x) => { try { return JSON.parse(x).connected >= (results.at(-1)?.killedAt ?? 0); } catch { return false; } }, 15_000, 'the idle connection (re)connected');
      const delayMs = Math.round(100 + random() * 1400);
      await new Promise((r) => setTimeout(r, delayMs));
      const killedAt = Date.now();
      await d.kill();
      await d.start();
      const restartedAt = Date.now();
      const ended = JSON.parse(await reader.waitLine('stdout', (x) => { try { return JSON.parse(x).at >= killedAt; } catch { return false; } }, 10_000, 'the idle connection reset'));
      const resetAfterMs = ended.at - restartedAt;
      const resume = await pauseChurn();
      const check = await drift(d, expected);
      resume();
      results.push({ delayMs, restartMs: restartedAt - killedAt, resetAfterMs, ended: ended.ended, ...check, killedAt });
      info(`kill ${i + 1}/${o.kills}: after ${delayMs} ms; restarted in ${restartedAt - killedAt} ms; idle connection ${ended.ended} ${resetAfterMs} ms after; ${check.attachments} attachments, ${check.published} published, ${check.leases} leases${check.problems.length ? `; DRIFT: ${check.problems.join('; ')}` : ''}`);
      for (const p of check.problems) fail('kills', `kill ${i + 1}: ${p}`);
      if (ended.ended !== 'reset') fail('kills', `kill ${i + 1}: the idle connection ended with ${ended.ended}, not a reset`);
      if (resetAfterMs > 1000) fail('kills', `kill ${i + 1}: the idle connection was reset ${resetAfterMs} ms after the restart (limit 1000)`);
      if (check.leases < 1) fail('kills', `kill ${i + 1}: the DHCP lease is gone`);
    }
    running = false;
    await Promise.all([churn, fetcher]);
    const resets = results.map((r) => r.resetAfterMs).sort((x, y) => x - y);
    return { seed: o.seed, kills: o.kills, churned, fetched, resetAfterMs: { max: resets.at(-1) ?? null, median: resets[Math.floor(resets.length / 2)] ?? null }, results: results.map(({ killedAt, ...r }) => r) };
  } finally {
    await scope.close();
  }
}

/**
 * Runs the soak; resolves with a report whose `failures` lists every invariant that did not
 * hold (empty: nothing leaked, nothing drifted). Phases with a size of 0 are skipped.
 */
export async function runSoak(options = {}) {
  const o = { containers: 4, connections: 2500, holdSeconds: 30, cycles: 1000, deaths: 200, kills: 20, seed: (Date.now() % 2 ** 31) >>> 0, maxRssMiB: 256, waitExpiry: false, ...options };
  const failures = [];
  const fail = (phase, what) => failures.push(`${phase}: ${what}`);
  const tmp = mkdtempSync(join(tmpdir(), 'usernet-soak-'));
  const started = Date.now();
  const report = { options: o, failures };
  try {
    if (o.connections > 0) report.connections = await connectionsPhase(o, tmp, fail);
    if (o.cycles > 0 || o.deaths > 0) report.churn = await churnPhase(o, tmp, fail);
    if (o.kills > 0) report.kills = await killsPhase(o, tmp, fail);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  report.seconds = round((Date.now() - started) / 1000, 1);
  return report;
}

// ---- entry -----------------------------------------------------------------------------------

function parseOptions(argv) {
  const o = {};
  const names = { '--connections': 'connections', '--containers': 'containers', '--hold': 'holdSeconds', '--cycles': 'cycles', '--deaths': 'deaths', '--kills': 'kills', '--seed': 'seed' };
  for (let i = 0; i < argv.length; i++) {
    const key = names[argv[i]];
    if (!key || i + 1 >= argv.length || !/^\d+$/.test(argv[i + 1])) {
      process.stderr.write(`soak: unknown or malformed option ${argv[i]} (${Object.keys(names).join(', ')}, each with a whole number)\n`);
      process.exit(2);
    }
    o[key] = Number(argv[++i]);
  }
  return o;
}

async function main() {
  abortOnSignals();
  const o = parseOptions(process.argv.slice(2));
  await checkSandbox();
  const limit = Number(/^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1] ?? 0);
  const per = (o.connections ?? 2500) * (o.containers ?? 4);
  if (limit && limit < per + 200) {
    process.stderr.write(`soak: RLIMIT_NOFILE is ${limit}: the daemon and the server hold one fd per connection (${per}); raise it (ulimit -n ${per + 1000})\n`);
    process.exit(2);
  }
  const startedAt = new Date();
  const report = await runSoak({ waitExpiry: true, ...o });
  const file = writeResults('soak', startedAt, report);
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  info(`results: ${file}`);
  info(report.failures.length ? `FAILED: ${report.failures.length} invariant(s) broken:\n  ${report.failures.join('\n  ')}` : `all invariants held (${report.seconds} s)`);
  await cleanupAll();
  process.exit(report.failures.length ? 1 : 0);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  runInSandbox(fileURLToPath(import.meta.url), 'soak', 'node bench/e2e/soak.mjs', () => main().catch(async (err) => {
    process.stderr.write(`soak: ${err.stack ?? err.message}\n`);
    await cleanupAll();
    process.exit(1);
  }));
}
