import { EventEmitter } from 'node:events';
import { describe, it, expect } from 'vitest';
import pino from 'pino';
import { VirtualClock } from '../../../src/platform/clock.js';
import { Switch } from '../../../src/switch/switch.js';
import { MemoryPort, type ReceivedFrame } from '../../../src/link/memory-port.js';
import { DROP_SPOOFED } from '../../../src/link/counters.js';
import { GatewayPort, gatewayMac, frameDstMac } from '../../../src/gateway/gateway.js';
import { AddressPool, HOLD_LEASE } from '../../../src/gateway/address-pool.js';
import { DhcpServer } from '../../../src/gateway/dhcp-server.js';
import { DnsForwarder } from '../../../src/gateway/dns-forwarder.js';
import type { HostDatagramSocket, HostStack } from '../../../src/platform/host-stack.js';
import { SeededRandom } from '../../../src/platform/random.js';
import { DHCPACK, DHCPDISCOVER, DHCPOFFER, DHCPREQUEST, DHCP_FLAG_BROADCAST, DhcpMessage, writeDhcpRequest } from '../../../src/packet/dhcp.js';
import { BROADCAST_MAC, parseMac } from '../../../src/packet/mac.js';
import { parseIpv4 } from '../../../src/packet/ip-address.js';
import { ParseStatus } from '../../../src/packet/status.js';
import { completeChecksum } from '../../../src/packet/offload.js';
import { VNET_F_NEEDS_CSUM } from '../../../src/packet/virtio-net.js';
import { MAC_A, MAC_B, MAC_C, dvOf, macBytes, naiveChecksum, naiveSum, patternPayload, pseudoHeader } from '../helpers/frames.js';

const ip = parseIpv4;
const GW = ip('10.0.2.2');
const DNS = ip('10.0.2.3');
const GW_MAC = parseMac('52:55:0a:00:02:02');
const IP_A = ip('10.0.2.100');
const IP_B = ip('10.0.2.101');
const IP_C = ip('10.0.2.102');
const OUTSIDE = ip('198.51.100.7');
const LIMITED_BROADCAST = 0xffffffff;
const SUBNET_BROADCAST = ip('10.0.2.255');

// ---------------------------------------------------------------------------------------------
// Frames, built as bytes here (independently of src/packet/build.ts)

function ipv4Bytes(a: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(a >>> 0);
  return b;
}

interface Ipv4Options {
  srcMac?: number;
  dstMac?: number;
  src?: number;
  dst?: number;
  id?: number;
  /** Flags + fragment offset word (default DF). */
  flagsFragment?: number;
  ttl?: number;
  /** Corrupt the header checksum. */
  badChecksum?: boolean;
}

function ipv4Frame(proto: number, l4: Uint8Array, o: Ipv4Options = {}): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + l4.length, 2);
  h.writeUInt16BE(o.id ?? 0x4242, 4);
  h.writeUInt16BE(o.flagsFragment ?? 0x4000, 6);
  h[8] = o.ttl ?? 64;
  h[9] = proto;
  ipv4Bytes(o.src ?? IP_A).copy(h, 12);
  ipv4Bytes(o.dst ?? GW).copy(h, 16);
  h.writeUInt16BE(naiveChecksum(h) ^ (o.badChecksum ? 0x0101 : 0), 10);
  const eth = Buffer.alloc(14);
  macBytes(o.dstMac ?? GW_MAC).copy(eth, 0);
  macBytes(o.srcMac ?? MAC_A).copy(eth, 6);
  eth.writeUInt16BE(0x0800, 12);
  return Buffer.concat([eth, h, l4]);
}

function udpSegment(src: number, dst: number, sport: number, dport: number, payload: Uint8Array): Buffer {
  const u = Buffer.alloc(8);
  u.writeUInt16BE(sport, 0);
  u.writeUInt16BE(dport, 2);
  u.writeUInt16BE(8 + payload.length, 4);
  const c = naiveChecksum(pseudoHeader(false, 17, 8 + payload.length, ipv4Bytes(src), ipv4Bytes(dst)), u, payload);
  u.writeUInt16BE(c === 0 ? 0xffff : c, 6);
  return Buffer.concat([u, payload]);
}

function udpFrame(sport: number, dport: number, payload: Uint8Array, o: Ipv4Options = {}): Buffer {
  return ipv4Frame(17, udpSegment(o.src ?? IP_A, o.dst ?? GW, sport, dport, payload), o);
}

function icmpMessage(type: number, code: number, rest: number, data: Uint8Array): Buffer {
  const m = Buffer.alloc(8);
  m[0] = type;
  m[1] = code;
  m.writeUInt32BE(rest >>> 0, 4);
  const all = Buffer.concat([m, data]);
  all.writeUInt16BE(naiveChecksum(all), 2);
  return all;
}

function tcpSegment(src: number, dst: number, sport: number, dport: number, seq: number, ack: number, flags: number, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  const t = Buffer.alloc(20);
  t.writeUInt16BE(sport, 0);
  t.writeUInt16BE(dport, 2);
  t.writeUInt32BE(seq >>> 0, 4);
  t.writeUInt32BE(ack >>> 0, 8);
  t[12] = 0x50;
  t[13] = flags;
  t.writeUInt16BE(64240, 14);
  const all = Buffer.concat([t, payload]);
  all.writeUInt16BE(naiveChecksum(pseudoHeader(false, 6, all.length, ipv4Bytes(src), ipv4Bytes(dst)), all), 16);
  return all;
}

const ARP_REQUEST = 1;
const ARP_REPLY = 2;

function arpFrame(o: { op: number; senderMac: number; senderIp: number; targetMac?: number; targetIp: number; ethDst?: number; ethSrc?: number; hlen?: number }): Buffer {
  const a = Buffer.alloc(28);
  a.writeUInt16BE(1, 0);
  a.writeUInt16BE(0x0800, 2);
  a[4] = o.hlen ?? 6;
  a[5] = 4;
  a.writeUInt16BE(o.op, 6);
  macBytes(o.senderMac).copy(a, 8);
  ipv4Bytes(o.senderIp).copy(a, 14);
  macBytes(o.targetMac ?? 0).copy(a, 18);
  ipv4Bytes(o.targetIp).copy(a, 24);
  const eth = Buffer.alloc(14);
  macBytes(o.ethDst ?? BROADCAST_MAC).copy(eth, 0);
  macBytes(o.ethSrc ?? o.senderMac).copy(eth, 6);
  eth.writeUInt16BE(0x0806, 12);
  // Padded to the Ethernet minimum, as a kernel sends it.
  return Buffer.concat([eth, a, Buffer.alloc(18)]);
}

// ---------------------------------------------------------------------------------------------
// Parsing what comes out (independent of the codecs)

interface Ip4 {
  frame: Buffer;
  ethDst: number;
  ethSrc: number;
  ihl: number;
  total: number;
  id: number;
  flagsFragment: number;
  proto: number;
  src: number;
  dst: number;
  /** IP payload (L4). */
  l4: Buffer;
  headerOk: boolean;
}

function macAt(b: Buffer, off: number): number {
  return b.readUInt16BE(off) * 2 ** 32 + b.readUInt32BE(off + 2);
}

