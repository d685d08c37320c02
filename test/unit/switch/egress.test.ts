/**
 * The egress queue and its drain point: frames ports send while the switch is forwarding leave
 * after the batch, in order, none lost, each copied exactly once; its memory is bounded and
 * reused; and ports reach the switch only through the FrameSink interface.
 */
import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { Frame } from '../../../src/link/frame.js';
import { MemoryPort } from '../../../src/link/memory-port.js';
import { Port, type PortOptions } from '../../../src/link/port.js';
import type { FrameSink } from '../../../src/link/sink.js';
import { GatewayPort, type IpRouter } from '../../../src/gateway/gateway.js';
import { buildIcmpFrame } from '../../../src/packet/build.js';
import { parseIpv4 } from '../../../src/packet/ip-address.js';
import { VirtualClock } from '../../../src/platform/clock.js';
import { EGRESS_MAX_UNIT, EgressPlace, EgressQueue } from '../../../src/switch/egress-queue.js';
import { Switch } from '../../../src/switch/switch.js';
import { MAC_A, dvOf, ethFrame } from '../helpers/frames.js';

const MAC_R = 0x02_00_00_00_00_72;
const ETH_EXP = 0x88b5;

/** Where every port writes what happens, in order: "in N" when a frame enters, "A:out N" when one leaves. */
type Log = string[];

/** The sequence number a test frame carries (first payload bytes). */
const seqOf = (frame: Uint8Array, at = 14): number => (frame[at] << 8) | frame[at + 1];

function testFrame(dst: number, src: number, seq: number, length = 60): Buffer {
  const f = ethFrame(dst, src, ETH_EXP, length - 14);
  f[14] = seq >> 8;
  f[15] = seq & 255;
  return f;
}

/** A port that reads frames in batches, as a TAP does, and logs what it is sent. */
class BatchPort extends Port {
  private sink: FrameSink | null = null;
  private readonly frame = new Frame();
  constructor(
    options: PortOptions,
    private readonly log: Log,
    private readonly seqAt = 14,
  ) {
    super(options);
  }
  plug(sink: FrameSink): this {
    sink.addPort(this);
    this.sink = sink;
    return this;
  }
  /** Hands `frames` to the sink as one batch. */
  sendBatch(frames: Buffer[]): void {
    const sink = this.sink as FrameSink;
    sink.beginBatch();
    for (const b of frames) {
      this.log.push(`in ${seqOf(b)}`);
      const f = this.frame;
      f.buf = b;
      f.dv = dvOf(b);
      f.off = 0;
      f.len = b.length;
      f.vnetOff = -1;
      f.vnet.clear();
      sink.input(this, f);
    }
    sink.endBatch();
  }
  protected writeLink(buf: Uint8Array, off: number, len: number): number {
    this.log.push(`${this.name}:out ${seqOf(buf, off + this.seqAt)}`);
    return len;
  }
  protected writeLink2(_b1: Uint8Array, _o1: number, l1: number, b2: Uint8Array, o2: number, l2: number): number {
    this.log.push(`${this.name}:out ${seqOf(b2, o2 + this.seqAt)}`);
    return l1 + l2;
  }
  close(): void {}
}

/**
 * A port that answers every frame it is sent with `replies` frames back to the sender, built one
 * after the other in the same scratch buffer and put into the switch at once — re-entrantly,
 * while the switch is still delivering. If the switch did not copy them, they would all read as
 * the last one.
 */
class Responder extends Port {
  private readonly replyBuf = Buffer.alloc(65536);
  private readonly frame = new Frame();
  constructor(
    private readonly sw: Switch,
    private readonly replies: number,
    private readonly replyLength: number,
  ) {
    super({ name: 'r', mtu: 65000 });
    sw.addPort(this);
  }
  protected writeLink(buf: Uint8Array, off: number, len: number): number {
    const seq = seqOf(buf, off + 14);
    for (let k = 0; k < this.replies; k++) {
      const reply = testFrame(MAC_A, MAC_R, seq * this.replies + k, this.replyLength);
      this.replyBuf.set(reply, 0);
      const f = this.frame;
      f.buf = this.replyBuf;
      f.dv = dvOf(this.replyBuf);
      f.off = 0;
      f.len = reply.length;
      f.vnetOff = -1;
      f.vnet.clear();
      this.sw.input(this, f);
    }
    return len;
  }
  protected writeLink2(): number {
    throw new Error('not used');
  }
  close(): void {}
}

