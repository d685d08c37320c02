/**
 * The end-to-end harness: real namespaces, real TAPs, a real daemon, real clients.
 *
 * Safety first: every e2e file calls requireSandbox() before anything else, which refuses to run
 * unless this process is inside the private network namespace made by test/run.mjs (default
 * routes are blackholes, resolv.conf says 127.0.0.1), so no packet can leave the machine.
 *
 * Rootless by default: containers are holder processes of the unprivileged test user in their
 * own user + network namespaces (`unshare --user --map-root-user --net`), and the daemon runs as
 * that user too. Test clients run inside containers through nsenter (as root, which only the test
 * harness uses; the daemon never gets it).
 *
 * Everything started here is registered and killed by cleanup(); tests wait for events (a log
 * line, a process's output, its exit), with a deadline that fails the test, not with sleeps.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { chownSync, mkdtempSync, readdirSync, readlinkSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { native, type WatchHandle } from '../../src/native/addon.js';

export const PROJECT = process.env.USERNET_PROJECT_DIR ?? resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = join(PROJECT, 'bin', 'usernet.js');
export const FIXTURES = join(PROJECT, 'test', 'fixtures');
export const PYTHON = '/usr/bin/python3';

export interface TestUser {
  name: string;
  uid: number;
  gid: number;
}

export function testUser(): TestUser {
  const name = process.env.USERNET_TEST_USER ?? 'usernet-test';
  const uid = Number(process.env.USERNET_TEST_UID ?? spawnSync('id', ['-u', name], { encoding: 'utf8' }).stdout.trim());
  const gid = Number(process.env.USERNET_TEST_GID ?? spawnSync('id', ['-g', name], { encoding: 'utf8' }).stdout.trim());
  if (!Number.isInteger(uid) || uid <= 0) throw new Error(`test user ${name} does not exist (test/run.mjs creates it)`);
  return { name, uid, gid };
}

/** Refuses to go on outside the network sandbox. */
export function requireSandbox(): void {
  if (process.env.USERNET_SANDBOX !== '1') throw new Error('e2e tests run only inside the network sandbox: use `npm test` (as root)');
  if (process.getuid?.() !== 0) throw new Error('e2e tests need root (to build namespaces and run clients in them)');
  const routes = spawnSync('ip', ['-4', 'route', 'show', 'default'], { encoding: 'utf8' }).stdout;
  if (!/^blackhole default/m.test(routes) || /via/.test(routes)) throw new Error(`refusing to run: the default route is not a blackhole:\n${routes}`);
  if (readFileSync('/etc/resolv.conf', 'utf8').split('\n').some((l) => /^nameserver/.test(l) && !/127\.0\.0\.1/.test(l))) {
    throw new Error('refusing to run: /etc/resolv.conf names a resolver other than 127.0.0.1');
  }
}

// ---------------------------------------------------------------------------------------------
// Process bookkeeping
// ---------------------------------------------------------------------------------------------

const live = new Set<ChildProcess>();
const tempDirs: string[] = [];
const cleanups: Array<() => void> = [];

/** Registers a child the harness kills at cleanup. */
export function track(child: ChildProcess): ChildProcess {
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

/** Kills everything the harness started and removes its temp dirs. Call in afterAll/afterEach. */
export async function cleanup(): Promise<void> {
  for (const fn of cleanups.splice(0)) {
    try {
      fn();
    } catch {
      // best effort
    }
  }
  const waits: Promise<unknown>[] = [];
  for (const child of live) {
    if (child.exitCode === null && child.signalCode === null) {
      waits.push(new Promise((r) => child.once('exit', r)));
      child.kill('SIGKILL');
    }
  }
  await Promise.all(waits);
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

export function onCleanup(fn: () => void): void {
  cleanups.push(fn);
}

/** A temp dir owned by the test user. */
export function userTempDir(prefix = 'usernet-e2e-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const u = testUser();
  chownSync(dir, u.uid, u.gid);
  tempDirs.push(dir);
  return dir;
}

/** A temp dir owned by root (for daemons run as root). */
export function rootTempDir(prefix = 'usernet-e2e-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

/** Argv prefix that runs a command as the unprivileged test user. */
export function asUser(argv: string[]): string[] {
  const u = testUser();
  return ['setpriv', `--reuid=${u.uid}`, `--regid=${u.gid}`, '--clear-groups', '--', ...argv];
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs argv to completion (asynchronously: the event loop, and the daemon, keep going). */
export function run(argv: string[], options: SpawnOptions & { input?: string | Buffer; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = track(spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], ...options }));
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const timeoutMs = options.timeoutMs ?? 60_000;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`timed out after ${timeoutMs} ms: ${argv.join(' ')}\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, stdout, stderr });
    });
    if (options.input !== undefined) child.stdin?.end(options.input);
    else child.stdin?.end();
  });
}

/** Runs argv and fails with its output unless it exits 0. Returns stdout. */
export async function runOk(argv: string[], options: SpawnOptions & { input?: string | Buffer; timeoutMs?: number } = {}): Promise<string> {
  const r = await run(argv, options);
  if (r.code !== 0) throw new Error(`${argv.join(' ')} exited ${r.code ?? r.signal}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

/** Starts argv and resolves when a line of `stream` satisfies `ready` (rejects on exit/timeout). */
export function startUntil(
  argv: string[],
  ready: (line: string) => boolean,
  options: { stream?: 'stdout' | 'stderr'; timeoutMs?: number; onLine?: (line: string) => void } & SpawnOptions = {},
): Promise<ChildProcess> {
  return new Promise((resolvePromise, reject) => {
    const child = track(spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], ...options }));
    const lines: string[] = [];
    let done = false;
    const timeoutMs = options.timeoutMs ?? 30_000;
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      child.kill('SIGKILL');
      reject(new Error(`not ready within ${timeoutMs} ms: ${argv.join(' ')}\n${lines.join('\n')}`));
    }, timeoutMs);
    for (const name of ['stdout', 'stderr'] as const) {
      const stream = child[name];
      if (!stream) continue;
      createInterface({ input: stream }).on('line', (line) => {
        options.onLine?.(line);
        if (lines.length < 200) lines.push(line);
        if (!done && name === (options.stream ?? 'stdout') && ready(line)) {
          done = true;
          clearTimeout(timer);
          resolvePromise(child);
        }
      });
    }
    child.once('exit', (code, signal) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(new Error(`exited (${code ?? signal}) before it was ready: ${argv.join(' ')}\n${lines.join('\n')}`));
    });
  });
}

