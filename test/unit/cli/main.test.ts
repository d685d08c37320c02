import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { main } from '../../../src/cli/main.js';
import { UsageError } from '../../../src/cli/args.js';
import { ApiServer, StreamingResult, type Handler } from '../../../src/control/api-server.js';
import { VERSION } from '../../../src/control/daemon.js';
import { UsernetError } from '../../../src/errors.js';
import { readPcap, writePcapGlobalHeader, writePcapRecordHeader } from '../../../src/packet/pcap.js';

let dir: string;
let sock: string;
let stdout: string[];
let stderr: string[];
const servers: ApiServer[] = [];

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
  for (const s of servers.splice(0)) await s.close();
  rmSync(dir, { recursive: true, force: true });
});

async function fakeDaemon(handlers: Record<string, Handler>): Promise<void> {
  const s = new ApiServer(sock, handlers, pino({ level: 'silent' }));
  servers.push(s);
  await s.listen();
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

  it('lists ports and the MAC table from a daemon', async () => {
    await fakeDaemon({
      ports: () => ({ ports: [] }),
      fdb: () => ({ entries: [{ mac: '02:00:00:00:00:0a', port: 'c1', static: false, age: 2.5, network: 'default' }] }),
      status: () => ({ version: VERSION, ports: 0 }),
    });
    expect(await main(['ports', '--socket', sock])).toBe(0);
    expect(stdout.join('')).toMatch(/^no ports/);
    stdout.length = 0;
    expect(await main(['ports', '--socket', sock, '--json'])).toBe(0);
    expect(JSON.parse(stdout.join(''))).toEqual([]);
    stdout.length = 0;
    expect(await main(['fdb', '--socket', sock])).toBe(0);
    expect(stdout.join('')).toBe('02:00:00:00:00:0a dev c1 master default age 2.50s\n');
    stdout.length = 0;
    expect(await main(['status', '--socket', sock])).toBe(0);
    expect(stdout.join('')).toBe(`version: ${VERSION}\nports: 0\n`);
  });

  it('sends attach parameters and prints the port name; passes daemon errors through', async () => {
    let got: Record<string, unknown> | undefined;
    await fakeDaemon({
      attach: (p) => {
        got = p;
        return { name: 'c7', ifname: 'eth0' };
      },
      detach: (p) => {
        throw new UsernetError('ERR_NO_SUCH_PORT', `no port "${String(p.name)}"`);
      },
    });
    expect(await main(['attach', '--socket', sock, '--pid', '42', '--mtu', '9000', '--configure', '--ip', '10.0.0.2/24'])).toBe(0);
    expect(got).toEqual({ pid: 42, mtu: 9000, configure: true, ip: '10.0.0.2/24' });
    expect(stdout.join('')).toBe('c7\n');
    const e = await rejection(main(['detach', '--socket', sock, 'c9']));
    expect(e.code).toBe('ERR_NO_SUCH_PORT');
    expect(e.message).toBe('no port "c9"');
  });

  it('writes a capture stream to a file', async () => {
    const bytes = Buffer.concat([Buffer.from('{"not":"a line"}\n'), Buffer.alloc(70_000, 7)]);
    let params: Record<string, unknown> | undefined;
    await fakeDaemon({
      capture: (p) => {
        params = p;
        return new StreamingResult({ port: p.port }, (socket) => socket.end(bytes));
      },
    });
    const file = join(dir, 'out.pcap');
    expect(await main(['capture', '--socket', sock, '--port', 'c1', '-w', file, '-c', '3'])).toBe(0);
    expect(params).toEqual({ port: 'c1', count: 3 });
    expect(readFileSync(file).equals(bytes)).toBe(true);
    expect(stderr.join('')).toBe(`capture: ${bytes.length} bytes written to ${file}\n`);
  });

  /** A pcap stream of `n` small records, starting at record `from`. */
  function pcapRecords(from: number, n: number, header: boolean): Buffer {
    const parts: Buffer[] = [];
    if (header) {
      const h = Buffer.alloc(24);
      writePcapGlobalHeader(new DataView(h.buffer, h.byteOffset, 24), 0);
      parts.push(h);
    }
    for (let i = from; i < from + n; i++) {
      const r = Buffer.alloc(16 + 60, i);
      writePcapRecordHeader(new DataView(r.buffer, r.byteOffset, 16), 0, i, 0, 60, 60);
      parts.push(r);
    }
    return Buffer.concat(parts);
  }

  /** Emits `signal` on the process once the CLI has registered its handler for it. */
  function signalWhenHandled(signal: 'SIGINT' | 'SIGTERM'): void {
    const on = process.on.bind(process);
    vi.spyOn(process, 'on').mockImplementation(((event: string, listener: (...a: unknown[]) => void) => {
      on(event as 'SIGINT', listener);
      if (event === signal) setImmediate(() => process.emit(signal));
      return process;
    }) as typeof process.on);
  }

  it.each(['SIGINT', 'SIGTERM'] as const)('on %s asks the daemon to stop and writes everything it sends until the end of the stream', async (signal) => {
    await fakeDaemon({
      capture: () =>
        new StreamingResult({ port: 'c1' }, (socket) => {
          socket.write(pcapRecords(0, 2, true));
          // The daemon's side of a stop: the client half-closed; send the rest, then end.
          socket.once('end', () => socket.end(pcapRecords(2, 4, false)));
        }),
    });
    signalWhenHandled(signal);
    const file = join(dir, 'stop.pcap');
    expect(await main(['capture', '--socket', sock, '--port', 'c1', '-w', file])).toBe(0);
    expect(readPcap(readFileSync(file)).records.map((r) => r.sec)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(stderr.join('')).toBe(`capture: 6 frames (${24 + 6 * 76} bytes) written to ${file}\n`);
    expect(process.listenerCount(signal)).toBe(0);
  });

  it('a second Ctrl-C stops at once with what arrived', async () => {
    await fakeDaemon({
      capture: () =>
        new StreamingResult({ port: 'c1' }, (socket) => {
          socket.write(pcapRecords(0, 1, true));
          // A daemon that never ends the stream: the second Ctrl-C comes once our FIN is seen.
          socket.once('end', () => process.emit('SIGINT'));
        }),
    });
    signalWhenHandled('SIGINT');
    const file = join(dir, 'again.pcap');
    expect(await main(['capture', '--socket', sock, '--port', 'c1', '-w', file])).toBe(130);
    expect(readPcap(readFileSync(file)).records).toHaveLength(1);
    expect(stderr.join('')).toBe(`capture: 1 frame (100 bytes) written to ${file}; interrupted again before the daemon had sent everything\n`);
  });
});