function parseIp4(frame: Buffer): Ip4 {
  expect(frame.readUInt16BE(12)).toBe(0x0800);
  const ihl = (frame[14] & 15) * 4;
  const total = frame.readUInt16BE(16);
  expect(frame.length).toBeGreaterThanOrEqual(14 + total);
  return {
    frame,
    ethDst: macAt(frame, 0),
    ethSrc: macAt(frame, 6),
    ihl,
    total,
    id: frame.readUInt16BE(18),
    flagsFragment: frame.readUInt16BE(20),
    proto: frame[23],
    src: frame.readUInt32BE(26),
    dst: frame.readUInt32BE(30),
    l4: frame.subarray(14 + ihl, 14 + total),
    headerOk: naiveSum(frame.subarray(14, 14 + ihl)) === 0xffff,
  };
}

function l4ChecksumOk(p: Ip4): boolean {
  if (p.proto === 1) return naiveSum(p.l4) === 0xffff;
  return naiveSum(pseudoHeader(false, p.proto, p.l4.length, ipv4Bytes(p.src), ipv4Bytes(p.dst)), p.l4) === 0xffff;
}

// ---------------------------------------------------------------------------------------------
// The rig: three containers and the gateway on one switch

/**
 * The upstream side of the network's real DnsForwarder: an in-test HostStack whose datagram
 * sockets reach no network. What the forwarder sends is recorded; `answer()` plays the upstream,
 * sending a response back on the socket the query left from, under the ID the forwarder gave it.
 */
class UpstreamSocket extends EventEmitter implements HostDatagramSocket {
  readonly sent: Buffer[] = [];
  constructor(private readonly stack: TestUpstream) {
    super();
  }
  bind(_options: { address?: string; port?: number }, callback?: () => void): void {
    callback?.();
  }
  connect(_port: number, _address: string, callback?: () => void): void {
    callback?.();
  }
  send(msg: Uint8Array, ...rest: unknown[]): void {
    const copy = Buffer.from(msg);
    this.sent.push(copy);
    this.stack.queries.push({ socket: this, bytes: copy });
    const callback = rest.find((x) => typeof x === 'function') as ((err: Error | null, bytes: number) => void) | undefined;
    callback?.(null, msg.length);
  }
  address(): { address: string; family: string; port: number } {
    return { address: '0.0.0.0', family: 'IPv4', port: 40053 };
  }
  close(callback?: () => void): void {
    this.stack.closed++;
    callback?.();
  }
  unref(): void {}
}

class TestUpstream implements Pick<HostStack, 'kind' | 'createDatagramSocket'> {
  readonly kind = 'memory' as const;
  /** Every query the forwarder sent upstream, in order (its bytes carry the forwarder's ID). */
  readonly queries: Array<{ socket: UpstreamSocket; bytes: Buffer }> = [];
  closed = 0;
  createDatagramSocket(): HostDatagramSocket {
    return new UpstreamSocket(this);
  }
  /**
   * The upstream answers query `i` with `answer` (a response to the container's query, with the
   * container's ID): it arrives with the ID the forwarder used upstream, as a real resolver's would.
   */
  answer(i: number, answer: Buffer): void {
    const q = this.queries[i];
    const msg = Buffer.from(answer);
    msg.writeUInt16BE(q.bytes.readUInt16BE(0), 0);
    q.socket.emit('message', msg, { address: '192.0.2.53', family: 'IPv4', port: 53, size: msg.length });
  }
}

/** A response of `size` bytes to `query`: the query with QR set, then padding (relayed untouched). */
function dnsAnswer(query: Buffer, size: number, salt = 0): Buffer {
  const a = Buffer.concat([query, patternPayload(size - query.length, salt)]);
  a[2] |= 0x80;
  return a;
}

interface Rig {
  sw: Switch;
  gw: GatewayPort;
  /** c1 (MAC_A, 10.0.2.100, no offloads), c2 (MAC_B, 10.0.2.101, offloads), c3 (MAC_C, 10.0.2.102, no offloads). */
  c1: MemoryPort;
  c2: MemoryPort;
  c3: MemoryPort;
  pool: AddressPool;
  dhcp: DhcpServer;
  /** The network's DNS forwarder's upstream (see TestUpstream). */
  upstream: TestUpstream;
  dns: DnsForwarder | null;
  /** The network's one clock (monotonic time 5e6 ms at the start, wall time 1.7e12). */
  clock: VirtualClock;
  /** Frames each container received since the last call, and clears them. */
  take(port: MemoryPort): ReceivedFrame[];
  drainAll(): void;
}

function rig(options: { dns?: null; mtu?: number } = {}): Rig {
  const clock = new VirtualClock({ start: 5_000_000, wallTimeAtZero: 1_700_000_000_000 - 5_000_000 });
  const sw = new Switch({ clock });
  const c1 = new MemoryPort({ name: 'c1', kind: 'container' }).plug(sw);
  const c2 = new MemoryPort({ name: 'c2', kind: 'container', offloads: true }).plug(sw);
  const c3 = new MemoryPort({ name: 'c3', kind: 'container' }).plug(sw);
  const pool = new AddressPool(ip('10.0.2.0'), 24, ip('10.0.2.100'), ip('10.0.2.254'), [GW, DNS]);
  const dhcp = new DhcpServer(
    { serverIp: GW, prefix: 24, router: GW, dnsServers: [DNS], searchList: ['example.com'], mtu: options.mtu ?? 1500, leaseTimeSec: 3600 },
    pool,
    clock,
  );
  const upstream = new TestUpstream();
  const dns =
    options.dns === null
      ? null
      : new DnsForwarder({ upstreams: () => [{ address: '192.0.2.53', port: 53, family: 4 }], log: pino({ level: 'silent' }), clock, random: new SeededRandom(11), host: upstream });
  const gw = new GatewayPort({
    name: 'gateway',
    ip: GW,
    dnsIp: DNS,
    subnet: ip('10.0.2.0'),
    prefix: 24,
    mtu: options.mtu ?? 1500,
    dhcp,
    dns,
    log: pino({ level: 'silent' }),
    clock,
  }).plug(sw);
  const ports = [c1, c2, c3];
  return {
    sw,
    gw,
    c1,
    c2,
    c3,
    pool,
    dhcp,
    upstream,
    dns,
    clock,
    take(port) {
      const got = port.received.slice();
      port.received.length = 0;
      return got;
    },
    drainAll() {
      for (const p of ports) p.received.length = 0;
    },
  };
}

/**
 * The one frame `port` received (and clears it), as a wire would carry it: a UDP datagram to a
 * port with offloads comes with a partial checksum (NEEDS_CSUM at the UDP checksum), completed
 * here in a copy, so that checks of the frame see the full checksum.
 */
function only(r: Rig, port: MemoryPort): Buffer {
  const got = r.take(port);
  expect(got, `frames on ${port.name}`).toHaveLength(1);
  if (!port.offloads) {
    expect(got[0].vnet).toBeNull();
    return got[0].frame;
  }
  const v = got[0].vnet!;
  expect(v).not.toBeNull();
  expect(v.gsoType).toBe(0);
  if (v.flags === 0) return got[0].frame;
  const f = Buffer.from(got[0].frame);
  expect(v.flags).toBe(VNET_F_NEEDS_CSUM);
  expect(f[23], 'a partial checksum on UDP only').toBe(17);
  expect([v.csumStart, v.csumOffset]).toEqual([14 + (f[14] & 15) * 4, 6]);
  expect(completeChecksum(dvOf(f), 0, f.length, v.csumStart, v.csumOffset)).toBe(ParseStatus.OK);
  return f;
}

