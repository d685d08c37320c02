/**
 * The NAT against the in-memory outside (src/outside/): the real gateway and NAT, a VirtualClock,
 * a SeededRandom, and scripted hosts on documentation addresses. Nothing here waits for real
 * time: every step advances the virtual clock and then checks what happened.
 */
import { describe, expect, it, vi } from 'vitest';

// None of this may load the native addon: the library runs where it is not built.
vi.mock('../../../src/native/addon.js', async (importOriginal) => ({
  ...(await importOriginal<typeof import('../../../src/native/addon.js')>()),
  native: () => {
    throw new Error('the native addon was loaded by a test against MemoryOutside');
  },
}));
import { PROTO_ICMP, PROTO_TCP, PROTO_UDP, TCP_ESTABLISHED, TCP_TIME_WAIT, DEFAULT_CONNTRACK_TIMEOUTS } from '../../../src/nat/conntrack.js';
import type { PublishTarget } from '../../../src/nat/publish.js';
import { publishSpecMappings } from '../../../src/nat/publish-spec.js';
import { RemovalReason } from '../../../src/nat/reasons.js';
import { CONNECT_TIMEOUT_MS } from '../../../src/nat/tcp-nat.js';
import { systemHostStack } from '../../../src/platform/host-stack.js';
import { macBytes } from '../helpers/frames.js';
import {
  C_IP,
  C_MAC,
  Conn,
  GW,
  TCP_ACK,
  TCP_FIN,
  TCP_RST,
  TCP_SYN,
  icmpEcho,
  icmpError,
  ip,
  ipv4Frame,
  synOptions,
  tcpFrame,
  udpFrame,
  useNatRig,
  virtualRig,
  type VirtualRig,
} from '../helpers/nat-rig.js';

useNatRig();

it('(the addon really is unavailable here: the system stack cannot open a NAT socket)', () => {
  expect(() => systemHostStack.openNatDatagram({ kind: 'udp' }, { datagram: () => {} })).toThrow(/native addon was loaded/);
});

const WEB = ip('203.0.113.10');
const CLIENT = ip('203.0.113.20');
const NOBODY = ip('203.0.113.99');
const HOST = '198.51.100.1';

function target(r: VirtualRig): PublishTarget {
  return { name: 'c1', network: 'default', gw: r.net.gateway, containerIp: C_IP, container: 'default/10.0.2.100' };
}

/** Bytes that show a misplaced or repeated piece. */
function pattern(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + (i >>> 9) * 13) & 0xff;
  return b;
}

/** The container asks for the gateway's MAC: the gateway learns the container's. */
function containerSpeaks(r: VirtualRig): void {
  const f = Buffer.alloc(42);
  macBytes(0xffffffffffff).copy(f, 0);
  macBytes(C_MAC).copy(f, 6);
  f.writeUInt16BE(0x0806, 12);
  f.writeUInt16BE(1, 14);
  f.writeUInt16BE(0x0800, 16);
  f[18] = 6;
  f[19] = 4;
  f.writeUInt16BE(1, 20);
  macBytes(C_MAC).copy(f, 22);
  f.writeUInt32BE(C_IP >>> 0, 28);
  f.writeUInt32BE(GW >>> 0, 38);
  r.inject(f);
}

/** Opens a container connection to dst:dport on the virtual clock (SYN, SYN-ACK, ACK). */
function open(r: VirtualRig, sport: number, dst: number, dport: number): Conn {
  const c = new Conn(r, sport, dport, { dst, iss: 0x2000_0000 + sport });
  c.syn();
  r.vclock.advance(10);
  c.takeSynAck();
  c.ack();
  return c;
}

