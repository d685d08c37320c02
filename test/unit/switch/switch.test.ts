import { describe, it, expect } from 'vitest';
import { VirtualClock } from '../../../src/platform/clock.js';
import { Switch } from '../../../src/switch/switch.js';
import { MemoryPort, type MemoryPortOptions } from '../../../src/link/memory-port.js';
import {
  DROP_BAD_OFFLOAD,
  DROP_BAD_SRC,
  DROP_FILTERED,
  DROP_ICC,
  DROP_MTU,
  DROP_RESERVED,
  DROP_RUNT,
  DROP_SEGMENTATION,
  DROP_SPOOFED,
  RX_BYTES,
  RX_FLOODED,
  RX_FRAMES,
  TX_BYTES,
  TX_FRAMES,
  snapshotCounters,
} from '../../../src/link/counters.js';
import { parseMac, BROADCAST_MAC } from '../../../src/packet/mac.js';
import { VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, VNET_GSO_TCPV6, VNET_GSO_UDP_L4 } from '../../../src/packet/virtio-net.js';
import { TCP_ACK, TCP_FIN, TCP_PSH } from '../../../src/packet/tcp.js';
import {
  ethFrame,
  inspect,
  MAC_A,
  MAC_B,
  MAC_C,
  MAC_D,
  MAC_E,
  partialize,
  patternPayload,
  tcpFrame,
  udpFrame,
} from '../helpers/frames.js';

const ETH_EXP = 0x88b5; // IEEE local experimental EtherType, as in the Linux bridge matrix
const MAC_X = 0x02_00_00_00_00_99;
const TS_OPTIONS = Buffer.from('0101080a0001e24000abcdef', 'hex');

interface Rig {
  sw: Switch;
  ports: MemoryPort[];
  /** The switch's clock: time moves only when the test moves it. */
  clock: VirtualClock;
  port(name: string): MemoryPort;
  /** Names of the ports that received something since the last drain, and clears them. */
  drain(): string[];
}

function rig(names: Array<string | MemoryPortOptions> = ['p1', 'p2', 'p3'], options: ConstructorParameters<typeof Switch>[0] = {}): Rig {
  const clock = new VirtualClock({ start: 1_000_000 });
  const sw = new Switch({ ...options, clock });
  const ports = names.map((n) => new MemoryPort(typeof n === 'string' ? { name: n } : n).plug(sw));
  return {
    sw,
    ports,
    clock,
    port: (name) => ports.find((p) => p.name === name) as MemoryPort,
    drain() {
      const got = ports.filter((p) => p.received.length > 0).map((p) => p.name);
      for (const p of ports) p.received.length = 0;
      return got;
    },
  };
}

/** A tagged experimental frame: the tag survives in the payload so order can be checked. */
function frame(dst: number, src: number, tag = 0, etherType = ETH_EXP, length = 60): Buffer {
  const f = ethFrame(dst, src, etherType, length - 14);
  f.writeUInt32BE(tag, 14);
  return f;
}

/** Learns `mac` on `port` with a broadcast from it, then forgets what was delivered. */
function learn(r: Rig, port: MemoryPort, mac: number): void {
  port.inject(frame(BROADCAST_MAC, mac));
  r.drain();
}