/** Expects an ICMP error in `frame` about `offending` (a frame we sent), and returns the parsed IP. */
function expectIcmpError(frame: Buffer, offending: Buffer, type: number, code: number, from: number, toMac: number, to: number): Ip4 {
  const p = parseIp4(frame);
  expect(p.ethDst).toBe(toMac);
  expect(p.ethSrc).toBe(GW_MAC);
  expect(p.proto).toBe(1);
  expect(p.src).toBe(from);
  expect(p.dst).toBe(to);
  expect(p.headerOk).toBe(true);
  expect(p.flagsFragment & 0x4000).toBe(0);
  expect(p.total).toBeLessThanOrEqual(576);
  expect(p.l4[0]).toBe(type);
  expect(p.l4[1]).toBe(code);
  expect(p.l4.readUInt32BE(4)).toBe(0);
  expect(l4ChecksumOk(p)).toBe(true);
  const datagram = offending.subarray(14, 14 + offending.readUInt16BE(16));
  const quoted = p.l4.subarray(8);
  expect(quoted.length).toBe(Math.min(datagram.length, 548));
  expect(quoted.length).toBeGreaterThanOrEqual(Math.min(datagram.length, 28));
  expect(quoted.equals(datagram.subarray(0, quoted.length))).toBe(true);
  return p;
}

// ---------------------------------------------------------------------------------------------

describe('GatewayPort: plugging in', () => {
  it('has the slirp4netns MAC and holds it as a static switch entry', () => {
    const r = rig();
    expect(gatewayMac(GW)).toBe(GW_MAC);
    expect(r.gw.mac).toBe(GW_MAC);
    expect(r.sw.fdb.lookup(GW_MAC, r.clock.now())).toBe(r.gw);
    expect(r.sw.fdb.snapshot(r.clock.now())).toContainEqual({ mac: '52:55:0a:00:02:02', port: 'gateway', static: true, age: 0 });
  });

  it('close() unplugs it and frees its MAC', () => {
    const r = rig();
    r.gw.close();
    expect(r.sw.ports.map((p) => p.name)).toEqual(['c1', 'c2', 'c3']);
    expect(r.sw.fdb.lookup(GW_MAC, r.clock.now())).toBeNull();
    r.c1.inject(arpFrame({ op: ARP_REQUEST, senderMac: MAC_A, senderIp: IP_A, targetIp: GW }));
    expect(r.take(r.c1)).toEqual([]);
  });
});

describe('GatewayPort: ARP', () => {
  for (const [what, target] of [
    ['gateway', GW],
    ['DNS', DNS],
  ] as const) {
    it(`answers a request for the ${what} address, to the asker only`, () => {
      const r = rig();
      r.c1.inject(arpFrame({ op: ARP_REQUEST, senderMac: MAC_A, senderIp: IP_A, targetIp: target }));
      const reply = only(r, r.c1);
      const expected = Buffer.concat([
        macBytes(MAC_A),
        macBytes(GW_MAC),
        Buffer.from('0806', 'hex'),
        Buffer.from('0001080006040002', 'hex'),
        macBytes(GW_MAC),
        ipv4Bytes(target),
        macBytes(MAC_A),
        ipv4Bytes(IP_A),
      ]);
      expect(reply.toString('hex')).toBe(expected.toString('hex'));
      // The request itself was flooded to the other containers; the reply went to c1 only.
      expect(r.take(r.c2)).toHaveLength(1);
      expect(r.take(r.c3)).toHaveLength(1);
      expect(r.gw.stats).toMatchObject({ arp_requests: 1, arp_replies_sent: 1, arp_ignored: 0 });
      // The asker was learned.
      expect(r.gw.neighbourMac(IP_A)).toBe(MAC_A);
    });
  }

  it('answers a unicast request (a neighbour refresh) and one from an offload port', () => {
    const r = rig();
    r.c2.inject(arpFrame({ op: ARP_REQUEST, senderMac: MAC_B, senderIp: IP_B, targetMac: GW_MAC, targetIp: GW, ethDst: GW_MAC }));
    const reply = only(r, r.c2);
    expect(macAt(reply, 0)).toBe(MAC_B);
    expect(reply.readUInt16BE(20)).toBe(ARP_REPLY);
    expect(r.take(r.c1)).toEqual([]);
  });

  it('ignores requests for other addresses', () => {
    const r = rig();
    for (const target of [IP_B, ip('10.0.2.1'), ip('10.0.2.254'), OUTSIDE]) {
      r.c1.inject(arpFrame({ op: ARP_REQUEST, senderMac: MAC_A, senderIp: IP_A, targetIp: target }));
    }
    expect(r.take(r.c1)).toEqual([]);
    expect(r.gw.stats).toMatchObject({ arp_requests: 4, arp_replies_sent: 0, arp_ignored: 4 });
  });

  it('counts malformed ARP (a bogus hardware length) and does not answer it', () => {
    const r = rig();
    r.c1.inject(arpFrame({ op: ARP_REQUEST, senderMac: MAC_A, senderIp: IP_A, targetIp: GW, hlen: 7 }));
    const truncated = arpFrame({ op: ARP_REQUEST, senderMac: MAC_A, senderIp: IP_A, targetIp: GW }).subarray(0, 14 + 20);
    r.c1.inject(truncated);
    expect(r.take(r.c1)).toEqual([]);
    expect(r.gw.stats).toMatchObject({ arp_malformed: 2, arp_requests: 0, arp_replies_sent: 0 });
    expect(r.gw.neighbourMac(IP_A)).toBe(-1);
  });

  it('learns a container from its gratuitous ARP and does not answer it', () => {
    const r = rig();
    r.c2.inject(arpFrame({ op: ARP_REQUEST, senderMac: MAC_B, senderIp: IP_B, targetIp: IP_B }));
    expect(r.take(r.c2)).toEqual([]);
    expect(r.gw.neighbourMac(IP_B)).toBe(MAC_B);
    expect(r.gw.stats).toMatchObject({ arp_requests: 1, arp_ignored: 1, arp_replies_sent: 0 });
    // A gratuitous reply too, and a MAC change is followed.
    const MAC_B2 = 0x02_00_00_00_0b_0b;
    r.c2.inject(arpFrame({ op: ARP_REPLY, senderMac: MAC_B2, senderIp: IP_B, targetMac: BROADCAST_MAC, targetIp: IP_B }));
    expect(r.gw.neighbourMac(IP_B)).toBe(MAC_B2);
    expect(r.take(r.c2)).toEqual([]);
    expect(r.gw.neighbourTable()).toEqual([{ ip: IP_B, mac: MAC_B2, age: 0 }]);
    r.clock.advance(1500);
    expect(r.gw.neighbourTable()).toEqual([{ ip: IP_B, mac: MAC_B2, age: 1500 }]);
  });

  it('learns nothing from ARP whose sender MAC is not the frame source, an own address, an ARP probe or another subnet', () => {
    const r = rig();
    r.c1.inject(arpFrame({ op: ARP_REQUEST, senderMac: MAC_C, senderIp: IP_C, targetIp: IP_C, ethSrc: MAC_A }));
    r.c1.inject(arpFrame({ op: ARP_REQUEST, senderMac: MAC_A, senderIp: GW, targetIp: GW }));
    r.c1.inject(arpFrame({ op: ARP_REQUEST, senderMac: MAC_A, senderIp: 0, targetIp: IP_A }));
    r.c1.inject(arpFrame({ op: ARP_REQUEST, senderMac: MAC_A, senderIp: OUTSIDE, targetIp: OUTSIDE }));
    expect(r.gw.neighbourTable()).toEqual([]);
    expect(r.take(r.c1)).toEqual([]);
  });

  it('defends its address against an ARP probe (sender 0.0.0.0)', () => {
    const r = rig();
    r.c1.inject(arpFrame({ op: ARP_REQUEST, senderMac: MAC_A, senderIp: 0, targetIp: GW }));
    const reply = only(r, r.c1);
    expect(reply.readUInt16BE(20)).toBe(ARP_REPLY);
    expect(reply.readUInt32BE(28)).toBe(GW);
    expect(reply.readUInt32BE(38)).toBe(0);
  });
});