describe('NAT against MemoryOutside: TCP', () => {
  it('fetches a page from an outside web server and closes both ways', () => {
    const r = virtualRig();
    const web = r.outside.host('203.0.113.10');
    const paths: string[] = [];
    const srv = web.serveHttp(80, (req) => {
      paths.push(req.path);
      return `hello from ${req.path}\n`;
    });
    const c = open(r, 40001, WEB, 80);
    expect(r.entries(PROTO_TCP)[0]?.state).toBe(TCP_ESTABLISHED);
    c.send(Buffer.from('GET /index.html HTTP/1.0\r\nHost: example\r\n\r\n'));
    r.vclock.advance(20);
    expect(paths).toEqual(['/index.html']);
    const page = c.received().toString();
    expect(page).toMatch(/^HTTP\/1\.0 200 OK\r\n/);
    expect(page).toContain('Content-Length: 23\r\n');
    expect(page.endsWith('\r\n\r\nhello from /index.html\n')).toBe(true);
    // The server ended its side: the container got the FIN, and answers with its own.
    expect(c.segs.some((s) => s.flags & TCP_FIN)).toBe(true);
    c.fin();
    r.vclock.advance(20);
    const server = srv.connections[0]!;
    expect(server.readableEnded).toBe(true);
    expect(server.closed).toBe(true);
    expect(server.wasReset).toBe(false);
    // The server saw the NAT's host address as the client.
    expect(server.remoteAddress).toBe(HOST);
    expect(r.entries(PROTO_TCP)[0]?.state).toBe(TCP_TIME_WAIT);
  });

  it('carries data both ways and a FIN from the container first', () => {
    const r = virtualRig();
    const got: string[] = [];
    const l = r.outside.host('203.0.113.10').listenTcp(7, (conn) => {
      conn.on('data', (d: Buffer) => {
        got.push(d.toString());
        conn.write(d.toString().toUpperCase());
      });
      conn.on('end', () => conn.end());
    });
    const c = open(r, 40002, WEB, 7);
    c.send(Buffer.from('abc'));
    r.vclock.advance(10);
    c.send(Buffer.from('def'));
    r.vclock.advance(10);
    expect(got.join('')).toBe('abcdef');
    expect(c.received().toString()).toBe('ABCDEF');
    c.fin();
    r.vclock.advance(10);
    expect(l.connections[0]!.readableEnded).toBe(true);
    expect(c.segs.some((s) => s.flags & TCP_FIN)).toBe(true);
    expect(l.connections[0]!.bytesReceived).toBe(6);
  });

  // A host read leaves as one segment built around it in the read buffer (READ_FRAME), sized to
  // whole segments of the container's MSS; the fallback (copied out of the send queue) when the
  // window takes only part of it. Both must carry every byte in order.

  it.each([
    [1460, 64240],
    [65480, 65480],
  ])('a download at MSS %i: every host read leaves as one segment of at most %i bytes, built around the read; every byte in order', (mss, most) => {
    const r = virtualRig(mss > 1460 ? { spec: { mtu: 65520 } } : {});
    if (mss > 1460) r.port.mtu = 65520;
    const data = pattern(300_000);
    r.outside.host('203.0.113.10').listenTcp(9, (conn) => {
      conn.write(data.subarray(0, 100_000));
      conn.write(data.subarray(100_000));
      conn.end();
    });
    const c = new Conn(r, 40010, 9, { dst: WEB, iss: 0x3000_0000, mss });
    c.syn();
    r.vclock.advance(10);
    c.takeSynAck();
    c.ack();
    r.vclock.advance(20);
    expect(c.received().equals(data)).toBe(true);
    const sizes = c.segs.filter((s) => s.payload.length > 0).map((s) => s.payload.length);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(most);
    // No short piece split off a read: each read is whole segments of the MSS, except where an arrival ended.
    expect(sizes.filter((n) => n % mss !== 0).length).toBeLessThanOrEqual(2);
    expect(r.nat.tcp.stats.segmentsBuiltInReadFrame).toBe(sizes.length);
  });

  it('a download into a small window: segments copied out of the send queue as the window opens; every byte in order', () => {
    const r = virtualRig();
    const data = pattern(50_000);
    r.outside.host('203.0.113.10').listenTcp(9, (conn) => conn.end(data));
    const c = new Conn(r, 40011, 9, { dst: WEB, iss: 0x3100_0000, bare: true }); // (no window scaling, MSS 536)
    c.syn();
    r.vclock.advance(10);
    c.takeSynAck();
    const small = (): void => r.inject(c.frame(TCP_ACK, Buffer.alloc(0), 'full', { window: 3000 }));
    small();
    for (let i = 0; i < 40 && !c.segs.some((s) => s.flags & TCP_FIN); i++) {
      r.vclock.advance(5);
      c.received(); // (updates rcvNxt: the next ACK takes everything so far)
      small();
    }
    expect(c.received().equals(data)).toBe(true);
    const sizes = c.segs.filter((s) => s.payload.length > 0).map((s) => s.payload.length);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(3000);
    // The first read was only partly sent: its segments came out of the send queue.
    expect(r.nat.tcp.stats.segmentsBuiltInReadFrame).toBeLessThan(sizes.length);
  });

  it('a connect to a host without a listener is refused: the container gets a RST', () => {
    const r = virtualRig();
    r.outside.host('203.0.113.10');
    const c = new Conn(r, 40003, 81, { dst: WEB, iss: 1000 });
    c.syn();
    r.vclock.advance(10);
    const rst = c.segs.find((s) => s.flags & TCP_RST);
    expect(rst).toBeDefined();
    expect(rst!.ack).toBe(1001);
    expect(r.nat.tcp.stats.refused).toBe(1);
  });

  it('a connect to an address with no host: ICMP host unreachable at the NAT connect timeout, not before', () => {
    const r = virtualRig();
    const c = new Conn(r, 40004, 80, { dst: NOBODY, iss: 5 });
    c.syn();
    const mark = r.mark();
    r.vclock.advance(CONNECT_TIMEOUT_MS - 1);
    expect(r.since(mark).filter((p) => p.proto === 1)).toEqual([]);
    r.vclock.advance(1);
    const errors = r.since(mark).filter((p) => p.proto === 1);
    expect(errors.length).toBe(1);
    expect(icmpError(errors[0]!)).toMatchObject({ type: 3, code: 1 });
    expect(r.nat.tcp.stats.timeouts).toBe(1);
  });

  it('EHOSTUNREACH (as configured) reaches the container as ICMP host unreachable', () => {
    const r = virtualRig({ outside: { unreachable: 'EHOSTUNREACH', unreachableAfterMs: 3000 } });
    const c = new Conn(r, 40005, 80, { dst: NOBODY, iss: 5 });
    c.syn();
    const mark = r.mark();
    r.vclock.advance(2999);
    expect(r.since(mark).length).toBe(0);
    r.vclock.advance(1);
    const errors = r.since(mark).filter((p) => p.proto === 1);
    expect(errors.map((p) => icmpError(p).code)).toEqual([1]);
    expect(r.nat.tcp.stats.unreachable).toBe(1);
  });

  it('a reset from the outside server reaches the container as a RST; the entry goes', () => {
    const r = virtualRig();
    const l = r.outside.host('203.0.113.10').listenTcp(80);
    const c = open(r, 40006, WEB, 80);
    r.vclock.advance(5);
    l.connections[0]!.reset();
    r.vclock.advance(5);
    expect(c.segs.some((s) => s.flags & TCP_RST)).toBe(true);
    r.vclock.advance(2000);
    expect(r.entries(PROTO_TCP)).toEqual([]);
  });

  it("a reset from the container resets the server's connection, after the data before it", () => {
    const r = virtualRig();
    const l = r.outside.host('203.0.113.10').listenTcp(80);
    const c = open(r, 40007, WEB, 80);
    c.send(Buffer.from('last words'));
    r.inject(c.frame(TCP_RST | TCP_ACK));
    r.vclock.advance(50);
    const server = l.connections[0]!;
    expect(server.text()).toBe('last words');
    expect(server.wasReset).toBe(true);
    expect(r.nat.tcp.stats.resetsToHost).toBe(1);
  });
});

