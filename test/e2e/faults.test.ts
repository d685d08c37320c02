/**
 * Trust under faults and bad input (issue #10, the daemon and the CLI): a refused attach leaves
 * nothing behind; the CLI never talks to a socket another user could have planted and the daemon
 * refuses other users' connections; a state write that fails changes nothing; a state file that
 * cannot be used stops the daemon and is left as it is; status, DNS and flag errors say what is
 * wrong. Each test here failed before its fix.
 */
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net, { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readPcap } from '../../src/packet/pcap.js';
import { request } from '../../src/control/client.js';
import { asUser, cleanup, CLI, Container, Daemon, Lines, onCleanup, Outside, ping, PYTHON, requireSandbox, run, testUser, userTempDir, type RunResult } from './harness.js';

requireSandbox();

const NOBODY = 65534;

type PortRow = { name: string; kind: string; state: string; network: string; counters: { drops: Record<string, number> } | null };

/** Runs `usernet ARGS` as the test user with a chosen environment (no --socket added). */
function cliAs(args: string[], env: NodeJS.ProcessEnv): Promise<RunResult> {
  return run(asUser([process.execPath, CLI, ...args]), { env, timeoutMs: 30_000 });
}

/** A listener on a UNIX socket that answers every line like a daemon would, and counts connections. */
async function fakeDaemon(path: string): Promise<{ server: Server; connections: () => number }> {
  let n = 0;
  const server = createServer((s) => {
    n++;
    s.on('data', () => s.end(`${JSON.stringify({ id: 1, result: { version: 'FAKE DAEMON' } })}\n`));
    s.on('error', () => s.destroy());
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  onCleanup(() => server.close());
  return { server, connections: () => n };
}

/** Connects to 127.0.0.1:PORT: 'connected', or the error code. */
function probe(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
  });
}

/** Starts the daemon expecting it to refuse: resolves with its exit code and stderr. */
function daemonRefuses(d: Daemon): Promise<RunResult> {
  return run(d.argv(), { timeoutMs: 30_000 });
}