describe('GatewayPort: ICMP echo', () => {
  for (const [what, target] of [
    ['gateway', GW],
    ['DNS', DNS],
  ] as const) {
    it(`answers an echo request to the ${what} address with the same id, sequence and data`, () => {
      const r = rig();
      const data = patternPayload(56, 4);
      const request = ipv4Frame(1, icmpMessage(8, 0, 0x1234_0007, data), { srcMac: MAC_B, src: IP_B, dst: target, id: 99 });
      r.c2.inject(request);
      const p = parseIp4(only(r, r.c2));
      expect(p.ethDst).toBe(MAC_B);
      expect(p.ethSrc).toBe(GW_MAC);
      expect(p.src).toBe(target);
      expect(p.dst).toBe(IP_B);
      expect(p.proto).toBe(1);
      expect(p.headerOk).toBe(true);
      expect(p.total).toBe(20 + 8 + 56);
      expect(p.l4[0]).toBe(0);
      expect(p.l4[1]).toBe(0);
      expect(p.l4.readUInt16BE(4)).toBe(0x1234);
      expect(p.l4.readUInt16BE(6)).toBe(7);
      expect(p.l4.subarray(8).equals(data)).toBe(true);
      expect(l4ChecksumOk(p)).toBe(true);
      expect(r.gw.stats.icmp_echo_replies).toBe(1);
      expect(r.take(r.c1)).toEqual([]);
      expect(r.take(r.c3)).toEqual([]);
    });
  }

  it('answers an odd-sized and an empty echo, and echoes to a container without offloads', () => {
    const r = rig();
    for (const n of [0, 1, 1471]) {
      r.c1.inject(ipv4Frame(1, icmpMessage(8, 0, 0xbeef0000 + n, patternPayload(n)), { src: IP_A }));
      const p = parseIp4(only(r, r.c1));
      expect(p.l4.readUInt32BE(4)).toBe(0xbeef0000 + n);
      expect(p.l4.length).toBe(8 + n);
      expect(l4ChecksumOk(p)).toBe(true);
    }
  });

  it('does not answer echo to a broadcast address, or other ICMP messages', () => {
    const r = rig();
    r.c1.inject(ipv4Frame(1, icmpMessage(8, 0, 1, Buffer.alloc(8)), { dst: SUBNET_BROADCAST, dstMac: BROADCAST_MAC }));
    r.c1.inject(ipv4Frame(1, icmpMessage(8, 0, 1, Buffer.alloc(8)), { dst: LIMITED_BROADCAST, dstMac: BROADCAST_MAC }));
    r.c1.inject(ipv4Frame(1, icmpMessage(13, 0, 1, Buffer.alloc(12)))); // timestamp
    r.c1.inject(ipv4Frame(1, icmpMessage(0, 0, 1, Buffer.alloc(8)))); // echo reply
    r.c1.inject(ipv4Frame(1, icmpMessage(8, 1, 1, Buffer.alloc(8)))); // echo with a bogus code
    expect(r.take(r.c1)).toEqual([]);
    expect(r.gw.stats.icmp_echo_replies).toBe(0);
    expect(r.gw.stats.icmp_errors_sent).toBe(0);
  });
});