/** Teaches the switch where MAC_A and MAC_R are, outside any test batch. */
function learnBoth(sw: Switch, a: BatchPort, r: Responder, log: Log): void {
  a.sendBatch([testFrame(0xffff_ffff_ffff, MAC_A, 0xffff)]);
  const frame = new Frame();
  const b = testFrame(0xffff_ffff_ffff, MAC_R, 0xffff);
  frame.buf = b;
  frame.dv = dvOf(b);
  frame.len = b.length;
  sw.input(r, frame);
  log.length = 0;
  Object.assign(sw.egress.stats, { queued: 0, inPlace: 0, copiedBytes: 0, dropped: 0, sent: 0, maxDepth: 0 });
}

describe('egress queue: answers made during a batch', () => {
  it('leave after the batch, in order, none lost, each copied once', () => {
    const log: Log = [];
    const sw = new Switch({ clock: new VirtualClock() });
    const a = new BatchPort({ name: 'a', mtu: 65000 }, log).plug(sw);
    const r = new Responder(sw, 1, 1514);
    learnBoth(sw, a, r, log);

    a.sendBatch(Array.from({ length: 64 }, (_, i) => testFrame(MAC_R, MAC_A, i)));

    expect(log).toEqual([...Array.from({ length: 64 }, (_, i) => `in ${i}`), ...Array.from({ length: 64 }, (_, i) => `a:out ${i}`)]);
    // 64 answers: 64 copies of 1514 bytes into the queue's slab, and nothing else.
    expect(sw.egress.stats).toEqual({ queued: 64, inPlace: 0, copiedBytes: 64 * 1514, dropped: 0, sent: 64, maxDepth: 64 });
    expect(sw.egress.length).toBe(0);
    expect(sw.egress.allocatedBytes).toBe(sw.egress.slabSize);
  });

  it('a frame sent outside a batch is forwarded at once, uncopied, and what it causes right after it', () => {
    const log: Log = [];
    const sw = new Switch({ clock: new VirtualClock() });
    const a = new BatchPort({ name: 'a', mtu: 65000 }, log).plug(sw);
    const r = new Responder(sw, 2, 100);
    learnBoth(sw, a, r, log);
    const frame = new Frame();
    for (const seq of [1, 2]) {
      const b = testFrame(MAC_R, MAC_A, seq);
      frame.buf = b;
      frame.dv = dvOf(b);
      frame.len = b.length;
      log.push(`in ${seq}`);
      sw.input(a, frame); // a timer or a host socket: no batch open
    }
    expect(log).toEqual(['in 1', 'a:out 2', 'a:out 3', 'in 2', 'a:out 4', 'a:out 5']);
    expect(sw.egress.stats.queued).toBe(4);
  });

  it('the gateway: 64 pings in one batch get 64 replies after it, in order, one copy each', () => {
    const log: Log = [];
    const clock = new VirtualClock();
    const sw = new Switch({ clock });
    const GW = parseIpv4('10.0.2.2');
    const IP_A = parseIpv4('10.0.2.100');
    // The ICMP sequence number sits at 14 + 20 + 6 in both directions.
    const a = new BatchPort({ name: 'a', kind: 'container' }, log, 40).plug(sw);
    const gw = new GatewayPort({ name: 'gateway', ip: GW, dnsIp: GW, subnet: parseIpv4('10.0.2.0'), prefix: 24, mtu: 1500, dhcp: null, dns: null, log: pino({ level: 'silent' }), clock }).plug(sw);
    const pings = Array.from({ length: 64 }, (_, i) => {
      const b = Buffer.alloc(1514);
      const n = buildIcmpFrame(b, dvOf(b), 0, { dstMac: gw.mac, srcMac: MAC_A, srcIp: IP_A, dstIp: GW, id: i + 1 }, 8, 0, (0x1234 << 16) | i, Buffer.alloc(1000, i), 0, 1000);
      return b.subarray(0, n);
    });
    a.sendBatch(pings);
    // "in" lines carry whatever byte 14 holds (the IP header here): only their place matters.
    const ins = log.filter((l) => l.startsWith('in'));
    const outs = log.filter((l) => l.startsWith('a:out'));
    expect(ins).toHaveLength(64);
    expect(log.slice(0, 64).every((l) => l.startsWith('in'))).toBe(true);
    expect(outs).toEqual(Array.from({ length: 64 }, (_, i) => `a:out ${i}`));
    expect(gw.stats.icmp_echo_replies).toBe(64);
    expect(sw.egress.stats).toMatchObject({ queued: 64, copiedBytes: 64 * pings[0].length, dropped: 0, sent: 64 });
    gw.close();
  });
});

