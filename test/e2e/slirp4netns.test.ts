/**
 * usernet-slirp4netns end to end, run the way rootlesskit, Podman and slirp4netns's own tests run
 * slirp4netns: as the unprivileged test user, against a rootless namespace (`unshare --user
 * --map-root-user --net`), with a ready fd and an exit fd, the API socket driven with raw JSON —
 * and real clients: curl, dig, ncat, udhcpc, ping. Each test checks what a client relies on, and
 * that the program leaves nothing behind (no TAP it made, no listener, no socket file, no process).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Container, Daemon, FIXTURES, Lines, Outside, PROJECT, asUser, cleanup, exited, onCleanup, ping, processExit, requireSandbox, run, runOk, startUntil, testUser, track, userTempDir } from './harness.js';

requireSandbox();

// The program runtimes run: a shell script that execs the native launcher, which execs Node.
const SLIRP = join(PROJECT, 'bin', 'usernet-slirp4netns');
const DHCP_SCRIPT = join(FIXTURES, 'udhcpc-event.sh');

interface Slirp {
  child: ChildProcess;
  stderr: () => string;
  /** Resolves with what was written to the ready fd (fd 3), once it is closed. */
  ready: Promise<string>;
  /** The write end of the exit fd (fd 4): destroying it hangs the exit fd up. */
  exitPipe: NodeJS.WritableStream & { destroy(): void };
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts usernet-slirp4netns as the test user with fd 3 = a ready pipe, fd 4 = an exit pipe. */
function startSlirp(args: string[]): Slirp {
  const argv = asUser([SLIRP, ...args]);
  const child = track(spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'] }));
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  child.stdout?.resume();
  const readyStream = child.stdio[3] as NodeJS.ReadableStream;
  const ready = new Promise<string>((resolve, reject) => {
    let got = '';
    readyStream.on('data', (d: Buffer) => (got += d.toString()));
    readyStream.on('end', () => (got === '1' ? resolve(got) : reject(new Error(`the ready fd closed with ${JSON.stringify(got)}, not "1":\n${err}`))));
    readyStream.on('error', reject);
    child.once('exit', (code) => reject(new Error(`usernet-slirp4netns exited (${code}) before it was ready:\n${err}`)));
    setTimeout(() => reject(new Error(`usernet-slirp4netns not ready within 20 s:\n${err}`)), 20_000).unref();
  });
  ready.catch(() => undefined);
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    // Asked to stop, it must: a generous bound turns a hang into a failure that says so.
    const t = setTimeout(() => reject(new Error(`usernet-slirp4netns (pid ${child.pid}) still running after 60 s:\n${err}`)), 60_000);
    child.once('exit', () => clearTimeout(t));
  });
  exit.catch(() => undefined);
  return { child, stderr: () => err, ready, exitPipe: child.stdio[4] as unknown as Slirp['exitPipe'], exit };
}

/** One request on the API socket, as `ncat -U` sends it: write, shut down, read to the end. */
function api(path: string, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    let reply = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (reply += d));
    s.on('end', () => resolve(reply));
    s.on('error', reject);
    s.on('connect', () => s.end(request));
    s.setTimeout(10_000, () => {
      s.destroy();
      reject(new Error(`no reply on ${path} within 10 s to ${request}; got: ${reply}`));
    });
  });
}

async function tapExists(c: Container, name = 'tap0'): Promise<boolean> {
  return (await c.exec(['ip', 'link', 'show', name])).code === 0;
}

async function listening(port: number): Promise<boolean> {
  return (await run(['ss', '-Hltn', `sport = :${port}`])).stdout.trim() !== '';
}

/** A python HTTP server in `c`; its stderr access log collects client addresses. */
/** A python HTTP server in `c`; its access log (stderr) as Lines. */
async function httpServer(c: Container, port: number, bind = '0.0.0.0'): Promise<Lines> {
  const dir = userTempDir();
  await run(['sh', '-c', `echo "served in the namespace" > ${dir}/index.html`]);
  const child = await c.startUntil(['python3', '-u', '-m', 'http.server', String(port), '--bind', bind, '--directory', dir], (l) => l.startsWith('Serving HTTP'));
  return new Lines(child, 'stderr');
}