describe('Switch: learning and forwarding (802.1D 7.7-7.8)', () => {
  it('learns the source MAC on the ingress port', () => {
    const r = rig();
    const [p1] = r.ports;
    expect(r.sw.fdb.lookup(MAC_A, r.clock.now())).toBeNull();
    p1.inject(frame(BROADCAST_MAC, MAC_A));
    expect(r.sw.fdb.lookup(MAC_A, r.clock.now())).toBe(p1);
    expect(r.sw.fdb.snapshot(r.clock.now())).toEqual([{ mac: '02:00:00:00:00:0a', port: 'p1', static: false, age: 0 }]);
  });

  it('sends known unicast only to the learned port, unchanged', () => {
    const r = rig();
    const [p1, p2] = r.ports;
    learn(r, p2, MAC_B);
    const f = frame(MAC_B, MAC_A, 42);
    p1.inject(f);
    expect(r.drain()).toEqual(['p2']);
    p1.inject(f);
    expect(p2.received).toHaveLength(1);
    expect(p2.received[0].frame.equals(f)).toBe(true);
    expect(p2.received[0].vnet).toBeNull();
    expect(p1.counters[RX_FLOODED]).toBe(0);
  });

  it('floods broadcast, unknown unicast and IPv4/IPv6 multicast to every port but the ingress', () => {
    const r = rig(['p1', 'p2', 'p3', 'p4']);
    const [p1, p2] = r.ports;
    for (const dst of ['ff:ff:ff:ff:ff:ff', '02:00:00:00:09:99', '01:00:5e:01:02:03', '01:00:5e:00:00:fb', '33:33:00:00:00:fb', '33:33:ff:00:00:01']) {
      p1.inject(frame(parseMac(dst), MAC_A));
      expect(r.drain(), dst).toEqual(['p2', 'p3', 'p4']);
      p2.inject(frame(parseMac(dst), MAC_B));
      expect(r.drain(), dst).toEqual(['p1', 'p3', 'p4']);
    }
    expect(p1.counters[RX_FLOODED]).toBe(6);
  });

  it('floods multicast even to ports where the destination MAC was "learned" (group MACs are never looked up)', () => {
    const r = rig();
    const [p1] = r.ports;
    p1.inject(frame(parseMac('01:00:5e:01:02:03'), MAC_A));
    expect(r.drain()).toEqual(['p2', 'p3']);
    expect(r.sw.fdb.lookup(parseMac('01:00:5e:01:02:03'), r.clock.now())).toBeNull();
  });

  it('never sends a frame back out of its ingress port', () => {
    const r = rig();
    const [p1] = r.ports;
    learn(r, p1, MAC_X);
    p1.inject(frame(MAC_X, MAC_A));
    expect(r.drain()).toEqual([]);
    expect(p1.counters[DROP_FILTERED]).toBe(1);
    // Still learned from, though.
    expect(r.sw.fdb.lookup(MAC_A, r.clock.now())).toBe(p1);
    // A frame to itself (src = dst) is the same case.
    p1.inject(frame(MAC_A, MAC_A));
    expect(r.drain()).toEqual([]);
    expect(p1.counters[DROP_FILTERED]).toBe(2);
  });

  it('applies a MAC move at once', () => {
    const r = rig();
    const [p1, p2, p3] = r.ports;
    learn(r, p1, MAC_A);
    learn(r, p3, MAC_A);
    expect(r.sw.fdb.lookup(MAC_A, r.clock.now())).toBe(p3);
    expect(r.sw.fdb.moves).toBe(1);
    p2.inject(frame(MAC_A, MAC_B));
    expect(r.drain()).toEqual(['p3']);
    // And back.
    learn(r, p1, MAC_A);
    p2.inject(frame(MAC_A, MAC_B));
    expect(r.drain()).toEqual(['p1']);
  });

  for (const [name, build] of [
    ['IPv4', () => udpFrame({ dst: MAC_B, src: MAC_A, payload: patternPayload(30) }).frame],
    ['IPv6', () => udpFrame({ v6: true, dst: MAC_B, src: MAC_A, payload: patternPayload(30) }).frame],
    ['ARP (0x0806)', () => frame(MAC_B, MAC_A, 0, 0x0806)],
    ['EtherType 0x88b5', () => frame(MAC_B, MAC_A, 0, ETH_EXP)],
    ['an 802.1Q-tagged frame', () => Buffer.concat([frame(MAC_B, MAC_A).subarray(0, 12), Buffer.from('8100006488b5', 'hex'), patternPayload(46)])],
  ] as const) {
    it(`switches ${name} like any other frame`, () => {
      const r = rig();
      const [p1, p2] = r.ports;
      const f = build();
      p1.inject(f); // unknown: flood
      expect(r.drain()).toEqual(['p2', 'p3']);
      learn(r, p2, MAC_B);
      p1.inject(f); // known: p2 only
      expect(p2.received).toHaveLength(1);
      expect(p2.received[0].frame.equals(f)).toBe(true);
      expect(r.drain()).toEqual(['p2']);
    });
  }

  it('keeps frame order and never duplicates, also with floods in between', () => {
    const r = rig();
    const [p1, p2, p3] = r.ports;
    learn(r, p2, MAC_B);
    for (let i = 0; i < 200; i++) {
      p1.inject(frame(MAC_B, MAC_A, i));
      if (i % 7 === 0) p3.inject(frame(BROADCAST_MAC, MAC_C, 10_000 + i));
      if (i % 11 === 0) p1.inject(frame(MAC_X, MAC_A, 20_000 + i)); // unknown unicast: flooded
    }
    const tags = p2.received.map((f) => f.frame.readUInt32BE(14));
    const unicast = tags.filter((t) => t < 10_000);
    expect(unicast).toEqual(Array.from({ length: 200 }, (_, i) => i));
    expect(tags.filter((t) => t >= 10_000 && t < 20_000)).toHaveLength(Math.ceil(200 / 7));
    expect(tags.filter((t) => t >= 20_000)).toHaveLength(Math.ceil(200 / 11));
  });

  it('refuses a second port with the same name, or the same port twice', () => {
    const r = rig();
    expect(() => new MemoryPort({ name: 'p1' }).plug(r.sw)).toThrow(/p1/);
    expect(() => r.sw.addPort(r.ports[0])).toThrow(/already/);
  });

  it('forgets what was learned on a port when it is unplugged', () => {
    const r = rig();
    const [p1, p2] = r.ports;
    learn(r, p2, MAC_B);
    p2.close();
    expect(r.sw.ports.map((p) => p.name)).toEqual(['p1', 'p3']);
    expect(r.sw.fdb.lookup(MAC_B, r.clock.now())).toBeNull();
    p1.inject(frame(MAC_B, MAC_A));
    expect(r.drain()).toEqual(['p3']);
    expect(() => p2.inject(frame(MAC_B, MAC_A))).toThrow(/not plugged/);
  });
});

