/**
 * The outbound NAT driven frame by frame, with real host sockets on the loopback.
 *
 * The rig is the real thing minus the kernel: a Network (switch + gateway) with the Nat behind
 * it as the daemon wires them, and a MemoryPort with offloads playing the container
 * (02:00:00:00:00:0a, 10.0.2.100). The container's traffic to the gateway address 10.0.2.2 is
 * carried to 127.0.0.1, where the tests run ordinary node servers; nothing here talks to any
 * other host (destinations outside are only used where the NAT must drop them unsent).
 *
 * Frames are built as bytes here (not with src/packet/build.ts), and what the container receives
 * is checked with an independent parser: IPv4 header checksums, full L4 checksums, and for
 * frames with a partial checksum the pseudo-header seed; GSO frames are cut with the codecs'
 * segmentGso() and every piece is checked the same way.
 *
 * The NAT's clock is a fake that moves only when a test moves it: no retransmission fires behind
 * a test's back, and conntrack expiry is walked through with ct.expire(). Tests wait for events
 * (a frame for the container, a server callback) with a deadline, never for time.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { native } from '../../../src/native/addon.js';
import {
  PROTO_ICMP,
  PROTO_TCP,
  PROTO_UDP,
  TCP_CLOSE_WAIT,
  TCP_ESTABLISHED,
  TCP_FIN_WAIT,
  TCP_LAST_ACK,
  TCP_SYN_RECV,
  TCP_SYN_SENT,
  TCP_TIME_WAIT,
} from '../../../src/nat/conntrack.js';
import { OUR_WSCALE, RESET_DRAIN_MS, SEND_LIMIT } from '../../../src/nat/tcp-flow.js';
import { CONNECT_FAILURE_LOG_MS, type TcpNatFlow } from '../../../src/nat/tcp-nat.js';
import { VNET_F_DATA_VALID, VNET_F_NEEDS_CSUM } from '../../../src/packet/virtio-net.js';
import { naiveChecksum, naiveSum, patternPayload, pseudoHeader } from '../helpers/frames.js';
import type { Packet } from '../helpers/nat-rig.js';
import {
  useNatRig,
  ip,
  GW,
  DNS,
  C_IP,
  C_MAC,
  LOOPBACK,
  NAT_MSS,
  TCP_FIN,
  TCP_SYN,
  TCP_RST,
  TCP_PSH,
  TCP_ACK,
  until,
  eventually,
  howEnded,
  loopTurns,
  cleanups,
  ipv4Bytes,
  ipv4Frame,
  tcpL4,
  tcpFrame,
  udpFrame,
  icmpEcho,
  partialVnet,
  synOptions,
  hex,
  l4ChecksumProblem,
  rig,
  Conn,
  tcpOptionsOf,
  tcpServer,
  closedTcpPort,
  udpServer,
  freeUdpPort,
  send,
  fdCount,
  udpSocketInode,
  holdsSocket,
  icmpError,
} from '../helpers/nat-rig.js';

useNatRig();

const baseline = { fds: 0 };
beforeAll(() => {
  native(); // the addon's own fds (if any) are not ours to count
  baseline.fds = fdCount();
});

// =============================================================================================

describe('Nat: TCP to the host loopback', () => {
  it('answers the SYN only after the host connect, carries data both ways byte-exact, closes both ways, and tracks every state', async () => {
    const fromServer = patternPayload(300_000, 3);
    const s = await tcpServer((c) => c.socket.write('hello'));
    const r = rig();
    const conn = new Conn(r, 40001, s.port);

    // SYN (twice: a retransmission while connecting opens nothing new).
    conn.syn();
    conn.r.inject(tcpFrame({ sport: 40001, dport: s.port, seq: conn.iss, flags: TCP_SYN, window: 64240, options: synOptions(1460, 7) }));
    expect(conn.segs, 'no SYN-ACK before the host socket connected').toEqual([]);
    expect(r.nat.tcp.stats.syns).toBe(1);
    expect(r.nat.tcp.stats.connected).toBe(0);
    let [e] = r.entries(PROTO_TCP);
    expect(e.state).toBe(TCP_SYN_SENT);
    expect(e.replyDst, 'reply tuple pending until connected').toBe(0);

    const sa = await conn.synAck();
    expect(r.nat.tcp.stats.connected).toBe(1);
    expect(sa.flags).toBe(TCP_SYN | TCP_ACK);
    expect(sa.ack).toBe((conn.iss + 1) >>> 0);
    expect(sa.window).toBe(0xffff);
    expect(tcpOptionsOf(sa.options)).toEqual({ mss: NAT_MSS, wscale: OUR_WSCALE });
    expect(conn.segs).toHaveLength(1);
    expect(e.state).toBe(TCP_SYN_RECV);
    expect(r.nat.stats.routed).toBe(2);

    await until(() => s.conns.length === 1, 'the server to accept');
    expect(s.conns).toHaveLength(1);
    [e] = r.entries(PROTO_TCP);
    expect({ src: e.origSrc, sport: e.origSport, dst: e.origDst, dport: e.origDport }).toEqual({ src: C_IP, sport: 40001, dst: GW, dport: s.port });
    expect({ src: e.replySrc, sport: e.replySport, dst: e.replyDst, dport: e.replyDport }).toEqual({ src: LOOPBACK, sport: s.port, dst: LOOPBACK, dport: s.conns[0].remotePort });
    expect(e.container).toBe('default/10.0.2.100');

    // ACK: established; the server's greeting, held back until now, comes through.
    conn.ack();
    expect(e.state).toBe(TCP_ESTABLISHED);
    expect(e.assured).toBe(true);
    await until(() => conn.received().length === 5, 'the greeting');
    expect(conn.received().toString()).toBe('hello');

    // Container → server: full checksums, a partial one, a TSO super-frame.
    const toServer = patternPayload(20 * 1460 + 1000 + 30_000, 9);
    let at = 0;
    for (let i = 0; i < 20; i++, at += 1460) conn.send(toServer.subarray(at, at + 1460));
    conn.send(toServer.subarray(at, at + 1000), 'partial');
    at += 1000;
    conn.send(toServer.subarray(at), 'gso');
    const lastAck = conn.segs[conn.segs.length - 1];
    expect(lastAck.flags).toBe(TCP_ACK);
    expect(lastAck.ack, 'everything acknowledged').toBe(conn.sndNxt);
    expect(lastAck.window << OUR_WSCALE).toBeGreaterThan(1 << 20);
    await until(() => s.conns[0].received === toServer.length, 'the container data at the server');
    expect(s.conns[0].data().equals(toServer)).toBe(true);

    // Server → container: segments at the container's MSS, GSO frames cut at 1460.
    s.conns[0].socket.write(fromServer);
    await until(() => conn.received().length === 5 + fromServer.length, 'the server data at the container');
    expect(conn.received().equals(Buffer.concat([Buffer.from('hello'), fromServer]))).toBe(true);
    const data = conn.segs.filter((x) => x.payload.length > 0);
    const gso = data.filter((x) => x.gsoSize !== 0);
    expect(gso.length, 'GSO frames').toBeGreaterThan(0);
    for (const x of gso) expect(x.gsoSize).toBe(1460);
    for (const x of data) {
      if (x.gsoSize === 0) expect(x.payload.length).toBeLessThanOrEqual(1460);
      expect(x.payload.length).toBeLessThanOrEqual(65535 - 40);
    }
    for (const x of data.slice(1)) expect(x.ack, 'server data acknowledges all the container sent').toBe(conn.sndNxt);
    conn.ack();

    // Container FIN: the server sees the end; the NAT acknowledges it.
    conn.fin();
    expect(conn.segs[conn.segs.length - 1].ack).toBe(conn.sndNxt);
    expect(e.state).toBe(TCP_CLOSE_WAIT);
    await until(() => s.conns[0].ended, 'the server to see the end');

    // Server FIN: a FIN to the container after all the data, then TIME_WAIT on its ACK.
    s.conns[0].socket.end();
    await until(() => conn.segs.some((x) => x.flags & TCP_FIN), 'FIN from the NAT');
    const fin = conn.segs.find((x) => x.flags & TCP_FIN)!;
    expect(fin.seq).toBe((conn.irs + 1 + 5 + fromServer.length) >>> 0);
    expect(fin.payload.length).toBe(0);
    expect(e.state).toBe(TCP_LAST_ACK);
    conn.received();
    conn.ack();
    expect(e.state).toBe(TCP_TIME_WAIT);
    expect(r.nat.tcp.active, 'no socket left').toBe(0);
    expect(r.entries(PROTO_TCP)).toEqual([e]);
    expect(r.nat.ct.timeoutOf(e)).toBe(240_000);
    await until(() => s.conns[0].closed, 'the server socket to close');
    expect(s.conns[0].error).toBeNull();
    expect(r.nat.tcp.stats.resetsToContainer).toBe(0);
    expect(r.nat.tcp.stats.resetsToHost).toBe(0);
  });

  it('server closes first: FIN_WAIT, CLOSE_WAIT, then TIME_WAIT; a new SYN on the tuple replaces the entry', async () => {
    const s = await tcpServer((c) => c.socket.end('bye'));
    const r = rig();
    const conn = new Conn(r, 40002, s.port);
    await conn.open();
    await until(() => conn.segs.some((x) => x.flags & TCP_FIN), 'FIN from the NAT');
    expect(conn.received().toString()).toBe('bye');
    const [e] = r.entries(PROTO_TCP);
    expect(e.state).toBe(TCP_FIN_WAIT);
    conn.ack();
    expect(e.state).toBe(TCP_CLOSE_WAIT);
    await until(() => s.conns.length === 1, 'the accepted connection');
    conn.send(Buffer.from('still talking'));
    conn.fin();
    expect(e.state).toBe(TCP_TIME_WAIT);
    await until(() => s.conns[0].ended && s.conns[0].closed, 'the server to see the end and close');
    expect(s.conns[0].data().toString()).toBe('still talking');
    expect(s.conns[0].error).toBeNull();

    // Same ports again: the TIME_WAIT entry makes way for the new connection.
    const again = new Conn(r, 40002, s.port);
    await again.open();
    const now = r.entries(PROTO_TCP);
    expect(now).toHaveLength(1);
    expect(now[0]).not.toBe(e);
    expect(e.live).toBe(false);
    expect(now[0].state).toBe(TCP_ESTABLISHED);
    expect(r.nat.ct.stats.removed.replaced).toBe(1);
  });

  it('a container without options gets an MSS option only, and 536-byte GSO segments', async () => {
    const payload = patternPayload(20_000, 5);
    const s = await tcpServer((c) => c.socket.write(payload));
    const r = rig();
    const conn = new Conn(r, 40003, s.port, { bare: true });
    const sa = await conn.open();
    expect(tcpOptionsOf(sa.options)).toEqual({ mss: NAT_MSS, wscale: -1 });
    expect(sa.options.length).toBe(4);
    // Without window scaling, the SYN's window (64240) is all the NAT may fill.
    await until(() => conn.received().length === payload.length, 'the data');
    expect(conn.received().equals(payload)).toBe(true);
    const gso = conn.segs.filter((x) => x.gsoSize !== 0);
    expect(gso.length).toBeGreaterThan(0);
    for (const x of gso) expect(x.gsoSize).toBe(536);
    for (const x of conn.segs) expect(x.window).toBeLessThanOrEqual(0xffff);
  });

  it('half-closed by the server, the container can still send more than the host socket takes at once, then FIN: the server gets every byte', async () => {
    // The server ends its side and reads nothing until the container has finished: the host
    // socket's buffers fill, Node queues the rest (our window shrinks), and the container's FIN
    // then completes the close (TIME_WAIT) while bytes are still queued in the host socket.
    const s = await tcpServer((c) => {
      c.socket.pause();
      c.socket.end();
    });
    const r = rig();
    const conn = new Conn(r, 40004, s.port);
    await conn.open();
    await until(() => conn.segs.some((x) => x.flags & TCP_FIN), 'FIN from the NAT');
    conn.received();
    conn.ack();
    const chunk = patternPayload(65_000, 1);
    let sent = 0;
    const total: Buffer[] = [];
    // Send until the NAT's window shows bytes waiting in the host socket (or 16 MiB, whichever first).
    for (let i = 0; i < 256; i++) {
      const piece = Buffer.from(chunk);
      piece.writeUInt32BE(i, 0);
      conn.send(piece, 'gso');
      total.push(piece);
      sent += piece.length;
      const last = conn.segs[conn.segs.length - 1];
      if (last.ack !== conn.sndNxt) break;
      if ((last.window << OUR_WSCALE) < 4 * 1024 * 1024 - 65_536) break;
    }
    const lastAck = conn.segs[conn.segs.length - 1];
    expect(lastAck.ack, 'all of it accepted').toBe(conn.sndNxt);
    expect(lastAck.window << OUR_WSCALE, 'bytes are waiting in the host socket').toBeLessThan(4 * 1024 * 1024 - 65_536);
    conn.fin();
    const [e] = r.entries(PROTO_TCP);
    expect(e.state).toBe(TCP_TIME_WAIT);
    s.conns[0].socket.resume();
    await until(() => s.conns[0].ended || s.conns[0].error !== null, 'the server to read to the end');
    expect(s.conns[0].error).toBeNull();
    expect(s.conns[0].received).toBe(sent);
    expect(s.conns[0].data().equals(Buffer.concat(total))).toBe(true);
  });

  it('a SYN to a closed loopback port gets RST|ACK acknowledging isn+1, and leaves no entry', async () => {
    const port = await closedTcpPort();
    const r = rig();
    const conn = new Conn(r, 40005, port);
    conn.syn();
    expect(r.entries(PROTO_TCP)).toHaveLength(1);
    await until(() => conn.segs.length === 1, 'the reset');
    const rst = conn.segs[0];
    expect(rst.flags).toBe(TCP_RST | TCP_ACK);
    expect(rst.seq).toBe(0);
    expect(rst.ack).toBe((conn.iss + 1) >>> 0);
    expect(rst.payload.length).toBe(0);
    expect(r.nat.ct.size).toBe(0);
    expect(r.nat.tcp.stats.refused).toBe(1);
    expect(r.nat.tcp.active).toBe(0);
  });

  it('a segment of an unknown flow is reset at once with the right numbers', () => {
    const r = rig();
    const m = r.mark();
    // With ACK: RST, seq = its ack.
    r.inject(tcpFrame({ sport: 40006, dport: 9, seq: 1000, ack: 0xdeadbeef, flags: TCP_ACK | TCP_PSH, payload: Buffer.from('data') }));
    // Without ACK: RST|ACK acknowledging what it occupied (payload, FIN).
    r.inject(tcpFrame({ sport: 40007, dport: 9, seq: 5000, flags: TCP_PSH, payload: Buffer.from('12345') }));
    r.inject(tcpFrame({ sport: 40008, dport: 9, seq: 0xfffffffe, flags: TCP_FIN, payload: Buffer.from('xy') }));
    // A reset is never answered.
    r.inject(tcpFrame({ sport: 40009, dport: 9, seq: 77, ack: 88, flags: TCP_RST | TCP_ACK }));
    const got = r.since(m).map((p) => ({ sport: p.tcp!.sport, dport: p.tcp!.dport, src: p.src, flags: p.tcp!.flags, seq: p.tcp!.seq, ack: p.tcp!.ack, len: p.tcp!.payload.length }));
    expect(got).toEqual([
      { sport: 9, dport: 40006, src: GW, flags: TCP_RST, seq: 0xdeadbeef, ack: 0, len: 0 },
      { sport: 9, dport: 40007, src: GW, flags: TCP_RST | TCP_ACK, seq: 0, ack: 5005, len: 0 },
      { sport: 9, dport: 40008, src: GW, flags: TCP_RST | TCP_ACK, seq: 0, ack: 1, len: 0 },
    ]);
    expect(r.nat.tcp.stats.unknownFlowResets).toBe(3);
    expect(r.nat.ct.size).toBe(0);
  });

  it('nonsense flag combinations are counted as bad segments and get no reply', () => {
    const r = rig();
    const m = r.mark();
    const bad = [TCP_SYN | TCP_FIN, TCP_SYN | TCP_FIN | TCP_ACK, TCP_SYN | TCP_RST, TCP_SYN | TCP_RST | TCP_ACK, 0, 0xc0 /* ECE|CWR only */, 0x3f | 0xc0];
    for (const [i, flags] of bad.entries()) r.inject(tcpFrame({ sport: 40100 + i, dport: 80, seq: 1, flags }));
    // A header length beyond the segment.
    const short = tcpL4({ sport: 40200, dport: 80, seq: 1, flags: TCP_SYN });
    short[12] = 0xf0;
    short.writeUInt16BE(0, 16);
    short.writeUInt16BE(naiveChecksum(pseudoHeader(false, 6, short.length, ipv4Bytes(C_IP), ipv4Bytes(GW)), short), 16);
    r.inject(ipv4Frame(6, short));
    expect(r.since(m)).toEqual([]);
    expect(r.nat.tcp.stats.badSegments).toBe(bad.length + 1);
    expect(r.nat.tcp.stats.syns).toBe(0);
    expect(r.nat.ct.size).toBe(0);
  });

  it('a wrong checksum without an offload flag is dropped and counted; NEEDS_CSUM and DATA_VALID frames are not checked', async () => {
    const s = await tcpServer();
    const r = rig();
    const m = r.mark();
    r.inject(tcpFrame({ sport: 40300, dport: s.port, seq: 1, flags: TCP_SYN, csum: 'bad' }));
    r.inject(udpFrame(40301, 9, Buffer.from('x'), { csum: 'bad' }));
    expect(r.nat.stats.badChecksums).toBe(2);
    expect(r.since(m)).toEqual([]);
    expect(r.nat.ct.size).toBe(0);
    expect(r.nat.stats.routed).toBe(0);

    // The same SYN with a partial checksum (the kernel completes it later) is taken...
    const a = new Conn(r, 40302, s.port);
    r.inject(tcpFrame({ sport: 40302, dport: s.port, seq: a.iss, flags: TCP_SYN, options: synOptions(1460, 7), csum: 'partial' }), partialVnet(16));
    a.sndNxt = (a.iss + 1) >>> 0;
    // ...and so is one the sender marked as already validated, whatever its checksum field says.
    const b = new Conn(r, 40303, s.port);
    r.inject(tcpFrame({ sport: 40303, dport: s.port, seq: b.iss, flags: TCP_SYN, options: synOptions(1460, 7), csum: 'bad' }), { flags: VNET_F_DATA_VALID });
    b.sndNxt = (b.iss + 1) >>> 0;
    await a.synAck();
    await b.synAck();
    expect(r.nat.stats.badChecksums).toBe(2);
    expect(r.nat.tcp.stats.syns).toBe(2);
  });

  it('a reset from the server reaches the container as one RST|ACK at the right numbers', async () => {
    const s = await tcpServer();
    const r = rig();
    const conn = new Conn(r, 40310, s.port);
    await conn.open();
    conn.send(Buffer.from('ping'));
    await until(() => s.conns.length === 1 && s.conns[0].received === 4, 'the data at the server');
    s.conns[0].socket.resetAndDestroy();
    await until(() => conn.segs.some((x) => x.flags & TCP_RST), 'the reset');
    const rst = conn.segs.filter((x) => x.flags & TCP_RST);
    expect(rst).toHaveLength(1);
    expect(rst[0].flags).toBe(TCP_RST | TCP_ACK);
    expect(rst[0].seq).toBe((conn.irs + 1) >>> 0);
    expect(rst[0].ack).toBe(conn.sndNxt);
    expect(r.nat.ct.size).toBe(0);
    expect(r.nat.tcp.stats.resetsToContainer).toBe(1);
  });

  it('a reset from the container resets the server side and ends the entry', async () => {
    const s = await tcpServer();
    const r = rig();
    const conn = new Conn(r, 40311, s.port);
    await conn.open();
    await until(() => s.conns.length === 1, 'the accepted connection');
    const m = r.mark();
    r.inject(conn.frame(TCP_RST | TCP_ACK));
    await until(() => s.conns[0].error !== null || s.conns[0].closed, 'the server to see the reset');
    expect(s.conns[0].error?.code).toBe('ECONNRESET');
    expect(r.since(m)).toEqual([]);
    expect(r.nat.ct.size).toBe(0);
    expect(r.nat.tcp.active).toBe(0);
  });

  it('a reset from the container reaches the server after every byte the container sent: it reads them all, then ECONNRESET', async () => {
    // The server does not read until after the reset: what the container sent waits in the NAT
    // socket's queues, which a reset sent at once would discard.
    const s = await tcpServer((c) => c.socket.pause());
    const r = rig();
    const conn = new Conn(r, 40312, s.port);
    await conn.open();
    await until(() => s.conns.length === 1, 'the accepted connection');
    const data = patternPayload(3 * 1024 * 1024, 11);
    for (let at = 0; at < data.length; at += 60_000) conn.send(data.subarray(at, at + 60_000), 'gso');
    expect(conn.segs.at(-1)?.ack, 'all acknowledged to the container').toBe(conn.sndNxt);
    r.inject(conn.frame(TCP_RST | TCP_ACK));
    expect(r.nat.ct.size).toBe(0);
    expect(r.nat.tcp.stats.resetsToHost).toBe(1);
    expect(s.conns[0].received, 'the server has not read it all yet').toBeLessThan(data.length);
    s.conns[0].socket.resume();
    await until(() => s.conns[0].error !== null || s.conns[0].ended, 'the server to see the end');
    expect(s.conns[0].received).toBe(data.length);
    expect(s.conns[0].data().equals(data)).toBe(true);
    expect(howEnded(s.conns[0], s.port)).toBe('reset');
    expect(r.nat.tcp.stats.resetDrainTimeoutsToHost).toBe(0);
  });

  it('a container FIN, then RST, behind data the server has not read: all of it, then the reset', async () => {
    // The FIN makes the NAT end() its socket; the reset must wait for that shutdown too (libuv
    // refuses SO_LINGER 0 while one is pending), then still be a reset.
    const s = await tcpServer((c) => c.socket.pause());
    const r = rig();
    const conn = new Conn(r, 40316, s.port);
    await conn.open();
    await until(() => s.conns.length === 1, 'the accepted connection');
    const data = patternPayload(3 * 1024 * 1024, 13);
    for (let at = 0; at < data.length; at += 60_000) conn.send(data.subarray(at, at + 60_000), 'gso');
    conn.fin();
    r.inject(conn.frame(TCP_RST | TCP_ACK));
    expect(r.nat.ct.size).toBe(0);
    s.conns[0].socket.resume();
    // The FIN's 'end' comes first; the reset after it raises no event at the server, so poll.
    await eventually(() => s.conns[0].error !== null || s.conns[0].closed || (s.conns[0].ended && howEnded(s.conns[0], s.port) !== 'fin'), 'the server to see the end');
    expect(s.conns[0].received).toBe(data.length);
    expect(howEnded(s.conns[0], s.port)).toBe('reset');
  });

  it('a container FIN and RST back to back, nothing queued: still a reset (not refused by libuv while its FIN is going out)', async () => {
    const s = await tcpServer();
    const r = rig();
    const conn = new Conn(r, 40317, s.port);
    await conn.open();
    await until(() => s.conns.length === 1, 'the accepted connection');
    conn.send(Buffer.from('bye'));
    conn.fin();
    r.inject(conn.frame(TCP_RST | TCP_ACK));
    await eventually(() => s.conns[0].error !== null || (s.conns[0].ended && howEnded(s.conns[0], s.port) !== 'fin'), 'the server to see the reset');
    expect(s.conns[0].data().toString()).toBe('bye');
    expect(howEnded(s.conns[0], s.port)).toBe('reset');
  });

  it(`a server that does not read is reset anyway at RESET_DRAIN_MS (${RESET_DRAIN_MS} ms), and it is counted`, async () => {
    const s = await tcpServer((c) => c.socket.pause());
    const r = rig();
    const conn = new Conn(r, 40314, s.port);
    await conn.open();
    await until(() => s.conns.length === 1, 'the accepted connection');
    const data = patternPayload(3 * 1024 * 1024, 12);
    for (let at = 0; at < data.length; at += 60_000) conn.send(data.subarray(at, at + 60_000), 'gso');
    r.inject(conn.frame(TCP_RST | TCP_ACK));
    r.clock.now += RESET_DRAIN_MS;
    await eventually(() => r.nat.tcp.stats.resetDrainTimeoutsToHost === 1, 'the reset at its deadline');
    s.conns[0].socket.resume();
    await until(() => s.conns[0].error !== null || s.conns[0].ended, 'the server to see the end');
    expect(howEnded(s.conns[0], s.port)).toBe('reset');
    expect(s.conns[0].received).toBeLessThan(data.length);
  });

  it('a reset from the server reaches the container after the data the server sent before it, however small its window', async () => {
    const fromServer = patternPayload(1024 * 1024, 5);
    const s = await tcpServer();
    const r = rig();
    const conn = new Conn(r, 40313, s.port);
    await conn.open();
    await until(() => s.conns.length === 1, 'the accepted connection');
    r.inject(conn.frame(TCP_ACK, Buffer.alloc(0), 'full', { window: 16 })); // 16 << 7 = 2 KiB
    const server = s.conns[0].socket;
    server.write(fromServer);
    // The NAT's host socket has acknowledged every byte (they are in its flow's queue) ...
    const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
    await eventually(() => server.writableLength === 0 && native().socketOutq(fd) === 0, 'the NAT socket to acknowledge the data');
    // ... when the server resets.
    const flow = (r.entries(PROTO_TCP)[0].owner as TcpNatFlow).flow;
    server.resetAndDestroy();
    await eventually(() => flow.resetAt !== 0 || conn.segs.some((x) => x.flags & TCP_RST), 'the NAT to see the reset');
    expect(conn.segs.filter((x) => x.flags & TCP_RST), 'no RST in front of the data').toEqual([]);
    expect(conn.received().length).toBe(2048);
    // The container opens its window: the rest, then the reset right after it.
    r.inject(conn.frame(TCP_ACK));
    conn.received();
    r.inject(conn.frame(TCP_ACK));
    expect(conn.received().equals(fromServer)).toBe(true);
    const rst = conn.segs.filter((x) => x.flags & TCP_RST);
    expect(rst.map((x) => ({ flags: x.flags, seq: x.seq, ack: x.ack }))).toEqual([{ flags: TCP_RST | TCP_ACK, seq: (conn.irs + 1 + fromServer.length) >>> 0, ack: conn.sndNxt }]);
    expect(conn.segs.at(-1)?.flags).toBe(TCP_RST | TCP_ACK);
    expect(r.nat.ct.size).toBe(0);
    expect(r.nat.tcp.stats.resetDrainTimeoutsToContainer).toBe(0);
  });

  it('a server reset behind more data than the NAT has read is still a reset to the container, not a FIN', async () => {
    // The container's window is shut, so the NAT reads SEND_LIMIT bytes and pauses its socket;
    // the rest and then the RST wait in that socket's kernel queue. Reading them later, libuv
    // takes POLLHUP after its last short read for an end of stream: the NAT must still know it
    // was a reset (SO_ERROR) and send RST after the data, not FIN.
    const fromServer = patternPayload(SEND_LIMIT + 300_001, 6);
    const s = await tcpServer();
    const r = rig();
    const conn = new Conn(r, 40315, s.port);
    await conn.open();
    await until(() => s.conns.length === 1, 'the accepted connection');
    r.inject(conn.frame(TCP_ACK, Buffer.alloc(0), 'full', { window: 0 }));
    const server = s.conns[0].socket;
    server.write(fromServer);
    const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
    await eventually(() => server.writableLength === 0 && native().socketOutq(fd) === 0, 'the NAT socket to acknowledge the data');
    server.resetAndDestroy();
    // The container opens its window and acknowledges everything it gets, until the end.
    const ended = (): boolean => conn.segs.some((x) => (x.flags & (TCP_RST | TCP_FIN)) !== 0);
    for (let seen = -1; !ended(); ) {
      const got = conn.received().length;
      if (got !== seen) {
        seen = got;
        r.inject(conn.frame(TCP_ACK));
      }
      await eventually(() => ended() || conn.received().length !== seen, 'more data or the end');
    }
    expect(conn.received().equals(fromServer)).toBe(true);
    expect(conn.segs.filter((x) => x.flags & (TCP_RST | TCP_FIN)).map((x) => ({ flags: x.flags, seq: x.seq }))).toEqual([
      { flags: TCP_RST | TCP_ACK, seq: (conn.irs + 1 + fromServer.length) >>> 0 },
    ]);
  });

  it('an --outbound-addr the host does not have: every connect fails (network unreachable), logged once at warn per 10 s with a count', async () => {
    // Not an address of this host (the daemon refuses it at start; the NAT alone does not
    // check): binding the host socket fails, nothing is sent anywhere.
    const s = await tcpServer();
    const r = rig({ nat: { outboundAddress: '203.0.113.9' } });
    const failures = (): string[] => r.logs.filter((l) => l.includes('a TCP connect from the host failed'));
    // The ICMP error quoting the SYN of this source port (the log line is written right after it).
    const answered = (sport: number): boolean => r.packets.some((p) => p.proto === 1 && p.l4.readUInt16BE(8 + 20) === sport);
    for (let i = 0; i < 3; i++) {
      new Conn(r, 40900 + i, s.port).syn();
      await until(() => answered(40900 + i), `the answer to connection ${i}`);
    }
    const unreachable = r.packets.filter((p) => p.proto === 1).map((p) => icmpError(p));
    expect(unreachable.map((e) => `${e.type}/${e.code}`)).toEqual(['3/0', '3/0', '3/0']);
    expect(r.nat.tcp.stats.unreachable).toBe(3);
    expect(failures()).toHaveLength(1);
    const line = JSON.parse(failures()[0]) as Record<string, unknown>;
    expect(line).toMatchObject({ level: 40, code: 'EADDRNOTAVAIL', container: '10.0.2.100:40900', destination: `127.0.0.1:${s.port}`, outboundAddr: '203.0.113.9', notLogged: 0 });
    // 10 s later the next failure is logged, counting the two in between.
    r.clock.now += CONNECT_FAILURE_LOG_MS;
    new Conn(r, 40910, s.port).syn();
    await until(() => answered(40910), 'the answer to the fourth connection');
    expect(failures()).toHaveLength(2);
    expect(JSON.parse(failures()[1])).toMatchObject({ level: 40, code: 'EADDRNOTAVAIL', notLogged: 2 });
    expect(s.conns).toEqual([]);
  });

  it('DNS over TCP to 10.0.2.3:53 reaches the first upstream; without one the SYN is reset', async () => {
    const s = await tcpServer((c) => c.socket.on('data', (d: Buffer) => c.socket.write(Buffer.concat([Buffer.from('re:'), d]))));
    const r = rig({ spec: { dnsUpstream: [`127.0.0.1:${s.port}`] } });
    const conn = new Conn(r, 40400, 53, { dst: DNS });
    await conn.open();
    conn.send(Buffer.from('\x00\x05query'));
    await until(() => conn.received().length === 10, 'the answer');
    expect(conn.received().toString('latin1')).toBe('re:\x00\x05query');
    const [e] = r.entries(PROTO_TCP);
    expect({ dst: e.origDst, dport: e.origDport, replySrc: e.replySrc, replySport: e.replySport }).toEqual({ dst: DNS, dport: 53, replySrc: LOOPBACK, replySport: s.port });
    for (const seg of conn.segs) expect(seg.sport).toBe(53);

    // Other ports of the DNS address are the gateway's: a reset, the NAT not involved.
    const syns = r.nat.tcp.stats.syns;
    const other = new Conn(r, 40402, 80, { dst: DNS });
    other.syn();
    expect(other.segs.map((x) => ({ flags: x.flags, ack: x.ack }))).toEqual([{ flags: TCP_RST | TCP_ACK, ack: (other.iss + 1) >>> 0 }]);
    expect(r.net.gateway.stats.tcp_resets_sent).toBe(1);
    expect(r.nat.tcp.stats.syns).toBe(syns);

    const bare = rig({ spec: { name: 'bare', subnet: '10.0.2.0/24' } });
    const c2 = new Conn(bare, 40401, 53, { dst: DNS });
    c2.syn();
    expect(c2.segs.map((x) => ({ flags: x.flags, ack: x.ack }))).toEqual([{ flags: TCP_RST | TCP_ACK, ack: (c2.iss + 1) >>> 0 }]);
    expect(bare.nat.ct.size).toBe(0);
    expect(bare.nat.tcp.stats.refused).toBe(1);
  });

  it('--disable-host-loopback: the gateway address answers network unreachable, quoting the SYN (and a datagram)', async () => {
    const s = await tcpServer();
    const r = rig({ spec: { disableHostLoopback: true } });
    const m = r.mark();
    const syn = tcpFrame({ sport: 40500, dport: s.port, seq: 42, flags: TCP_SYN, options: synOptions(1460, 7) });
    r.inject(syn);
    const dgramFrame = udpFrame(40501, s.port, Buffer.from('hello?'));
    r.inject(dgramFrame);
    const got = r.since(m);
    expect(got).toHaveLength(2);
    for (const [p, sent] of [
      [got[0], syn],
      [got[1], dgramFrame],
    ] as const) {
      expect(p.src).toBe(GW);
      const err = icmpError(p);
      expect([err.type, err.code]).toEqual([3, 0]);
      // IP header + 8 bytes of the datagram, as sent.
      expect(err.quote.equals(sent.subarray(14, 14 + 28))).toBe(true);
    }
    expect(r.nat.stats.hostLoopbackRefused).toBe(2);
    expect(r.nat.ct.size).toBe(0);
    expect(s.conns).toHaveLength(0);
    expect(r.logs.some((l) => l.includes('--disable-host-loopback'))).toBe(true);
  });

  it('a container at its conntrack limit gets a reset for the next connection', async () => {
    const s = await tcpServer();
    const r = rig({ nat: { maxPerContainer: 2 } });
    const a = new Conn(r, 40600, s.port);
    const b = new Conn(r, 40601, s.port);
    await a.open();
    await b.open();
    const c = new Conn(r, 40602, s.port);
    c.syn();
    expect(c.segs.map((x) => ({ flags: x.flags, seq: x.seq, ack: x.ack }))).toEqual([{ flags: TCP_RST | TCP_ACK, seq: 0, ack: (c.iss + 1) >>> 0 }]);
    expect(r.nat.tcp.stats.limitRefusals).toBe(1);
    expect(r.nat.ct.stats.refusedContainerFull).toBe(1);
    expect(r.entries(PROTO_TCP).map((e) => e.origSport)).toEqual([40600, 40601]);
    await until(() => s.conns.length === 2, 'two connections at the server');
    expect(r.logs.some((l) => l.includes('conntrack full'))).toBe(true);
  });

  it('removeContainer() resets the host side, sends nothing to the gone container, and empties the table', async () => {
    const s = await tcpServer();
    const r = rig();
    const conn = new Conn(r, 40700, s.port);
    await conn.open();
    conn.send(Buffer.from('abc'));
    await until(() => s.conns.length === 1 && s.conns[0].received === 3, 'the data at the server');
    const m = r.mark();
    expect(r.nat.removeContainer('default', ip('10.0.2.101'))).toBe(0);
    expect(r.nat.removeContainer('default', C_IP)).toBe(1);
    expect(r.nat.ct.size).toBe(0);
    expect(r.nat.tcp.active).toBe(0);
    expect(r.nat.tcp.stats.resetsToHost).toBe(1);
    await until(() => s.conns[0].error !== null, 'ECONNRESET at the server');
    expect(s.conns[0].error?.code).toBe('ECONNRESET');
    expect(r.since(m)).toEqual([]);
    // A late segment of the container is an unknown flow now.
    conn.send(Buffer.from('d'));
    expect(r.since(m).map((p) => p.tcp!.flags)).toEqual([TCP_RST]);
  });

  it('removeNetwork() ends the network’s flows and unhooks the NAT from its gateway', async () => {
    const s = await tcpServer();
    const r = rig();
    const conn = new Conn(r, 40750, s.port);
    await conn.open();
    await until(() => s.conns.length === 1, 'the accepted connection');
    r.nat.removeNetwork(r.net.gateway);
    expect(r.net.gateway.router).toBeNull();
    expect(r.nat.ct.size).toBe(0);
    await until(() => s.conns[0].error !== null, 'ECONNRESET at the server');
    expect(s.conns[0].error?.code).toBe('ECONNRESET');
    // The gateway alone answers a new SYN to its address with a reset.
    const again = new Conn(r, 40751, s.port);
    again.syn();
    expect(again.segs.map((x) => x.flags)).toEqual([TCP_RST | TCP_ACK]);
    expect(r.nat.ct.size).toBe(0);
    expect(s.conns).toHaveLength(1);
  });

  it('flush() resets both sides and empties the table', async () => {
    const s = await tcpServer();
    const r = rig();
    const conn = new Conn(r, 40800, s.port);
    await conn.open();
    const u = await udpServer();
    r.inject(udpFrame(40801, u.port, Buffer.from('x')));
    await until(() => s.conns.length === 1 && u.messages.length === 1, 'both flows at the servers');
    expect(r.nat.ct.size).toBe(2);
    const m = r.mark();
    expect(r.nat.flush()).toBe(2);
    expect(r.nat.ct.size).toBe(0);
    expect(r.nat.udp.active).toBe(0);
    const rst = r.since(m).map((p) => p.tcp!);
    expect(rst.map((x) => ({ flags: x.flags, seq: x.seq, ack: x.ack }))).toEqual([{ flags: TCP_RST | TCP_ACK, seq: (conn.irs + 1) >>> 0, ack: conn.sndNxt }]);
    await until(() => s.conns[0].error !== null, 'ECONNRESET at the server');
    expect(s.conns[0].error?.code).toBe('ECONNRESET');
  });
});

