/**
 * The NAT against the RFCs' behaviour tests, with real clients:
 *
 *  - RFC 4787 / RFC 5780: coturn's NAT behaviour discovery client (`turnutils_natdiscovery`) in a
 *    container, against coturn's STUN server (`turnserver`) listening on two addresses of an
 *    outside namespace (198.51.100.2 and .3, ports 3478 and 3479): endpoint-independent mapping,
 *    address-dependent filtering (endpoint-independent with `--udp-filtering
 *    endpoint-independent`), hairpinning (REQ-9) — and hairpinning between two containers, seen
 *    from the host's address and the sender's external port (REQ-9a).
 *  - RFC 791 fragments: python UDP clients in a container at MTU 1500 send 8 KiB datagrams to
 *    servers outside and on the host loopback (through 10.0.2.2), which check every byte and
 *    answer with 8 KiB (and 65000-byte) datagrams of their own: the NAT reassembles on the way
 *    out, the gateway fragments on the way in, and the container kernel's counters
 *    (/proc/net/snmp) show both happened.
 *
 * turnserver runs only here, inside the sandbox, in the outside namespace, with its own config
 * (`-c /dev/null`: Debian's /etc/turnserver.conf says no-rfc5780 and syslog), pid file, database
 * and log (stdout), and is stopped by its PID.
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Container, Daemon, Lines, Outside, PYTHON, cleanup, exited, onCleanup, requireSandbox, rootTempDir, startUntil } from './harness.js';

requireSandbox();

const STUN = '198.51.100.2';
const STUN_OTHER = '198.51.100.3';

/** The verdict lines of turnutils_natdiscovery -m -f -H. */
interface Verdicts {
  mapping: string | undefined;
  filtering: string | undefined;
  hairpinning: boolean;
  output: string;
}

async function natDiscovery(c: Container): Promise<Verdicts> {
  // Hairpinning: a second socket sends a binding request to the first one's mapped address;
  // the client prints "Received a request" when the first socket gets it, else a timeout.
  const r = await c.exec(['turnutils_natdiscovery', '-m', '-f', '-H', STUN], { timeoutMs: 60_000 });
  const output = r.stdout;
  const section = (title: string): string => output.split(`-= ${title} Behavior Discovery =-`)[1]?.split('-= ')[0] ?? '';
  return {
    mapping: /NAT with (.*) Mapping!/.exec(section('Mapping'))?.[1],
    filtering: /NAT with (.*) Filtering!/.exec(section('Filtering'))?.[1],
    hairpinning: /Received a request \(maybe a successful hairpinning\)/.test(section('Hairpinning')),
    output,
  };
}

let out: Outside;
let turn: ChildProcess;
let strict: Daemon;
let open: Daemon;
let a: Container;
let b: Container;
let c: Container;

beforeAll(async () => {
  out = await Outside.create();
  const dir = rootTempDir('usernet-turn-');
  const pidfile = join(dir, 'turnserver.pid');
  turn = await out.startUntil(
    [
      'turnserver',
      '-c', '/dev/null',
      '-L', STUN,
      '-L', STUN_OTHER,
      '--listening-port', '3478',
      '--alt-listening-port', '3479',
      '--stun-only',
      '--no-tcp', '--no-tls', '--no-dtls',
      '--no-cli',
      '--pidfile', pidfile,
      '--db', join(dir, 'turndb'),
      '--log-file', 'stdout',
      '--simple-log',
      '--verbose',
    ],
    (l) => l.includes('Total General servers'),
  );
  // ip netns exec execs turnserver: the child is the server, and it is stopped by that PID only.
  expect(Number(readFileSync(pidfile, 'utf8').trim())).toBe(turn.pid);
  onCleanup(() => {
    if (turn.exitCode === null && turn.signalCode === null) turn.kill('SIGKILL');
  });
  [a, b, c] = await Promise.all([Container.start(), Container.start(), Container.start()]);
  [strict, open] = await Promise.all([Daemon.start(), Daemon.start({ args: ['--udp-filtering', 'endpoint-independent'] })]);
  await strict.cliOk(['attach', '--pid', String(a.pid), '--name', 'a', '--configure']);
  await strict.cliOk(['attach', '--pid', String(b.pid), '--name', 'b', '--configure']);
  await open.cliOk(['attach', '--pid', String(c.pid), '--name', 'c', '--configure']);
});

afterAll(async () => {
  if (turn && turn.exitCode === null && turn.signalCode === null) {
    turn.kill('SIGTERM');
    await Promise.race([exited(turn), new Promise((r) => setTimeout(r, 5000).unref())]);
  }
  await cleanup();
});