describe('Switch: reserved and invalid addresses', () => {
  it('never relays 01:80:C2:00:00:01..0F, and counts them', () => {
    const r = rig();
    const [p1] = r.ports;
    for (let last = 1; last <= 0x0f; last++) {
      p1.inject(frame(0x0180c2000000 + last, MAC_A));
      expect(r.drain(), `01:80:c2:00:00:${last.toString(16)}`).toEqual([]);
    }
    expect(p1.counters[DROP_RESERVED]).toBe(15);
  });

  it('floods 01:80:C2:00:00:00 (STP off, like Linux), :10, :20 and :21', () => {
    const r = rig();
    const [p1] = r.ports;
    for (const last of [0x00, 0x10, 0x20, 0x21, 0x2f]) {
      p1.inject(frame(0x0180c2000000 + last, MAC_A));
      expect(r.drain(), `01:80:c2:00:00:${last.toString(16)}`).toEqual(['p2', 'p3']);
    }
    expect(p1.counters[DROP_RESERVED]).toBe(0);
  });

  it('does not treat look-alikes of the reserved range as reserved', () => {
    const r = rig();
    const [p1] = r.ports;
    for (const dst of ['01:80:c2:00:01:01', '01:80:c2:01:00:01', '03:80:c2:00:00:01', '01:80:c3:00:00:01']) {
      p1.inject(frame(parseMac(dst), MAC_A));
      expect(r.drain(), dst).toEqual(['p2', 'p3']);
    }
  });

  it('drops frames with a multicast, broadcast or all-zero source and does not learn them', () => {
    const r = rig();
    const [p1] = r.ports;
    for (const src of ['01:00:5e:00:00:01', '33:33:00:00:00:01', 'ff:ff:ff:ff:ff:ff', '00:00:00:00:00:00', '03:00:00:00:00:01']) {
      p1.inject(frame(BROADCAST_MAC, parseMac(src)));
      expect(r.drain(), src).toEqual([]);
      expect(r.sw.fdb.lookup(parseMac(src), r.clock.now()), src).toBeNull();
    }
    expect(p1.counters[DROP_BAD_SRC]).toBe(5);
    expect(r.sw.fdb.size).toBe(0);
  });

  it('drops runts (< 14 bytes) and counts them; a bare 14-byte header is a frame', () => {
    const r = rig();
    const [p1] = r.ports;
    const f = frame(BROADCAST_MAC, MAC_A);
    for (const n of [0, 1, 10, 13]) p1.inject(f.subarray(0, n));
    expect(r.drain()).toEqual([]);
    expect(p1.counters[DROP_RUNT]).toBe(4);
    expect(p1.counters[RX_FRAMES]).toBe(4);
    expect(r.sw.fdb.size).toBe(0);
    p1.inject(f.subarray(0, 14));
    expect(r.drain()).toEqual(['p2', 'p3']);
    expect(p1.counters[DROP_RUNT]).toBe(4);
  });

  it('drops runts arriving on an offload port too', () => {
    const r = rig([{ name: 'o1', offloads: true }, 'p2']);
    const [o1] = r.ports;
    o1.inject(Buffer.alloc(13));
    expect(r.drain()).toEqual([]);
    expect(o1.counters[DROP_RUNT]).toBe(1);
  });
});