/**
 * Resolves when process `pid` (not necessarily our child) has exited — an event, from a pidfd —
 * and rejects after `timeoutMs`. A process already gone resolves at once. Its fds, sockets and
 * TAPs are closed by then: the kernel closes them before it reports the exit.
 */
export function processExit(pid: number, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    let watch: WatchHandle | null = null;
    const timer = setTimeout(() => {
      if (watch) native().unwatch(watch);
      reject(new Error(`process ${pid} still running after ${timeoutMs} ms`));
    }, timeoutMs);
    try {
      watch = native().watchPid(pid, () => {
        clearTimeout(timer);
        if (watch) native().unwatch(watch);
        resolvePromise();
      });
    } catch (err) {
      clearTimeout(timer);
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') resolvePromise();
      else reject(err as Error);
    }
  });
}

/** Resolves when the child exits (immediately if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => child.once('exit', () => r()));
}

// ---------------------------------------------------------------------------------------------
// Containers
// ---------------------------------------------------------------------------------------------

export class Container {
  private constructor(
    readonly holder: ChildProcess,
    readonly pid: number,
    readonly rootless: boolean,
  ) {}

  /**
   * A container: a holder process in its own network namespace — and its own user namespace,
   * owned by the test user, when rootless (the default).
   */
  static async start(options: { rootless?: boolean } = {}): Promise<Container> {
    const rootless = options.rootless ?? true;
    const holder = ['sh', '-c', 'echo ready; exec sleep 86400'];
    const argv = rootless ? asUser(['unshare', '--user', '--map-root-user', '--net', ...holder]) : ['unshare', '--net', ...holder];
    const child = await startUntil(argv, (l) => l === 'ready');
    return new Container(child, child.pid as number, rootless);
  }

  /** argv prefix running a command inside this container's network namespace (as root). */
  nsenter(argv: string[]): string[] {
    return ['nsenter', `--target=${this.pid}`, '--net', '--', ...argv];
  }

  exec(argv: string[], options: SpawnOptions & { input?: string | Buffer; timeoutMs?: number } = {}): Promise<RunResult> {
    return run(this.nsenter(argv), options);
  }

  execOk(argv: string[], options: SpawnOptions & { input?: string | Buffer; timeoutMs?: number } = {}): Promise<string> {
    return runOk(this.nsenter(argv), options);
  }

  /** Starts a long-running command inside, ready when a stdout line satisfies `ready`. */
  startUntil(argv: string[], ready: (line: string) => boolean, timeoutMs?: number): Promise<ChildProcess> {
    return startUntil(this.nsenter(argv), ready, { timeoutMs });
  }

  /** The container's interface details (`ip -j link show IFNAME`). */
  async link(ifname = 'eth0'): Promise<{ address: string; mtu: number; flags: string[]; linkinfo?: { info_kind: string } }> {
    const out = await this.execOk(['ip', '-j', '-d', 'link', 'show', ifname]);
    return (JSON.parse(out) as Array<{ address: string; mtu: number; flags: string[]; linkinfo?: { info_kind: string } }>)[0];
  }

  async stop(): Promise<void> {
    this.holder.kill('SIGKILL');
    await exited(this.holder);
  }
}