describe('a refused attach leaves nothing behind (the gateway name, a failed publish)', () => {
  let daemon: Daemon;
  let c: Container;
  beforeAll(async () => {
    [daemon, c] = await Promise.all([Daemon.start(), Container.start()]);
  });
  afterAll(cleanup);

  it('--name gateway is refused before any TAP is opened; the next attach of that container works', async () => {
    const fds = daemon.tunFds().length;
    const r = await daemon.cli(['attach', '--pid', String(c.pid), '--name', 'gateway', '--configure']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("usernet: the port name gateway is reserved for each network's gateway port: choose another --name\n");
    expect((await c.exec(['ip', 'link', 'show', 'eth0'])).code).not.toBe(0);
    expect(daemon.tunFds().length).toBe(fds);
    // Over the API: a stable code, and no internal error (with a stack) in the log.
    await expect(request(daemon.socket, 'attach', { pid: c.pid, name: 'gateway', configure: true })).rejects.toMatchObject({ code: 'ERR_NAME_RESERVED' });
    expect(daemon.logs.filter((l) => l.level >= 50)).toEqual([]);
    // The container is not stuck (EBUSY) and the port is ours to remove again.
    await daemon.attach(c, 'web', '10.0.2.50/24');
    expect((await daemon.containerPorts<PortRow>()).map((p) => p.name)).toEqual(['web']);
    await daemon.cliOk(['detach', 'web']);
    expect((await c.exec(['ip', 'link', 'show', 'eth0'])).code).not.toBe(0);
    expect(daemon.tunFds().length).toBe(fds);
  });

  it('a publish that fails after the TAP is open rolls the whole attach back', async () => {
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(18099, '0.0.0.0', resolve));
    onCleanup(() => holder.close());
    const fds = daemon.tunFds().length;
    const r = await daemon.cli(['attach', '--pid', String(c.pid), '--name', 'pub', '--configure', '-p', '18099:80']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/18099/);
    expect((await c.exec(['ip', 'link', 'show', 'eth0'])).code).not.toBe(0);
    expect(daemon.tunFds().length).toBe(fds);
    expect(await daemon.containerPorts<PortRow>()).toEqual([]);
    await daemon.attach(c, 'pub', '10.0.2.51/24');
    await daemon.cliOk(['detach', 'pub']);
  });

  it('the gateway port: capture and ports set work on it, detach is refused with a clear message', async () => {
    await daemon.attach(c, 'gw-user', '10.0.2.52/24');
    const file = join(userTempDir(), 'gateway.pcap');
    const capture = daemon.cli(['capture', '--port', 'gateway', '-w', file, '-c', '4']);
    await daemon.waitForLog((l) => l.msg === 'capture started' && l.port === 'gateway', 10_000, 0);
    expect(await ping(c, '10.0.2.2', 3)).toBe(3);
    expect((await capture).code).toBe(0);
    expect(readPcap(readFileSync(file)).records.length).toBe(4);

    await daemon.cliOk(['ports', 'set', 'gateway', '--tx-loss', '1']);
    expect(await ping(c, '10.0.2.2', 2)).toBe(0);
    const gw = (await daemon.cliJson<PortRow[]>(['ports'])).find((p) => p.kind === 'gateway' && p.network === 'default');
    expect(gw?.counters?.drops.injected_loss).toBeGreaterThanOrEqual(2);
    await daemon.cliOk(['ports', 'set', 'gateway', '--tx-loss', '0']);
    expect(await ping(c, '10.0.2.2', 2)).toBe(2);

    // Another network's gateway, named by --network.
    const other = await Container.start();
    await daemon.cliOk(['network', 'create', 'side', '--subnet', '10.0.7.0/24']);
    await daemon.attach(other, 'side-user', '10.0.7.10/24', ['--network', 'side']);
    const sideFile = join(userTempDir(), 'side-gateway.pcap');
    const sideCapture = daemon.cli(['capture', '--port', 'gateway', '--network', 'side', '-w', sideFile, '-c', '2']);
    await daemon.waitForLog((l) => l.msg === 'capture started' && l.port === 'gateway' && l.network === 'side', 10_000, 0);
    expect(await ping(other, '10.0.7.2', 1)).toBe(1);
    expect((await sideCapture).code).toBe(0);
    expect(readPcap(readFileSync(sideFile)).records.length).toBe(2);
    await daemon.cliOk(['detach', 'side-user']);
    await daemon.cliOk(['network', 'rm', 'side']);

    const r = await daemon.cli(['detach', 'gateway']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("usernet: gateway is the network's own port (ARP, ping, DHCP, DNS and the NAT): it cannot be detached\n");
    await daemon.cliOk(['detach', 'gw-user']);
  });
});

describe('the socket: the CLI checks what it talks to, the daemon checks who talks to it', () => {
  afterEach(cleanup);

  it("does not talk to a socket another user planted in the default directory (XDG_RUNTIME_DIR unset)", async () => {
    const u = testUser();
    const dir = `/tmp/usernet-${u.uid}`;
    rmSync(dir, { recursive: true, force: true });
    onCleanup(() => rmSync(dir, { recursive: true, force: true }));
    // "Another user" (root here) makes the directory first, open to all, with a fake daemon in it.
    mkdirSync(dir, { mode: 0o777 });
    chmodSync(dir, 0o777);
    const fake = await fakeDaemon(join(dir, 'usernet.sock'));
    const env = { PATH: process.env.PATH };
    let r = await cliAs(['status'], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`usernet: refusing to talk to ${dir}/usernet.sock: ${dir} belongs to uid 0, not to you (uid ${u.uid}); another user may have made it\n`);
    expect(r.stdout).not.toContain('FAKE');
    // Ours, but open to others: someone could have put the socket there.
    chownSync(dir, u.uid, u.gid);
    r = await cliAs(['status'], env);
    expect(r.stderr).toMatch(/has mode 0777, not 0700/);
    // Ours and private, but the socket in it is not ours.
    chmodSync(dir, 0o700);
    r = await cliAs(['status'], env);
    expect(r.stderr).toBe(`usernet: refusing to talk to ${dir}/usernet.sock: it belongs to uid 0, not to you (uid ${u.uid})\n`);
    expect(fake.connections()).toBe(0);
  });

  it('a --socket must be owned by the user or root', async () => {
    const dir = userTempDir();
    const path = join(dir, 'other.sock');
    const fake = await fakeDaemon(path);
    chmodSync(path, 0o777);
    chownSync(path, NOBODY, NOBODY);
    const r = await cliAs(['status', '--socket', path], { PATH: process.env.PATH });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`usernet: refusing to talk to ${path}: it belongs to uid ${NOBODY}; a --socket must be owned by you (uid ${testUser().uid}) or root\n`);
    // Root's socket is fine (a daemon run by root).
    chownSync(path, 0, 0);
    const ok = await cliAs(['status', '--socket', path], { PATH: process.env.PATH });
    expect(ok.stdout).toContain('FAKE DAEMON');
    expect(fake.connections()).toBe(1);
  });

  it("the daemon's API answers its own user and root, and refuses any other uid (SO_PEERCRED)", async () => {
    const daemon = await Daemon.start();
    // A socket someone made reachable by all (a --socket in a shared directory).
    chmodSync(daemon.dir, 0o777);
    chmodSync(daemon.socket, 0o777);
    const client = `const s=require('net').connect(${JSON.stringify(daemon.socket)});s.on('connect',()=>s.write(JSON.stringify({id:1,method:'status'})+'\\n'));let b='';s.on('data',d=>b+=d);s.on('close',()=>{process.stdout.write(b)});`;
    const other = await run(['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--', process.execPath, '-e', client]);
    const reply = JSON.parse(other.stdout) as { error?: { code: string; message: string }; result?: unknown };
    expect(reply.result).toBeUndefined();
    expect(reply.error).toEqual({ code: 'ERR_PEER_REFUSED', message: `uid ${NOBODY} may not use this daemon (it serves uid ${testUser().uid} and root)` });
    await daemon.waitForLog((l) => l.msg.startsWith('control connection from another user refused'));
    // Root may (root can reach any socket anyway).
    expect(await request<{ version: string }>(daemon.socket, 'status')).toMatchObject({ version: expect.any(String) });
    expect((await daemon.cli(['status'])).code).toBe(0);
  });
});