describe('GatewayPort: ICMP errors and resets', () => {
  it('UDP to a port nothing serves: port unreachable from the address hit, quoting the datagram', () => {
    const r = rig();
    const offending = udpFrame(40000, 9999, patternPayload(100));
    r.c1.inject(offending);
    expectIcmpError(only(r, r.c1), offending, 3, 3, GW, MAC_A, IP_A);
    // To the DNS address (not port 53), from the DNS address; from an offload port.
    const toDns = udpFrame(40000, 5353, patternPayload(10), { srcMac: MAC_B, src: IP_B, dst: DNS });
    r.c2.inject(toDns);
    expectIcmpError(only(r, r.c2), toDns, 3, 3, DNS, MAC_B, IP_B);
    // DNS is served on the DNS address only.
    const dnsToGateway = udpFrame(40000, 53, patternPayload(30));
    r.c1.inject(dnsToGateway);
    expectIcmpError(only(r, r.c1), dnsToGateway, 3, 3, GW, MAC_A, IP_A);
    expect(r.upstream.queries).toEqual([]);
    expect(r.gw.stats.icmp_errors_sent).toBe(3);
  });

  it('quotes at most what keeps the error within 576 bytes', () => {
    const r = rig();
    const offending = udpFrame(40000, 9999, patternPayload(1400));
    r.c1.inject(offending);
    const p = expectIcmpError(only(r, r.c1), offending, 3, 3, GW, MAC_A, IP_A);
    expect(p.total).toBe(576);
  });

  it('an unknown IP protocol: protocol unreachable', () => {
    const r = rig();
    for (const proto of [47, 132, 253]) {
      const offending = ipv4Frame(proto, patternPayload(40));
      r.c1.inject(offending);
      expectIcmpError(only(r, r.c1), offending, 3, 2, GW, MAC_A, IP_A);
    }
  });

  it('TCP SYN: RST|ACK acknowledging the SYN', () => {
    const r = rig();
    r.c2.inject(ipv4Frame(6, tcpSegment(IP_B, GW, 43210, 80, 0xfffffff0, 0, 0x02), { srcMac: MAC_B, src: IP_B }));
    const p = parseIp4(only(r, r.c2));
    expect(p.ethDst).toBe(MAC_B);
    expect(p.src).toBe(GW);
    expect(p.dst).toBe(IP_B);
    expect(p.proto).toBe(6);
    expect(p.headerOk).toBe(true);
    expect(l4ChecksumOk(p)).toBe(true);
    expect(p.l4.readUInt16BE(0)).toBe(80);
    expect(p.l4.readUInt16BE(2)).toBe(43210);
    expect(p.l4.readUInt32BE(4)).toBe(0);
    expect(p.l4.readUInt32BE(8)).toBe(0xfffffff1);
    expect(p.l4[13]).toBe(0x14); // RST|ACK
    expect(r.gw.stats.tcp_resets_sent).toBe(1);
  });

  it('a segment with ACK: RST with its acknowledgment number as sequence', () => {
    const r = rig();
    r.c1.inject(ipv4Frame(6, tcpSegment(IP_A, DNS, 43210, 853, 1000, 0xabcdef01, 0x18, patternPayload(100)), { dst: DNS }));
    const p = parseIp4(only(r, r.c1));
    expect(p.src).toBe(DNS);
    expect(p.l4.readUInt32BE(4)).toBe(0xabcdef01);
    expect(p.l4.readUInt32BE(8)).toBe(0);
    expect(p.l4[13]).toBe(0x04); // RST only
    expect(l4ChecksumOk(p)).toBe(true);
  });

  it('a FIN with data and no ACK: RST|ACK acknowledging data and FIN', () => {
    const r = rig();
    r.c1.inject(ipv4Frame(6, tcpSegment(IP_A, GW, 1, 2, 5000, 0, 0x01, patternPayload(10))));
    const p = parseIp4(only(r, r.c1));
    expect(p.l4.readUInt32BE(8)).toBe(5011);
    expect(p.l4[13]).toBe(0x14);
  });

  it('never answers a RST', () => {
    const r = rig();
    r.c1.inject(ipv4Frame(6, tcpSegment(IP_A, GW, 1, 2, 5000, 7, 0x14)));
    r.c1.inject(ipv4Frame(6, tcpSegment(IP_A, GW, 1, 2, 5000, 0, 0x04)));
    expect(r.take(r.c1)).toEqual([]);
    expect(r.gw.stats.tcp_resets_sent).toBe(0);
  });

  it('sends no ICMP error about an ICMP error', () => {
    const r = rig();
    const inner = udpFrame(1, 2, Buffer.alloc(8)).subarray(14);
    for (const [type, code] of [
      [3, 3],
      [11, 0],
      [5, 1],
      [12, 0],
      [4, 0],
    ] as const) {
      r.c1.inject(ipv4Frame(1, icmpMessage(type, code, 0, inner), { dst: OUTSIDE }));
    }
    expect(r.take(r.c1)).toEqual([]);
    expect(r.gw.stats.no_route).toBe(5);
    expect(r.gw.stats.icmp_errors_sent).toBe(0);
    // An echo request to the same place does get one.
    const echo = ipv4Frame(1, icmpMessage(8, 0, 1, Buffer.alloc(8)), { dst: OUTSIDE });
    r.c1.inject(echo);
    expectIcmpError(only(r, r.c1), echo, 3, 0, GW, MAC_A, IP_A);
  });

  it('sends no error or reset about a datagram to a broadcast destination', () => {
    const r = rig();
    for (const dst of [LIMITED_BROADCAST, SUBNET_BROADCAST]) {
      r.c1.inject(udpFrame(40000, 9999, patternPayload(20), { dst, dstMac: BROADCAST_MAC }));
      r.c1.inject(ipv4Frame(47, patternPayload(20), { dst, dstMac: BROADCAST_MAC }));
      r.c1.inject(ipv4Frame(6, tcpSegment(IP_A, dst, 1, 80, 1, 0, 0x02), { dst, dstMac: BROADCAST_MAC }));
      // Sent to the gateway MAC, too.
      r.c1.inject(udpFrame(40000, 9999, patternPayload(20), { dst }));
    }
    // Multicast is not for the gateway at all.
    r.c1.inject(udpFrame(5353, 5353, patternPayload(20), { dst: ip('224.0.0.251'), dstMac: parseMac('01:00:5e:00:00:fb') }));
    expect(r.take(r.c1)).toEqual([]);
    expect(r.gw.stats).toMatchObject({ icmp_errors_sent: 0, tcp_resets_sent: 0, errors_rate_limited: 0 });
  });

  it('sends no ICMP error about a datagram that came as a link-layer broadcast (RFC 1122 3.2.2)', () => {
    const r = rig();
    r.c1.inject(udpFrame(40000, 9999, patternPayload(20), { dstMac: BROADCAST_MAC }));
    r.c1.inject(ipv4Frame(47, patternPayload(20), { dstMac: BROADCAST_MAC }));
    expect(r.take(r.c1)).toEqual([]);
    expect(r.gw.stats.icmp_errors_sent).toBe(0);
  });

  it('sends no ICMP error to a source that is not one host of the subnet, or about a later fragment', () => {
    const r = rig();
    r.c1.inject(udpFrame(68, 9999, patternPayload(20), { src: 0 }));
    r.c1.inject(udpFrame(1, 9999, patternPayload(20), { src: OUTSIDE }));
    r.c1.inject(udpFrame(1, 9999, patternPayload(20), { src: ip('224.0.0.1') }));
    // A non-first fragment to an outside address.
    r.c1.inject(udpFrame(1, 9999, patternPayload(20), { dst: OUTSIDE, flagsFragment: 10 }));
    expect(r.take(r.c1)).toEqual([]);
    expect(r.gw.stats.icmp_errors_sent).toBe(0);
  });

  it('drops fragmented datagrams to its own addresses', () => {
    const r = rig();
    r.c1.inject(udpFrame(1, 53, patternPayload(20), { dst: DNS, flagsFragment: 0x2000 }));
    r.c1.inject(udpFrame(1, 53, patternPayload(20), { dst: DNS, flagsFragment: 3 }));
    expect(r.take(r.c1)).toEqual([]);
    expect(r.upstream.queries).toEqual([]);
    expect(r.gw.stats.fragments_dropped).toBe(2);
  });

  it('rate limits errors and resets to 100 a second, then allows them again as time passes', () => {
    const r = rig();
    for (let i = 0; i < 150; i++) r.c1.inject(udpFrame(40000 + i, 9999, patternPayload(8)));
    expect(r.take(r.c1)).toHaveLength(100);
    expect(r.gw.stats).toMatchObject({ icmp_errors_sent: 100, errors_rate_limited: 50 });
    // Resets share the budget.
    r.c1.inject(ipv4Frame(6, tcpSegment(IP_A, GW, 1, 80, 1, 0, 0x02)));
    expect(r.take(r.c1)).toEqual([]);
    expect(r.gw.stats).toMatchObject({ tcp_resets_sent: 0, errors_rate_limited: 51 });
    // Echo replies are not errors.
    r.c1.inject(ipv4Frame(1, icmpMessage(8, 0, 1, Buffer.alloc(8))));
    expect(r.take(r.c1)).toHaveLength(1);
    // 10 ms: one more.
    r.clock.advance(10);
    for (let i = 0; i < 3; i++) r.c1.inject(udpFrame(40000, 9999, patternPayload(8)));
    expect(r.take(r.c1)).toHaveLength(1);
    // A second: a full burst again, never more.
    r.clock.advance(5000);
    for (let i = 0; i < 120; i++) r.c1.inject(udpFrame(40000, 9999, patternPayload(8)));
    expect(r.take(r.c1)).toHaveLength(100);
    expect(r.gw.stats).toMatchObject({ icmp_errors_sent: 201, errors_rate_limited: 51 + 2 + 20 });
  });
});

