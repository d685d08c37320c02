/**
 * The CLI against a real daemon: an in-process Daemon on a temporary socket and state directory
 * (no TAP, no root: networks, status, the MAC table, conntrack, published-port errors, capture on a
 * network's gateway port fed by an in-memory port). What needs a container's TAP — a successful
 * attach — is tested end to end (test/e2e/lifecycle.test.ts).
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { main } from '../../../src/cli/main.js';
import { UsageError } from '../../../src/cli/args.js';
import { ApiMethods } from '../../../src/control/api-methods.js';
import { CaptureSession } from '../../../src/control/capture.js';
import { Daemon } from '../../../src/control/daemon.js';
import { VERSION } from '../../../src/control/protocol.js';
import type { UsernetError } from '../../../src/errors.js';
import { MemoryPort } from '../../../src/link/memory-port.js';
import { readPcap } from '../../../src/packet/pcap.js';

let dir: string;
let sock: string;
let stdout: string[];
let stderr: string[];
const daemons: Daemon[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'usernet-cli-'));
  sock = join(dir, 'd.sock');
  stdout = [];
  stderr = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout.push(String(chunk));
    return true;
  });
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr.push(String(chunk));
    return true;
  });
});

afterEach(async () => {
  vi.restoreAllMocks();
  for (const d of daemons.splice(0)) await d.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A real daemon on the test's socket; its DNS upstream is named so that it has no warning. */
async function startDaemon(): Promise<Daemon> {
  const stateDir = join(dir, 'state');
  mkdirSync(stateDir, { mode: 0o700 });
  writeFileSync(join(dir, 'resolv.conf'), 'nameserver 127.0.0.1\n');
  const d = new Daemon({ socketPath: sock, stateDir, resolvConfPath: join(dir, 'resolv.conf') }, pino({ level: 'silent' }));
  daemons.push(d);
  await d.start();
  return d;
}

/** An in-memory port on the daemon's default network, to put frames on its switch. */
function probeOn(d: Daemon): MemoryPort {
  const net = d.networks.get('default');
  if (!net) throw new Error('no default network');
  return new MemoryPort({ name: 'probe', record: false }).plug(net.sw);
}

/** Broadcasts `n` 60-byte frames (a local-experimental EtherType) from the probe: each reaches the gateway port once. */
function broadcast(probe: MemoryPort, n: number): void {
  for (let i = 0; i < n; i++) {
    const f = Buffer.alloc(60, i);
    f.fill(0xff, 0, 6);
    f.writeUIntBE(0x02000000000a, 6, 6);
    f.writeUInt16BE(0x88b5, 12);
    probe.inject(f);
  }
}

/** The capture session on the default network's gateway port, once the daemon has started it. */
function gatewaySession(d: Daemon): CaptureSession | undefined {
  return d.networks.get('default')?.gateway.taps.find((t): t is CaptureSession => t instanceof CaptureSession);
}