// =============================================================================================

describe('Nat: UDP to the host loopback', () => {
  it('a datagram reaches the loopback server from the container port; the reply comes from 10.0.2.2 with a valid checksum', async () => {
    const u = await udpServer('127.0.0.1', (m, sock) => sock.send(Buffer.concat([Buffer.from('pong '), m.data]), m.port, m.address));
    const r = rig();
    const cport = await freeUdpPort();
    const m = r.mark();
    r.inject(udpFrame(cport, u.port, Buffer.from('ping')));
    await until(() => r.since(m).length === 1, 'the reply');
    expect(u.messages.map((x) => ({ data: x.data.toString(), address: x.address, port: x.port }))).toEqual([{ data: 'ping', address: '127.0.0.1', port: cport }]);
    const [p] = r.since(m);
    expect(p.src).toBe(GW);
    expect(p.proto).toBe(17);
    expect(p.udp).toEqual({ sport: u.port, dport: cport, payload: Buffer.from('pong ping') });
    // A partial checksum (NEEDS_CSUM) for the container's kernel to finish; the rig checks that
    // finishing it gives the right one (its problems list stays empty).
    expect(p.vnetFlags & VNET_F_NEEDS_CSUM, 'a partial UDP checksum').not.toBe(0);
    expect(p.l4.readUInt16BE(6), 'the pseudo-header sum').not.toBe(0);
    const [e] = r.entries(PROTO_UDP);
    expect({ src: e.origSrc, sport: e.origSport, dst: e.origDst, dport: e.origDport }).toEqual({ src: C_IP, sport: cport, dst: GW, dport: u.port });
    expect({ src: e.replySrc, sport: e.replySport, dport: e.replyDport }).toEqual({ src: LOOPBACK, sport: u.port, dport: cport });
    expect([e.origPackets, e.replyPackets]).toEqual([1, 1]);
    expect(r.nat.udp.stats).toMatchObject({ mappings: 1, datagramsOut: 1, datagramsIn: 1, portsNotPreserved: 0, filtered: 0 });

    // A partial checksum and no checksum at all are fine too.
    r.inject(udpFrame(cport, u.port, Buffer.from('p2'), { csum: 'partial' }), partialVnet(6));
    r.inject(udpFrame(cport, u.port, Buffer.from('p3'), { csum: 'none' }));
    await until(() => u.messages.length === 3 && r.since(m).length === 3, 'two more round trips');
    expect(u.messages.map((x) => x.data.toString())).toEqual(['ping', 'p2', 'p3']);
    expect(r.nat.stats.badChecksums).toBe(0);
  });

  it('one external port for every destination: two servers see the same source port', async () => {
    const u1 = await udpServer();
    const u2 = await udpServer();
    const r = rig();
    r.inject(udpFrame(40900, u1.port, Buffer.from('one')));
    r.inject(udpFrame(40900, u2.port, Buffer.from('two')));
    await until(() => u1.messages.length === 1 && u2.messages.length === 1, 'both datagrams');
    expect(u1.messages[0].port).toBe(u2.messages[0].port);
    expect(r.nat.udp.active).toBe(1);
    expect(r.nat.udp.stats.mappings).toBe(1);
    const es = r.entries(PROTO_UDP);
    expect(es.map((e) => e.origDport)).toEqual([u1.port, u2.port]);
    expect(new Set(es.map((e) => e.replyDport))).toEqual(new Set([u1.messages[0].port]));
  });

  it('address-dependent filtering: another port of an address the container sent to gets through, another address does not', async () => {
    const u1 = await udpServer();
    const r = rig();
    const m = r.mark();
    r.inject(udpFrame(41000, u1.port, Buffer.from('hi')));
    await until(() => u1.messages.length === 1, 'the datagram');
    const ext = u1.messages[0].port;

    // From 127.0.0.1 (an address the container sent to), another port: allowed (RFC 4787
    // address-dependent, not address-and-port-dependent), and it gets its own entry.
    const other = await udpServer();
    await send(other.socket, Buffer.from('same address'), ext);
    await until(() => r.since(m).length === 1, 'the datagram from another port');
    expect(r.since(m)[0].udp).toEqual({ sport: other.port, dport: 41000, payload: Buffer.from('same address') });
    expect(r.entries(PROTO_UDP).map((e) => e.origDport)).toEqual([u1.port, other.port]);

    // From 127.0.0.2 (still this host's loopback, but an address the container never sent to):
    // filtered. Then one from u1 shows the mapping still works and that nothing else arrived.
    const stranger = await udpServer('127.0.0.2');
    await send(stranger.socket, Buffer.from('let me in'), ext);
    await send(u1.socket, Buffer.from('after'), ext);
    await until(() => r.since(m).length === 2, 'the datagram from u1');
    expect(r.since(m)[1].udp!.payload.toString()).toBe('after');
    expect(r.nat.udp.stats.filtered).toBe(1);
    expect(r.entries(PROTO_UDP)).toHaveLength(2);
  });

  it('endpoint-independent filtering lets the other address in, shown as from 10.0.2.2', async () => {
    const u1 = await udpServer();
    const r = rig({ nat: { udpFiltering: 'endpoint-independent' } });
    const m = r.mark();
    r.inject(udpFrame(41100, u1.port, Buffer.from('hi')));
    await until(() => u1.messages.length === 1, 'the datagram');
    const stranger = await udpServer('127.0.0.2');
    await send(stranger.socket, Buffer.from('let me in'), u1.messages[0].port);
    await until(() => r.since(m).length === 1, 'the stranger datagram');
    const [p] = r.since(m);
    expect(p.src).toBe(GW);
    expect(p.udp).toEqual({ sport: stranger.port, dport: 41100, payload: Buffer.from('let me in') });
    expect(r.nat.udp.stats.filtered).toBe(0);
    const es = r.entries(PROTO_UDP);
    expect(es).toHaveLength(2);
    expect(es[1].replySrc).toBe(ip('127.0.0.2'));
  });

  it('a container at its conntrack limit gets administratively prohibited for a datagram to a new destination', async () => {
    const u1 = await udpServer();
    const u2 = await udpServer();
    const u3 = await udpServer();
    const r = rig({ nat: { maxPerContainer: 2 } });
    const m = r.mark();
    r.inject(udpFrame(41150, u1.port, Buffer.from('1')));
    r.inject(udpFrame(41150, u2.port, Buffer.from('2')));
    const third = udpFrame(41150, u3.port, Buffer.from('3'));
    r.inject(third);
    await until(() => u1.messages.length === 1 && u2.messages.length === 1, 'the first two datagrams');
    const got = r.since(m);
    expect(got).toHaveLength(1);
    expect(got[0].src).toBe(GW);
    const err = icmpError(got[0]);
    expect([err.type, err.code]).toEqual([3, 13]);
    expect(err.quote.equals(third.subarray(14, 14 + 28))).toBe(true);
    expect(r.nat.udp.stats.limitRefusals).toBe(1);
    expect(r.entries(PROTO_UDP).map((e) => e.origDport)).toEqual([u1.port, u2.port]);
    expect(r.nat.udp.active, 'the mapping stays for the other two').toBe(1);
    expect(r.logs.some((l) => l.includes('conntrack full'))).toBe(true);
    // The known destinations still work.
    r.inject(udpFrame(41150, u1.port, Buffer.from('1 again')));
    await until(() => u1.messages.length === 2, 'the datagram to a known destination');
    expect(u3.messages).toEqual([]);
  });

  it('a closed loopback port: ICMP port unreachable quoting the datagram as the container sent it', async () => {
    const u = await udpServer();
    const closed = u.port;
    await new Promise<void>((resolve) => u.socket.close(() => resolve()));
    cleanups.pop(); // closed already
    const r = rig();
    const m = r.mark();
    r.inject(udpFrame(41200, closed, Buffer.from('anyone?')));
    await until(() => r.since(m).length === 1, 'the ICMP error');
    const [p] = r.since(m);
    expect(p.src).toBe(GW);
    const err = icmpError(p);
    expect([err.type, err.code]).toEqual([3, 3]);
    const q = err.quote;
    expect(q[0]).toBe(0x45);
    expect(q[9]).toBe(17);
    expect(q.readUInt32BE(12)).toBe(C_IP);
    expect(q.readUInt32BE(16)).toBe(GW);
    expect(naiveSum(q.subarray(0, 20))).toBe(0xffff);
    expect(q.readUInt16BE(2)).toBe(20 + 8 + 7);
    expect({ sport: q.readUInt16BE(20), dport: q.readUInt16BE(22), len: q.readUInt16BE(24) }).toEqual({ sport: 41200, dport: closed, len: 15 });
    expect(q.subarray(28).toString()).toBe('anyone?');
    expect(r.nat.udp.stats.icmpErrorsTranslated).toBe(1);
  });

  it('entries expire after the UDP timeout (outbound traffic refreshes, replies do not), and the mapping socket closes', async () => {
    const u = await udpServer();
    const r = rig();
    const m = r.mark();
    r.inject(udpFrame(41300, u.port, Buffer.from('a')));
    await until(() => u.messages.length === 1, 'the datagram');
    const ext = u.messages[0].port;
    const inode = udpSocketInode(ext);
    expect(inode, 'the mapping socket is bound').toBeGreaterThan(0);
    expect(holdsSocket(inode), 'this process holds it').toBe(true);
    const [e] = r.entries(PROTO_UDP);
    expect(r.nat.ct.timeoutOf(e)).toBe(300_000);

    // 200 s on, a reply arrives: delivered, but it does not keep the mapping.
    r.clock.now += 200_000;
    await send(u.socket, Buffer.from('late reply'), ext);
    await until(() => r.since(m).length === 1, 'the late reply');
    expect(r.nat.ct.expire()).toBe(0);
    r.clock.now += 100_000;
    expect(r.nat.ct.expire()).toBe(1);
    expect(r.nat.ct.size).toBe(0);
    expect(r.nat.udp.active).toBe(0);
    await loopTurns(() => !holdsSocket(inode));
    expect(holdsSocket(inode), 'the mapping socket is closed').toBe(false);
    expect(udpSocketInode(ext)).toBe(0);

    // Outbound traffic does refresh: a new mapping kept alive by the container's datagrams.
    r.inject(udpFrame(41300, u.port, Buffer.from('b')));
    r.clock.now += 250_000;
    r.inject(udpFrame(41300, u.port, Buffer.from('c')));
    r.clock.now += 250_000;
    expect(r.nat.ct.expire()).toBe(0);
    expect(r.nat.udp.active).toBe(1);
    r.clock.now += 50_000;
    expect(r.nat.ct.expire()).toBe(1);
    expect(r.nat.udp.active).toBe(0);
    await until(() => u.messages.length === 3, 'the datagrams of the second mapping');
  });
});

