/**
 * The NAT against the RFCs' behaviour tests, with real clients:
 *
 *  - RFC 4787 / RFC 5780: coturn's NAT behaviour discovery client (`turnutils_natdiscovery`) in a
 *    container, against coturn's STUN server (`turnserver`) listening on two addresses of an
 *    outside namespace (198.51.100.2 and .3, ports 3478 and 3479): endpoint-independent mapping,
 *    address-dependent filtering (endpoint-independent with `--udp-filtering
 *    endpoint-independent`), hairpinning (REQ-9) — and hairpinning between two containers, seen
 *    from the host's address and the sender's external port (REQ-9a).
 *
 * turnserver runs only here, inside the sandbox, in the outside namespace, with its own config
 * (`-c /dev/null`: Debian's /etc/turnserver.conf says no-rfc5780 and syslog), pid file, database
 * and log (stdout), and is stopped by its PID.
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Container, Daemon, Lines, Outside, PYTHON, cleanup, exited, onCleanup, requireSandbox, rootTempDir } from './harness.js';

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

describe('RFC 4787/5780 behaviour (coturn natdiscovery)', () => {
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
    onCleanup(() => {
      // By its PID (the pid file's, which is ip-netns-exec's child itself): nothing else named turnserver is touched.
      let pid = turn.pid;
      try {
        pid = Number(readFileSync(pidfile, 'utf8').trim()) || pid;
      } catch {
        // not written: the child's PID
      }
      if (pid) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    });
    [a, b, c] = await Promise.all([Container.start(), Container.start(), Container.start()]);
    [strict, open] = await Promise.all([Daemon.start(), Daemon.start({ args: ['--udp-filtering', 'endpoint-independent'] })]);
    await strict.cliOk(['attach', '--pid', String(a.pid), '--name', 'a', '--configure']);
    await strict.cliOk(['attach', '--pid', String(b.pid), '--name', 'b', '--configure']);
    await open.cliOk(['attach', '--pid', String(c.pid), '--name', 'c', '--configure']);
  });

  afterAll(async () => {
    turn?.kill('SIGTERM');
    if (turn) await Promise.race([exited(turn), new Promise((r) => setTimeout(r, 5000).unref())]);
    await cleanup();
  });

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
