/**
 * Published ports driven frame by frame: real listeners on the loopback and real host clients,
 * the NAT's rig (test/unit/helpers/nat-rig.ts) playing the container at 10.0.2.100 — it answers
 * the SYNs the NAT sends it by hand, so every step of the handshake, the data both ways, refusals,
 * silence and unpublishing can be checked on the wire. Clients on the loopback are shown to the
 * container as the gateway (10.0.2.2); the real-address case needs a second namespace and is in
 * test/e2e/publish.test.ts.
 */
import dgram from 'node:dgram';
import net, { type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { PROTO_TCP, PROTO_UDP, TCP_ESTABLISHED } from '../../../src/nat/conntrack.js';
import { formatConntrackLine } from '../../../src/nat/conntrack-format.js';
import type { PublishTarget, Publisher } from '../../../src/nat/publish.js';
import { publishSpecMappings } from '../../../src/nat/publish-spec.js';
import { SYN_RETRIES } from '../../../src/nat/tcp-flow.js';
import { macBytes } from '../helpers/frames.js';
import {
  C_IP,
  C_MAC,
  Conn,
  GW,
  GW_MAC,
  NAT_MSS,
  TCP_ACK,
  TCP_FIN,
  TCP_RST,
  TCP_SYN,
  cleanups,
  notify,
  rig,
  synOptions,
  tcpFrame,
  tcpOptionsOf,
  udpFrame,
  until,
  useNatRig,
  type Packet,
  type Rig,
} from '../helpers/nat-rig.js';

useNatRig();

const HTTP = 80;

function target(r: Rig): PublishTarget {
  return { name: 'c1', network: 'default', gw: r.net.gateway, containerIp: C_IP, container: 'default/10.0.2.100' };
}

/** Publishes `spec` to the rig's container; unpublished at the end of the test. */
async function publish(r: Rig, spec: string): Promise<{ port: number; publisher: Publisher }> {
  const publisher = r.nat.publisher;
  const ports = await publisher.publish(target(r), publishSpecMappings(spec));
  cleanups.push(() => publisher.removeTarget('c1', 'test over'));
  return { port: ports[0]!.mapping.hostPort, publisher };
}

/** ARP frames for the container, kept aside (the rig records IPv4 only). */
function watchArp(r: Rig): Buffer[] {
  const arps: Buffer[] = [];
  const prev = r.port.onFrame!;
  r.port.onFrame = (rf) => {
    if (rf.frame.readUInt16BE(12) === 0x0806) {
      arps.push(Buffer.from(rf.frame));
      notify();
      return;
    }
    prev(rf);
  };
  return arps;
}

function arpFrame(op: number, senderMac: number, senderIp: number, targetMac: number, targetIp: number, dstMac: number): Buffer {
  const f = Buffer.alloc(42);
  macBytes(dstMac).copy(f, 0);
  macBytes(senderMac).copy(f, 6);
  f.writeUInt16BE(0x0806, 12);
  f.writeUInt16BE(1, 14);
  f.writeUInt16BE(0x0800, 16);
  f[18] = 6;
  f[19] = 4;
  f.writeUInt16BE(op, 20);
  macBytes(senderMac).copy(f, 22);
  f.writeUInt32BE(senderIp >>> 0, 28);
  macBytes(targetMac).copy(f, 32);
  f.writeUInt32BE(targetIp >>> 0, 38);
  return f;
}

/** The container asks for the gateway's MAC, as it does before its first packet out: the gateway learns it. */
function containerSpeaks(r: Rig): void {
  r.inject(arpFrame(1, C_MAC, C_IP, 0, GW, 0xffffffffffff));
}

interface Client {
  socket: Socket;
  data: Buffer[];
  error: NodeJS.ErrnoException | null;
  closed: boolean;
  ended: boolean;
  received(): string;
}

async function client(port: number, host = '127.0.0.1'): Promise<Client> {
  const socket = net.connect({ port, host, allowHalfOpen: true });
  const c: Client = { socket, data: [], error: null, closed: false, ended: false, received: () => Buffer.concat(c.data).toString() };
  socket.on('data', (d: Buffer) => {
    c.data.push(d);
    notify();
  });
  socket.on('error', (err: NodeJS.ErrnoException) => {
    c.error = err;
    notify();
  });
  socket.on('end', () => {
    c.ended = true;
    notify();
  });
  socket.on('close', () => {
    c.closed = true;
    notify();
  });
  cleanups.push(() => void socket.destroy());
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return c;
}

/** The SYNs the container received on `cport`. */
function synsTo(r: Rig, cport: number, since = 0): Packet[] {
  return r.since(since).filter((p) => p.tcp && p.tcp.dport === cport && (p.tcp.flags & TCP_SYN) !== 0);
}

/**
 * The container's side of a connection the NAT opened: answers the SYN with a SYN-ACK (options
 * like Linux's), then behaves like Conn (sport = the container port, dst = who it sees).
 */
async function acceptInContainer(r: Rig, cport: number, since = 0, o: { wscale?: number; mss?: number } = {}): Promise<{ conn: Conn; syn: Packet }> {
  await until(() => synsTo(r, cport, since).length > 0, `a SYN to container port ${cport}`);
  const syn = synsTo(r, cport, since)[0]!;
  const t = syn.tcp!;
  const conn = new Conn(r, cport, t.sport, { dst: syn.src });
  conn.irs = t.seq;
  conn.rcvNxt = (t.seq + 1) >>> 0;
  r.inject(
    tcpFrame({ dst: syn.src, sport: cport, dport: t.sport, seq: conn.iss, ack: conn.rcvNxt, flags: TCP_SYN | TCP_ACK, window: 64240, options: synOptions(o.mss ?? 1460, o.wscale ?? 7) }),
  );
  conn.sndNxt = (conn.iss + 1) >>> 0;
  return { conn, syn };
}

/** Data the container received on `conn` (from irs + 1), in order. */
function containerData(conn: Conn): string {
  const out: Buffer[] = [];
  let expected = (conn.irs + 1) >>> 0;
  for (const s of conn.segs) {
    if (s.payload.length === 0 || s.seq !== expected) continue;
    out.push(s.payload);
    expected = (expected + s.payload.length) >>> 0;
  }
  return Buffer.concat(out).toString();
}

describe('published TCP ports', () => {
  it('opens the flow towards the container from the client, carries data both ways, and shows it in conntrack', async () => {
    const r = rig();
    containerSpeaks(r);
    const { port } = await publish(r, `127.0.0.1::${HTTP}`);
    const c = await client(port);
    const { conn, syn } = await acceptInContainer(r, HTTP);
    // A loopback client is shown as the gateway, with its own port (>= 1024 and free).
    expect(syn.src).toBe(GW);
    expect(syn.tcp!.sport).toBe(c.socket.localPort);
    expect(syn.ethSrc).toBe(GW_MAC);
    const opts = tcpOptionsOf(syn.tcp!.options);
    expect(opts.mss).toBe(NAT_MSS);
    expect(opts.wscale).toBeGreaterThan(0);
    // Before the container answers, conntrack has the DNAT entry unreplied.
    // After: the handshake's last ACK, and the entry established.
    await until(() => conn.segs.some((s) => s.flags === TCP_ACK && s.ack === conn.sndNxt), 'the ACK of our SYN-ACK');
    const [e] = r.nat.ct.list({ proto: PROTO_TCP });
    expect(e!.inbound).toBe(true);
    expect(e!.state).toBe(TCP_ESTABLISHED);
    expect(formatConntrackLine(e!, r.nat.ct.now())).toMatch(
      new RegExp(`^tcp +6 \\d+ ESTABLISHED src=127\\.0\\.0\\.1 dst=127\\.0\\.0\\.1 sport=${c.socket.localPort} dport=${port} src=10\\.0\\.2\\.100 dst=10\\.0\\.2\\.2 sport=80 dport=${syn.tcp!.sport} \\[ASSURED\\]`),
    );
    // Client → container.
    c.socket.write('GET / HTTP/1.0\r\n\r\n');
    await until(() => containerData(conn) === 'GET / HTTP/1.0\r\n\r\n', 'the request in the container');
    conn.rcvNxt = (conn.irs + 1 + 18) >>> 0;
    conn.ack();
    // Container → client, then FIN both ways.
    conn.send(Buffer.from('HTTP/1.0 200 OK\r\n\r\nhello'));
    await until(() => c.received() === 'HTTP/1.0 200 OK\r\n\r\nhello', 'the answer at the client');
    conn.fin();
    await until(() => c.ended, 'the FIN at the client');
    c.socket.end();
    await until(() => conn.segs.some((s) => (s.flags & TCP_FIN) !== 0), "the client's FIN in the container");
    expect(r.nat.tcp.stats.inboundEstablished).toBe(1);
  });

  it('resets the client at once when the container refuses (nothing listens on the port)', async () => {
    const r = rig();
    containerSpeaks(r);
    const { port } = await publish(r, `127.0.0.1::${HTTP}`);
    const c = await client(port);
    await until(() => synsTo(r, HTTP).length === 1, 'the SYN');
    const syn = synsTo(r, HTTP)[0]!.tcp!;
    r.inject(tcpFrame({ dst: GW, sport: HTTP, dport: syn.sport, seq: 0, ack: (syn.seq + 1) >>> 0, flags: TCP_RST | TCP_ACK, window: 0 }));
    await until(() => c.closed, 'the client closed');
    expect(c.error?.code).toBe('ECONNRESET');
    expect(r.nat.tcp.stats.inboundRefused).toBe(1);
    expect(r.nat.ct.list()).toEqual([]);
  });

  it(`gives up after ${SYN_RETRIES} SYNs to a silent container and resets the client`, async () => {
    const r = rig();
    containerSpeaks(r);
    const { port } = await publish(r, `127.0.0.1::${HTTP}`);
    const c = await client(port);
    for (let n = 1; n <= SYN_RETRIES; n++) {
      await until(() => synsTo(r, HTTP).length === n, `SYN number ${n}`);
      r.clock.now += 2000; // past any RTO (200, 400, 800, 1600 ms)
    }
    await until(() => c.closed, 'the client reset');
    expect(c.error?.code).toBe('ECONNRESET');
    expect(synsTo(r, HTTP).length).toBe(SYN_RETRIES);
    const all = synsTo(r, HTTP);
    expect(new Set(all.map((p) => p.tcp!.seq)).size).toBe(1); // the same SYN, retransmitted
    expect(r.nat.tcp.stats.inboundUnanswered).toBe(1);
  });

  it('finds an unknown container by ARP before its first SYN', async () => {
    const r = rig();
    const arps = watchArp(r);
    const { port } = await publish(r, `127.0.0.1::${HTTP}`);
    await client(port);
    await until(() => arps.some((a) => a.readUInt16BE(20) === 1 && a.readUInt32BE(38) === C_IP), 'an ARP request for the container');
    expect(synsTo(r, HTTP)).toEqual([]);
    r.inject(arpFrame(2, C_MAC, C_IP, GW_MAC, GW, GW_MAC));
    const { conn } = await acceptInContainer(r, HTTP);
    await until(() => conn.segs.some((s) => s.flags === TCP_ACK), 'the handshake done');
  });

  it('without window scaling from the container, scales nothing either way', async () => {
    const r = rig();
    containerSpeaks(r);
    const { port } = await publish(r, `127.0.0.1::${HTTP}`);
    const c = await client(port);
    await until(() => synsTo(r, HTTP).length === 1, 'the SYN');
    const syn = synsTo(r, HTTP)[0]!;
    const t = syn.tcp!;
    const conn = new Conn(r, HTTP, t.sport, { dst: GW });
    conn.irs = t.seq;
    conn.rcvNxt = (t.seq + 1) >>> 0;
    // SYN-ACK with an MSS option only and a small window.
    const mssOnly = Buffer.from([2, 4, 0x05, 0xb4]);
    r.inject(tcpFrame({ dst: GW, sport: HTTP, dport: t.sport, seq: conn.iss, ack: conn.rcvNxt, flags: TCP_SYN | TCP_ACK, window: 4000, options: mssOnly }));
    conn.sndNxt = (conn.iss + 1) >>> 0;
    await until(() => conn.segs.some((s) => s.flags === TCP_ACK), 'the ACK');
    // The window field is unscaled now: at most 65535 and what our buffer allows.
    expect(conn.segs.find((s) => s.flags === TCP_ACK)!.window).toBe(0xffff);
    // 6000 bytes from the client: the container's 4000-byte window lets 4000 through, in 1460-byte pieces.
    c.socket.write(Buffer.alloc(6000, 0x61));
    await until(() => containerData(conn).length === 4000, 'a window of data');
    const dataSegs = conn.segs.filter((s) => s.payload.length > 0);
    expect(Math.max(...dataSegs.map((s) => (s.gsoSize > 0 ? s.gsoSize : s.payload.length)))).toBeLessThanOrEqual(1460);
    conn.rcvNxt = (conn.irs + 1 + 4000) >>> 0;
    r.inject(conn.frame(TCP_ACK, Buffer.alloc(0), 'full', { window: 4000 }));
    await until(() => containerData(conn).length === 6000, 'the rest');
  });

  it('unpublishing closes the listener and resets open flows both ways', async () => {
    const r = rig();
    containerSpeaks(r);
    const { port, publisher } = await publish(r, `127.0.0.1::${HTTP}`);
    const c = await client(port);
    const { conn } = await acceptInContainer(r, HTTP);
    await until(() => conn.segs.some((s) => s.flags === TCP_ACK), 'established');
    const mark = r.mark();
    await publisher.unpublish(publisher.portsOf('c1')[0]!);
    await until(() => c.closed, 'the client reset');
    expect(c.error?.code).toBe('ECONNRESET');
    expect(r.since(mark).some((p) => p.tcp && (p.tcp.flags & TCP_RST) !== 0)).toBe(true);
    expect(r.nat.ct.list()).toEqual([]);
    const refused = await new Promise<string>((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1' });
      s.on('connect', () => resolve('connected'));
      s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    });
    expect(refused).toBe('ECONNREFUSED');
  });

  it('the container leaving resets its clients (no RST into a container that is gone)', async () => {
    const r = rig();
    containerSpeaks(r);
    const { port } = await publish(r, `127.0.0.1::${HTTP}`);
    const c = await client(port);
    const { conn } = await acceptInContainer(r, HTTP);
    await until(() => conn.segs.some((s) => s.flags === TCP_ACK), 'established');
    const mark = r.mark();
    expect(r.nat.removeContainer('default', C_IP)).toBe(1);
    await until(() => c.closed, 'the client reset');
    expect(c.error?.code).toBe('ECONNRESET');
    expect(r.since(mark).filter((p) => p.tcp)).toEqual([]);
  });

  it('carries 4 MiB from the client and 4 MiB back, in GSO frames to the container', async () => {
    const r = rig();
    containerSpeaks(r);
    const { port } = await publish(r, `127.0.0.1::${HTTP}`);
    const c = await client(port);
    const { conn } = await acceptInContainer(r, HTTP);
    await until(() => conn.segs.some((s) => s.flags === TCP_ACK), 'established');
    const up = Buffer.alloc(4 << 20);
    for (let i = 0; i < up.length; i += 4) up.writeUInt32BE(i, i);
    c.socket.write(up);
    // The container acknowledges as data comes (what a kernel would), so the window stays open.
    let got = 0;
    await until(() => {
      const d = conn.segs.filter((s) => s.payload.length > 0);
      const total = d.reduce((n, s) => n + s.payload.length, 0);
      if (total !== got) {
        got = total;
        conn.rcvNxt = (conn.irs + 1 + got) >>> 0;
        conn.ack();
      }
      return got >= up.length;
    }, 'all of the upload in the container');
    const data = Buffer.concat(conn.segs.filter((s) => s.payload.length > 0).map((s) => s.payload));
    expect(data.equals(up)).toBe(true);
    expect(conn.segs.some((s) => s.gsoSize > 0)).toBe(true);
    // And back: 4 MiB in 64 KiB GSO pieces from the container.
    const down = Buffer.alloc(4 << 20, 0x5a);
    for (let off = 0; off < down.length; off += 65000) conn.send(down.subarray(off, Math.min(off + 65000, down.length)), 'gso');
    await until(() => c.data.reduce((n, d) => n + d.length, 0) === down.length, 'all of the download at the client');
    expect(Buffer.concat(c.data).equals(down)).toBe(true);
  });
});

describe('published UDP ports', () => {
  it('keeps one flow per client, each shown as the gateway with its own port, and answers each from the published port', async () => {
    const r = rig();
    containerSpeaks(r);
    const { port } = await publish(r, `127.0.0.1::53/udp`);
    const clients = await Promise.all(
      [0, 1].map(async () => {
        const s = dgram.createSocket('udp4');
        const got: Array<{ text: string; from: string; port: number }> = [];
        s.on('message', (m, ri) => {
          got.push({ text: m.toString(), from: ri.address, port: ri.port });
          notify();
        });
        await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
        cleanups.push(() => new Promise<void>((resolve) => s.close(() => resolve())));
        return { s, got };
      }),
    );
    clients.forEach((c, i) => c.s.send(`query ${i}`, port, '127.0.0.1'));
    const udpIn = () => r.packets.filter((p) => p.udp && p.udp.dport === 53);
    await until(() => udpIn().length === 2, 'both queries in the container');
    const byText = new Map(udpIn().map((p) => [p.udp!.payload.toString(), p]));
    const q0 = byText.get('query 0')!;
    const q1 = byText.get('query 1')!;
    expect(q0.src).toBe(GW);
    expect(q1.src).toBe(GW);
    expect(q0.udp!.sport).not.toBe(q1.udp!.sport);
    // Each answer goes back to the client that asked, from the published port.
    r.inject(udpFrame(53, q1.udp!.sport, Buffer.from('answer 1'), { dst: GW }));
    r.inject(udpFrame(53, q0.udp!.sport, Buffer.from('answer 0'), { dst: GW }));
    await until(() => clients.every((c) => c.got.length === 1), 'both answers');
    clients.forEach((c, i) => expect(c.got[0]).toEqual({ text: `answer ${i}`, from: '127.0.0.1', port }));
    const entries = r.nat.ct.list({ proto: PROTO_UDP });
    expect(entries.length).toBe(2);
    expect(entries.every((e) => e.inbound && e.origDst === 0x7f000001 && e.origDport === port && e.replySrc === C_IP && e.replySport === 53)).toBe(true);
  });
});

describe('publishing', () => {
  it('is all or nothing: a port in use leaves none of the range listening', async () => {
    const r = rig();
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
    const taken = (blocker.address() as net.AddressInfo).port;
    // A range ending on the taken port: the ports before it open, then all close again.
    const first = taken - 2;
    const err = await r.nat.publisher.publish(target(r), publishSpecMappings(`127.0.0.1:${first}-${taken}:80-82`)).then(
      () => null,
      (e: Error & { code?: string }) => e,
    );
    expect(err?.code).toBe('EADDRINUSE');
    expect(err?.message).toBe(`cannot publish 127.0.0.1:${taken}:82/tcp: 127.0.0.1:${taken}/tcp is already in use on the host (EADDRINUSE)`);
    expect(r.nat.publisher.list()).toEqual([]);
    for (const p of [first, first + 1]) {
      const s = net.createServer();
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(p, '127.0.0.1', resolve);
      });
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
  });

  it('binds one free port of a host range for one container port, skipping ports in use or published', async () => {
    const r = rig();
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
    const taken = (blocker.address() as net.AddressInfo).port;
    const end = taken + 3;
    // The first port of the range is in use on the host: another one of the range is bound.
    const [a] = await r.nat.publisher.publish(target(r), publishSpecMappings(`127.0.0.1:${taken}-${end}:80`));
    cleanups.push(() => r.nat.publisher.removeTarget('c1', 'test over'));
    expect(a!.mapping.hostPort).toBeGreaterThan(taken);
    expect(a!.mapping.hostPort).toBeLessThanOrEqual(end);
    // What is recorded and listed is the port bound, not the range.
    expect(a!.mapping).toEqual({ proto: 'tcp', hostIp: '127.0.0.1', hostPort: a!.mapping.hostPort, containerPort: 80 });
    // The same range again, twice in one request: two more ports of it, each different.
    const [b, c] = await r.nat.publisher.publish(target(r), [...publishSpecMappings(`127.0.0.1:${taken}-${end}:81`), ...publishSpecMappings(`127.0.0.1:${taken}-${end}:82`)]);
    const bound = [a!, b!, c!].map((p) => p.mapping.hostPort);
    expect(new Set(bound).size).toBe(3);
    for (const port of bound) expect(port > taken && port <= end).toBe(true);
    // Every port of the range is now taken: the next request says so in one line.
    const err = await r.nat.publisher.publish(target(r), publishSpecMappings(`127.0.0.1:${taken}-${end}:83`)).then(
      () => null,
      (e: Error & { code?: string }) => e,
    );
    expect(err?.code).toBe('EADDRINUSE');
    expect(err?.message).toBe(`cannot publish 127.0.0.1:${taken}-${end}:83/tcp: no port of ${taken}-${end} is free on 127.0.0.1/tcp (EADDRINUSE)`);
    expect(r.nat.publisher.list()).toHaveLength(3);
  });

  it('binds one free port of a host range for UDP too', async () => {
    const r = rig();
    const blocker = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => blocker.bind(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
    const taken = blocker.address().port;
    const [p] = await r.nat.publisher.publish(target(r), publishSpecMappings(`127.0.0.1:${taken}-${taken + 2}:53/udp`));
    cleanups.push(() => r.nat.publisher.removeTarget('c1', 'test over'));
    expect(p!.mapping.hostPort === taken + 1 || p!.mapping.hostPort === taken + 2).toBe(true);
    expect(p!.mapping.hostPortEnd).toBeUndefined();
  });

  it('names an address a listening socket cannot bind in one clear line, not a raw "listen EINVAL"', async () => {
    const r = rig();
    // A multicast IPv6 address passes the parser (it is an address) but no TCP socket binds it.
    const err = await r.nat.publisher.publish(target(r), publishSpecMappings('[ff02::1]:8095:80')).then(
      () => null,
      (e: Error & { code?: string }) => e,
    );
    expect(err).not.toBeNull();
    expect(err!.message.split('\n')).toHaveLength(1);
    expect(err!.message).toMatch(/^cannot publish \[ff02::1\]:8095:80\/tcp: /);
    if (err!.code === 'EINVAL') expect(err!.message).toBe('cannot publish [ff02::1]:8095:80/tcp: ff02::1 cannot be bound by a listening TCP socket (a link-local, multicast or broadcast address?): publish on :: or on a unicast address of the host (EINVAL)');
    else expect(['EAFNOSUPPORT', 'EADDRNOTAVAIL']).toContain(err!.code); // no IPv6 here
  });

  it('refuses a port already published, naming who has it', async () => {
    const r = rig();
    const { port } = await publish(r, `127.0.0.1::${HTTP}`);
    const err = await r.nat.publisher.publish(target(r), publishSpecMappings(`${port}:81`)).then(
      () => null,
      (e: Error & { code?: string }) => e,
    );
    expect(err?.code).toBe('ERR_PORT_PUBLISHED');
    expect(err?.message).toBe(`cannot publish 0.0.0.0:${port}:81/tcp: 127.0.0.1:${port}/tcp is already published to c1 port 80`);
  });

  it('refuses an address the host does not have', async () => {
    const r = rig();
    const err = await r.nat.publisher.publish(target(r), publishSpecMappings('192.0.2.77:8080:80/udp')).then(
      () => null,
      (e: Error & { code?: string }) => e,
    );
    expect(err?.code).toBe('EADDRNOTAVAIL');
    expect(err?.message).toBe('cannot publish 192.0.2.77:8080:80/udp: 192.0.2.77 is not an address of this host (publish on 0.0.0.0 or on an address the host has) (EADDRNOTAVAIL)');
  });

  it('serves an IPv6 host address, the client shown as the gateway and listed with its IPv6 address', async () => {
    const r = rig();
    containerSpeaks(r);
    let port: number;
    try {
      ({ port } = await publish(r, `[::1]::${HTTP}`));
    } catch (err) {
      // No IPv6 loopback here: the refusal must say so in the usual way.
      expect((err as Error).message).toMatch(/cannot publish \[::1\]:0:80\/tcp/);
      return;
    }
    const c = await client(port, '::1');
    const { conn, syn } = await acceptInContainer(r, HTTP);
    expect(syn.src).toBe(GW);
    await until(() => conn.segs.some((s) => s.flags === TCP_ACK), 'established');
    const line = formatConntrackLine(r.nat.ct.list()[0]!, r.nat.ct.now());
    expect(line).toContain(`src=::1 dst=::1 sport=${c.socket.localPort} dport=${port} src=10.0.2.100 dst=10.0.2.2 sport=80`);
    c.socket.write('over v6');
    await until(() => containerData(conn) === 'over v6', 'data over IPv6');
  });
});