describe('NAT against MemoryOutside: UDP and ping', () => {
  it('a datagram out and its answer back; a stranger is filtered (address-dependent)', () => {
    const r = virtualRig();
    const dns = r.outside.host('203.0.113.10').bindUdp(53, (d) => d.reply(`answer to ${d.data.toString()}`));
    r.inject(udpFrame(40053, 53, Buffer.from('q1'), { dst: WEB }));
    r.vclock.advance(10);
    expect(dns.received.map((d) => [d.from, d.fromPort, d.data.toString()])).toEqual([[HOST, 40053, 'q1']]);
    const back = r.packets.filter((p) => p.udp);
    expect(back.map((p) => [p.src, p.udp!.sport, p.udp!.dport, p.udp!.payload.toString()])).toEqual([[WEB, 53, 40053, 'answer to q1']]);
    // Someone else writes to the mapping's external port: dropped and counted.
    r.outside.host('203.0.113.11').sendUdp(HOST, 40053, 'let me in');
    r.vclock.advance(10);
    expect(r.packets.filter((p) => p.udp).length).toBe(1);
    expect(r.nat.udp.stats.filtered).toBe(1);
    expect(r.entries(PROTO_UDP).length).toBe(1);
  });

  it('a datagram to a closed port comes back as ICMP port unreachable, quoting the container\'s datagram', () => {
    const r = virtualRig();
    r.outside.host('203.0.113.10');
    r.inject(udpFrame(40054, 9999, Buffer.from('anyone?'), { dst: WEB }));
    r.vclock.advance(10);
    const errs = r.packets.filter((p) => p.proto === 1);
    expect(errs.length).toBe(1);
    const e = icmpError(errs[0]!);
    expect([e.type, e.code]).toEqual([3, 3]);
    // The quote is the datagram as the container sent it: its address and ports.
    expect(e.quote.readUInt32BE(12)).toBe(C_IP);
    expect(e.quote.readUInt32BE(16)).toBe(WEB);
    expect(e.quote.readUInt16BE(20)).toBe(40054);
    expect(e.quote.readUInt16BE(22)).toBe(9999);
  });

  it('ping: answered by a host that answers, silence from one that does not', () => {
    const r = virtualRig();
    const web = r.outside.host('203.0.113.10');
    r.inject(ipv4Frame(1, icmpEcho(0x1234, 1, Buffer.from('ping!')), { dst: WEB }));
    r.vclock.advance(10);
    const replies = r.packets.filter((p) => p.proto === 1 && p.l4[0] === 0);
    expect(replies.length).toBe(1);
    expect(replies[0]!.src).toBe(WEB);
    expect(replies[0]!.l4.readUInt16BE(4)).toBe(0x1234);
    expect(replies[0]!.l4.subarray(8).toString()).toBe('ping!');
    web.answersPings = false;
    r.inject(ipv4Frame(1, icmpEcho(0x1234, 2, Buffer.from('ping!')), { dst: WEB }));
    r.vclock.advance(10);
    expect(r.packets.filter((p) => p.proto === 1 && p.l4[0] === 0).length).toBe(1);
    expect(web.pingsReceived).toBe(2);
    expect(r.entries(PROTO_ICMP).length).toBe(1);
  });
});