// ---------------------------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------------------------

export interface LogLine {
  msg: string;
  level: number;
  [key: string]: unknown;
}

export class Daemon {
  readonly logs: LogLine[] = [];
  private waiters: Array<{ match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  child: ChildProcess | null = null;

  constructor(
    readonly dir: string,
    readonly args: string[],
    readonly rootless: boolean,
    /** argv run before the daemon's own (as root), e.g. a mount namespace with another resolv.conf. */
    readonly wrap: string[] = [],
  ) {}

  /** The daemon's full argv, as `launch()` runs it. */
  argv(): string[] {
    const argv = [process.execPath, CLI, 'daemon', '--socket', this.socket, '--state-dir', this.stateDir, '--log-level', 'debug', ...this.args];
    return [...this.wrap, ...(this.rootless ? asUser(argv) : argv)];
  }

  get socket(): string {
    return join(this.dir, 'usernet.sock');
  }

  get stateDir(): string {
    return join(this.dir, 'state');
  }

  get pid(): number {
    return this.child?.pid as number;
  }

  /** Starts a daemon (as the test user unless rootless: false) and waits for "listening". */
  static async start(options: { args?: string[]; rootless?: boolean; dir?: string; wrap?: string[] } = {}): Promise<Daemon> {
    const rootless = options.rootless ?? true;
    const dir = options.dir ?? (rootless ? userTempDir() : rootTempDir());
    const d = new Daemon(dir, options.args ?? [], rootless, options.wrap ?? []);
    await d.launch();
    return d;
  }

  /** (Re)starts the daemon process with the same socket and state. */
  async launch(): Promise<void> {
    const since = this.logs.length;
    this.child = await startUntil(this.argv(), (line) => line.includes('"msg":"listening"'), {
      stream: 'stderr',
      onLine: (line) => this.onLine(line),
    });
    void since;
  }

  private onLine(line: string): void {
    let parsed: LogLine;
    try {
      parsed = JSON.parse(line) as LogLine;
    } catch {
      parsed = { msg: line, level: 0 };
    }
    this.logs.push(parsed);
    for (const w of [...this.waiters]) {
      if (w.match(parsed)) {
        this.waiters = this.waiters.filter((x) => x !== w);
        w.resolve(parsed);
      }
    }
  }

  /** Resolves with the first log line (already seen from index `since`, or future) matching. */
  waitForLog(match: (l: LogLine) => boolean, timeoutMs = 10_000, since = 0): Promise<LogLine> {
    const seen = this.logs.slice(since).find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolvePromise, reject) => {
      const waiter = {
        match,
        resolve: (l: LogLine) => {
          clearTimeout(timer);
          resolvePromise(l);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== waiter);
        reject(new Error(`no matching daemon log line within ${timeoutMs} ms; last lines:\n${this.logs.slice(-15).map((l) => JSON.stringify(l)).join('\n')}`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Runs `usernet ARGS --socket S` as the daemon's user. */
  cli(args: string[], timeoutMs = 30_000): Promise<RunResult> {
    const argv = [process.execPath, CLI, ...args, '--socket', this.socket];
    return run(this.rootless ? asUser(argv) : argv, { timeoutMs });
  }

  async cliOk(args: string[]): Promise<string> {
    const r = await this.cli(args);
    if (r.code !== 0) throw new Error(`usernet ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  }

  async cliJson<T>(args: string[]): Promise<T> {
    return JSON.parse(await this.cliOk([...args, '--json'])) as T;
  }

  /** `usernet ports --json`, containers only (not the networks' gateway ports). */
  async containerPorts<T extends { kind?: string }>(): Promise<T[]> {
    return (await this.cliJson<T[]>(['ports'])).filter((p) => p.kind === 'container');
  }

  /** Attaches a container with an address; returns the port name. */
  async attach(c: Container, name: string, ip: string, extra: string[] = []): Promise<string> {
    return (await this.cliOk(['attach', '--pid', String(c.pid), '--name', name, '--configure', '--ip', ip, ...extra])).trim();
  }

  /** File descriptors of the daemon that point at /dev/net/tun, with the interface they hold. */
  tunFds(): Array<{ fd: string; iff: string }> {
    const out: Array<{ fd: string; iff: string }> = [];
    const pid = this.pid;
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      let target = '';
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (target !== '/dev/net/tun') continue;
      let iff = '';
      try {
        iff = /iff:\s*(\S+)/.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))?.[1] ?? '';
      } catch {
        // closed meanwhile
      }
      out.push({ fd, iff });
    }
    return out;
  }

  async kill(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill(signal);
    await exited(child);
    this.child = null;
  }
}

/** Pings `ip` from `c`; resolves with the number of replies. */
export async function ping(c: Container, ip: string, count = 3): Promise<number> {
  const r = await c.exec(['ping', '-c', String(count), '-i', '0.2', '-W', '2', ip], { timeoutMs: 30_000 });
  const m = /(\d+) received/.exec(r.stdout);
  return m ? Number(m[1]) : 0;
}

/**
 * Sends `bytes` of pseudo-random data over TCP from `from` to `to` (listening on `toIp:port`);
 * resolves with what each end printed: "<bytes> <sha256>".
 */
export async function tcpTransfer(from: Container, to: Container, toIp: string, bytes: number, port: number): Promise<{ sent: string; received: string }> {
  const script = join(FIXTURES, 'tcp-sha.mjs');
  const server = await to.startUntil([process.execPath, script, 'server', String(port)], (l) => l === 'ready');
  let received = '';
  server.stdout?.on('data', (d: Buffer) => (received += d.toString()));
  const done = exited(server);
  const sent = (await from.execOk([process.execPath, script, 'client', toIp, String(port), String(bytes)], { timeoutMs: 150_000 })).trim();
  await done;
  return { sent, received: received.trim() };
}

// ---------------------------------------------------------------------------------------------
// "Outside" hosts: a namespace on a veth from the sandbox's root namespace (the host)
// ---------------------------------------------------------------------------------------------

let outsideCount = 0;

/**
 * An outside network, 198.51.100.0/24 (documentation range): the host (the sandbox's root
 * namespace) is 198.51.100.1, the outside namespace has .2, .3 and .4. Removed by cleanup().
 */
export class Outside {
  static readonly HOST = '198.51.100.1';
  static readonly ADDRESSES = ['198.51.100.2', '198.51.100.3', '198.51.100.4'];

  private constructor(readonly name: string) {}

  static async create(): Promise<Outside> {
    const n = ++outsideCount;
    const name = `usernet-out-${process.pid}-${n}`;
    const hostIf = `uo${process.pid % 10000}h${n}`;
    const peerIf = `uo${process.pid % 10000}p${n}`;
    await runOk(['ip', 'netns', 'add', name]);
    onCleanup(() => {
      spawnSync('ip', ['netns', 'pids', name], { encoding: 'utf8' })
        .stdout.split('\n')
        .filter(Boolean)
        .forEach((pid) => spawnSync('kill', ['-9', pid]));
      spawnSync('ip', ['link', 'del', hostIf]);
      spawnSync('ip', ['netns', 'del', name]);
    });
    await runOk(['ip', 'link', 'add', hostIf, 'type', 'veth', 'peer', 'name', peerIf]);
    await runOk(['ip', 'link', 'set', peerIf, 'netns', name]);
    await runOk(['ip', 'addr', 'add', `${Outside.HOST}/24`, 'dev', hostIf]);
    await runOk(['ip', 'link', 'set', hostIf, 'up']);
    for (const a of Outside.ADDRESSES) await runOk(['ip', '-n', name, 'addr', 'add', `${a}/24`, 'dev', peerIf]);
    await runOk(['ip', '-n', name, 'link', 'set', peerIf, 'up']);
    await runOk(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
    return new Outside(name);
  }

  argv(cmd: string[]): string[] {
    return ['ip', 'netns', 'exec', this.name, ...cmd];
  }

  exec(cmd: string[], options: SpawnOptions & { input?: string | Buffer; timeoutMs?: number } = {}): Promise<RunResult> {
    return run(this.argv(cmd), options);
  }

  startUntil(cmd: string[], ready: (line: string) => boolean, timeoutMs?: number): Promise<ChildProcess> {
    return startUntil(this.argv(cmd), ready, { timeoutMs });
  }
}

/** Collects a child's stdout (or stderr) lines; `waitFor` resolves on the first line matching. */
export class Lines {
  readonly lines: string[] = [];
  private waiters: Array<{ match: (l: string) => boolean; resolve: (l: string) => void }> = [];
  constructor(child: ChildProcess, stream: 'stdout' | 'stderr' = 'stdout') {
    let buf = '';
    child[stream]?.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        this.lines.push(line);
        for (const w of [...this.waiters]) {
          if (w.match(line)) {
            this.waiters = this.waiters.filter((x) => x !== w);
            w.resolve(line);
          }
        }
      }
    });
  }
  /** The first line matching, among those from index `since` on (already seen or to come). */
  waitFor(match: (l: string) => boolean, timeoutMs = 60_000, since = 0): Promise<string> {
    const seen = this.lines.slice(since).find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const w = {
        match,
        resolve: (l: string) => {
          clearTimeout(t);
          resolve(l);
        },
      };
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`no matching line within ${timeoutMs} ms; got:\n${this.lines.slice(-10).join('\n')}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }
}

/** The resident set size of a process, in bytes. */
export function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}