describe('egress queue: frames built in place', () => {
  it("the gateway's outputPlace: a router's answers built there are queued without a copy, in order", () => {
    const log: Log = [];
    const clock = new VirtualClock();
    const sw = new Switch({ clock });
    const GW = parseIpv4('10.0.2.2');
    const a = new BatchPort({ name: 'a', kind: 'container', mtu: 65000, offloads: true }, log, 10 + 14).plug(sw);
    const gw = new GatewayPort({ name: 'gateway', ip: GW, dnsIp: GW, subnet: parseIpv4('10.0.2.0'), prefix: 24, mtu: 1500, dhcp: null, dns: null, log: pino({ level: 'silent' }), clock }).plug(sw);
    // A router standing in for the NAT: every datagram beyond the subnet is answered with a
    // 1514-byte frame (virtio-net header first) built where the gateway says, then emitVnet().
    const placesUsed = new Set<Buffer>();
    const router: IpRouter = {
      route(g, buf, _dv, ip) {
        const seq = buf[ip.payloadOffset + 8];
        const place = g.outputPlace(10 + 1514);
        placesUsed.add(place.buf);
        place.buf.fill(0, place.off, place.off + 10);
        place.buf.set(testFrame(MAC_A, g.mac, seq, 1514), place.off + 10);
        g.emitVnet(place.buf, place.dv, place.off, 1514);
        return true;
      },
    };
    gw.router = router;
    const datagrams = Array.from({ length: 32 }, (_, i) => {
      const b = Buffer.alloc(1514);
      const n = buildIcmpFrame(b, dvOf(b), 0, { dstMac: gw.mac, srcMac: MAC_A, srcIp: parseIpv4('10.0.2.100'), dstIp: parseIpv4('198.51.100.1'), id: i + 1 }, 8, 0, 0, Buffer.alloc(100, i), 0, 100);
      return b.subarray(0, n);
    });
    a.sendBatch(datagrams);
    expect(log.filter((l) => l.startsWith('a:out'))).toEqual(Array.from({ length: 32 }, (_, i) => `a:out ${i}`));
    expect(log.slice(0, 32).every((l) => l.startsWith('in'))).toBe(true);
    expect(sw.egress.stats).toMatchObject({ queued: 32, inPlace: 32, copiedBytes: 0, dropped: 0, sent: 32 });
    // Outside a batch (a host socket's data), the place is the gateway's own buffer: forwarded at once.
    expect(placesUsed.size).toBe(1); // all in the queue's one slab
    const idle = gw.outputPlace(10 + 1514);
    expect(placesUsed.has(idle.buf)).toBe(false);
    expect(idle.off).toBe(0);
    gw.close();
  });

  it('a frame built at the reserved place is taken as it is; what is pushed after it is copied behind it', () => {
    const q = new EgressQueue();
    const p = new MemoryPort({ name: 'p' });
    const place = new EgressPlace();
    expect(q.reserve(200, place)).toBe(true);
    const other = new Frame();
    const ob = testFrame(MAC_A, MAC_R, 1);
    other.buf = ob;
    other.dv = dvOf(ob);
    other.len = ob.length;
    place.buf.set(testFrame(MAC_A, MAC_R, 2), place.off);
    const saved = Buffer.from(place.buf.subarray(place.off, place.off + 60));
    const built = new Frame();
    built.buf = place.buf;
    built.dv = place.dv;
    built.off = place.off;
    built.len = 60;
    q.push(p, built);
    q.push(p, other);
    expect(q.stats).toMatchObject({ queued: 2, inPlace: 1, copiedBytes: 60 });
    const out = new Frame();
    q.next(out);
    expect(Buffer.from(out.buf.subarray(out.off, out.off + out.len)).equals(saved)).toBe(true);
    q.next(out);
    expect(seqOf(out.buf, out.off + 14)).toBe(1);
  });
});