describe('NAT against MemoryOutside: published ports', () => {
  it('an outside client reaches a published TCP port and sees the container answer', async () => {
    const r = virtualRig();
    containerSpeaks(r);
    const publishing = r.nat.publisher.publish(target(r), publishSpecMappings('8080:80'));
    r.vclock.advance(1);
    const [port] = await publishing;
    expect(port!.mapping.hostPort).toBe(8080);
    const client = r.outside.host('203.0.113.20').connectTcp(8080);
    r.vclock.advance(5);
    // The NAT opens the connection towards the container, from the client's own address.
    const syn = r.packets.find((p) => p.tcp && p.tcp.flags === TCP_SYN);
    expect(syn).toBeDefined();
    expect(syn!.src).toBe(CLIENT);
    expect(syn!.tcp!.dport).toBe(80);
    const cport = syn!.tcp!.sport;
    const iss = 77_000;
    r.inject(tcpFrame({ src: C_IP, dst: CLIENT, sport: 80, dport: cport, seq: iss, ack: (syn!.tcp!.seq + 1) >>> 0, flags: TCP_SYN | TCP_ACK, options: synOptions(1460, 7) }));
    r.vclock.advance(5);
    expect(client.connected).toBe(true);
    client.write('hello container');
    r.vclock.advance(5);
    const data = r.packets.filter((p) => p.tcp && p.tcp.payload.length > 0 && p.tcp.dport === 80);
    expect(Buffer.concat(data.map((p) => p.tcp!.payload)).toString()).toBe('hello container');
    r.inject(
      tcpFrame({ src: C_IP, dst: CLIENT, sport: 80, dport: cport, seq: iss + 1, ack: (syn!.tcp!.seq + 1 + 15) >>> 0, flags: TCP_ACK | TCP_FIN, payload: Buffer.from('hello client') }),
    );
    r.vclock.advance(5);
    expect(client.text()).toBe('hello client');
    expect(client.readableEnded).toBe(true);
    expect(r.nat.tcp.stats.inboundEstablished).toBe(1);
    // A short exchange stays on 'data' events: no socket is re-wrapped for it.
    expect(r.nat.tcp.stats.inboundReadWithOnread).toBe(0);
  });

  it("an upload through a published port: after its first big read it reads with onread, in whole segments of the container's MSS built around each read", async () => {
    const r = virtualRig();
    containerSpeaks(r);
    const publishing = r.nat.publisher.publish(target(r), publishSpecMappings('8080:80'));
    r.vclock.advance(1);
    await publishing;
    const client = r.outside.host('203.0.113.20').connectTcp(8080);
    r.vclock.advance(5);
    const syn = r.packets.find((p) => p.tcp && p.tcp.flags === TCP_SYN)!;
    const cport = syn.tcp!.sport;
    r.inject(tcpFrame({ src: C_IP, dst: CLIENT, sport: 80, dport: cport, seq: 5000, ack: (syn.tcp!.seq + 1) >>> 0, flags: TCP_SYN | TCP_ACK, options: synOptions(1460, 7) }));
    r.vclock.advance(5);
    // A window update (scaled now: 8 MiB), as the container's kernel sends once it has room.
    r.inject(tcpFrame({ src: C_IP, dst: CLIENT, sport: 80, dport: cport, seq: 5001, ack: (syn.tcp!.seq + 1) >>> 0, flags: TCP_ACK, window: 0xffff }));
    const upload = pattern(300_000);
    client.write(upload.subarray(0, 40_000));
    r.vclock.advance(5);
    expect(r.nat.tcp.stats.inboundReadWithOnread).toBe(1);
    const first = r.packets.filter((p) => p.tcp && p.tcp.payload.length > 0 && p.tcp.dport === 80).length;
    client.write(upload.subarray(40_000));
    r.vclock.advance(5);
    const data = r.packets.filter((p) => p.tcp && p.tcp.payload.length > 0 && p.tcp.dport === 80);
    expect(Buffer.concat(data.map((p) => p.tcp!.payload)).equals(upload)).toBe(true);
    // After the switch, reads sized after the SYN-ACK's MSS: 64240 B (44 segments), the last the rest.
    const sizes = data.slice(first).map((p) => p.tcp!.payload.length);
    expect(sizes.length).toBeGreaterThan(3);
    expect(sizes.slice(0, -1).every((n) => n === 64240)).toBe(true);
    expect(r.nat.tcp.stats.segmentsBuiltInReadFrame).toBe(sizes.length);
  });

  it('an outside client reaches a published UDP port and gets the container\'s reply', async () => {
    const r = virtualRig();
    containerSpeaks(r);
    const publishing = r.nat.publisher.publish(target(r), publishSpecMappings('5353:53/udp'));
    r.vclock.advance(1);
    await publishing;
    const client = r.outside.host('203.0.113.20').sendUdp(HOST, 5353, 'query');
    r.vclock.advance(5);
    const q = r.packets.find((p) => p.udp);
    expect(q).toBeDefined();
    expect([q!.src, q!.udp!.sport, q!.udp!.dport, q!.udp!.payload.toString()]).toEqual([CLIENT, client.port, 53, 'query']);
    r.inject(udpFrame(53, client.port, Buffer.from('reply'), { dst: CLIENT }));
    r.vclock.advance(5);
    expect(client.received.map((d) => [d.from, d.fromPort, d.data.toString()])).toEqual([[HOST, 5353, 'reply']]);
  });

  it('publishing a port in use fails with EADDRINUSE', async () => {
    const r = virtualRig();
    r.outside.host('127.0.0.1').listenTcp(8081);
    const publishing = r.nat.publisher.publish(target(r), publishSpecMappings('8081:80'));
    r.vclock.advance(1);
    await expect(publishing).rejects.toMatchObject({ code: 'EADDRINUSE' });
  });
});