describe('Switch: ageing and the table cap', () => {
  it('forgets an entry after the ageing time (lookup), and traffic from it refreshes it', () => {
    const r = rig(['p1', 'p2', 'p3'], { ageingTimeMs: 10_000 });
    const [p1, p2] = r.ports;
    const t0 = r.clock.now();
    learn(r, p1, MAC_A);
    r.clock.advanceTo(t0 + 9_000);
    p2.inject(frame(MAC_A, MAC_B));
    expect(r.drain()).toEqual(['p1']);
    r.clock.advanceTo(t0 + 10_001);
    p2.inject(frame(MAC_A, MAC_B)); // aged out: unknown unicast again
    expect(r.drain()).toEqual(['p1', 'p3']);
    // Refresh: A talks at t0 + 15 000; at t0 + 24 000 it is 9 s old and still known.
    r.clock.advanceTo(t0 + 15_000);
    learn(r, p1, MAC_A);
    r.clock.advanceTo(t0 + 24_000);
    p2.inject(frame(MAC_A, MAC_B));
    expect(r.drain()).toEqual(['p1']);
    // B kept talking, A did not: at t0 + 25 001 only A is gone.
    r.clock.advanceTo(t0 + 25_001);
    expect(r.sw.fdb.lookup(MAC_A, r.clock.now())).toBeNull();
    expect(r.sw.fdb.lookup(MAC_B, r.clock.now())).toBe(p2);
  });

  it('removes aged entries with sweep()', () => {
    const r = rig(['p1', 'p2', 'p3'], { ageingTimeMs: 10_000 });
    const [p1, p2] = r.ports;
    const t0 = r.clock.now();
    learn(r, p1, MAC_A);
    r.clock.advanceTo(t0 + 5_000);
    learn(r, p2, MAC_B);
    expect(r.sw.fdb.sweep(t0 + 10_001)).toBe(1);
    expect(r.sw.fdb.size).toBe(1);
    expect(r.sw.fdb.snapshot(t0 + 10_001).map((e) => e.mac)).toEqual(['02:00:00:00:00:0b']);
    expect(r.sw.fdb.sweep(t0 + 15_001)).toBe(1);
    expect(r.sw.fdb.size).toBe(0);
  });

  it('caps the table: with maxEntries 4 and five MACs, the least recently refreshed goes', () => {
    const r = rig(['p1', 'p2', 'p3'], { maxEntries: 4 });
    const [p1, p2, p3] = r.ports;
    learn(r, p1, MAC_A);
    r.clock.advance(1);
    learn(r, p1, MAC_B);
    r.clock.advance(1);
    learn(r, p2, MAC_C);
    r.clock.advance(1);
    learn(r, p2, MAC_D);
    r.clock.advance(1);
    learn(r, p1, MAC_A); // refresh A: B is now the least recently refreshed
    p3.inject(frame(MAC_B, MAC_X)); // traffic *to* B does not refresh it... but X is a 5th MAC
    r.drain();
    expect(r.sw.fdb.evictions).toBe(1);
    expect(r.sw.fdb.size).toBe(4);
    expect(r.sw.fdb.lookup(MAC_B, r.clock.now())).toBeNull();
    for (const [mac, port] of [[MAC_A, p1], [MAC_C, p2], [MAC_D, p2], [MAC_X, p3]] as const) {
      expect(r.sw.fdb.lookup(mac, r.clock.now())).toBe(port);
    }
    // B is unknown now: a frame to it is flooded.
    p2.inject(frame(MAC_B, MAC_C));
    expect(r.drain()).toEqual(['p1', 'p3']);
  });
});