describe('egress queue: memory', () => {
  it('is bounded: beyond maxBytes frames are dropped and counted, and slabs are reused, not regrown', () => {
    const log: Log = [];
    const slab = 100_000;
    expect(slab).toBeGreaterThan(EGRESS_MAX_UNIT);
    const sw = new Switch({ clock: new VirtualClock(), egress: { slabSize: slab, maxBytes: 2 * slab }, egressDrainBytes: Infinity });
    const a = new BatchPort({ name: 'a', mtu: 65000 }, log).plug(sw);
    // Each frame to r makes three 30 KB answers: three fit in a slab, six in the queue.
    const r = new Responder(sw, 3, 30_000);
    learnBoth(sw, a, r, log);

    a.sendBatch([0, 1, 2, 3].map((i) => testFrame(MAC_R, MAC_A, i)));
    expect(sw.egress.allocatedBytes).toBe(2 * slab);
    expect(sw.egress.stats).toMatchObject({ queued: 6, dropped: 6, sent: 6 });
    // The first six answers arrived, in order.
    expect(log.filter((l) => l.startsWith('a:out'))).toEqual([0, 1, 2, 3, 4, 5].map((i) => `a:out ${i}`));

    log.length = 0;
    a.sendBatch([4].map((i) => testFrame(MAC_R, MAC_A, i)));
    expect(log.filter((l) => l.startsWith('a:out'))).toEqual(['a:out 12', 'a:out 13', 'a:out 14']);
    expect(sw.egress.allocatedBytes).toBe(2 * slab);
    expect(sw.egress.stats).toMatchObject({ queued: 9, dropped: 6 });
  });

  it('a long batch drains early once its answers pass egressDrainBytes, so one slab serves 1000 answers', () => {
    const log: Log = [];
    const sw = new Switch({ clock: new VirtualClock(), egressDrainBytes: 16 * 1024 });
    const a = new BatchPort({ name: 'a', mtu: 65000 }, log).plug(sw);
    const r = new Responder(sw, 1, 1000);
    learnBoth(sw, a, r, log);
    a.sendBatch(Array.from({ length: 1000 }, (_, i) => testFrame(MAC_R, MAC_A, i)));
    const outs = log.filter((l) => l.startsWith('a:out'));
    expect(outs).toEqual(Array.from({ length: 1000 }, (_, i) => `a:out ${i}`));
    // Answers left before the batch ended...
    expect(log.indexOf('a:out 0')).toBeLessThan(log.indexOf('in 999'));
    // ...and the queue never held more than the threshold and one frame's answers.
    expect(sw.egress.stats.maxDepth).toBeLessThanOrEqual(17);
    expect(sw.egress.allocatedBytes).toBe(sw.egress.slabSize);
    expect(sw.egress.stats.dropped).toBe(0);
  });

  it('skips the frames of a port unplugged while they waited', () => {
    const q = new EgressQueue();
    const p = new MemoryPort({ name: 'p' });
    const other = new MemoryPort({ name: 'o' });
    const f = new Frame();
    const b = testFrame(MAC_A, MAC_R, 7);
    f.buf = b;
    f.dv = dvOf(b);
    f.len = b.length;
    q.push(p, f);
    q.push(other, f);
    q.forgetPort(p);
    const out = new Frame();
    expect(q.next(out)).toBe(other);
    expect(seqOf(out.buf, out.off + 14)).toBe(7);
    expect(q.next(out)).toBeNull();
    expect(q.bytesInUse).toBe(0);
  });

  it('keeps a virtio-net header with its frame', () => {
    const q = new EgressQueue();
    const p = new MemoryPort({ name: 'p', offloads: true });
    const b = Buffer.concat([Buffer.from([1, 4, 54, 0, 0xa8, 5, 34, 0, 16, 0]), testFrame(MAC_A, MAC_R, 9, 1514)]);
    const f = new Frame();
    f.buf = b;
    f.dv = dvOf(b);
    f.vnetOff = 0;
    f.off = 10;
    f.len = b.length - 10;
    expect(f.vnet.read(f.dv, 0, f.len)).toBe(0);
    q.push(p, f);
    const out = new Frame();
    expect(q.next(out)).toBe(p);
    expect(out.vnetOff).toBeGreaterThanOrEqual(0);
    expect(out.off).toBe(out.vnetOff + 10);
    expect(out.vnet).toEqual(f.vnet);
    expect(Buffer.from(out.buf.subarray(out.vnetOff, out.off + out.len)).equals(b)).toBe(true);
    expect(q.stats.copiedBytes).toBe(b.length);
  });
});

describe('FrameSink: a port wired to something that is not a switch', () => {
  it('a MemoryPort delivers to a recorder through the same interface', () => {
    const calls: string[] = [];
    const recorder: FrameSink = {
      addPort: (p) => calls.push(`add ${p.name}`),
      removePort: (p) => calls.push(`remove ${p.name}`),
      beginBatch: () => calls.push('begin'),
      input: (p, f) => calls.push(`input ${p.name} ${f.len} ${seqOf(f.buf, f.off + 14)}`),
      endBatch: () => calls.push('end'),
    };
    const port = new MemoryPort({ name: 'm' }).plug(recorder);
    port.inject(testFrame(MAC_R, MAC_A, 42));
    port.close();
    expect(calls).toEqual(['add m', 'begin', 'input m 60 42', 'end', 'remove m']);
  });
});