describe('a state write that fails changes nothing', () => {
  afterAll(cleanup);

  it('detach, network rm/create, publish and unpublish: one line, exit 1, and memory, TAP and file as they were', async () => {
    const [daemon, c] = await Promise.all([Daemon.start(), Container.start()]);
    await daemon.cliOk(['network', 'create', 'back', '--subnet', '10.0.9.0/24']);
    await daemon.attach(c, 'c8', '10.0.2.80/24', ['-p', '18181:80']);
    const stateFile = join(daemon.stateDir, 'state.json');
    const before = readFileSync(stateFile, 'utf8');
    const fds = daemon.tunFds().length;
    chmodSync(daemon.stateDir, 0o500);
    onCleanup(() => chmodSync(daemon.stateDir, 0o700));
    const refused = `usernet: cannot save state in ${daemon.stateDir}: permission denied\n`;

    for (const args of [['detach', 'c8'], ['network', 'rm', 'back'], ['network', 'create', 'more', '--subnet', '10.0.10.0/24'], ['publish', 'c8', '18182:80'], ['unpublish', 'c8', '18181:80']]) {
      const r = await daemon.cli(args);
      expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 1, stderr: refused });
    }
    // Nothing changed: c8 attached and up, its TAP and address in the container, its port
    // published and listening, the network there, the one refused not created, the file as it was.
    expect((await daemon.containerPorts<PortRow>()).map((p) => [p.name, p.state])).toEqual([['c8', 'up']]);
    expect(await c.execOk(['ip', '-4', 'addr', 'show', 'eth0'])).toContain('10.0.2.80/24');
    expect(daemon.tunFds().length).toBe(fds);
    const published = await daemon.cliJson<Array<{ hostPort: number; state: string }>>(['publish', '--list']);
    expect(published.map((p) => [p.hostPort, p.state])).toEqual([[18181, 'listening']]);
    // The published port accepts (the container, with no server on 80, then resets the client);
    // the one refused has no listener at all.
    expect(await probe(18181)).not.toBe('ECONNREFUSED');
    expect(await probe(18182)).toBe('ECONNREFUSED');
    const networks = await daemon.cliJson<{ networks: Array<{ name: string }> }>(['network', 'ls']);
    expect(networks.networks.map((n) => n.name).sort()).toEqual(['back', 'default']);
    expect(readFileSync(stateFile, 'utf8')).toBe(before);
    expect(readdirSync(daemon.stateDir).filter((n) => n.startsWith('state.json'))).toEqual(['state.json']);

    // Writable again: a restart finds exactly what was there.
    chmodSync(daemon.stateDir, 0o700);
    await daemon.kill('SIGKILL');
    await daemon.launch();
    await daemon.waitForLog((l) => l.msg === 're-attached' && l.port === 'c8', 10_000, 0);
    expect(await ping(c, '10.0.2.2', 1)).toBe(1);
    await daemon.cliOk(['detach', 'c8']);
    expect((await c.exec(['ip', 'link', 'show', 'eth0'])).code).not.toBe(0);
  });
});

