/**
 * MemoryOutside on its own: the kernel-like failures, latency on the virtual clock (never a
 * synchronous callback), ephemeral ports from the Random, the HTTP helper.
 */
import { describe, expect, it } from 'vitest';
import { MemoryOutside } from '../../../src/outside/index.js';
import { VirtualClock } from '../../../src/platform/clock.js';
import type { HostTcpSocket } from '../../../src/platform/host-stack.js';
import { SeededRandom } from '../../../src/platform/random.js';

function outside(seed = 1, latencyMs = 1): { o: MemoryOutside; clock: VirtualClock } {
  const clock = new VirtualClock();
  return { o: new MemoryOutside({ clock, random: new SeededRandom(seed), latencyMs, trace: true }), clock };
}

function events(s: HostTcpSocket): string[] {
  const out: string[] = [];
  s.on('connect', () => out.push('connect'));
  s.on('data', (d: Buffer) => out.push(`data ${d.toString()}`));
  s.on('end', () => out.push('end'));
  s.on('error', (e: NodeJS.ErrnoException) => out.push(`error ${e.code}`));
  s.on('close', () => out.push('close'));
  return out;
}

describe('MemoryOutside', () => {
  it('connects after a round trip on the clock, never synchronously, and carries data with the latency', () => {
    const { o, clock } = outside(1, 5);
    o.host('203.0.113.10').listenTcp(80, (c) => c.on('data', (d: Buffer) => c.write(`echo ${d.toString()}`)));
    const s = o.createTcpConnection({ host: '203.0.113.10', port: 80 });
    const ev = events(s);
    expect(ev).toEqual([]);
    clock.advance(9);
    expect(ev).toEqual([]);
    clock.advance(1);
    expect(ev).toEqual(['connect']);
    expect(s.localAddress).toBe('198.51.100.1');
    s.write(Buffer.from('hi'));
    expect(o.tcpUnacknowledged(s)).toBe(2);
    clock.advance(9);
    expect(ev).toEqual(['connect']);
    expect(o.tcpUnacknowledged(s)).toBe(0);
    clock.advance(1);
    expect(ev).toEqual(['connect', 'data echo hi']);
  });

  it('refuses a connect to a port nobody listens on; an address without a host is unanswered (or EHOSTUNREACH)', () => {
    const { o, clock } = outside();
    o.host('203.0.113.10');
    const refused = events(o.createTcpConnection({ host: '203.0.113.10', port: 81 }));
    const silent = events(o.createTcpConnection({ host: '203.0.113.99', port: 80 }));
    clock.advance(60_000);
    expect(refused).toEqual(['error ECONNREFUSED', 'close']);
    expect(silent).toEqual([]);
    const clock2 = new VirtualClock();
    const o2 = new MemoryOutside({ clock: clock2, random: new SeededRandom(1), unreachable: 'EHOSTUNREACH', unreachableAfterMs: 3000 });
    const unreachable = events(o2.createTcpConnection({ host: '203.0.113.99', port: 80 }));
    clock2.advance(2999);
    expect(unreachable).toEqual([]);
    clock2.advance(1);
    expect(unreachable).toEqual(['error EHOSTUNREACH', 'close']);
  });

  it('a port in use cannot be bound twice (EADDRINUSE), for TCP servers, NAT datagram sockets and scripted hosts', () => {
    const { o, clock } = outside();
    const a = o.createTcpServer({});
    const b = o.createTcpServer({});
    const errors: string[] = [];
    a.listen({ host: '0.0.0.0', port: 8080 });
    b.on('error', (e) => errors.push(e.code ?? ''));
    b.listen({ host: '127.0.0.1', port: 8080 });
    clock.advance(1);
    expect(errors).toEqual(['EADDRINUSE']);
    o.openNatDatagram({ kind: 'udp', bindPort: 5000 }, { datagram: () => {} });
    expect(() => o.openNatDatagram({ kind: 'udp', bindPort: 5000 }, { datagram: () => {} })).toThrow(expect.objectContaining({ code: 'EADDRINUSE' }));
    o.host('203.0.113.10').bindUdp(53);
    expect(() => o.host('203.0.113.10').bindUdp(53)).toThrow(expect.objectContaining({ code: 'EADDRINUSE' }));
    expect(() => o.openNatDatagram({ kind: 'icmp-raw' }, { datagram: () => {} })).toThrow(expect.objectContaining({ code: 'EPERM' }));
  });

  it('a reset reaches the peer as ECONNRESET; data to a closed socket is answered with a reset', () => {
    const { o, clock } = outside();
    const l = o.host('203.0.113.10').listenTcp(80);
    const s = o.createTcpConnection({ host: '203.0.113.10', port: 80 });
    const ev = events(s);
    clock.advance(2);
    l.connections[0]!.reset();
    clock.advance(2);
    expect(ev).toEqual(['connect', 'error ECONNRESET', 'close']);
    const s2 = o.createTcpConnection({ host: '203.0.113.10', port: 80 });
    const ev2 = events(s2);
    clock.advance(2);
    l.connections[1]!.destroy();
    clock.advance(2);
    expect(ev2).toEqual(['connect', 'end']);
    s2.write(Buffer.from('too late'));
    clock.advance(4);
    expect(ev2).toEqual(['connect', 'end', 'error ECONNRESET', 'close']);
  });

  it("honours Node's onread: reads land in the given buffer a buffer's length at a time, and false pauses until resume()", () => {
    const { o, clock } = outside();
    o.host('203.0.113.10').listenTcp(80, (c) => c.on('data', () => c.write('abcdefghij')));
    const buffer = new Uint8Array(4);
    const reads: string[] = [];
    let pauseAfter = 2;
    const s = o.createTcpConnection({
      host: '203.0.113.10',
      port: 80,
      onread: {
        buffer,
        callback: (n, buf) => {
          expect(buf).toBe(buffer);
          reads.push(Buffer.from(buf.subarray(0, n)).toString());
          return --pauseAfter !== 0;
        },
      },
    });
    const ev = events(s);
    clock.advance(2);
    s.write(Buffer.from('go'));
    clock.advance(2);
    expect(reads).toEqual(['abcd', 'efgh']);
    s.write(Buffer.from('again'));
    clock.advance(4);
    expect(reads).toEqual(['abcd', 'efgh']); // paused: the rest and the next arrival wait
    pauseAfter = -1;
    s.resume();
    expect(reads).toEqual(['abcd', 'efgh']); // never inside resume() itself
    clock.advance(0);
    expect(reads).toEqual(['abcd', 'efgh', 'ij', 'abcd', 'efgh', 'ij']);
    expect(ev).toEqual(['connect']); // no 'data' events beside onread
  });

  it('serves HTTP/1.0 with Content-Length, waits for a request body, and answers nonsense with 400', () => {
    const { o, clock } = outside();
    o.host('203.0.113.10').serveHttp(80, (req) => (req.path === '/missing' ? { status: 404, body: 'no\n' } : `${req.method} ${req.path} ${req.body.toString()}`));
    const ask = (request: string): string => {
      const s = o.host('198.51.100.7').connectTcp(80, '203.0.113.10');
      s.on('connect', () => s.write(request));
      clock.advance(20);
      expect(s.readableEnded).toBe(true);
      return s.text();
    };
    expect(ask('POST /form HTTP/1.0\r\nContent-Length: 5\r\n\r\nabcde')).toBe('HTTP/1.0 200 OK\r\nContent-Length: 16\r\nConnection: close\r\n\r\nPOST /form abcde');
    expect(ask('GET /missing HTTP/1.0\r\n\r\n')).toMatch(/^HTTP\/1\.0 404 Not Found\r\nContent-Length: 3\r\n/);
    expect(ask('HELLO\r\n\r\n')).toMatch(/^HTTP\/1\.0 400 Bad Request\r\n/);
  });

  it('chooses ephemeral ports from the Random: same seed, same ports and the same trace', () => {
    const run = (seed: number): string[] => {
      const { o, clock } = outside(seed);
      o.host('203.0.113.10').listenTcp(80);
      o.host('203.0.113.10').bindUdp(53, (d) => d.reply('x'));
      for (let i = 0; i < 3; i++) o.createTcpConnection({ host: '203.0.113.10', port: 80 });
      const u = o.openNatDatagram({ kind: 'udp' }, { datagram: () => {} });
      u.sendTo(Buffer.from('q'), 0, 1, 0xcb00710a, 53);
      clock.advance(10);
      return o.trace;
    };
    expect(run(3)).toEqual(run(3));
    expect(run(3)).not.toEqual(run(4));
  });
});

describe('MemoryOutside datagram sockets (the dgram-like ones: DNS forwarder, IPv6 published ports)', () => {
  it('a connected socket sends to an outside resolver and gets its answer as a message', () => {
    const { o, clock } = outside();
    o.host('203.0.113.53').bindUdp(53, (d) => d.reply(`re: ${d.data.toString()}`));
    const s = o.createDatagramSocket({ type: 'udp4' });
    const got: string[] = [];
    s.on('message', (msg, rinfo) => got.push(`${rinfo.address}:${rinfo.port} ${msg.toString()}`));
    s.connect(53, '203.0.113.53', () => s.send(Buffer.from('query')));
    clock.advance(10);
    expect(got).toEqual(['203.0.113.53:53 re: query']);
    const errors: string[] = [];
    const t = o.createDatagramSocket({ type: 'udp4' });
    t.on('error', (e) => errors.push(e.code ?? ''));
    const port = s.address().port;
    t.bind({ port });
    clock.advance(1);
    expect(errors).toEqual(['EADDRINUSE']);
  });
});