describe('Switch: static entries', () => {
  it('never ages a static entry and forwards to it', () => {
    const r = rig(['p1', 'p2', { name: 'gw', kind: 'gateway' }], { ageingTimeMs: 10_000 });
    const [p1, , gw] = r.ports;
    r.sw.fdb.addStatic(MAC_E, gw);
    r.clock.advance(1e9);
    expect(r.sw.fdb.sweep(r.clock.now())).toBe(0);
    p1.inject(frame(MAC_E, MAC_A));
    expect(r.drain()).toEqual(['gw']);
  });

  it('drops and counts a frame that spoofs a static MAC from another port', () => {
    const r = rig(['p1', 'p2', { name: 'gw', kind: 'gateway' }]);
    const [p1, p2, gw] = r.ports;
    r.sw.fdb.addStatic(MAC_E, gw);
    p1.inject(frame(BROADCAST_MAC, MAC_E));
    p1.inject(frame(MAC_B, MAC_E));
    expect(r.drain()).toEqual([]);
    expect(p1.counters[DROP_SPOOFED]).toBe(2);
    expect(r.sw.fdb.lookup(MAC_E, r.clock.now())).toBe(gw);
    // The real owner is fine.
    gw.inject(frame(BROADCAST_MAC, MAC_E));
    expect(r.drain()).toEqual(['p1', 'p2']);
    expect(gw.counters[DROP_SPOOFED]).toBe(0);
    p2.inject(frame(MAC_E, MAC_B));
    expect(r.drain()).toEqual(['gw']);
  });
});

describe('Switch: --icc=false', () => {
  function iccRig(): Rig {
    return rig(['c1', 'c2', { name: 'gw', kind: 'gateway' }, { name: 'ext', kind: 'other' }], { icc: false });
  }

  it('blocks known unicast between containers, and counts it', () => {
    const r = iccRig();
    const [c1, c2] = r.ports;
    c1.inject(frame(BROADCAST_MAC, MAC_A));
    c2.inject(frame(BROADCAST_MAC, MAC_B));
    r.drain();
    // Each of those broadcasts was kept from the other container: counted once per flood.
    expect(c1.counters[DROP_ICC]).toBe(1);
    expect(c2.counters[DROP_ICC]).toBe(1);
    c1.inject(frame(MAC_B, MAC_A));
    c2.inject(frame(MAC_A, MAC_B));
    expect(r.drain()).toEqual([]);
    expect(c1.counters[DROP_ICC]).toBe(2);
    expect(c2.counters[DROP_ICC]).toBe(2);
  });

  it('keeps container floods away from other containers, but not from the gateway or other ports', () => {
    const r = iccRig();
    const [c1, c2] = r.ports;
    c1.inject(frame(BROADCAST_MAC, MAC_A));
    expect(r.drain()).toEqual(['gw', 'ext']);
    c2.inject(frame(MAC_X, MAC_B)); // unknown unicast
    expect(r.drain()).toEqual(['gw', 'ext']);
    // A flood kept from a container counts as an icc drop on that container's port.
    expect(c1.counters[DROP_ICC]).toBe(1);
    expect(c2.counters[DROP_ICC]).toBe(1);
  });

  it('lets containers talk to the gateway and to other ports, both ways', () => {
    const r = iccRig();
    const [c1, c2, gw, ext] = r.ports;
    learn(r, c1, MAC_A);
    learn(r, c2, MAC_B);
    learn(r, gw, MAC_E);
    learn(r, ext, MAC_X);
    const iccBefore = c1.counters[DROP_ICC] + c2.counters[DROP_ICC];
    c1.inject(frame(MAC_E, MAC_A));
    expect(r.drain()).toEqual(['gw']);
    gw.inject(frame(MAC_A, MAC_E));
    expect(r.drain()).toEqual(['c1']);
    c2.inject(frame(MAC_X, MAC_B));
    expect(r.drain()).toEqual(['ext']);
    ext.inject(frame(MAC_B, MAC_X));
    expect(r.drain()).toEqual(['c2']);
    gw.inject(frame(BROADCAST_MAC, MAC_E));
    expect(r.drain()).toEqual(['c1', 'c2', 'ext']);
    ext.inject(frame(BROADCAST_MAC, MAC_X));
    expect(r.drain()).toEqual(['c1', 'c2', 'gw']);
    expect(c1.counters[DROP_ICC] + c2.counters[DROP_ICC]).toBe(iccBefore);
    expect(gw.counters[DROP_ICC] + ext.counters[DROP_ICC]).toBe(0);
  });

  it('is on by default', () => {
    const r = rig();
    const [p1, p2] = r.ports;
    learn(r, p2, MAC_B);
    p1.inject(frame(MAC_B, MAC_A));
    expect(r.drain()).toEqual(['p2']);
  });
});

