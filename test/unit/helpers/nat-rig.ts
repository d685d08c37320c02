/**
 * The rig of the NAT's unit tests: a network (switch + gateway) with the Nat behind it as the
 * daemon wires them, and a MemoryPort with offloads playing the container (02:00:00:00:00:0a,
 * 10.0.2.100); frames built as bytes and what the container receives parsed and checked
 * independently (see test/unit/nat/nat.test.ts for the full story). Tests wait for events, never
 * for time: every frame for the container and every server callback calls notify().
 */
import dgram from 'node:dgram';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import net, { type Server, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, expect } from 'vitest';
import { Network, type NetworkSpec } from '../../../src/gateway/network.js';
import { validateNetworkSpec } from '../../../src/control/network-spec.js';
import { MemoryPort, type ReceivedFrame, type VnetFields } from '../../../src/link/memory-port.js';
import type { ConntrackEntry } from '../../../src/nat/conntrack.js';
import { Nat, type NatOptions } from '../../../src/nat/nat.js';
import { parseIpv4 } from '../../../src/packet/ip-address.js';
import { segmentGso } from '../../../src/packet/offload.js';
import { ParseStatus } from '../../../src/packet/status.js';
import { VNET_F_NEEDS_CSUM, VNET_GSO_NONE, VNET_GSO_TCPV4 } from '../../../src/packet/virtio-net.js';
import { MAC_A, macBytes, naiveChecksum, naiveSum, pseudoHeader } from './frames.js';
import { VirtualClock } from '../../../src/platform/clock.js';
import { SeededRandom } from '../../../src/platform/random.js';
import { MemoryOutside, type MemoryOutsideOptions } from '../../../src/outside/index.js';

export const ip = parseIpv4;
export const GW = ip('10.0.2.2');
export const DNS = ip('10.0.2.3');
export const C_IP = ip('10.0.2.100');
export const C_MAC = MAC_A;
export const GW_MAC = 0x52550a000202;
export const LOOPBACK = 0x7f000001;
export const EVENT_TIMEOUT_MS = 5_000;
/** The MSS the NAT advertises (the gateway port takes 64 KiB frames). */
export const NAT_MSS = 65495 - 40;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;

// ---------------------------------------------------------------------------------------------
// Waiting for events: every frame for the container and every server callback calls notify().

export interface Waiter {
  pred: () => boolean;
  resolve: () => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export const waiters = new Set<Waiter>();
export let describeState: () => string = () => '';

export function notify(): void {
  for (const w of [...waiters]) {
    let done = false;
    try {
      done = w.pred();
    } catch (err) {
      waiters.delete(w);
      clearTimeout(w.timer);
      w.reject(err as Error);
      continue;
    }
    if (done) {
      waiters.delete(w);
      clearTimeout(w.timer);
      w.resolve();
    }
  }
}

/** Resolves once `pred()` holds (checked now and after every event); fails after a deadline. */
export function until(pred: () => boolean, what: string): Promise<void> {
  if (pred()) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const w: Waiter = {
      pred,
      resolve,
      reject,
      timer: setTimeout(() => {
        waiters.delete(w);
        reject(new Error(`timed out after ${EVENT_TIMEOUT_MS} ms waiting for ${what}; ${describeState()}`));
      }, EVENT_TIMEOUT_MS),
    };
    waiters.add(w);
  });
}

/**
 * Resolves once `pred()` holds, checked every few ms: for what no callback reports (a timer
 * inside the NAT, a kernel queue draining); fails after a deadline.
 */