async function until(what: string, ok: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function rejection(p: Promise<unknown>): Promise<UsernetError> {
  try {
    await p;
  } catch (err) {
    return err as UsernetError;
  }
  throw new Error('expected a rejection');
}

describe('main', () => {
  it('prints the version', async () => {
    expect(await main(['--version'])).toBe(0);
    expect(stdout.join('')).toBe(`usernet ${VERSION}\n`);
    expect(await main(['-v'])).toBe(0);
    expect(await main(['version'])).toBe(0);
    expect(stdout).toHaveLength(3);
  });

  it('prints the main help with no command, and a command\'s help', async () => {
    expect(await main([])).toBe(0);
    expect(stdout.join('')).toMatch(/^usernet .* user-mode networking/);
    expect(stdout.join('')).toContain('Commands:');
    stdout.length = 0;
    expect(await main(['help', 'attach'])).toBe(0);
    expect(stdout.join('')).toMatch(/^Usage: usernet attach/);
    stdout.length = 0;
    expect(await main(['ports', '--help'])).toBe(0);
    expect(stdout.join('')).toMatch(/^Usage: usernet ports/);
  });

  it('rejects an unknown command with a UsageError', async () => {
    const e = await rejection(main(['nope']));
    expect(e).toBeInstanceOf(UsageError);
    expect(e.message).toBe('unknown command "nope" (see usernet --help)');
  });

  it('rejects attach with neither --pid nor --netns, and with both', async () => {
    const e = await rejection(main(['attach']));
    expect(e).toBeInstanceOf(UsageError);
    expect(e.message).toMatch(/^attach: give exactly one of --pid PID or --netns PATH/);
    const e2 = await rejection(main(['attach', '--pid', '1', '--netns', '/run/netns/x', '--socket', sock]));
    expect(e2).toBeInstanceOf(UsageError);
  });

  it('rejects bad flags before contacting a daemon', async () => {
    expect((await rejection(main(['attach', '--pid', 'abc']))).message).toMatch(/^attach: --pid must be a whole number/);
    expect((await rejection(main(['attach', '--pid', '5', '--mtu', '10', '--socket', sock]))).message).toMatch(/^attach: --mtu must be between 68 and 65521/);
    expect((await rejection(main(['capture', '-c']))).message).toBe('capture: option --count needs a value (see usernet capture --help)');
    expect(await rejection(main(['capture', '-w', 'x']))).toBeInstanceOf(UsageError);
    expect(await rejection(main(['ports', 'extra']))).toBeInstanceOf(UsageError);
    expect(await rejection(main(['detach', '--socket', sock]))).toBeInstanceOf(UsageError);
    expect(await rejection(main(['demo', 'x']))).toBeInstanceOf(UsageError);
  });

  it('checks attach values before contacting a daemon (usage errors, exit 2)', async () => {
    for (const [args, text] of [
      [['--mac', 'zz'], 'invalid MAC address "zz"'],
      [['--configure', '--ip', '10.0.0.300/24'], 'invalid IPv4 address'],
      [['--configure', '--ip', '10.0.0.1/0'], 'must be 1-32'],
      [['--gateway', '10.0.0.1'], 'unknown option --gateway'],
      [['--network', '-x'], 'needs a value'],
      [['--network=bad/name'], 'is not a network name'],
      [['--name=-bad'], '--name "-bad" must be'],
      [['--ifname', 'way-too-long-name'], '--ifname'],
    ] as const) {
      const e = await rejection(main(['attach', '--pid', '1', '--socket', sock, ...args]));
      expect(e).toBeInstanceOf(UsageError);
      expect(e.message).toContain(text);
    }
  });

  it('fails capture at once, in one line, when the file cannot be written', async () => {
    const e = await rejection(main(['capture', '--port', 'a', '-w', '/nonexistent/dir/x.pcap', '--socket', sock]));
    expect(e.message).toBe('capture: cannot write /nonexistent/dir/x.pcap: no such directory');
  });

  it('reports ERR_NO_DAEMON when nothing listens on the socket', async () => {
    const e = await rejection(main(['ports', '--socket', sock]));
    expect(e.code).toBe('ERR_NO_DAEMON');
    expect(e.message).toContain(sock);
  });

  it('rejects a socket path too long for sockaddr_un', async () => {
    const e = await rejection(main(['ports', '--socket', `/tmp/${'x'.repeat(120)}`]));
    expect(e.code).toBe('ERR_INVALID_ARGUMENT');
    expect(e.message).toMatch(/socket path too long/);
  });

  it('lists ports, the MAC table and the status of a daemon', async () => {
    const d = await startDaemon();
    expect(await main(['ports', '--socket', sock])).toBe(0);
    expect(stdout.join('')).toBe(
      'NAME     NETWORK  STATE    IFNAME  IP        CONTAINER     MAC                MTU   OFFLOAD  RX_FRAMES  RX_BYTES  TX_FRAMES  TX_BYTES  DROPS\n' +
        'gateway  default  gateway  -       10.0.2.2  dns 10.0.2.3  52:55:0a:00:02:02  1500  on       0          0         0          0         0\n',
    );
    stdout.length = 0;
    expect(await main(['ports', '--socket', sock, '--json'])).toBe(0);
    const ports = JSON.parse(stdout.join('')) as { name: string; kind: string; ip: string; state: string }[];
    expect(ports.map((p) => [p.name, p.kind, p.ip, p.state])).toEqual([['gateway', 'gateway', '10.0.2.2', 'up']]);
    stdout.length = 0;
    broadcast(probeOn(d), 1);
    expect(await main(['fdb', '--socket', sock])).toBe(0);
    expect(stdout.join('')).toMatch(/^52:55:0a:00:02:02 dev gateway master default permanent\n02:00:00:00:00:0a dev probe master default age \d+\.\d\ds\n$/);
    stdout.length = 0;
    expect(await main(['status', '--socket', sock])).toBe(0);
    const status = stdout.join('');
    expect(status).toMatch(new RegExp(`^version: ${VERSION}\npid: ${process.pid}\nsocket: ${sock}\nstateDir: ${join(dir, 'state')}\nuptime: \\d+\nattachments: 0\nnetworks: default\n`));
    expect(status).toContain('\ndnsUpstream: 127.0.0.1:53\nwarnings: none\n');
  });

  it('sends attach parameters as given, and passes the daemon\'s errors through', async () => {
    await startDaemon();
    const attach = vi.spyOn(ApiMethods.prototype, 'attach');
    // No process can have this PID (above the kernel's PID_MAX_LIMIT): the daemon refuses it.
    const e = await rejection(main(['attach', '--socket', sock, '--pid', '4194305', '--mtu', '9000', '--configure', '--ip', '10.0.2.50/24']));
    expect(attach).toHaveBeenCalledWith({ pid: 4194305, mtu: 9000, configure: true, ip: '10.0.2.50/24' });
    expect([e.code, e.message]).toEqual(['ERR_NO_SUCH_PROCESS', 'no process with PID 4194305']);
    const e2 = await rejection(main(['detach', '--socket', sock, 'c9']));
    expect([e2.code, e2.message]).toEqual(['ERR_NO_SUCH_PORT', 'no port named c9 (see usernet ports)']);
    const e3 = await rejection(main(['attach', '--socket', sock, '--pid', '4194305', '--network', 'nosuch']));
    expect([e3.code, e3.message]).toEqual(['ERR_NO_SUCH_NETWORK', 'no network named nosuch (see usernet network ls)']);
  });

  it('creates, lists and removes a network; refuses a second one of the same name', async () => {
    await startDaemon();
    expect(await main(['network', 'create', 'lab', '--subnet', '10.9.0.0/24', '--socket', sock])).toBe(0);
    stdout.length = 0;
    expect(await main(['network', 'ls', '--socket', sock])).toBe(0);
    expect(stdout.join('')).toBe(
      'NAME     SUBNET       GATEWAY   DNS       RANGE                  MTU   ICC  PORTS  SEARCH\n' +
        'default  10.0.2.0/24  10.0.2.2  10.0.2.3  10.0.2.100-10.0.2.254  1500  on   0      -\n' +
        'lab      10.9.0.0/24  10.9.0.2  10.9.0.3  10.9.0.100-10.9.0.254  1500  on   0      -\n',
    );
    const e = await rejection(main(['network', 'create', 'lab', '--subnet', '10.8.0.0/24', '--socket', sock]));
    expect([e.code, e.message]).toEqual(['ERR_NETWORK_EXISTS', 'a network named lab already exists']);
    const e2 = await rejection(main(['network', 'rm', 'default', '--socket', sock]));
    expect([e2.code, e2.message]).toEqual(['ERR_NETWORK_IN_USE', 'the default network cannot be removed']);
    expect(await main(['network', 'rm', 'lab', '--socket', sock])).toBe(0);
    const state = JSON.parse(readFileSync(join(dir, 'state', 'state.json'), 'utf8')) as { networks: unknown[] };
    expect(state.networks).toEqual([]);
  });

  it('lists an empty conntrack table and published ports; refuses to publish to a port that does not exist', async () => {
    await startDaemon();
    expect(await main(['conntrack', '-L', '--socket', sock])).toBe(0);
    expect(stdout.join('')).toBe('');
    expect(await main(['publish', '--list', '--socket', sock])).toBe(0);
    expect(stdout.join('')).toBe('no published ports\n');
    const e = await rejection(main(['publish', 'web', '127.0.0.1:18080:80', '--socket', sock]));
    expect([e.code, e.message]).toEqual(['ERR_NO_SUCH_PORT', 'no port named web (see usernet ports)']);
    const e2 = await rejection(main(['publish', '--list', 'web', '--socket', sock]));
    expect([e2.code, e2.message]).toEqual(['ERR_NO_SUCH_PORT', 'no port named web']);
  });

  it('writes a capture of the gateway port to a file, stopping after --count frames', async () => {
    const d = await startDaemon();
    const probe = probeOn(d);
    const file = join(dir, 'out.pcap');
    const done = main(['capture', '--socket', sock, '--port', 'gateway', '-w', file, '-c', '3']);
    await until('the capture session', () => gatewaySession(d) !== undefined);
    broadcast(probe, 5);
    expect(await done).toBe(0);
    const records = readPcap(readFileSync(file)).records;
    expect(records.map((r) => r.data.length)).toEqual([60, 60, 60]);
    expect(stderr.join('')).toBe(`capture: 3 frames (${24 + 3 * (16 + 60)} bytes) written to ${file}\n`);
    const e = await rejection(main(['capture', '--socket', sock, '--port', 'nosuch', '-w', join(dir, 'x.pcap')]));
    expect([e.code, e.message]).toEqual(['ERR_NO_SUCH_PORT', 'no port named nosuch (see usernet ports)']);
  });

  /** Once the CLI has registered its handler for `signal`: runs `before`, then emits the signal (`times` times in a row). */
  function signalWhenHandled(signal: 'SIGINT' | 'SIGTERM', before: () => Promise<void>, times = 1): void {
    const on = process.on.bind(process);
    vi.spyOn(process, 'on').mockImplementation(((event: string, listener: (...a: unknown[]) => void) => {
      on(event as 'SIGINT', listener);
      if (event === signal) {
        void before().then(() => {
          for (let i = 0; i < times; i++) process.emit(signal);
        });
      }
      return process;
    }) as typeof process.on);
  }

  it.each(['SIGINT', 'SIGTERM'] as const)('on %s asks the daemon to stop and writes everything it sends until the end of the stream', async (signal) => {
    const d = await startDaemon();
    const probe = probeOn(d);
    // Six frames crossed the port before the signal: the daemon flushes them all, then ends.
    signalWhenHandled(signal, async () => {
      await until('the capture session', () => gatewaySession(d) !== undefined);
      broadcast(probe, 6);
      await until('six frames captured', () => gatewaySession(d)?.frames === 6);
    });
    const file = join(dir, 'stop.pcap');
    expect(await main(['capture', '--socket', sock, '--port', 'gateway', '-w', file])).toBe(0);
    expect(readPcap(readFileSync(file)).records.map((r) => r.data[14])).toEqual([0, 1, 2, 3, 4, 5]);
    expect(stderr.join('')).toBe(`capture: 6 frames (${24 + 6 * 76} bytes) written to ${file}\n`);
    expect(process.listenerCount(signal)).toBe(0);
  });

  it('a second Ctrl-C stops at once with what arrived', async () => {
    const d = await startDaemon();
    const probe = probeOn(d);
    const file = join(dir, 'again.pcap');
    // One frame has reached the file; then two Ctrl-C in a row: the second does not wait for the daemon.
    signalWhenHandled(
      'SIGINT',
      async () => {
        await until('the capture session', () => gatewaySession(d) !== undefined);
        broadcast(probe, 1);
        await until('the frame in the file', () => statSync(file).size === 24 + 76);
      },
      2,
    );
    expect(await main(['capture', '--socket', sock, '--port', 'gateway', '-w', file])).toBe(130);
    expect(readPcap(readFileSync(file)).records).toHaveLength(1);
    expect(stderr.join('')).toBe(`capture: 1 frame (100 bytes) written to ${file}; interrupted again before the daemon had sent everything\n`);
  });
});