describe('Switch: MTU (no size translation, judged on the egress port)', () => {
  it('drops a 1514-byte frame towards an MTU-1400 port and counts it there', () => {
    const r = rig(['p1', { name: 'small', mtu: 1400 }, 'p3']);
    const [p1, small, p3] = r.ports;
    p1.inject(frame(BROADCAST_MAC, MAC_A, 0, ETH_EXP, 1514));
    expect(r.drain()).toEqual(['p3']);
    expect(small.counters[DROP_MTU]).toBe(1);
    expect(p1.counters[DROP_MTU]).toBe(0);
    expect(p3.counters[DROP_MTU]).toBe(0);
    learn(r, small, MAC_B);
    p1.inject(frame(MAC_B, MAC_A, 0, ETH_EXP, 1514));
    expect(r.drain()).toEqual([]);
    expect(small.counters[DROP_MTU]).toBe(2);
    // A frame that fits (MTU + Ethernet header, plus the 4 bytes of VLAN slack) goes through.
    p1.inject(frame(MAC_B, MAC_A, 0, ETH_EXP, 1414));
    p1.inject(frame(MAC_B, MAC_A, 0, ETH_EXP, 1418));
    expect(small.received).toHaveLength(2);
    p1.inject(frame(MAC_B, MAC_A, 0, ETH_EXP, 1419));
    expect(small.received).toHaveLength(2);
    expect(small.counters[DROP_MTU]).toBe(3);
  });

  it('drops a 4000-byte frame towards MTU 1500 but passes it to MTU 9000', () => {
    const r = rig(['p1', 'p2', { name: 'jumbo', mtu: 9000 }]);
    const [p1, p2] = r.ports;
    p1.inject(frame(BROADCAST_MAC, MAC_A, 0, ETH_EXP, 4000));
    expect(r.drain()).toEqual(['jumbo']);
    expect(p2.counters[DROP_MTU]).toBe(1);
  });

  it('judges a GSO frame by its segment size, not by its length', () => {
    const r = rig([{ name: 'o1', offloads: true }, 'plain', { name: 'o2', offloads: true }, { name: 'small', mtu: 1400 }]);
    const [o1, plain, o2, small] = r.ports;
    const b = tcpFrame({ dst: BROADCAST_MAC, src: MAC_A, payload: patternPayload(20_000), tcpOptions: TS_OPTIONS });
    // 20 (IP) + 32 (TCP) + 1448 = 1500: fits MTU 1500, not MTU 1400.
    o1.inject(partialize(b), { flags: VNET_F_NEEDS_CSUM, gsoType: VNET_GSO_TCPV4, hdrLen: 66, gsoSize: 1448, csumStart: 34, csumOffset: 16 });
    expect(plain.received).toHaveLength(Math.ceil(20_000 / 1448));
    expect(o2.received).toHaveLength(1);
    expect(small.received).toHaveLength(0);
    expect(small.counters[DROP_MTU]).toBe(1);
    expect(plain.counters[DROP_MTU] + o2.counters[DROP_MTU]).toBe(0);
  });
});