export async function eventually(pred: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + EVENT_TIMEOUT_MS;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${EVENT_TIMEOUT_MS} ms waiting for ${what}; ${describeState()}`);
    await new Promise<void>((resolve) => setTimeout(resolve, 5));
  }
}

/** Lets libuv run its close callbacks (fds of closed native readers), a few loop turns at most. */
export async function loopTurns(pred: () => boolean, turns = 50): Promise<void> {
  for (let i = 0; i < turns && !pred(); i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

export const cleanups: Array<() => void | Promise<void>> = [];

/** Registers the hook that ends every test: waiters cleared, every cleanup run (call once per file). */
export function useNatRig(): void {
  afterEach(runCleanups);
}

async function runCleanups(): Promise<void> {
  for (const w of waiters) clearTimeout(w.timer);
  waiters.clear();
  // Every cleanup runs even if one fails (a failed check must not leak sockets into the next test).
  let first: unknown = null;
  while (cleanups.length) {
    try {
      await cleanups.pop()!();
    } catch (err) {
      first ??= err;
    }
  }
  if (first !== null) throw first;
}

// ---------------------------------------------------------------------------------------------
// Frames from the container, built as bytes

export function ipv4Bytes(a: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(a >>> 0);
  return b;
}

export interface Ipv4Options {
  src?: number;
  dst?: number;
  id?: number;
  /** Flags + fragment offset word (default DF). */
  flagsFragment?: number;
  dstMac?: number;
}

export function ipv4Frame(proto: number, l4: Uint8Array, o: Ipv4Options = {}): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + l4.length, 2);
  h.writeUInt16BE(o.id ?? 0x1111, 4);
  h.writeUInt16BE(o.flagsFragment ?? 0x4000, 6);
  h[8] = 64;
  h[9] = proto;
  ipv4Bytes(o.src ?? C_IP).copy(h, 12);
  ipv4Bytes(o.dst ?? GW).copy(h, 16);
  h.writeUInt16BE(naiveChecksum(h), 10);
  const eth = Buffer.alloc(14);
  macBytes(o.dstMac ?? GW_MAC).copy(eth, 0);
  macBytes(C_MAC).copy(eth, 6);
  eth.writeUInt16BE(0x0800, 12);
  return Buffer.concat([eth, h, l4]);
}

/** How the L4 checksum is filled: complete, partial (NEEDS_CSUM: the pseudo-header sum), wrong, or none (UDP 0). */
export type Csum = 'full' | 'partial' | 'bad' | 'none';

export interface TcpSpec {
  src?: number;
  dst?: number;
  sport: number;
  dport: number;
  seq: number;
  ack?: number;
  flags: number;
  window?: number;
  options?: Uint8Array;
  payload?: Uint8Array;
  csum?: Csum;
}

export function tcpL4(t: TcpSpec): Buffer {
  const opts = t.options ?? Buffer.alloc(0);
  const h = Buffer.alloc(20 + opts.length);
  h.writeUInt16BE(t.sport, 0);
  h.writeUInt16BE(t.dport, 2);
  h.writeUInt32BE(t.seq >>> 0, 4);
  h.writeUInt32BE((t.ack ?? 0) >>> 0, 8);
  h[12] = (h.length / 4) << 4;
  h[13] = t.flags;
  h.writeUInt16BE(t.window ?? 0xffff, 14);
  Buffer.from(opts).copy(h, 20);
  const payload = t.payload ?? Buffer.alloc(0);
  const seg = Buffer.concat([h, payload]);
  const ph = pseudoHeader(false, 6, seg.length, ipv4Bytes(t.src ?? C_IP), ipv4Bytes(t.dst ?? GW));
  const csum = t.csum ?? 'full';
  if (csum === 'partial') seg.writeUInt16BE(naiveSum(ph), 16);
  else if (csum !== 'none') seg.writeUInt16BE(naiveChecksum(ph, seg) ^ (csum === 'bad' ? 0x5a5a : 0), 16);
  return seg;
}

export function tcpFrame(t: TcpSpec, o: Ipv4Options = {}): Buffer {
  return ipv4Frame(6, tcpL4(t), { src: t.src, dst: t.dst, ...o });
}

export function udpL4(src: number, dst: number, sport: number, dport: number, payload: Uint8Array, csum: Csum = 'full'): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt16BE(8 + payload.length, 4);
  const ph = pseudoHeader(false, 17, 8 + payload.length, ipv4Bytes(src), ipv4Bytes(dst));
  if (csum === 'partial') h.writeUInt16BE(naiveSum(ph), 6);
  else if (csum !== 'none') {
    const c = naiveChecksum(ph, h, payload) || 0xffff;
    h.writeUInt16BE(csum === 'bad' ? c ^ 0x5a5a : c, 6);
  }
  return Buffer.concat([h, payload]);
}

export function udpFrame(sport: number, dport: number, payload: Uint8Array, o: Ipv4Options & { csum?: Csum } = {}): Buffer {
  return ipv4Frame(17, udpL4(o.src ?? C_IP, o.dst ?? GW, sport, dport, payload, o.csum), o);
}

export function icmpEcho(id: number, seq: number, data: Uint8Array): Buffer {
  const m = Buffer.alloc(8);
  m[0] = 8;
  m.writeUInt16BE(id, 4);
  m.writeUInt16BE(seq, 6);
  const all = Buffer.concat([m, data]);
  all.writeUInt16BE(naiveChecksum(all), 2);
  return all;
}

/** The virtio-net header of a frame with a partial TCP (16) or UDP (6) checksum. */
export function partialVnet(csumOffset: number): VnetFields {
  return { flags: VNET_F_NEEDS_CSUM, csumStart: 34, csumOffset };
}

/** The options of a Linux SYN: MSS, SACK permitted, timestamps, NOP, window scale. */
export function synOptions(mss: number, wscale: number): Buffer {
  const o = Buffer.alloc(20);
  o.set([2, 4, mss >> 8, mss & 255, 4, 2, 8, 10], 0);
  o.writeUInt32BE(0x01020304, 8);
  o.writeUInt32BE(0, 12);
  o.set([1, 3, 3, wscale], 16);
  return o;
}

// ---------------------------------------------------------------------------------------------
// Frames to the container, parsed independently

export interface Packet {
  raw: Buffer;
  vnetFlags: number;
  gsoType: number;
  gsoSize: number;
  ethDst: number;
  ethSrc: number;
  src: number;
  dst: number;
  proto: number;
  flagsFragment: number;
  /** L4 header and payload, as long as the IP header says. */
  l4: Buffer;
  tcp: TcpSeg | null;
  udp: { sport: number; dport: number; payload: Buffer } | null;
}

export interface TcpSeg {
  sport: number;
  dport: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  options: Buffer;
  payload: Buffer;
  /** The frame's GSO segment size (0: not a GSO frame). */
  gsoSize: number;
}

export function macAt(b: Buffer, off: number): number {
  return b.readUInt16BE(off) * 2 ** 32 + b.readUInt32BE(off + 2);
}

export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** Checks the L4 checksum of a complete IPv4 frame; '' when right. */
export function l4ChecksumProblem(f: Buffer): string {
  const ihl = (f[14] & 15) * 4;
  const total = f.readUInt16BE(16);
  const proto = f[23];
  const l4 = f.subarray(14 + ihl, 14 + total);
  if (naiveSum(f.subarray(14, 14 + ihl)) !== 0xffff) return 'IPv4 header checksum wrong';
  if (proto === 1) return naiveSum(l4) === 0xffff ? '' : 'ICMP checksum wrong';
  if (proto === 17 && l4.readUInt16BE(6) === 0) return 'UDP without a checksum';
  const sum = naiveSum(pseudoHeader(false, proto, l4.length, f.subarray(26, 30), f.subarray(30, 34)), l4);
  return sum === 0xffff ? '' : `L4 checksum wrong (proto ${proto}, sum ${hex(sum)})`;
}

export const scratch = Buffer.alloc(65536 + 256);
export const scratchDv = new DataView(scratch.buffer, scratch.byteOffset, scratch.byteLength);

export function parseTcp(l4: Buffer, gsoSize: number): TcpSeg {
  const hl = (l4[12] >> 4) * 4;
  return {
    sport: l4.readUInt16BE(0),
    dport: l4.readUInt16BE(2),
    seq: l4.readUInt32BE(4),
    ack: l4.readUInt32BE(8),
    flags: l4[13],
    window: l4.readUInt16BE(14),
    options: Buffer.from(l4.subarray(20, hl)),
    payload: Buffer.from(l4.subarray(hl)),
    gsoSize,
  };
}

/**
 * Parses a frame the container received and checks it the way the container's kernel would;
 * anything wrong is pushed to `problems` (every test ends with none).
 */
export function parsePacket(rf: ReceivedFrame, problems: string[]): Packet | null {
  const f = rf.frame;
  const v = rf.vnet;
  if (v === null) {
    problems.push('a frame without a virtio-net header on a port with offloads');
    return null;
  }
  if (f.length < 34 || f.readUInt16BE(12) !== 0x0800) return null;
  const ihl = (f[14] & 15) * 4;
  const total = f.readUInt16BE(16);
  if (f.length < 14 + total) {
    problems.push(`frame of ${f.length} bytes shorter than its IPv4 total length ${total}`);
    return null;
  }
  const p: Packet = {
    raw: f,
    vnetFlags: v.flags,
    gsoType: v.gsoType,
    gsoSize: v.gsoSize,
    ethDst: macAt(f, 0),
    ethSrc: macAt(f, 6),
    src: f.readUInt32BE(26),
    dst: f.readUInt32BE(30),
    proto: f[23],
    flagsFragment: f.readUInt16BE(20),
    l4: f.subarray(14 + ihl, 14 + total),
    tcp: null,
    udp: null,
  };
  if (p.ethSrc !== GW_MAC || p.ethDst !== C_MAC) problems.push(`frame ${hex(p.ethSrc)} → ${hex(p.ethDst)}, expected gateway → container`);
  if (p.dst !== C_IP) problems.push(`IPv4 destination ${hex(p.dst)}`);
  if (naiveSum(f.subarray(14, 14 + ihl)) !== 0xffff) problems.push('IPv4 header checksum wrong');
  if ((p.flagsFragment & 0x3fff) !== 0) {
    // A fragment: its L4 checksum covers the whole datagram; the test reassembles and checks it.
    if (v.flags !== 0 || v.gsoType !== VNET_GSO_NONE) problems.push('a fragment with offload flags');
    return p;
  }
  if ((v.flags & VNET_F_NEEDS_CSUM) === 0) {
    if (v.gsoType !== VNET_GSO_NONE) problems.push('GSO frame without NEEDS_CSUM');
    const why = l4ChecksumProblem(f);
    if (why) problems.push(why);
  } else {
    // Partial checksum: csum_start/offset right, the field holds the pseudo-header sum over the
    // whole L4 length (what the kernel's GSO adjusts per segment), and completing it or cutting
    // the frame gives pieces whose checksums are all right.
    const field = p.proto === 6 ? 16 : 6;
    if (v.csumStart !== 14 + ihl || v.csumOffset !== field) problems.push(`csum_start ${v.csumStart} / csum_offset ${v.csumOffset}`);
    const seed = naiveSum(pseudoHeader(false, p.proto, p.l4.length, f.subarray(26, 30), f.subarray(30, 34)));
    if (p.l4.readUInt16BE(field) !== seed) problems.push(`partial checksum ${hex(p.l4.readUInt16BE(field))}, expected the pseudo-header sum ${hex(seed)}`);
    const pieces: Buffer[] = [];
    const st = segmentGso(f, new DataView(f.buffer, f.byteOffset, f.byteLength), 0, f.length, v, scratch, scratchDv, {
      segment(buf, off, len) {
        pieces.push(Buffer.from(buf.subarray(off, off + len)));
      },
    });
    if (st !== ParseStatus.OK) problems.push(`segmentGso: status ${st}`);
    for (const piece of pieces) {
      const why = l4ChecksumProblem(piece);
      if (why) problems.push(`piece: ${why}`);
    }
    if (v.gsoType !== VNET_GSO_NONE && p.proto === 6) {
      const whole = parseTcp(p.l4, v.gsoSize);
      if (v.gsoType !== VNET_GSO_TCPV4) problems.push(`GSO type ${v.gsoType}`);
      if (whole.payload.length <= v.gsoSize) problems.push(`GSO frame of ${whole.payload.length} bytes, gso_size ${v.gsoSize}: nothing to cut`);
      let seq = whole.seq;
      const parts: Buffer[] = [];
      for (const piece of pieces) {
        const s = parseTcp(piece.subarray(34, 14 + piece.readUInt16BE(16)), 0);
        if (s.seq !== seq) problems.push(`GSO piece seq ${s.seq}, expected ${seq}`);
        if (s.payload.length > v.gsoSize) problems.push(`GSO piece of ${s.payload.length} bytes > gso_size ${v.gsoSize}`);
        seq = (seq + s.payload.length) >>> 0;
        parts.push(s.payload);
      }
      if (!Buffer.concat(parts).equals(whole.payload)) problems.push('GSO pieces do not add up to the frame');
    }
  }
  if (p.proto === 6) p.tcp = parseTcp(p.l4, v.gsoType !== VNET_GSO_NONE ? v.gsoSize : 0);
  else if (p.proto === 17) p.udp = { sport: p.l4.readUInt16BE(0), dport: p.l4.readUInt16BE(2), payload: Buffer.from(p.l4.subarray(8)) };
  return p;
}

// ---------------------------------------------------------------------------------------------
// The rig: a network with its gateway, the NAT behind it, one container

export interface RigOptions {
  nat?: Partial<Omit<NatOptions, 'log' | 'clock'>> & { clock?: NatOptions['clock'] };
  spec?: Partial<NetworkSpec>;
  /** More networks on the same NAT. */
  others?: NetworkSpec[];
}

export interface Rig {
  clock: { now: number };
  net: Network;
  nat: Nat;
  port: MemoryPort;
  packets: Packet[];
  problems: string[];
  /** Log lines (JSON) the NAT wrote at info and above. */
  logs: string[];
  inject(frame: Buffer, vnet?: VnetFields): void;
  /** Packets received from now on. */
  mark(): number;
  since(mark: number): Packet[];
  entries(proto?: number): ConntrackEntry[];
}

export function makeNetwork(spec: NetworkSpec, others: Network[], log: pino.Logger): Network {
  const config = validateNetworkSpec(spec, others.map((n) => n.config));
  return new Network(config, spec, { log, ageingTimeMs: 300_000, fdbMaxEntries: 1024, upstreams: () => [], search: () => [] });
}

export function rig(o: RigOptions = {}): Rig {
  const logs: string[] = [];
  const log = pino(
    { level: 'info' },
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        logs.push(chunk.toString());
        cb();
      },
    }),
  );
  const clock = { now: 1_000_000 };
  const spec: NetworkSpec = { name: 'default', subnet: '10.0.2.0/24', ...o.spec };
  const nets: Network[] = [];
  const network = makeNetwork(spec, nets, log);
  nets.push(network);
  for (const s of o.others ?? []) nets.push(makeNetwork(s, nets, log));
  const nat = new Nat({ log, clock: () => clock.now, ...o.nat });
  for (const n of nets) nat.addNetworkOf(n, () => n.config.dnsUpstream ?? []);
  const port = new MemoryPort({ name: 'c1', kind: 'container', offloads: true, record: false }).plug(network.sw);
  const packets: Packet[] = [];
  const problems: string[] = [];
  port.onFrame = (rf) => {
    const p = parsePacket(rf, problems);
    if (p) packets.push(p);
    notify();
  };
  const r: Rig = {
    clock,
    net: network,
    nat,
    port,
    packets,
    problems,
    logs,
    inject(frame, vnet) {
      port.inject(frame, vnet);
    },
    mark: () => packets.length,
    since: (m) => packets.slice(m),
    entries: (proto) => nat.ct.list(proto === undefined ? {} : { proto }),
  };
  describeState = () =>
    `container got ${packets.length} frames (last: ${packets
      .slice(-3)
      .map((p) => (p.tcp ? `tcp ${hex(p.tcp.flags)} seq ${p.tcp.seq} ack ${p.tcp.ack} len ${p.tcp.payload.length}` : `proto ${p.proto}`))
      .join('; ')}), conntrack ${nat.ct.list().map((e) => `${e.proto}/${e.stateName}`).join(',')}, problems ${JSON.stringify(problems.slice(0, 3))}`;
  cleanups.push(async () => {
    nat.close();
    port.close();
    for (const n of nets) await n.close();
    expect(problems, 'frames the container received').toEqual([]);
  });
  return r;
}

// ---------------------------------------------------------------------------------------------
// The container's TCP: just enough to drive a connection and check what comes back

export interface ConnOptions {
  dst?: number;
  /** MSS option (-1: none). */
  mss?: number;
  /** Window-scale option (-1: none). */
  wscale?: number;
  /** No options at all. */
  bare?: boolean;
  /** The container's initial sequence number (default random: give one for a replayable run). */
  iss?: number;
}

export class Conn {
  readonly iss: number;
  sndNxt: number;
  rcvNxt = 0;
  irs = -1;
  readonly dst: number;
  /** Packets before this one belong to earlier connections (possibly on the same ports). */
  private readonly start: number;
  constructor(
    readonly r: Rig,
    readonly sport: number,
    readonly dport: number,
    readonly o: ConnOptions = {},
  ) {
    this.dst = o.dst ?? GW;
    this.iss = o.iss ?? 0x10000000 + Math.floor(Math.random() * 0x10000000);
    this.sndNxt = this.iss;
    this.start = r.mark();
  }

  /** Every segment of this connection the container received, in order. */
  get segs(): TcpSeg[] {
    const out: TcpSeg[] = [];
    for (const p of this.r.since(this.start)) if (p.tcp && p.src === this.dst && p.tcp.sport === this.dport && p.tcp.dport === this.sport) out.push(p.tcp);
    return out;
  }

  frame(flags: number, payload: Buffer = Buffer.alloc(0), csum: Csum = 'full', extra: Partial<TcpSpec> = {}): Buffer {
    return tcpFrame({ dst: this.dst, sport: this.sport, dport: this.dport, seq: this.sndNxt, ack: this.rcvNxt, flags, payload, csum, ...extra });
  }

  syn(): void {
    const mss = this.o.mss ?? 1460;
    const ws = this.o.wscale ?? 7;
    const options = this.o.bare ? Buffer.alloc(0) : synOptions(mss, ws);
    this.r.inject(tcpFrame({ dst: this.dst, sport: this.sport, dport: this.dport, seq: this.iss, flags: TCP_SYN, window: 64240, options }));
    this.sndNxt = (this.iss + 1) >>> 0;
  }

  async synAck(): Promise<TcpSeg> {
    await until(() => this.segs.some((s) => s.flags & TCP_SYN), `SYN-ACK for port ${this.sport}`);
    const sa = this.segs.find((s) => s.flags & TCP_SYN)!;
    this.irs = sa.seq;
    this.rcvNxt = (sa.seq + 1) >>> 0;
    return sa;
  }

  /** The SYN-ACK already received (virtual-clock tests: no waiting); throws if there is none. */
  takeSynAck(): TcpSeg {
    const sa = this.segs.find((s) => s.flags & TCP_SYN);
    if (!sa) throw new Error(`no SYN-ACK for port ${this.sport}; ${describeState()}`);
    this.irs = sa.seq;
    this.rcvNxt = (sa.seq + 1) >>> 0;
    return sa;
  }

  /** SYN, SYN-ACK, ACK. */
  async open(): Promise<TcpSeg> {
    this.syn();
    const sa = await this.synAck();
    this.ack();
    return sa;
  }

  ack(): void {
    this.r.inject(this.frame(TCP_ACK));
  }

  send(data: Buffer, how: 'full' | 'partial' | 'gso' = 'full', flags = TCP_ACK | TCP_PSH): void {
    if (how === 'gso') {
      this.r.inject(this.frame(flags, data, 'partial'), { ...partialVnet(16), gsoType: VNET_GSO_TCPV4, hdrLen: 54, gsoSize: 1448 });
    } else {
      this.r.inject(this.frame(flags, data, how), how === 'partial' ? partialVnet(16) : undefined);
    }
    this.sndNxt = (this.sndNxt + data.length) >>> 0;
  }

  fin(): void {
    this.r.inject(this.frame(TCP_FIN | TCP_ACK));
    this.sndNxt = (this.sndNxt + 1) >>> 0;
  }

  /**
   * The data the NAT sent, in order, after checking that every data segment starts where the
   * previous one ended (nothing retransmitted, nothing skipped); also updates rcvNxt.
   */
  received(): Buffer {
    let expected = (this.irs + 1) >>> 0;
    const parts: Buffer[] = [];
    for (const s of this.segs) {
      if (s.payload.length === 0) continue;
      expect(s.seq, 'data segment sequence number').toBe(expected);
      parts.push(s.payload);
      expected = (expected + s.payload.length) >>> 0;
    }
    const data = Buffer.concat(parts);
    const fin = this.segs.find((s) => s.flags & TCP_FIN);
    this.rcvNxt = (this.irs + 1 + data.length + (fin ? 1 : 0)) >>> 0;
    return data;
  }
}

export function tcpOptionsOf(options: Buffer): { mss: number; wscale: number } {
  let mss = -1;
  let wscale = -1;
  for (let i = 0; i < options.length; ) {
    const kind = options[i];
    if (kind === 0) break;
    if (kind === 1) {
      i++;
      continue;
    }
    const len = options[i + 1];
    if (kind === 2 && len === 4) mss = options.readUInt16BE(i + 2);
    if (kind === 3 && len === 3) wscale = options[i + 2];
    i += len;
  }
  return { mss, wscale };
}

// ---------------------------------------------------------------------------------------------
// Servers on 127.0.0.1

export interface ServerConn {
  socket: Socket;
  chunks: Buffer[];
  received: number;
  ended: boolean;
  closed: boolean;
  error: NodeJS.ErrnoException | null;
  remotePort: number;
  data(): Buffer;
}

export interface TcpServer {
  server: Server;
  port: number;
  conns: ServerConn[];
}

export async function tcpServer(onConnection?: (c: ServerConn) => void): Promise<TcpServer> {
  const conns: ServerConn[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const c: ServerConn = {
      socket,
      chunks: [],
      received: 0,
      ended: false,
      closed: false,
      error: null,
      remotePort: socket.remotePort ?? 0,
      data: () => Buffer.concat(c.chunks),
    };
    conns.push(c);
    socket.on('data', (d: Buffer) => {
      c.chunks.push(d);
      c.received += d.length;
      notify();
    });
    socket.on('end', () => {
      c.ended = true;
      notify();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      c.error = err;
      notify();
    });
    socket.on('close', () => {
      c.closed = true;
      notify();
    });
    onConnection?.(c);
    notify();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const c of conns) c.socket.destroy();
        server.close(() => resolve());
      }),
  );
  return { server, port: (server.address() as net.AddressInfo).port, conns };
}

/**
 * How a server's connection from the NAT ended: 'reset' — ECONNRESET, or an end of stream while
 * the kernel no longer lists the connection (a RST closed it; a FIN would leave it in CLOSE_WAIT)
 * — 'fin', or 'open'. libuv reports a reset that arrives with the last bytes as an end of stream
 * (after a short read, POLLHUP is taken for EOF without reading the error), so an 'end' event
 * alone does not tell a FIN from a RST.
 */
export function howEnded(c: ServerConn, serverPort: number): 'reset' | 'fin' | 'open' {
  if (c.error?.code === 'ECONNRESET') return 'reset';
  const hex = (p: number): string => p.toString(16).toUpperCase().padStart(4, '0');
  const line = readFileSync('/proc/self/net/tcp', 'utf8')
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .find((cols) => cols[1]?.endsWith(`:${hex(serverPort)}`) && cols[2]?.endsWith(`:${hex(c.remotePort)}`));
  if (!c.ended) return 'open';
  if (!line) return 'reset';
  return line[3] === '08' ? 'fin' : 'open';
}

/** A loopback TCP port nothing listens on (it did a moment ago). */
export async function closedTcpPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

export interface UdpMessage {
  data: Buffer;
  address: string;
  port: number;
}

export interface UdpServer {
  socket: dgram.Socket;
  port: number;
  messages: UdpMessage[];
}

export async function udpServer(address = '127.0.0.1', onMessage?: (m: UdpMessage, s: dgram.Socket) => void): Promise<UdpServer> {
  const socket = dgram.createSocket('udp4');
  const messages: UdpMessage[] = [];
  socket.on('message', (data, rinfo) => {
    const m = { data, address: rinfo.address, port: rinfo.port };
    messages.push(m);
    onMessage?.(m, socket);
    notify();
  });
  await new Promise<void>((resolve) => socket.bind(0, address, resolve));
  cleanups.push(() => new Promise<void>((resolve) => socket.close(() => resolve())));
  return { socket, port: socket.address().port, messages };
}

/** A UDP port that was free a moment ago (for the container's source port: the NAT keeps it). */
export async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '0.0.0.0', resolve));
  const port = s.address().port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

export function send(s: dgram.Socket, data: Buffer, port: number): Promise<void> {
  return new Promise<void>((resolve, reject) => s.send(data, port, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
}

export function fdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

/** The inode of the UDP socket bound to `port` in this network namespace (/proc/net/udp), or 0. */
export function udpSocketInode(port: number): number {
  for (const line of readFileSync('/proc/self/net/udp', 'utf8').split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length > 9 && parseInt(cols[1].split(':')[1], 16) === port) return Number(cols[9]);
  }
  return 0;
}

/** Whether one of this process's fds is the socket with this inode. */
export function holdsSocket(inode: number): boolean {
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === `socket:[${inode}]`) return true;
    } catch {
      // closed meanwhile (readdir's own fd)
    }
  }
  return false;
}

/** An ICMP error to the container: type, code, and the datagram it quotes. */
export function icmpError(p: Packet): { type: number; code: number; quote: Buffer } {
  expect(p.proto).toBe(1);
  return { type: p.l4[0], code: p.l4[1], quote: p.l4.subarray(8) };
}


// ---------------------------------------------------------------------------------------------
// The virtual rig: the same network and NAT on a VirtualClock and a SeededRandom, against a
// MemoryOutside instead of the host's sockets. Nothing waits: the test advances the clock.

export interface VirtualRig extends Rig {
  vclock: VirtualClock;
  random: SeededRandom;
  outside: MemoryOutside;
}

export interface VirtualRigOptions extends Omit<RigOptions, 'nat'> {
  seed?: number | string;
  nat?: Partial<Omit<NatOptions, 'log' | 'clock' | 'random' | 'host'>>;
  outside?: Partial<Omit<MemoryOutsideOptions, 'clock' | 'random'>>;
}

export function virtualRig(o: VirtualRigOptions = {}): VirtualRig {
  const vclock = new VirtualClock();
  const random = new SeededRandom(o.seed ?? 1);
  const outside = new MemoryOutside({ clock: vclock, random, ...o.outside });
  const r = rig({ ...o, nat: { ...o.nat, clock: vclock, random, host: outside } });
  return Object.assign(r, { vclock, random, outside });
}