// =============================================================================================

describe('Nat: what it does not translate', () => {
  it('special destinations are dropped and counted, and never reach a socket', () => {
    const r = rig({ others: [{ name: 'other', subnet: '10.0.3.0/24' }] });
    const m = r.mark();
    // Reserved ranges on purpose (this host, link-local, "this network", class E, another usernet
    // network): the NAT must drop them before any socket; nothing is sent anywhere.
    const specials = ['127.0.0.5', '169.254.1.1', '0.1.2.3', '240.0.0.1', '10.0.3.7'];
    for (const d of specials) {
      r.inject(tcpFrame({ dst: ip(d), sport: 41400, dport: 80, seq: 1, flags: TCP_SYN }));
      r.inject(udpFrame(41401, 53, Buffer.from('q'), { dst: ip(d) }));
    }
    expect(r.nat.stats.special).toBe(2 * specials.length);
    expect(r.since(m)).toEqual([]);
    expect(r.nat.ct.size).toBe(0);
    expect(r.nat.udp.stats.mappings).toBe(0);
    expect(r.nat.tcp.stats.syns).toBe(0);
  });

  it('multicast and the network’s own subnet never reach the NAT (the gateway does not route them)', () => {
    const r = rig();
    const m = r.mark();
    r.inject(udpFrame(41500, 5353, Buffer.from('q'), { dst: ip('224.0.0.1') }));
    r.inject(tcpFrame({ dst: ip('10.0.2.50'), sport: 41501, dport: 80, seq: 1, flags: TCP_SYN }));
    expect(r.since(m)).toEqual([]);
    expect(r.nat.stats).toMatchObject({ routed: 0, special: 0 });
    expect(r.nat.ct.size).toBe(0);
  });

  it('a fragment of a datagram never completed is held, not sent; an unsupported protocol gets protocol unreachable', () => {
    const r = rig();
    const m = r.mark();
    const outside = ip('198.51.100.7'); // documentation range: nothing is sent there
    r.inject(udpFrame(41600, 9, Buffer.alloc(64), { dst: outside, flagsFragment: 0x2000 }));
    r.inject(ipv4Frame(17, Buffer.alloc(16), { dst: outside, flagsFragment: 0x0010 }));
    expect(r.nat.stats.fragments).toBe(2);
    expect(r.nat.stats.reassembly).toMatchObject({ fragments: 2, reassembled: 0, inProgress: 1, bytesHeld: 88 });
    expect(r.nat.udp.stats.mappings).toBe(0);
    const gre = ipv4Frame(47, Buffer.from('0000080045000014', 'hex'), { dst: outside });
    r.inject(gre);
    const got = r.since(m);
    expect(got).toHaveLength(1);
    expect(got[0].src).toBe(GW);
    const err = icmpError(got[0]);
    expect([err.type, err.code]).toEqual([3, 2]);
    expect(err.quote.equals(gre.subarray(14))).toBe(true);
    expect(r.nat.stats.unsupportedProtocol).toBe(1);
    expect(r.nat.stats.badChecksums).toBe(0);
    expect(r.nat.ct.size).toBe(0);
    // 30 s on, the incomplete datagram is dropped and counted.
    r.clock.now += 30_000;
    expect(r.nat.reassembly.expire(r.clock.now)).toBe(1);
    expect(r.nat.stats.reassembly).toMatchObject({ timeouts: 1, fragmentsDropped: 2, inProgress: 0, bytesHeld: 0 });
  });
});