describe('Switch: offload adaptation', () => {
  function offloadRig(): Rig {
    // The plain port is first in the flood list, so software segmentation runs before the offload
    // port is served: the lent ingress buffer must still be intact for it.
    return rig([{ name: 'o1', offloads: true }, 'plain', { name: 'o2', offloads: true }]);
  }

  it('completes a NEEDS_CSUM checksum towards a port without offloads', () => {
    for (const v6 of [false, true]) {
      for (const kind of ['tcp', 'udp'] as const) {
        const r = offloadRig();
        const [o1, plain] = r.ports;
        const payload = patternPayload(777);
        const b = kind === 'tcp' ? tcpFrame({ v6, payload, dst: MAC_B, src: MAC_A }) : udpFrame({ v6, payload, dst: MAC_B, src: MAC_A });
        learn(r, plain, MAC_B);
        o1.inject(partialize(b), { flags: VNET_F_NEEDS_CSUM, csumStart: b.l4, csumOffset: b.csumOffset });
        expect(plain.received, `${kind} v6=${v6}`).toHaveLength(1);
        const got = plain.received[0].frame;
        expect(inspect(got).l4ChecksumOk).toBe(true);
        expect(got.equals(b.frame)).toBe(true);
        expect(plain.received[0].vnet).toBeNull();
        expect(plain.counters[TX_FRAMES]).toBe(1);
        expect(plain.counters[TX_BYTES]).toBe(b.frame.length);
      }
    }
  });

  for (const v6 of [false, true]) {
    it(`segments a GSO TCP${v6 ? 'v6' : 'v4'} super-frame towards a port without offloads`, () => {
      const r = offloadRig();
      const [o1, plain, o2] = r.ports;
      const n = 60_000;
      // MTU 1500 minus IP and TCP (with timestamps) headers, as the kernel would pick.
      const mss = v6 ? 1428 : 1448;
      const payload = patternPayload(n, 1);
      const b = tcpFrame({ v6, payload, dst: BROADCAST_MAC, src: MAC_A, seq: 123_456, flags: TCP_ACK | TCP_PSH | TCP_FIN, tcpOptions: TS_OPTIONS });
      const superFrame = partialize(b);
      const hdr = { flags: VNET_F_NEEDS_CSUM, gsoType: v6 ? VNET_GSO_TCPV6 : VNET_GSO_TCPV4, hdrLen: b.l4 + 32, gsoSize: mss, csumStart: b.l4, csumOffset: 16 };
      o1.inject(superFrame, hdr);
      const segs = plain.received.map((x) => x.frame);
      expect(segs).toHaveLength(Math.ceil(n / mss));
      const data: Buffer[] = [];
      segs.forEach((s, i) => {
        const p = inspect(s);
        expect(p.ipChecksumOk, `segment ${i}`).toBe(true);
        expect(p.l4ChecksumOk, `segment ${i}`).toBe(true);
        expect(s.readUInt32BE(b.l4 + 4)).toBe(123_456 + i * mss);
        expect(s[b.l4 + 13] & (TCP_PSH | TCP_FIN)).toBe(i === segs.length - 1 ? TCP_PSH | TCP_FIN : 0);
        expect(s.length).toBeLessThanOrEqual(1514);
        data.push(s.subarray(b.l4 + 32));
      });
      expect(Buffer.concat(data).equals(payload)).toBe(true);
      expect(plain.counters[TX_FRAMES]).toBe(segs.length);
      expect(plain.counters[TX_BYTES]).toBe(segs.reduce((sum, s) => sum + s.length, 0));
      // The offload port got the super-frame and its header, untouched.
      expect(o2.received).toHaveLength(1);
      expect(o2.received[0].frame.equals(superFrame)).toBe(true);
      expect({ ...o2.received[0].vnet }).toEqual({ ...hdr });
    });
  }

  it('segments a UDP_L4 GSO frame towards a port without offloads', () => {
    const r = offloadRig();
    const [o1, plain] = r.ports;
    const b = udpFrame({ payload: patternPayload(5000), dst: BROADCAST_MAC, src: MAC_A });
    o1.inject(partialize(b), { flags: VNET_F_NEEDS_CSUM, gsoType: VNET_GSO_UDP_L4, hdrLen: 42, gsoSize: 1200, csumStart: 34, csumOffset: 6 });
    expect(plain.received).toHaveLength(5);
    for (const s of plain.received) expect(inspect(s.frame).l4ChecksumOk).toBe(true);
  });

  it('passes the virtio-net header unchanged to an offload port', () => {
    const r = offloadRig();
    const [o1, , o2] = r.ports;
    const b = tcpFrame({ payload: patternPayload(100), dst: MAC_B, src: MAC_A });
    learn(r, o2, MAC_B);
    const partial = partialize(b);
    const hdr = { flags: VNET_F_NEEDS_CSUM, gsoType: 0, hdrLen: 54, gsoSize: 0, csumStart: 34, csumOffset: 16 };
    o1.inject(partial, hdr);
    expect(o2.received).toHaveLength(1);
    expect(o2.received[0].frame.equals(partial)).toBe(true);
    expect({ ...o2.received[0].vnet }).toEqual(hdr);
    expect(o2.counters[TX_BYTES]).toBe(partial.length);
  });

  it('gives frames from a port without offloads an all-zero virtio-net header', () => {
    const r = offloadRig();
    const [o1, plain, o2] = r.ports;
    const f = frame(BROADCAST_MAC, MAC_B);
    plain.inject(f);
    for (const p of [o1, o2]) {
      expect(p.received).toHaveLength(1);
      expect(p.received[0].frame.equals(f)).toBe(true);
      expect({ ...p.received[0].vnet }).toEqual({ flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 });
    }
  });

  it('passes a frame with no offload work (all-zero header) through unchanged to a plain port', () => {
    const r = offloadRig();
    const [o1, plain] = r.ports;
    const f = frame(BROADCAST_MAC, MAC_A);
    o1.inject(f);
    expect(plain.received).toHaveLength(1);
    expect(plain.received[0].frame.equals(f)).toBe(true);
  });

  it('drops an inconsistent virtio-net header at the ingress port, and counts it', () => {
    const r = offloadRig();
    const [o1] = r.ports;
    const f = frame(BROADCAST_MAC, MAC_A);
    o1.inject(f, { flags: VNET_F_NEEDS_CSUM, csumStart: 50, csumOffset: 16 });
    o1.inject(f, { flags: VNET_F_NEEDS_CSUM, gsoType: 3, gsoSize: 1000, csumStart: 34, csumOffset: 6 });
    o1.inject(f, { flags: VNET_F_NEEDS_CSUM, gsoType: VNET_GSO_TCPV4, gsoSize: 0, csumStart: 34, csumOffset: 16 });
    expect(r.drain()).toEqual([]);
    expect(o1.counters[DROP_BAD_OFFLOAD]).toBe(3);
    expect(r.sw.fdb.size).toBe(0);
  });

  it('counts a GSO frame that cannot be segmented as a segmentation drop on the plain port only', () => {
    const r = offloadRig();
    const [o1, plain, o2] = r.ports;
    const b = tcpFrame({ payload: patternPayload(4000), dst: BROADCAST_MAC, src: MAC_A });
    // csum_start inside the IPv4 header: consistent enough for the header check, not for segmentation.
    o1.inject(partialize(b), { flags: VNET_F_NEEDS_CSUM, gsoType: VNET_GSO_TCPV4, gsoSize: 1448, csumStart: 24, csumOffset: 16 });
    expect(plain.received).toHaveLength(0);
    expect(plain.counters[DROP_SEGMENTATION]).toBe(1);
    expect(plain.counters[TX_FRAMES]).toBe(0);
    expect(o2.received).toHaveLength(1);
  });

  it('refuses a virtio-net header on a port without offloads', () => {
    const r = rig();
    expect(() => r.ports[0].inject(frame(BROADCAST_MAC, MAC_A), { flags: VNET_F_NEEDS_CSUM })).toThrow(/offloads/);
  });
});