describe('usernet-slirp4netns', () => {
  let out: Outside;
  let outsideWeb: ChildProcess;
  let dns: ChildProcess;

  beforeAll(async () => {
    out = await Outside.create();
    const dir = userTempDir();
    await run(['sh', '-c', `echo "outside" > ${dir}/index.html`]);
    outsideWeb = await out.startUntil(['python3', '-u', '-m', 'http.server', '80', '--bind', '198.51.100.2', '--directory', dir], (l) => l.startsWith('Serving HTTP'));
    // The sandbox's resolv.conf says 127.0.0.1: the DNS forwarder at cidr+3 asks this dnsmasq.
    dns = await startUntil(
      ['dnsmasq', '--no-daemon', '--no-resolv', '--no-hosts', '--pid-file=', '--listen-address=127.0.0.1', '--bind-interfaces', '--port=53', '--address=/test/192.0.2.7', '--log-facility=-'],
      (l) => /started, version/.test(l),
      { stream: 'stderr' },
    );
  });

  afterAll(async () => {
    outsideWeb?.kill();
    dns?.kill();
    await cleanup();
  });

  it('-c: configures the TAP, signals ready, carries TCP, UDP, DNS and ping, serves the API, and ends on exit-fd hang-up leaving nothing', async () => {
    const c = await Container.start();
    const sock = join(userTempDir(), 'api.sock');
    const s = startSlirp(['-c', '--mtu', '65520', '-r', '3', '-e', '4', '-a', sock, String(c.pid), 'tap0']);
    expect(await s.ready).toBe('1');
    const addr = JSON.parse(await c.execOk(['ip', '-j', '-4', 'addr', 'show', 'tap0'])) as Array<{ mtu: number; addr_info: Array<{ local: string; prefixlen: number }> }>;
    expect(addr[0]?.mtu).toBe(65520);
    expect(addr[0]?.addr_info[0]).toMatchObject({ local: '10.0.2.100', prefixlen: 24 });
    expect(await c.execOk(['ip', 'route', 'show', 'default'])).toMatch(/^default via 10\.0\.2\.2 dev tap0/);
    expect(await c.execOk(['curl', '-sS', '-m', '10', 'http://198.51.100.2/'])).toBe('outside\n');
    expect(await c.execOk(['dig', '+short', '+time=5', '+tries=1', '@10.0.2.3', 'host.test'])).toBe('192.0.2.7\n');
    expect((await c.exec(['ping', '-c', '1', '-W', '5', '10.0.2.2'])).code).toBe(0);

    // The API: a forward from the host's port to the namespace's server, which sees the real client.
    const log = await httpServer(c, 80);
    expect(await api(sock, '{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"0.0.0.0","host_port":18090,"guest_addr":"","guest_port":80}}')).toBe('{"return":{"id":1}}');
    expect(await api(sock, '{"execute":"list_hostfwd"}')).toBe('{"entries":[{"id":1,"proto":"tcp","host_addr":"0.0.0.0","host_port":18090,"guest_addr":"10.0.2.100","guest_port":80}]}');
    expect((await out.exec(['curl', '-sS', '-m', '10', `http://${Outside.HOST}:18090/`])).stdout).toBe('served in the namespace\n');
    await log.waitFor((l) => l.startsWith('198.51.100.2 - - '), 10_000);
    expect(await api(sock, '{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":18090,"guest_port":81}}')).toBe('{"error":{"desc":"bad request: add_hostfwd: slirp_add_hostfwd failed"}}');
    expect(await api(sock, '{"execute":"remove_hostfwd","arguments":{"id":1}}')).toBe('{"return":{}}');
    expect(await listening(18090)).toBe(false);
    expect(await api(sock, '{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":18091,"guest_port":80}}')).toBe('{"return":{"id":2}}');

    // Podman's way to stop it: the exit fd hangs up.
    s.exitPipe.destroy();
    expect(await s.exit).toEqual({ code: 0, signal: null });
    // The kernel closes a process's fds (and so removes a non-persistent TAP) before it reports
    // the exit: no wait needed.
    expect(await tapExists(c)).toBe(false);
    expect(await listening(18091)).toBe(false);
    expect(existsSync(sock)).toBe(false);
    // The one line on stderr: the refused duplicate, logged with its reason.
    expect(s.stderr().trim().split('\n')).toEqual([expect.stringContaining('"msg":"add_hostfwd failed"')]);
    expect(s.stderr()).toContain('0.0.0.0:18090/tcp is already published');
  });

  it('SIGKILL leaves no TAP, no listener and no process behind; SIGTERM exits 0', async () => {
    const c = await Container.start();
    const sock = join(userTempDir(), 'api.sock');
    const s = startSlirp(['-c', '-r', '3', '-a', sock, String(c.pid), 'tap0']);
    await s.ready;
    expect(await api(sock, '{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":18092,"guest_port":80}}')).toBe('{"return":{"id":1}}');
    expect(await listening(18092)).toBe(true);
    s.child.kill('SIGKILL');
    await s.exit;
    expect(await tapExists(c)).toBe(false);
    expect(await listening(18092)).toBe(false);
    expect((await run(['pgrep', '-f', SLIRP])).stdout).toBe('');

    // The killed one left its socket file; the next one on the same path replaces it.
    expect(existsSync(sock)).toBe(true);
    const t = startSlirp(['-c', '-r', '3', '-a', sock, String(c.pid), 'tap0']);
    await t.ready;
    expect(await api(sock, '{"execute":"list_hostfwd"}')).toBe('{"entries":[]}');
    t.child.kill('SIGTERM');
    expect(await t.exit).toEqual({ code: 0, signal: null });
    expect(await tapExists(c)).toBe(false);
  });

  it("attaches to a TAP that rootlesskit made and configured, without -c, and leaves it there", async () => {
    const c = await Container.start();
    for (const cmd of [
      ['ip', 'tuntap', 'add', 'name', 'tap0', 'mode', 'tap'],
      ['ip', 'link', 'set', 'tap0', 'up'],
      ['ip', 'addr', 'add', '10.0.2.100/24', 'dev', 'tap0'],
      ['ip', 'route', 'add', 'default', 'via', '10.0.2.2'],
    ]) {
      // As root of the container's user namespace, the way rootlesskit's child does it.
      await runOk(asUser(['nsenter', `--target=${c.pid}`, '--user', '--net', '--preserve-credentials', ...cmd]));
    }
    const s = startSlirp(['--mtu', '1500', '-r', '3', '--disable-host-loopback', String(c.pid), 'tap0']);
    await s.ready;
    expect(await c.execOk(['curl', '-sS', '-m', '10', 'http://198.51.100.2/'])).toBe('outside\n');
    s.child.kill('SIGTERM');
    expect((await s.exit).code).toBe(0);
    expect(await tapExists(c)).toBe(true);
  });

  it('--cidr moves every address; bad CIDRs get slirp4netns\'s errors', async () => {
    const c = await Container.start();
    const s = startSlirp(['-c', '--cidr', '10.0.5.0/24', '-r', '3', String(c.pid), 'tap0']);
    await s.ready;
    expect(await c.execOk(['ip', '-4', '-o', 'addr', 'show', 'tap0'])).toMatch(/inet 10\.0\.5\.100\/24/);
    expect((await c.exec(['ping', '-c', '1', '-W', '5', '10.0.5.2'])).code).toBe(0);
    expect(await c.execOk(['curl', '-sS', '-m', '10', 'http://198.51.100.2/'])).toBe('outside\n');
    s.child.kill('SIGTERM');
    await s.exit;

    for (const [cidr, message] of [
      ['10.0.2.100/24', 'CIDR needs to be a network address like 10.0.2.0/24, not like 10.0.2.100/24'],
      ['10.0.2.0/26', 'prefix length needs to be 1-25'],
      ['nonsense', 'invalid CIDR'],
    ]) {
      const r = await run(asUser([SLIRP, '--cidr', cidr as string, String(c.pid), 'tap0']));
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(message);
    }
    expect(await tapExists(c)).toBe(false);
  });

  it('--disable-host-loopback: 10.0.2.2 answers ping, connections to it are unreachable', async () => {
    const c = await Container.start();
    const host = await startUntil(['ncat', '-l', '-k', '-v', '127.0.0.1', '12121'], (l) => /Listening on/.test(l), { stream: 'stderr' });
    const s = startSlirp(['-c', '--disable-host-loopback', '-r', '3', String(c.pid), 'tap0']);
    await s.ready;
    expect((await c.exec(['ping', '-c', '1', '-W', '5', '10.0.2.2'])).code).toBe(0);
    const r = await c.exec(['ncat', '-v', '-w', '5', '10.0.2.2', '12121'], { input: 'should fail\n' });
    expect(r.stderr).toMatch(/Network is unreachable/);
    host.kill();
    s.child.kill('SIGTERM');
    await s.exit;
  });

  it('without -c the namespace can ask DHCP, which hands out cidr+15 as slirp4netns does', async () => {
    const c = await Container.start();
    const s = startSlirp(['-r', '3', String(c.pid), 'tap0']);
    await s.ready;
    // Made by the native launcher before Node started (a multi-queue TAP, one queue left now), so
    // that it is there at once, as slirp4netns's is, for callers that do not wait for ready.
    expect(await c.execOk(['ip', '-d', 'link', 'show', 'tap0'])).toMatch(/tun type tap .*multi_queue/);
    await c.execOk(['ip', 'link', 'set', 'tap0', 'up']);
    const outText = await c.execOk(['busybox', 'udhcpc', '-i', 'tap0', '-s', DHCP_SCRIPT, '-n', '-q', '-t', '5', '-T', '1'], { timeoutMs: 30_000 });
    expect(outText).toMatch(/EVENT bound ip=10\.0\.2\.15 subnet=255\.255\.255\.0 router=10\.0\.2\.2 dns=10\.0\.2\.3/);
    // The early TAP is not persistent either: SIGKILL takes it away.
    s.child.kill('SIGKILL');
    await s.exit;
    expect(await tapExists(c)).toBe(false);
  });

  it('--macaddress sets the MAC of the TAP', async () => {
    const c = await Container.start();
    const s = startSlirp(['-c', '--macaddress', '0e:d4:18:d9:38:fb', '-r', '3', String(c.pid), 'tap11']);
    await s.ready;
    expect((await c.link('tap11')).address).toBe('0e:d4:18:d9:38:fb');
    s.child.kill('SIGTERM');
    await s.exit;
  });

  it('--disable-dns: nothing answers at cidr+3 (a connection times out)', async () => {
    const c = await Container.start();
    const s = startSlirp(['-c', '--disable-dns', '-r', '3', String(c.pid), 'tap0']);
    await s.ready;
    const r = await c.exec(['ncat', '-v', '-w', '2', '10.0.2.3', '53'], { input: 'should fail\n' });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Connection timed out|TIMEOUT/);
    s.child.kill('SIGTERM');
    await s.exit;
  });

  it('--outbound-addr (an address or an interface name) is the source of connections, to the host loopback too', async () => {
    for (const [given, seen] of [
      [Outside.HOST, Outside.HOST],
      ['lo', '127.0.0.1'],
    ]) {
      const c = await Container.start();
      const server = await startUntil(['ncat', '-l', '-v', '0.0.0.0', '12122'], (l) => /Listening on/.test(l), { stream: 'stderr' });
      let log = '';
      server.stderr?.on('data', (d: Buffer) => (log += d.toString()));
      const s = startSlirp(['-c', `--outbound-addr=${given}`, '-r', '3', String(c.pid), 'tap0']);
      await s.ready;
      await c.exec(['ncat', '-w', '5', '10.0.2.2', '12122'], { input: 'hello\n' });
      await exited(server);
      expect(log).toContain(`Connection from ${seen}`);
      s.child.kill('SIGTERM');
      await s.exit;
    }
    const r = await run(asUser([SLIRP, '--outbound-addr=nosuchif0', '1', 'tap0']));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('--outbound-addr nosuchif0: not an IPv4 address, and no interface has that name');
  });

  it('--netns-type=path with --userns-path, and options after the operands', async () => {
    const c = await Container.start();
    const s = startSlirp([`/proc/${c.pid}/ns/net`, 'tap0', '--netns-type=path', `--userns-path=/proc/${c.pid}/ns/user`, '-c', '-r', '3']);
    await s.ready;
    expect(await c.execOk(['curl', '-sS', '-m', '10', 'http://198.51.100.2/'])).toBe('outside\n');
    s.child.kill('SIGTERM');
    expect((await s.exit).code).toBe(0);
    // A PID with --userns-path, as slirp4netns's seccomp test gives it.
    const t = startSlirp(['-c', `--userns-path=/proc/${c.pid}/ns/user`, '-r', '3', String(c.pid), 'tap11']);
    await t.ready;
    expect(await c.execOk(['ip', '-4', '-o', 'addr', 'show', 'tap11'])).toMatch(/inet 10\.0\.2\.100\/24/);
    t.child.kill('SIGTERM');
    expect((await t.exit).code).toBe(0);
  });

  it('rootlesskit drives it unchanged, sandbox and seccomp on: its TAP, its ready fd, port forwards through the API, SIGKILL at the end', async () => {
    const dir = userTempDir();
    await run(['sh', '-c', `echo "served under rootlesskit" > ${dir}/index.html`]);
    // The child: report the address, fetch from outside, serve on port 80, then wait.
    const child = [
      'ip -4 -o addr show tap0',
      'curl -sS -m 10 http://198.51.100.2/',
      // http.server prints "Serving HTTP" once it listens: the test waits for that line.
      `exec python3 -u -m http.server 80 --bind 0.0.0.0 --directory ${dir}`,
    ].join('; ');
    const argv = asUser([
      'rootlesskit', '--net=slirp4netns', `--slirp4netns-binary=${SLIRP}`, '--slirp4netns-sandbox=true', '--slirp4netns-seccomp=true', '--mtu=65520', '--disable-host-loopback',
      '--port-driver=slirp4netns', '-p', '0.0.0.0:18110:80/tcp', '--copy-up=/etc', '--state-dir', join(userTempDir(), 'rk'),
      'sh', '-c', child,
    ]);
    const rk = track(spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] }));
    let stdout = '';
    let stderr = '';
    rk.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    rk.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const rkOut = new Lines(rk);
    const rkErr = new Lines(rk, 'stderr');
    await Promise.race([
      rkOut.waitFor((l) => l.startsWith('Serving HTTP'), 30_000),
      exited(rk).then(() => {
        throw new Error(`rootlesskit exited early:\n${stdout}\n${stderr}`);
      }),
    ]);
    expect(stdout).toMatch(/tap0\s+inet 10\.0\.2\.100\/24/);
    expect(stdout).toContain('outside\n');
    expect((await out.exec(['curl', '-sS', '-m', '10', `http://${Outside.HOST}:18110/`])).stdout).toBe('served under rootlesskit\n');
    await rkErr.waitFor((l) => l.startsWith('198.51.100.2 - - '), 10_000);
    // The program itself (rootlesskit's own processes name it in their arguments too).
    const slirpPids = (await run(['pgrep', '-f', `${SLIRP}.js`])).stdout.split('\n').filter(Boolean).map(Number);
    expect(slirpPids).toHaveLength(1);
    rk.kill('SIGTERM');
    await exited(rk);
    // rootlesskit SIGKILLs usernet-slirp4netns: once it has exited, nothing of it stays.
    await processExit(slirpPids[0]);
    expect(existsSync(`/proc/${slirpPids[0]}`)).toBe(false);
    expect(await listening(18110)).toBe(false);
  });

  it('--enable-sandbox: an empty root with /etc and /run, only CAP_NET_BIND_SERVICE, the caller\'s mounts untouched — and the network still works', async () => {
    const c = await Container.start();
    // The API socket in a directory under /run, as rootlesskit and Podman place theirs
    // ($XDG_RUNTIME_DIR): /run stays in the sandbox's view.
    const runDir = `/run/usernet-e2e-${process.pid}`;
    mkdirSync(runDir, { recursive: true });
    chownSync(runDir, testUser().uid, testUser().gid);
    onCleanup(() => rmSync(runDir, { recursive: true, force: true }));
    const sock = join(runDir, 'api.sock');
    const s = startSlirp(['-c', '--enable-sandbox', '-r', '3', '-a', sock, String(c.pid), 'tap0']);
    expect(await s.ready).toBe('1');
    const pid = s.child.pid as number;
    const root = `/proc/${pid}/root`;
    expect(readdirSync(root).sort()).toEqual(['etc', 'run']);
    for (const gone of ['home', 'root', 'var', 'usr', 'tmp', 'proc']) expect(existsSync(`${root}/${gone}`), gone).toBe(false);
    const caps = (await runOk(['getpcaps', String(pid)])).trim().split('\n').pop() as string;
    expect(caps).toContain('cap_net_bind_service');
    expect(caps).not.toContain('cap_sys_admin');
    // It reads the host's resolvers from /etc after the pivot, and its sockets work as before.
    expect(await c.execOk(['curl', '-sS', '-m', '10', 'http://198.51.100.2/'])).toBe('outside\n');
    expect(await c.execOk(['dig', '+short', '+time=5', '+tries=1', '@10.0.2.3', 'host.test'])).toBe('192.0.2.7\n');
    expect(await api(sock, '{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":18096,"guest_port":80}}')).toBe('{"return":{"id":1}}');
    expect(await listening(18096)).toBe(true);
    // Nothing of the sandbox leaks into the caller's mount namespace.
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toMatch(/ \/old | tmpfs tmpfs .*size=64k/);
    s.child.kill('SIGTERM');
    expect((await s.exit).code).toBe(0);
    expect(await tapExists(c)).toBe(false);
  });

  it('--enable-seccomp: every thread runs under the filter, privileged calls fail, the network works', async () => {
    const c = await Container.start();
    const s = startSlirp(['-c', '--enable-seccomp', '-r', '3', String(c.pid), 'tap0']);
    await s.ready;
    const pid = s.child.pid as number;
    const tasks = readdirSync(`/proc/${pid}/task`);
    expect(tasks.length).toBeGreaterThan(1);
    for (const t of tasks) expect(readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8')).toMatch(/^Seccomp:\s+2$/m);
    expect(readFileSync(`/proc/${pid}/status`, 'utf8')).toMatch(/^NoNewPrivs:\s+1$/m);
    expect(await c.execOk(['curl', '-sS', '-m', '10', 'http://198.51.100.2/'])).toBe('outside\n');
    s.child.kill('SIGTERM');
    expect((await s.exit).code).toBe(0);
  });

  it('--help (exit 0) names the flags clients probe for; -v has slirp4netns\'s layout', async () => {
    const help = await run([SLIRP, '--help']);
    expect(help.code).toBe(0);
    for (const flag of ['--netns-type', '--enable-ipv6', '--cidr', '--disable-host-loopback', '--api-socket', '--enable-sandbox', '--enable-seccomp', '--mtu', '--outbound-addr', '--disable-dns']) {
      expect(help.stdout).toContain(flag);
    }
    const v = await run([SLIRP, '-v']);
    expect(v.code).toBe(0);
    expect(v.stdout.split('\n')[0]).toMatch(/^slirp4netns version /);
    expect(v.stdout).toMatch(/^SLIRP_CONFIG_VERSION_MAX: 4$/m);
  });
});