describe('NAT against MemoryOutside: time and replay', () => {
  it('an idle established flow is removed at exactly the 2 h 4 min established timeout, not before; the container is told', () => {
    const started = performance.now();
    const r = virtualRig();
    const l = r.outside.host('203.0.113.10').listenTcp(22);
    const c = open(r, 40022, WEB, 22);
    // The last packet of the flow at a whole second, so the NAT's once-a-second sweep falls on its expiry.
    r.vclock.advanceTo(Math.ceil(r.vclock.now() / 1000) * 1000 + 1000);
    c.ack();
    const lastSeen = r.vclock.now();
    const timeout = DEFAULT_CONNTRACK_TIMEOUTS.tcpEstablished;
    expect(timeout).toBe(7_440_000);
    const [entry] = r.entries(PROTO_TCP);
    expect(entry!.expiresAt).toBe(lastSeen + timeout);
    const mark = r.mark();
    r.vclock.advanceTo(lastSeen + timeout - 1);
    expect(r.entries(PROTO_TCP).length).toBe(1);
    expect(r.since(mark).some((p) => p.tcp && p.tcp.flags & TCP_RST)).toBe(false);
    expect(l.connections[0]!.wasReset).toBe(false);
    r.vclock.advance(1);
    expect(r.entries(PROTO_TCP)).toEqual([]);
    expect(r.nat.ct.stats.removed[RemovalReason.Timeout]).toBe(1);
    expect(r.since(mark).filter((p) => p.tcp && p.tcp.flags & TCP_RST).length).toBe(1);
    r.vclock.advance(10);
    expect(l.connections[0]!.wasReset).toBe(true);
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it('same seed, same script: the same frames, byte for byte, and the same outside events', () => {
    const run = (seed: number): { frames: string[]; trace: string[] } => {
      const r = virtualRig({ seed, outside: { trace: true } });
      r.outside.host('203.0.113.10').serveHttp(80, (req) => `page ${req.path}`);
      r.outside.host('203.0.113.10').bindUdp(53, (d) => d.reply('a'));
      const c = open(r, 40100, WEB, 80);
      c.send(Buffer.from('GET /x HTTP/1.0\r\n\r\n'));
      r.inject(udpFrame(40101, 53, Buffer.from('q'), { dst: WEB }));
      r.inject(ipv4Frame(1, icmpEcho(9, 1, Buffer.from('p')), { dst: WEB }));
      r.vclock.advance(50);
      c.received();
      c.fin();
      r.vclock.advance(50);
      return { frames: r.packets.map((p) => p.raw.toString('hex')), trace: [...r.outside.trace] };
    };
    const a = run(7);
    const b = run(7);
    expect(a.frames.length).toBeGreaterThan(5);
    expect(b.frames).toEqual(a.frames);
    expect(b.trace).toEqual(a.trace);
    // And the seed matters (the ISN secret, the ports): a replay is not a coincidence.
    const other = run(8);
    expect(other.frames).not.toEqual(a.frames);
  });
});