describe('Switch: counters', () => {
  it('counts rx frames/bytes on the ingress port and tx frames/bytes on each egress port', () => {
    const r = rig();
    const [p1, p2, p3] = r.ports;
    p1.inject(frame(BROADCAST_MAC, MAC_A, 0, ETH_EXP, 100)); // flood: p2 and p3
    p2.inject(frame(MAC_A, MAC_B, 0, ETH_EXP, 200)); // known: p1
    p1.inject(frame(0x0180c2000002, MAC_A, 0, ETH_EXP, 60)); // reserved: dropped
    p1.inject(Buffer.alloc(5)); // runt
    expect(p1.counters[RX_FRAMES]).toBe(3);
    expect(p1.counters[RX_BYTES]).toBe(165);
    expect(p1.counters[TX_FRAMES]).toBe(1);
    expect(p1.counters[TX_BYTES]).toBe(200);
    expect(p2.counters[RX_FRAMES]).toBe(1);
    expect(p2.counters[RX_BYTES]).toBe(200);
    expect(p2.counters[TX_FRAMES]).toBe(1);
    expect(p2.counters[TX_BYTES]).toBe(100);
    expect(p3.counters[TX_FRAMES]).toBe(1);
    expect(p3.counters[TX_BYTES]).toBe(100);
    expect(p3.counters[RX_FRAMES]).toBe(0);
    const s = snapshotCounters(p1.counters);
    expect(s).toMatchObject({ rx_frames: 3, rx_bytes: 165, tx_frames: 1, tx_bytes: 200, rx_flooded: 1, drops_total: 2 });
    expect(s.drops).toMatchObject({ runt: 1, reserved_dst: 1, same_port: 0 });
  });
});

describe('Switch: clock', () => {
  it('reads the injected clock per batch, never real time', () => {
    let reads = 0;
    const clock = new VirtualClock({ start: 5 });
    const read = clock.now.bind(clock);
    clock.now = () => (reads++, read());
    const sw = new Switch({ clock });
    const p1 = new MemoryPort({ name: 'p1' }).plug(sw);
    new MemoryPort({ name: 'p2' }).plug(sw);
    const before = reads;
    clock.advanceTo(42);
    p1.inject(frame(BROADCAST_MAC, MAC_D));
    expect(reads).toBe(before + 1);
    expect(sw.time).toBe(42);
    expect(sw.fdb.snapshot(42)).toEqual([{ mac: '02:00:00:00:00:0d', port: 'p1', static: false, age: 0 }]);
  });
});