describe('GatewayPort: what it drops', () => {
  it('datagrams for beyond the subnet sent to its MAC: network unreachable, counted as no route', () => {
    const r = rig();
    const offending = udpFrame(40000, 443, patternPayload(64), { dst: OUTSIDE, srcMac: MAC_B, src: IP_B });
    r.c2.inject(offending);
    expectIcmpError(only(r, r.c2), offending, 3, 0, GW, MAC_B, IP_B);
    expect(r.gw.stats.no_route).toBe(1);
    // Not sent to its MAC: not routed through it, not its business.
    r.c1.inject(udpFrame(40000, 443, patternPayload(64), { dst: OUTSIDE, dstMac: 0x02_00_00_00_99_99 }));
    // To another container's address via the gateway MAC: not routed either.
    r.c1.inject(udpFrame(40000, 443, patternPayload(64), { dst: IP_C }));
    expect(r.take(r.c1)).toEqual([]);
    expect(r.gw.stats.no_route).toBe(1);
  });

  it('IPv6 frames are dropped and counted', () => {
    const r = rig();
    const v6 = Buffer.alloc(40 + 8);
    v6[0] = 0x60;
    v6.writeUInt16BE(8, 4);
    v6[6] = 17;
    v6[7] = 255;
    const frame = (dst: number): Buffer => {
      const eth = Buffer.alloc(14);
      macBytes(dst).copy(eth, 0);
      macBytes(MAC_A).copy(eth, 6);
      eth.writeUInt16BE(0x86dd, 12);
      return Buffer.concat([eth, v6]);
    };
    r.c1.inject(frame(GW_MAC));
    r.c1.inject(frame(parseMac('33:33:00:00:00:02'))); // all routers: a router solicitation would go here
    r.c1.inject(frame(parseMac('33:33:ff:00:00:02')));
    expect(r.take(r.c1)).toEqual([]);
    expect(r.gw.stats.ipv6_dropped).toBe(3);
  });

  it('frames with a bad IPv4 header are counted as malformed', () => {
    const r = rig();
    r.c1.inject(ipv4Frame(1, icmpMessage(8, 0, 1, Buffer.alloc(8)), { badChecksum: true }));
    const short = ipv4Frame(17, udpSegment(IP_A, GW, 1, 9999, Buffer.alloc(8)));
    short.writeUInt16BE(200, 16); // total length past the frame
    short.writeUInt16BE(0, 24);
    short.writeUInt16BE(naiveChecksum(short.subarray(14, 34)), 24);
    r.c1.inject(short);
    const v5 = ipv4Frame(17, udpSegment(IP_A, GW, 1, 9999, Buffer.alloc(8)));
    v5[14] = 0x55;
    r.c1.inject(v5);
    const badUdp = ipv4Frame(17, Buffer.alloc(4)); // a UDP header cut short
    r.c1.inject(badUdp);
    expect(r.take(r.c1)).toEqual([]);
    expect(r.gw.stats.ipv4_malformed).toBe(4);
    expect(r.gw.stats.icmp_errors_sent).toBe(0);
  });

  it('other EtherTypes are counted; unknown unicast flooded past it is ignored', () => {
    const r = rig();
    const exp = Buffer.concat([macBytes(GW_MAC), macBytes(MAC_A), Buffer.from('88b5', 'hex'), Buffer.alloc(46)]);
    r.c1.inject(exp);
    expect(r.gw.stats.other_dropped).toBe(1);
    r.c1.inject(udpFrame(1, 9999, Buffer.alloc(8), { dstMac: 0x02_00_00_00_77_77 }));
    expect(r.take(r.c1)).toEqual([]);
    expect(r.gw.stats.icmp_errors_sent).toBe(0);
  });

  it('a container claiming the gateway MAC is dropped by the switch and not learned', () => {
    const r = rig();
    r.c1.inject(arpFrame({ op: ARP_REQUEST, senderMac: GW_MAC, senderIp: GW, targetIp: IP_B, ethSrc: GW_MAC }));
    r.c1.inject(udpFrame(53, 40000, Buffer.alloc(8), { srcMac: GW_MAC, src: DNS, dst: IP_B, dstMac: MAC_B }));
    expect(r.c1.counters[DROP_SPOOFED]).toBe(2);
    expect(r.sw.fdb.lookup(GW_MAC, r.clock.now())).toBe(r.gw);
    expect(r.take(r.c2)).toEqual([]);
    expect(r.take(r.c3)).toEqual([]);
    expect(r.gw.stats.arp_requests).toBe(0);
    // The gateway is still reachable.
    r.c2.inject(arpFrame({ op: ARP_REQUEST, senderMac: MAC_B, senderIp: IP_B, targetIp: GW }));
    expect(macAt(only(r, r.c2), 6)).toBe(GW_MAC);
  });
});

describe('GatewayPort: DHCP', () => {
  function discover(chaddr: number, flags = 0): Buffer {
    const d = Buffer.alloc(400);
    const n = writeDhcpRequest(d, 0, { messageType: DHCPDISCOVER, xid: 0x11223344, chaddr, flags });
    return udpFrame(68, 67, d.subarray(0, n), { srcMac: chaddr, src: 0, dst: LIMITED_BROADCAST, dstMac: BROADCAST_MAC });
  }

  function dhcpOf(p: Ip4): DhcpMessage {
    expect(p.proto).toBe(17);
    expect(p.l4.readUInt16BE(0)).toBe(67);
    expect(p.l4.readUInt16BE(2)).toBe(68);
    expect(l4ChecksumOk(p)).toBe(true);
    const m = new DhcpMessage();
    const payload = Buffer.from(p.l4.subarray(8));
    expect(m.bind(dvOf(payload), 0, payload.length)).toBe(ParseStatus.OK);
    return m;
  }

  it('answers a DISCOVER broadcast with an OFFER to that container only, unicast to its MAC and new address', () => {
    const r = rig();
    r.c1.inject(discover(MAC_A));
    // The DISCOVER broadcast reached the other containers; the OFFER went to c1 only.
    expect(r.take(r.c2)).toHaveLength(1);
    expect(r.take(r.c3)).toHaveLength(1);
    const p = parseIp4(only(r, r.c1));
    expect(p.ethDst).toBe(MAC_A);
    expect(p.ethSrc).toBe(GW_MAC);
    expect(p.src).toBe(GW);
    expect(p.dst).toBe(IP_A);
    expect(p.headerOk).toBe(true);
    const m = dhcpOf(p);
    expect(m.messageType).toBe(DHCPOFFER);
    expect(m.xid).toBe(0x11223344);
    expect(m.yiaddr).toBe(IP_A);
    expect(m.chaddr).toBe(MAC_A);
    expect(r.gw.stats.dhcp_messages).toBe(1);
    expect(r.dhcp.stats.offer).toBe(1);
    // A client without an address was not learned as a neighbour.
    expect(r.gw.neighbourTable()).toEqual([]);
  });

  it('broadcasts the OFFER when the client asks for it (from an offload port)', () => {
    const r = rig();
    r.c2.inject(discover(MAC_B, DHCP_FLAG_BROADCAST));
    const p = parseIp4(only(r, r.c2));
    expect(p.ethDst).toBe(BROADCAST_MAC);
    expect(p.dst).toBe(LIMITED_BROADCAST);
    expect(dhcpOf(p).yiaddr).toBe(IP_A);
    // Every container sees the broadcast OFFER (and c1, c3 the DISCOVER first).
    expect(r.take(r.c1).map((f) => macAt(f.frame, 6))).toEqual([MAC_B, GW_MAC]);
    expect(r.take(r.c3).map((f) => macAt(f.frame, 6))).toEqual([MAC_B, GW_MAC]);
  });

  it('completes DISCOVER-OFFER-REQUEST-ACK, then answers a unicast renewal', () => {
    const r = rig();
    r.c1.inject(discover(MAC_A));
    const offer = dhcpOf(parseIp4(only(r, r.c1)));
    const q = Buffer.alloc(400);
    const n = writeDhcpRequest(q, 0, { messageType: DHCPREQUEST, xid: 2, chaddr: MAC_A, serverId: GW, requestedIp: offer.yiaddr });
    r.c1.inject(udpFrame(68, 67, q.subarray(0, n), { src: 0, dst: LIMITED_BROADCAST, dstMac: BROADCAST_MAC }));
    r.drainAll();
    expect(r.pool.holdingOf(MAC_A)).toMatchObject({ ip: IP_A, bound: true, kind: HOLD_LEASE });
    const renew = Buffer.alloc(400);
    const m = writeDhcpRequest(renew, 0, { messageType: DHCPREQUEST, xid: 3, chaddr: MAC_A, ciaddr: IP_A });
    r.c1.inject(udpFrame(68, 67, renew.subarray(0, m), { src: IP_A, dst: GW }));
    const p = parseIp4(only(r, r.c1));
    expect(p.ethDst).toBe(MAC_A);
    expect(p.dst).toBe(IP_A);
    const ack = dhcpOf(p);
    expect(ack.messageType).toBe(DHCPACK);
    expect(ack.yiaddr).toBe(IP_A);
    expect(r.gw.stats.dhcp_messages).toBe(3);
    // DHCP to the DNS address is not served.
    r.c1.inject(udpFrame(68, 67, renew.subarray(0, m), { src: IP_A, dst: DNS }));
    expect(parseIp4(only(r, r.c1)).proto).toBe(1);
  });

  it('stays silent without a DHCP server', () => {
    const r = rig();
    r.gw.dhcp = null;
    r.c1.inject(discover(MAC_A));
    expect(r.take(r.c1)).toEqual([]);
    expect(r.gw.stats.dhcp_messages).toBe(1);
  });
});