describe('a state file that cannot be used stops the daemon and is left as it is', () => {
  afterEach(cleanup);

  async function expectRefusedWith(content: string | null, setup: (file: string) => void, message: RegExp): Promise<void> {
    const d = new Daemon(userTempDir(), [], true);
    const u = testUser();
    mkdirSync(d.stateDir, { mode: 0o700 });
    chownSync(d.stateDir, u.uid, u.gid);
    const file = join(d.stateDir, 'state.json');
    if (content !== null) {
      writeFileSync(file, content);
      chownSync(file, u.uid, u.gid);
    }
    setup(file);
    const r = await daemonRefuses(d);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n').pop()).toMatch(message);
    // Untouched: no copy, no move, no pid file, no socket.
    expect(readdirSync(d.stateDir)).toEqual(['state.json']);
    if (content !== null && statSync(file).isFile()) {
      chmodSync(file, 0o600);
      expect(readFileSync(file, 'utf8')).toBe(content);
    }
    expect(existsSync(d.socket)).toBe(false);
  }

  it('a file from a newer usernet (a downgrade)', async () => {
    await expectRefusedWith(JSON.stringify({ version: 3, networks: [], attachments: [], leases: [] }), () => {}, /^usernet: the state file .*state\.json cannot be used: it was written by a newer usernet \(state version 3; this one reads up to 2\)/);
  });

  it('a file it may not read (EACCES)', async () => {
    await expectRefusedWith(JSON.stringify({ version: 2, networks: [], attachments: [], leases: [] }), (f) => chmodSync(f, 0o000), /^usernet: cannot read the state file .*state\.json: permission denied/);
  });

  it('a directory where the file should be (EISDIR)', async () => {
    await expectRefusedWith(null, (f) => mkdirSync(f), /^usernet: cannot read the state file .*state\.json: is a directory/);
  });

  it('a file that is not JSON', async () => {
    await expectRefusedWith('{"version": 2, "attachments": [', () => {}, /^usernet: the state file .* cannot be used: it is not JSON/);
  });

  it('one malformed lease is skipped with a warning; attachments are kept; the original is copied before the first rewrite', async () => {
    const [daemon, c] = await Promise.all([Daemon.start(), Container.start()]);
    await daemon.attach(c, 'keep', '10.0.2.90/24');
    await daemon.kill('SIGKILL');
    const file = join(daemon.stateDir, 'state.json');
    const state = JSON.parse(readFileSync(file, 'utf8')) as { leases: unknown[] };
    state.leases.push({ network: 'default', mac: '02:00:00:00:00:99', ip: '10.0.2.99' });
    const spoiled = JSON.stringify(state);
    writeFileSync(file, spoiled);
    await daemon.launch();
    await daemon.waitForLog((l) => l.msg === 'state file entry skipped: lease #1: no expiry time', 10_000, 0);
    await daemon.waitForLog((l) => l.msg === 're-attached' && l.port === 'keep', 10_000, 0);
    expect(await ping(c, '10.0.2.2', 1)).toBe(1);
    expect(readdirSync(daemon.stateDir).filter((n) => n.startsWith('state.json.bad-'))).toEqual([]);
    // The first rewrite keeps the original first.
    await daemon.cliOk(['network', 'create', 'later', '--subnet', '10.0.11.0/24']);
    const copies = readdirSync(daemon.stateDir).filter((n) => n.startsWith('state.json.bad-'));
    expect(copies).toHaveLength(1);
    expect(readFileSync(join(daemon.stateDir, copies[0]), 'utf8')).toBe(spoiled);
    const now = JSON.parse(readFileSync(file, 'utf8')) as { attachments: Array<{ name: string }>; leases: unknown[] };
    expect(now.attachments.map((a) => a.name)).toEqual(['keep']);
    expect(now.leases).toEqual([]);
  });
});