// =============================================================================================

/**
 * Cuts an Ethernet + IPv4 frame into fragment frames of at most `mtu` bytes of IP, by hand (the
 * way the container's kernel does: 8-byte-aligned data, the header copied, MF on all but the last).
 */
function fragmentFrame(frame: Buffer, mtu: number): Buffer[] {
  const ihl = (frame[14] & 15) * 4;
  const data = frame.subarray(14 + ihl, 14 + frame.readUInt16BE(16));
  const step = (mtu - ihl) & ~7;
  const out: Buffer[] = [];
  for (let at = 0; at < data.length; at += step) {
    const n = Math.min(step, data.length - at);
    const f = Buffer.concat([frame.subarray(0, 14 + ihl), data.subarray(at, at + n)]);
    f.writeUInt16BE(ihl + n, 16);
    f.writeUInt16BE((at + n < data.length ? 0x2000 : 0) | (at / 8), 20);
    f.writeUInt16BE(0, 24);
    f.writeUInt16BE(naiveChecksum(f.subarray(14, 14 + ihl)), 24);
    out.push(f);
  }
  return out;
}

/** Puts fragments the container received back together (independently of the NAT's code). */
function reassembleReceived(ps: Packet[]): { header: Buffer; l4: Buffer } {
  const sorted = [...ps].sort((a, b) => (a.flagsFragment & 0x1fff) - (b.flagsFragment & 0x1fff));
  let at = 0;
  for (const p of sorted) {
    expect((p.flagsFragment & 0x1fff) * 8, 'fragments tile the datagram').toBe(at);
    at += p.l4.length;
  }
  expect(sorted[sorted.length - 1].flagsFragment & 0x2000, 'MF clear on the last').toBe(0);
  expect(sorted.slice(0, -1).every((p) => (p.flagsFragment & 0x2000) !== 0), 'MF on the others').toBe(true);
  return { header: sorted[0].raw.subarray(14, 34), l4: Buffer.concat(sorted.map((p) => p.l4)) };
}