describe('GatewayPort: DNS', () => {
  function query(id: number): Buffer {
    // Header + one question (example.com A IN): the fake forwarder does not parse it.
    return Buffer.concat([Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), Buffer.from('076578616d706c6503636f6d0000010001', 'hex')]);
  }

  it('passes the query to the forwarder and sends its answer from 10.0.2.3:53 to the asker', () => {
    const r = rig();
    const q = query(0x5151);
    r.c2.inject(udpFrame(40001, 53, q, { srcMac: MAC_B, src: IP_B, dst: DNS }));
    // Upstream, under an ID of the forwarder's own.
    expect(r.upstream.queries).toHaveLength(1);
    const sent = r.upstream.queries[0].bytes;
    expect(sent.subarray(2).equals(q.subarray(2))).toBe(true);
    expect(r.take(r.c2)).toEqual([]);
    expect(r.gw.stats.dns_queries).toBe(1);
    const answer = dnsAnswer(q, q.length + 100);
    r.upstream.answer(0, answer);
    expect(r.dns?.stats).toMatchObject({ queries: 1, answers: 1, inFlight: 0 });
    const p = parseIp4(only(r, r.c2));
    expect(p.ethDst).toBe(MAC_B);
    expect(p.ethSrc).toBe(GW_MAC);
    expect(p.src).toBe(DNS);
    expect(p.dst).toBe(IP_B);
    expect(p.proto).toBe(17);
    expect(p.headerOk).toBe(true);
    expect(p.flagsFragment & 0x3fff).toBe(0);
    expect(l4ChecksumOk(p)).toBe(true);
    expect(p.l4.readUInt16BE(0)).toBe(53);
    expect(p.l4.readUInt16BE(2)).toBe(40001);
    expect(p.l4.readUInt16BE(4)).toBe(8 + answer.length);
    expect(p.l4.subarray(8).equals(answer)).toBe(true);
    expect(r.take(r.c1)).toEqual([]);
    expect(r.take(r.c3)).toEqual([]);
  });

  it('fragments an answer larger than the MTU into valid fragments that reassemble to it', () => {
    const r = rig();
    r.c1.inject(udpFrame(40002, 53, query(1), { dst: DNS }));
    const answer = dnsAnswer(query(1), 4000, 17);
    r.upstream.answer(0, answer);
    const frames = r.take(r.c1).map((f) => parseIp4(f.frame));
    expect(frames).toHaveLength(3);
    const ids = new Set(frames.map((p) => p.id));
    expect(ids.size).toBe(1);
    let at = 0;
    const pieces: Buffer[] = [];
    for (const [i, p] of frames.entries()) {
      expect(p.ethDst).toBe(MAC_A);
      expect(p.src).toBe(DNS);
      expect(p.dst).toBe(IP_A);
      expect(p.headerOk).toBe(true);
      expect(p.total).toBeLessThanOrEqual(1500);
      expect((p.flagsFragment & 0x1fff) * 8).toBe(at);
      expect((p.flagsFragment & 0x2000) !== 0).toBe(i < frames.length - 1);
      expect(p.flagsFragment & 0x4000).toBe(0);
      if (i < frames.length - 1) expect(p.l4.length % 8).toBe(0);
      at += p.l4.length;
      pieces.push(p.l4);
    }
    const udp = Buffer.concat(pieces);
    expect(udp.length).toBe(8 + 4000);
    expect(udp.readUInt16BE(0)).toBe(53);
    expect(udp.readUInt16BE(2)).toBe(40002);
    expect(udp.subarray(8).equals(answer)).toBe(true);
    expect(naiveSum(pseudoHeader(false, 17, udp.length, ipv4Bytes(DNS), ipv4Bytes(IP_A)), udp)).toBe(0xffff);
  });

  it('fragments to the network MTU it was given', () => {
    const r = rig({ mtu: 576 });
    r.c1.mtu = 576;
    r.c1.inject(udpFrame(40002, 53, query(1), { dst: DNS }));
    r.upstream.answer(0, dnsAnswer(query(1), 1200));
    const frames = r.take(r.c1).map((f) => parseIp4(f.frame));
    expect(frames.length).toBe(Math.ceil(1208 / 552));
    for (const p of frames) expect(p.total).toBeLessThanOrEqual(576);
  });

  it('drops an answer too large for an IPv4 datagram instead of sending garbage', () => {
    const r = rig();
    r.c1.inject(udpFrame(40002, 53, query(1), { dst: DNS }));
    r.upstream.answer(0, dnsAnswer(query(1), 65508)); // 65508 + 28 > 65535
    expect(r.take(r.c1)).toEqual([]);
    expect(r.gw.stats.other_dropped).toBe(1);
    // The largest one that fits goes out.
    r.c1.inject(udpFrame(40003, 53, query(2), { dst: DNS }));
    r.upstream.answer(1, dnsAnswer(query(2), 65507));
    const frames = r.take(r.c1).map((f) => parseIp4(f.frame));
    expect(frames.reduce((n, p) => n + p.l4.length, 0)).toBe(65515);
  });

  it('counts a query the forwarder refuses as malformed', () => {
    const r = rig();
    r.c1.inject(udpFrame(40002, 53, Buffer.from('junk'), { dst: DNS }));
    expect(r.take(r.c1)).toEqual([]);
    expect(r.gw.stats).toMatchObject({ dns_queries: 1, dns_malformed: 1 });
    expect(r.dns?.stats.malformed).toBe(1);
    expect(r.upstream.queries).toEqual([]);
  });

  it('sends nothing for an answer that arrives after close()', () => {
    const r = rig();
    r.c1.inject(udpFrame(40002, 53, query(1), { dst: DNS }));
    r.gw.close();
    r.upstream.answer(0, dnsAnswer(query(1), 40));
    expect(r.take(r.c1)).toEqual([]);
  });

  it('with DNS disabled: port unreachable from the DNS address', () => {
    const r = rig({ dns: null });
    const q = udpFrame(40002, 53, query(1), { dst: DNS });
    r.c1.inject(q);
    expectIcmpError(only(r, r.c1), q, 3, 3, DNS, MAC_A, IP_A);
    expect(r.gw.stats).toMatchObject({ dns_disabled: 1, dns_queries: 0 });
  });
});