describe('RFC 4787/5780 behaviour (coturn natdiscovery)', () => {
  it('default: endpoint-independent mapping, address-dependent filtering, hairpinning', async () => {
    const v = await natDiscovery(a);
    expect(v.mapping, v.output).toBe('Endpoint Independent');
    expect(v.filtering, v.output).toBe('Address Dependent');
    expect(v.hairpinning, v.output).toBe(true);
  });

  it('--udp-filtering endpoint-independent: endpoint-independent filtering, hairpinning', async () => {
    const v = await natDiscovery(c);
    expect(v.mapping, v.output).toBe('Endpoint Independent');
    expect(v.filtering, v.output).toBe('Endpoint Independent');
    expect(v.hairpinning, v.output).toBe(true);
  });

  it("a container reaches another container's mapping at the host address, from its own external port", async () => {
    // a opens a mapping (port 6000) by talking to the STUN server; b sends to that mapping at
    // the host's address and learns its own external port from the same server.
    const stun = (port: number, then: string): string[] => [
      PYTHON,
      '-u',
      '-c',
      [
        'import socket, struct, os, sys',
        `s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', ${port})); s.settimeout(5)`,
        "tid=os.urandom(12); s.sendto(struct.pack('!HHI', 1, 0, 0x2112A442)+tid, ('" + STUN + "', 3478))",
        'd=s.recv(2048); i=20',
        'while i < len(d):',
        "  t,l=struct.unpack('!HH', d[i:i+4])",
        "  if t == 0x20:",
        "    xport=struct.unpack('!H', d[i+6:i+8])[0] ^ 0x2112",
        "    xaddr=struct.unpack('!I', d[i+8:i+12])[0] ^ 0x2112A442",
        "  i += 4 + ((l+3)&~3)",
        "print('mapped %s:%d' % (socket.inet_ntoa(struct.pack('!I', xaddr)), xport), flush=True)",
        then,
      ].join('\n'),
    ];
    let mappedA = '';
    const receiver = new Lines(
      await a.startUntil(stun(6000, "d,p=s.recvfrom(100)\nprint('got %s from %s:%d' % (d.decode(), p[0], p[1]), flush=True)\ns.sendto(b'pong', p)"), (l) => {
        if (l.startsWith('mapped ')) mappedA = l.slice('mapped '.length);
        return mappedA !== '';
      }),
    );
    const [host, portA] = mappedA.split(':');
    expect(host).toBe(Outside.HOST);
    const r = await b.execOk(stun(6001, `s.sendto(b'ping', ('${host}', ${portA}))\nprint('reply %s' % s.recv(100).decode(), flush=True)`), { timeoutMs: 30_000 });
    const mappedB = /mapped (\S+)/.exec(r)?.[1];
    expect(r).toContain('reply pong');
    // REQ-9a: the hairpinned datagram comes from b's external address and port.
    expect(await receiver.waitFor((l) => l.startsWith('got '))).toBe(`got ping from ${mappedB}`);
    // Let through the address-dependent filter as a hairpinned datagram, and counted so.
    const st = JSON.parse(await strict.cliOk(['status', '--json'])) as { udp: Record<string, number> };
    expect(st.udp.hairpinned).toBeGreaterThanOrEqual(1);
  });
});