describe('Nat: IPv4 fragments', () => {
  it('an 8 KiB datagram cut at MTU 1500 reaches the loopback server whole; its 8 KiB answer reaches the container as fragments of the network MTU', async () => {
    const question = patternPayload(8192, 5);
    const answer = patternPayload(8192, 9);
    const u = await udpServer('127.0.0.1', (msg, sock) => sock.send(answer, msg.port, msg.address));
    const r = rig();
    const cport = await freeUdpPort();
    const frames = fragmentFrame(udpFrame(cport, u.port, question, { flagsFragment: 0, id: 0x7777 }), 1500);
    expect(frames).toHaveLength(6);
    const m = r.mark();
    // Out of order, as a reordering path would deliver them.
    for (const f of [frames[5], ...frames.slice(0, 5)]) r.inject(f);
    await until(() => u.messages.length === 1 && r.since(m).length === 6, 'the datagram at the server and the answer at the container');
    expect(u.messages[0].data.equals(question)).toBe(true);
    expect(u.messages[0].port).toBe(cport);
    expect(r.nat.stats).toMatchObject({ fragments: 6, badChecksums: 0 });
    expect(r.nat.stats.reassembly).toMatchObject({ fragments: 6, reassembled: 1, inProgress: 0, bytesHeld: 0, fragmentsDropped: 0 });

    const got = r.since(m);
    for (const p of got) expect(p.raw.length - 14, 'each fragment fits the MTU').toBeLessThanOrEqual(1500);
    const { header, l4 } = reassembleReceived(got);
    expect(header.readUInt32BE(12)).toBe(GW);
    expect(l4.readUInt16BE(0)).toBe(u.port);
    expect(l4.readUInt16BE(2)).toBe(cport);
    expect(l4.readUInt16BE(4)).toBe(8 + answer.length);
    expect(naiveSum(pseudoHeader(false, 17, l4.length, header.subarray(12, 16), header.subarray(16, 20)), l4), 'the UDP checksum over the whole datagram').toBe(0xffff);
    expect(l4.subarray(8).equals(answer)).toBe(true);
  });

  it('fragments with a bad UDP checksum over the whole are reassembled, then dropped as a bad checksum', async () => {
    const u = await udpServer();
    const r = rig();
    const frames = fragmentFrame(udpFrame(41700, u.port, patternPayload(3000, 1), { flagsFragment: 0, csum: 'bad' }), 1500);
    for (const f of frames) r.inject(f);
    expect(r.nat.stats.reassembly.reassembled).toBe(1);
    expect(r.nat.stats.badChecksums).toBe(1);
    expect(r.nat.udp.stats.mappings).toBe(0);
  });
});