describe('status, DNS and the command line say what is wrong', () => {
  afterEach(cleanup);

  it('status prints every counter (no [object Object]) and icc', async () => {
    const daemon = await Daemon.start({ args: ['--icc=false'] });
    const out = await daemon.cliOk(['status']);
    expect(out).not.toContain('[object Object]');
    expect(out).toMatch(/^icc: false$/m);
    expect(out).toMatch(/^conntrack:\n {2}entries: 0$/m);
    expect(out).toMatch(/^warnings: none$/m);
  });

  it('with no usable resolver and no --dns-upstream, warns at start and in status; queries get SERVFAIL', async () => {
    const empty = join(userTempDir(), 'empty-resolv.conf');
    writeFileSync(empty, '# nothing here\n');
    chmodSync(empty, 0o644);
    // A mount namespace of its own where /etc/resolv.conf is that empty file.
    const wrap = ['unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', `mount --bind ${empty} /etc/resolv.conf && exec "$@"`, 'sh'];
    const [daemon, c] = await Promise.all([Daemon.start({ wrap }), Container.start()]);
    const warning = 'network default: no DNS upstream (/etc/resolv.conf names no usable nameserver): every query to 10.0.2.3 is answered SERVFAIL; give --dns-upstream IP';
    await daemon.waitForLog((l) => l.level === 40 && l.msg === warning, 10_000, 0);
    const status = await daemon.cliJson<{ warnings: string[] }>(['status']);
    expect(status.warnings).toEqual([warning]);
    expect(await daemon.cliOk(['status'])).toContain(`warnings:\n  ${warning}\n`);
    await daemon.attach(c, 'dns', '10.0.2.60/24');
    const dig = await c.exec(['dig', '+time=3', '+tries=1', '@10.0.2.3', 'example.test']);
    expect(dig.stdout).toContain('status: SERVFAIL');
    await daemon.waitForLog((l) => l.level === 40 && l.msg.startsWith('DNS query answered SERVFAIL: no upstream resolver'));
  });

  it('global --socket before the command, repeated flags, a non-network namespace, an unwritable resolv.conf path', async () => {
    const [daemon, c] = await Promise.all([Daemon.start(), Container.start()]);
    const base = [process.execPath, CLI];
    let r = await run(asUser([...base, '--socket', daemon.socket, 'attach', '--pid', String(c.pid), '--name', 'g1', '--configure']));
    expect({ code: r.code, stderr: r.stderr, stdout: r.stdout }).toEqual({ code: 0, stderr: '', stdout: 'g1\n' });
    r = await run(asUser([...base, `--socket=${daemon.socket}`, 'ports']));
    expect(r.stdout).toMatch(/^g1 /m);
    await daemon.cliOk(['detach', 'g1']);

    r = await daemon.cli(['attach', '--pid', String(c.pid), '--pid', '1']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('usernet: attach: --pid is given more than once (it takes one value; see usernet attach --help)\n');

    r = await daemon.cli(['attach', '--netns', `/proc/${c.pid}/ns/user`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`usernet: /proc/${c.pid}/ns/user is a user namespace, not a network namespace: give /proc/PID/ns/net or a file made by ip netns (/run/netns/NAME)\n`);
    expect(await daemon.containerPorts<PortRow>()).toEqual([]);

    r = await daemon.cli(['attach', '--pid', String(c.pid), '--name', 'rc', '--resolv-conf', '/proc/version']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('usernet: attached as rc, but cannot write /proc/version: /proc does not take new files\n');
  });
});

describe('a daemon restart resets the connections its predecessor carried', () => {
  afterAll(cleanup);

  it('outbound and published TCP connections idle in the containers get ECONNRESET within 1 s of the restart', async () => {
    const out = await Outside.create();
    const [daemon, a, b] = await Promise.all([Daemon.start(), Container.start(), Container.start()]);
    await daemon.attach(a, 'a', '10.0.2.21/24');
    await daemon.attach(b, 'b', '10.0.2.22/24', ['-p', '18300:80']);
    // Outside: a server that accepts and then says nothing (so the container's reader waits).
    const holdServer = "import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('198.51.100.2', 7600))\ns.listen()\nprint('ready', flush=True)\nconns=[]\nwhile True:\n  c,_=s.accept(); conns.append(c)";
    await out.startUntil([PYTHON, '-u', '-c', holdServer], (l) => l === 'ready');
    // Container a: connects out through the NAT and waits to read; says how the wait ended.
    const reader = (how: string): string => `import socket,sys\n${how}\nprint('connected', flush=True)\ntry:\n  d = s.recv(1)\n  print('eof' if d == b'' else 'data', flush=True)\nexcept ConnectionResetError:\n  print('reset', flush=True)\nexcept Exception as e:\n  print('error', e, flush=True)`;
    const outbound = new Lines(await a.startUntil([PYTHON, '-u', '-c', reader("s = socket.create_connection(('198.51.100.2', 7600))")], (l) => l === 'connected'));
    // Container b: a server on its published port, holding the accepted connection idle.
    const server = new Lines(await b.startUntil([PYTHON, '-u', '-c', reader("l = socket.socket()\nl.bind(('0.0.0.0', 80))\nl.listen()\nprint('ready', flush=True)\ns, _ = l.accept()")], (l) => l === 'ready'));
    const client = net.connect(18300, '198.51.100.1');
    client.on('error', () => {});
    await server.waitFor((l) => l === 'connected', 10_000);
    // startUntil took the "connected" line: nothing more yet.
    expect(outbound.lines).toEqual([]);

    await daemon.kill('SIGKILL');
    const since = daemon.logs.length;
    await daemon.launch();
    const listening = Date.now();
    await Promise.all([outbound.waitFor(() => true, 5_000), server.waitFor((l) => l !== 'connected', 5_000)]);
    const took = Date.now() - listening;
    expect(outbound.lines.at(-1)).toBe('reset');
    expect(server.lines.at(-1)).toBe('reset');
    expect(took).toBeLessThan(1000);
    const said = daemon.logs.slice(since).filter((l) => l.msg === 'connections the previous daemon carried: reset').map((l) => [l.port, l.connections]);
    expect(said.sort()).toEqual([['a', 1], ['b', 1]]);
    client.destroy();
  });
});