describe('IPv4 fragments (MTU 1500, 8 KiB datagrams both ways)', () => {
  const SIZE = 8192;
  const COUNT = 50;
  // Datagram i of a kind: its index, then bytes that depend on the kind and the index only.
  const payload = "def payload(tag, i):\n  return i.to_bytes(4, 'big') + (hashlib.sha256(b'%s %d' % (tag, i)).digest() * 256)[4:]\n";
  const server = (addr: string, port: number): string[] => [
    PYTHON,
    '-u',
    '-c',
    `import socket, hashlib\n${payload}s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)\ns.bind(('${addr}', ${port}))\nprint('ready', flush=True)\nwhile True:\n  d,p=s.recvfrom(65535)\n  i=int.from_bytes(d[:4], 'big')\n  print('%s %d %d %s:%d' % ('ok' if d == payload(b'q', i) else 'bad', i, len(d), p[0], p[1]), flush=True)\n  s.sendto(payload(b'a', i), p)`,
  ];
  // Lockstep: one datagram, then its answer, so nothing is lost to a full buffer.
  const client = (addr: string, port: number): string[] => [
    PYTHON,
    '-c',
    `import socket, hashlib\n${payload}s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.settimeout(5)\ngood=0\nfor i in range(${COUNT}):\n  s.sendto(payload(b'q', i), ('${addr}', ${port}))\n  d=s.recv(65535)\n  if d == payload(b'a', i): good += 1\n  else: print('bad answer %d: %d bytes' % (i, len(d)))\nprint('answers %d/${COUNT}' % good)`,
  ];

  /** The container's IP counters (/proc/net/snmp of its network namespace). */
  async function ipCounters(k: Container): Promise<Record<string, number>> {
    const lines = (await k.execOk(['cat', '/proc/net/snmp'])).split('\n').filter((l) => l.startsWith('Ip:'));
    const names = lines[0].split(/\s+/).slice(1);
    const values = lines[1].split(/\s+/).slice(1).map(Number);
    return Object.fromEntries(names.map((n, i) => [n, values[i]]));
  }

  async function exchange(k: Container, serverArgv: string[], inside: 'outside' | 'host', dstAddr: string, port: number, seenFrom: RegExp): Promise<void> {
    const srv = new Lines(inside === 'outside' ? await out.startUntil(serverArgv, (l) => l === 'ready') : await startUntil(serverArgv, (l) => l === 'ready'));
    const before = await ipCounters(k);
    const st0 = JSON.parse(await strict.cliOk(['status', '--json'])) as { nat: { reassembly: Record<string, number> } };
    expect((await k.execOk(client(dstAddr, port), { timeoutMs: 120_000 })).trim()).toBe(`answers ${COUNT}/${COUNT}`);
    await srv.waitFor((l) => l.startsWith(`ok ${COUNT - 1} `));
    const got = srv.lines.filter((l) => /^(ok|bad) /.test(l));
    expect(got).toHaveLength(COUNT);
    for (const [i, l] of got.entries()) expect(l).toMatch(new RegExp(`^ok ${i} ${SIZE} `));
    expect(got[0].split(' ')[3]).toMatch(seenFrom);
    const after = await ipCounters(k);
    // The container's kernel cut every datagram (8 KiB at MTU 1500: 6 fragments) and put every
    // answer back together: the gateway fragmented them to the network's MTU.
    expect(after.FragCreates - before.FragCreates).toBe(COUNT * 6);
    expect(after.ReasmOKs - before.ReasmOKs).toBe(COUNT);
    const st = JSON.parse(await strict.cliOk(['status', '--json'])) as { nat: { reassembly: Record<string, number> } };
    expect(st.nat.reassembly.reassembled - st0.nat.reassembly.reassembled).toBe(COUNT);
    expect(st.nat.reassembly.fragmentsDropped).toBe(0);
  }

  it('a container reaches a server outside: every byte of 50 datagrams each way', async () => {
    expect((await b.link()).mtu).toBe(1500);
    await exchange(b, server('198.51.100.2', 7200), 'outside', '198.51.100.2', 7200, /^198\.51\.100\.1:\d+$/);
  });

  it('answers of 65000 bytes to small questions reach the container as fragments of its MTU', async () => {
    const big = `import socket, hashlib\ndef body(i):\n  return (hashlib.sha256(b'big %d' % i).digest() * 2032)[:65000]\n`;
    const srv = await out.startUntil(
      [PYTHON, '-u', '-c', `${big}s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('198.51.100.2', 7202))\nprint('ready', flush=True)\nwhile True:\n  d,p=s.recvfrom(100)\n  s.sendto(body(int(d)), p)`],
      (l) => l === 'ready',
    );
    expect(srv.pid).toBeGreaterThan(0);
    const before = await ipCounters(b);
    const r = await b.execOk(
      [PYTHON, '-c', `${big}s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.settimeout(5)\ngood=0\nfor i in range(10):\n  s.sendto(b'%d' % i, ('198.51.100.2', 7202))\n  good += s.recv(65535) == body(i)\nprint('answers %d/10' % good)`],
      { timeoutMs: 60_000 },
    );
    expect(r.trim()).toBe('answers 10/10');
    const after = await ipCounters(b);
    // 65000 + 8 bytes of UDP in 1480-byte pieces: 44 fragments each.
    expect(after.ReasmReqds - before.ReasmReqds).toBe(10 * 44);
    expect(after.ReasmOKs - before.ReasmOKs).toBe(10);
  });

  it('and one on the host loopback, through the gateway address', async () => {
    await exchange(b, server('127.0.0.1', 7201), 'host', '10.0.2.2', 7201, /^127\.0\.0\.1:\d+$/);
  });
});