// =============================================================================================

describe('Nat: ICMP echo', () => {
  it('a ping to the gateway address is the gateway’s own: answered, the NAT not involved', () => {
    const r = rig();
    const m = r.mark();
    r.inject(ipv4Frame(1, icmpEcho(0x4242, 1, Buffer.from('abcdefgh'))));
    const got = r.since(m);
    expect(got).toHaveLength(1);
    expect(got[0].src).toBe(GW);
    expect(got[0].l4[0]).toBe(0);
    expect(r.nat.icmp.mode).toBe('unknown');
    expect(r.nat.stats.routed).toBe(0);
  });

  it('echo through the NAT to 127.0.0.1 when the host allows ICMP sockets; otherwise mode "none", counted and logged', async (ctx) => {
    const addon = native();
    const available: string[] = [];
    for (const kind of ['ping', 'raw-icmp'] as const) {
      try {
        addon.closeFd(addon.dgramOpen({ kind }).fd);
        available.push(kind);
      } catch {
        // not allowed here
      }
    }
    const r = rig();
    const gw = r.net.gateway;
    const req = icmpEcho(0x4242, 7, Buffer.from('0123456789abcdef'));
    const frame = ipv4Frame(1, req);
    const dv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
    // The NAT's own entry point, as Nat.route calls it, with the host loopback as destination
    // (route() never sends ICMP to 127.0.0.1: the gateway answers pings to its address itself).
    const toView = (a: number): number => (a >>> 24 === 127 ? GW : a);
    const m = r.mark();
    const sent = r.nat.icmp.echoFromContainer(gw, C_MAC, C_IP, GW, LOOPBACK, frame, dv, 34, req.length, 'default', toView);
    if (available.length === 0) {
      expect(sent).toBe(false);
      expect(r.nat.icmp.mode).toBe('none');
      expect(r.nat.icmp.stats.unavailable).toBe(1);
      expect(r.nat.ct.size).toBe(0);
      expect(r.logs.some((l) => l.includes('ping_group_range'))).toBe(true);
      return ctx.skip('neither ICMP ping sockets nor raw sockets are allowed here: mode "none" was checked, the echo was not');
    }
    expect(sent).toBe(true);
    expect(r.nat.icmp.mode).toBe(available[0] === 'ping' ? 'ping' : 'raw');
    await until(() => r.since(m).length === 1, 'the echo reply');
    const [p] = r.since(m);
    expect(p.src).toBe(GW);
    expect(l4ChecksumProblem(p.raw)).toBe('');
    expect({ type: p.l4[0], code: p.l4[1], id: p.l4.readUInt16BE(4), seq: p.l4.readUInt16BE(6) }).toEqual({ type: 0, code: 0, id: 0x4242, seq: 7 });
    expect(p.l4.subarray(8).toString()).toBe('0123456789abcdef');
    const [e] = r.entries(PROTO_ICMP);
    expect({ sport: e.origSport, dport: e.origDport, replySrc: e.replySrc }).toEqual({ sport: 0x4242, dport: 8, replySrc: LOOPBACK });
    expect(r.nat.icmp.stats).toMatchObject({ echoOut: 1, echoIn: 1, unavailable: 0 });
  });
});

// =============================================================================================

afterAll(async () => {
  // Everything the tests opened is closed: no sockets or servers keep the process alive, and
  // the native readers' fds are gone.
  // (A closed handle leaves the list once libuv has run its close callback: let the loop turn.)
  const live = (): string[] => process.getActiveResourcesInfo().filter((t) => t === 'TCPSocketWrap' || t === 'TCPServerWrap' || t === 'UDPWrap');
  await loopTurns(() => live().length === 0);
  expect(live()).toEqual([]);
  await loopTurns(() => fdCount() <= baseline.fds);
  expect(fdCount()).toBeLessThanOrEqual(baseline.fds);
});