describe('usernet-slirp4netns --network: many containers, one switch', () => {
  let out: Outside;
  let daemon: Daemon;

  beforeAll(async () => {
    out = await Outside.create();
    daemon = await Daemon.start();
  });

  afterAll(async () => {
    await cleanup();
  });

  const portNames = async (): Promise<string[]> => (JSON.parse(await daemon.cliOk(['ports', '--json'])) as Array<{ name: string }>).map((p) => p.name);

  it('two instances started separately join the daemon\'s network and reach each other; a forward through one answers', async () => {
    const [a, b] = await Promise.all([Container.start(), Container.start()]);
    const sa = startSlirp(['--network', 'default', '--socket', daemon.socket, '-c', '-r', '3', '-e', '4', String(a.pid), 'tap0']);
    const sockB = join(userTempDir(), 'api.sock');
    const sb = startSlirp(['--network=default', `--socket=${daemon.socket}`, '-c', '-r', '3', '-a', sockB, String(b.pid), 'tap0']);
    await Promise.all([sa.ready, sb.ready]);
    expect(await a.execOk(['ip', '-4', '-o', 'addr', 'show', 'tap0'])).toMatch(/inet 10\.0\.2\.10[01]\/24/);
    const ipB = /inet (10\.0\.2\.\d+)\//.exec(await b.execOk(['ip', '-4', '-o', 'addr', 'show', 'tap0']))?.[1] as string;
    // Container to container, through the daemon's switch: what slirp4netns cannot do.
    expect(await ping(a, ipB, 2)).toBe(2);
    expect(await portNames()).toEqual(expect.arrayContaining([`slirp4netns-${sa.child.pid}`, `slirp4netns-${sb.child.pid}`]));

    const log = await httpServer(b, 80);
    expect(await api(sockB, '{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"0.0.0.0","host_port":18095,"guest_addr":"","guest_port":80}}')).toBe('{"return":{"id":1}}');
    expect(await api(sockB, '{"execute":"list_hostfwd"}')).toBe(`{"entries":[{"id":1,"proto":"tcp","host_addr":"0.0.0.0","host_port":18095,"guest_addr":"${ipB}","guest_port":80}]}`);
    expect((await out.exec(['curl', '-sS', '-m', '10', `http://${Outside.HOST}:18095/`])).stdout).toBe('served in the namespace\n');
    await log.waitFor((l) => l.startsWith('198.51.100.2 - - '), 10_000);
    expect(await daemon.cliOk(['publish', '--list'])).toContain('0.0.0.0:18095');

    // SIGKILL: the daemon notices its owner is gone and removes the port and its forward.
    const since = daemon.logs.length;
    sb.child.kill('SIGKILL');
    await sb.exit;
    // The daemon sees its owner's exit (a pidfd) and says so once the port and its forward are gone.
    await daemon.waitForLog((l) => l.msg === 'container gone: port removed' && l.port === `slirp4netns-${sb.child.pid}`, 10_000, since);
    expect(await portNames()).not.toContain(`slirp4netns-${sb.child.pid}`);
    expect(await listening(18095)).toBe(false);
    expect(await tapExists(b)).toBe(false);
    // The exit fd way, for the other one: detached at once.
    sa.exitPipe.destroy();
    expect(await sa.exit).toEqual({ code: 0, signal: null });
    expect(await portNames()).not.toContain(`slirp4netns-${sa.child.pid}`);
    expect(await tapExists(a)).toBe(false);
  });

  it('a TAP configured with an address another container holds is refused, with the holder named', async () => {
    const [a, c] = await Promise.all([Container.start(), Container.start()]);
    const sa = startSlirp(['--network', 'default', '--socket', daemon.socket, '-c', '-r', '3', String(a.pid), 'tap0']);
    await sa.ready;
    const ipA = /inet (10\.0\.2\.\d+)\//.exec(await a.execOk(['ip', '-4', '-o', 'addr', 'show', 'tap0']))?.[1] as string;
    for (const cmd of [
      ['ip', 'tuntap', 'add', 'name', 'tap0', 'mode', 'tap'],
      ['ip', 'addr', 'add', `${ipA}/24`, 'dev', 'tap0'],
      ['ip', 'link', 'set', 'tap0', 'up'],
    ]) {
      await runOk(asUser(['nsenter', `--target=${c.pid}`, '--user', '--net', '--preserve-credentials', ...cmd]));
    }
    const r = await run(asUser([SLIRP, '--network', 'default', '--socket', daemon.socket, String(c.pid), 'tap0']));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`tap0 in that container already has the address ${ipA}, which is taken on network default by port slirp4netns-${sa.child.pid}`);
    expect(await tapExists(c)).toBe(true); // someone else's TAP: left as it was
    // A free address on a pre-configured TAP is adopted: the daemon then holds it for this container.
    await runOk(asUser(['nsenter', `--target=${c.pid}`, '--user', '--net', '--preserve-credentials', 'ip', 'addr', 'flush', 'dev', 'tap0']));
    await runOk(asUser(['nsenter', `--target=${c.pid}`, '--user', '--net', '--preserve-credentials', 'ip', 'addr', 'add', '10.0.2.150/24', 'dev', 'tap0']));
    const sc = startSlirp(['--network', 'default', '--socket', daemon.socket, '-r', '3', String(c.pid), 'tap0']);
    await sc.ready;
    expect(await ping(c, ipA, 1)).toBe(1);
    expect(await daemon.cliOk(['network', 'inspect', 'default'])).toContain('10.0.2.150');
    sc.child.kill('SIGTERM');
    sa.child.kill('SIGTERM');
    await Promise.all([sc.exit, sa.exit]);
  });

  it('refuses settings that belong to the daemon\'s network, and a network that does not exist', async () => {
    const c = await Container.start();
    const bad = await run(asUser([SLIRP, '--network', 'default', '--cidr', '10.0.9.0/24', String(c.pid), 'tap0']));
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("--cidr does not go with --network: it is a setting of the daemon's network");
    const none = await run(asUser([SLIRP, '--network', 'nosuch', '--socket', daemon.socket, String(c.pid), 'tap0']));
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/no network named nosuch|network nosuch/);
    expect(await tapExists(c)).toBe(false);
  });
});