describe('GatewayPort: sending to containers (sendIpv4)', () => {
  function outgoing(tag: number, dst = IP_B): Buffer {
    // Destination MAC left zero: sendIpv4 fills it in.
    const f = udpFrame(80, 40000, Buffer.from([tag, tag, tag, tag]), { src: OUTSIDE, dst, dstMac: 0, srcMac: GW_MAC });
    return f;
  }

  function arpRequestsIn(frames: ReceivedFrame[]): number[] {
    return frames
      .filter((f) => f.frame.readUInt16BE(12) === 0x0806)
      .map((f) => {
        expect(macAt(f.frame, 0)).toBe(BROADCAST_MAC);
        expect(macAt(f.frame, 6)).toBe(GW_MAC);
        expect(f.frame.readUInt16BE(20)).toBe(ARP_REQUEST);
        expect(macAt(f.frame, 22)).toBe(GW_MAC);
        expect(f.frame.readUInt32BE(28)).toBe(GW);
        expect(macAt(f.frame, 32)).toBe(0);
        return f.frame.readUInt32BE(38);
      });
  }

  it('resolves an unknown neighbour with ARP, queues the frames and delivers them on the reply', () => {
    const r = rig();
    r.gw.sendIpv4(IP_B, outgoing(1), outgoing(1).length);
    r.gw.sendIpv4(IP_B, outgoing(2), outgoing(2).length);
    // One ARP request, broadcast to everyone.
    expect(arpRequestsIn(r.take(r.c1))).toEqual([IP_B]);
    expect(arpRequestsIn(r.take(r.c2))).toEqual([IP_B]);
    expect(arpRequestsIn(r.take(r.c3))).toEqual([IP_B]);
    r.clock.advance(1000);
    expect(arpRequestsIn(r.take(r.c2))).toEqual([IP_B]);
    r.drainAll();
    // c2 answers.
    r.c2.inject(arpFrame({ op: ARP_REPLY, senderMac: MAC_B, senderIp: IP_B, targetMac: GW_MAC, targetIp: GW, ethDst: GW_MAC }));
    const got = r.take(r.c2);
    expect(got.map((f) => f.frame[42])).toEqual([1, 2]);
    for (const [i, f] of got.entries()) {
      expect(macAt(f.frame, 0)).toBe(MAC_B);
      expect(f.frame.subarray(6).equals(outgoing(i + 1).subarray(6))).toBe(true);
    }
    expect(r.take(r.c1)).toEqual([]);
    expect(r.take(r.c3)).toEqual([]);
    expect(r.gw.stats).toMatchObject({ neighbours_resolved: 1, neighbour_failures: 0 });
    // No more ARP requests after it resolved.
    r.clock.advance(5000);
    expect(r.take(r.c2)).toEqual([]);
    // Known now: sent at once.
    r.gw.sendIpv4(IP_B, outgoing(3), outgoing(3).length);
    const now = r.take(r.c2);
    expect(now).toHaveLength(1);
    expect(macAt(now[0].frame, 0)).toBe(MAC_B);
    expect(now[0].frame[42]).toBe(3);
  });

  it('tries ARP three times a second apart, then drops and counts the queued frames', () => {
    const r = rig();
    for (let i = 0; i < 20; i++) r.gw.sendIpv4(IP_C, outgoing(i, IP_C), outgoing(i, IP_C).length);
    expect(r.gw.stats.neighbour_failures).toBe(4); // 16 wait
    expect(arpRequestsIn(r.take(r.c3))).toEqual([IP_C]);
    r.clock.advance(999);
    expect(r.take(r.c3)).toEqual([]);
    r.clock.advance(1);
    expect(arpRequestsIn(r.take(r.c3))).toEqual([IP_C]);
    r.clock.advance(1000);
    expect(arpRequestsIn(r.take(r.c3))).toEqual([IP_C]);
    r.clock.advance(1000);
    expect(r.take(r.c3)).toEqual([]);
    expect(r.gw.stats.neighbour_failures).toBe(20);
    r.clock.advance(10_000);
    expect(r.take(r.c3)).toEqual([]);
    // A late reply delivers nothing (they were dropped), but teaches the MAC.
    r.c3.inject(arpFrame({ op: ARP_REPLY, senderMac: MAC_C, senderIp: IP_C, targetMac: GW_MAC, targetIp: GW, ethDst: GW_MAC }));
    expect(r.take(r.c3)).toEqual([]);
    expect(r.gw.neighbourMac(IP_C)).toBe(MAC_C);
  });

  it('a neighbour learned from any IPv4 frame resolves what waits for it', () => {
    const r = rig();
    r.gw.sendIpv4(IP_A, outgoing(7, IP_A), outgoing(7, IP_A).length);
    r.drainAll();
    r.c1.inject(ipv4Frame(1, icmpMessage(8, 0, 1, Buffer.alloc(8))));
    const got = r.take(r.c1);
    // The echo reply and the queued frame.
    expect(got).toHaveLength(2);
    expect(got.every((f) => macAt(f.frame, 0) === MAC_A)).toBe(true);
  });

  it('close() stops the ARP retries', () => {
    const r = rig();
    r.gw.sendIpv4(IP_B, outgoing(1), outgoing(1).length);
    r.drainAll();
    r.gw.close();
    r.clock.advance(5000);
    expect(r.take(r.c2)).toEqual([]);
    expect(r.clock.pending).toBe(0);
  });
});

describe('GatewayPort: announce()', () => {
  it('sends a gratuitous ARP for each of its addresses out of that one port', () => {
    const r = rig();
    r.gw.announce(r.c2);
    const got = r.take(r.c2);
    expect(got).toHaveLength(2);
    const targets = got.map((f) => {
      expect(f.vnet).not.toBeNull();
      const b = f.frame;
      expect(macAt(b, 0)).toBe(BROADCAST_MAC);
      expect(macAt(b, 6)).toBe(GW_MAC);
      expect(b.readUInt16BE(12)).toBe(0x0806);
      expect(b.subarray(14, 22).toString('hex')).toBe('0001080006040001');
      expect(macAt(b, 22)).toBe(GW_MAC);
      expect(b.readUInt32BE(28)).toBe(b.readUInt32BE(38));
      expect(macAt(b, 32)).toBe(0);
      return b.readUInt32BE(28);
    });
    expect(targets).toEqual([GW, DNS]);
    expect(r.take(r.c1)).toEqual([]);
    expect(r.take(r.c3)).toEqual([]);
    // To a port without offloads, too.
    r.gw.announce(r.c1);
    expect(r.take(r.c1).map((f) => f.vnet)).toEqual([null, null]);
    expect(r.take(r.c2)).toEqual([]);
  });

  it('announces one address when gateway and DNS are the same', () => {
    const sw = new Switch({ clock: new VirtualClock() });
    const c = new MemoryPort({ name: 'c' }).plug(sw);
    const gw = new GatewayPort({ name: 'gw', ip: GW, dnsIp: GW, subnet: ip('10.0.2.0'), prefix: 24, mtu: 1500, dhcp: null, dns: null, log: pino({ level: 'silent' }), clock: new VirtualClock() }).plug(sw);
    gw.announce(c);
    expect(c.received).toHaveLength(1);
    expect(frameDstMac(c.received[0].frame)).toBe(BROADCAST_MAC);
  });
});
