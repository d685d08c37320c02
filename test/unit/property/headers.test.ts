/**
 * Properties of the header views and writers (Ethernet, ARP, IPv4, IPv6, ICMP, UDP, TCP):
 * a header written by the writer binds and reads back as written, and any bytes at all bind to OK
 * or a ParseStatus — never an exception, never a read outside the bytes given (the DataViews
 * here end exactly at the last byte, so such a read would throw a RangeError).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ArpView, writeArp } from '../../../src/packet/arp.js';
import { ETH_P_8021AD, ETH_P_8021Q, EthernetView, writeEthernetHeader } from '../../../src/packet/ethernet.js';
import { IcmpView, setIcmpChecksum, writeIcmpHeader } from '../../../src/packet/icmp.js';
import { Ipv4View, setIpv4HeaderChecksum, writeIpv4Header } from '../../../src/packet/ipv4.js';
import { IPV6_NEXT_DEST_OPTS, IPV6_NEXT_FRAGMENT, IPV6_NEXT_HOP_BY_HOP, IPV6_NEXT_ROUTING, IPV6_MAX_EXTENSION_HEADERS, Ipv6View, writeIpv6Header } from '../../../src/packet/ipv6.js';
import { ParseStatus } from '../../../src/packet/status.js';
import { TcpOptions, TcpView, writeTcpHeader } from '../../../src/packet/tcp.js';
import { UdpView, writeUdpHeader } from '../../../src/packet/udp.js';
import { check, mac, naiveSum, place, placedBytes, u16, u32, u8 } from './fc.js';

const STATUSES = new Set<number>(Object.values(ParseStatus));

describe('Ethernet', () => {
  const notVlan = u16.filter((t) => t !== ETH_P_8021Q && t !== ETH_P_8021AD);

  it('reads back what writeEthernetHeader wrote', () => {
    check(
      fc.property(mac, mac, notVlan, fc.uint8Array({ maxLength: 64 }), fc.integer({ min: 0, max: 9 }), (dst, src, type, payload, off) => {
        const p = place(new Uint8Array(14 + payload.length), off);
        expect(writeEthernetHeader(p.dv, off, dst, src, type)).toBe(off + 14);
        p.buf.set(payload, off + 14);
        const v = new EthernetView();
        expect(v.bind(p.buf, p.dv, off, p.len)).toBe(ParseStatus.OK);
        expect([v.dst, v.src, v.etherType, v.vlanId, v.headerLength]).toEqual([dst, src, type, -1, 14]);
        expect([v.payloadOffset, v.payloadLength]).toEqual([off + 14, payload.length]);
      }),
    );
  });

  it('reads one or two VLAN tags: the outer VLAN ID and the inner EtherType', () => {
    const tag = fc.tuple(fc.constantFrom(ETH_P_8021Q, ETH_P_8021AD), u16);
    check(
      fc.property(mac, mac, fc.array(tag, { minLength: 1, maxLength: 2 }), notVlan, (dst, src, tags, type) => {
        const b = new Uint8Array(14 + 4 * tags.length + 4);
        const dv = new DataView(b.buffer);
        writeEthernetHeader(dv, 0, dst, src, tags[0][0]);
        tags.forEach(([, tci], i) => {
          dv.setUint16(14 + 4 * i, tci);
          dv.setUint16(16 + 4 * i, i + 1 < tags.length ? tags[i + 1][0] : type);
        });
        const v = new EthernetView();
        expect(v.bind(b, dv, 0, b.length)).toBe(ParseStatus.OK);
        expect([v.etherType, v.vlanId, v.headerLength]).toEqual([type, tags[0][1] & 0xfff, 14 + 4 * tags.length]);
      }),
    );
  });

  it('binds any bytes to OK or TRUNCATED, inside the bytes', () => {
    const v = new EthernetView();
    check(
      fc.property(placedBytes(40), (p) => {
        const st = v.bind(p.buf, p.dv, p.off, p.len);
        expect([ParseStatus.OK, ParseStatus.TRUNCATED]).toContain(st);
        if (st !== ParseStatus.OK) return;
        expect(v.headerLength).toBeLessThanOrEqual(p.len);
        void v.dst;
        void v.src;
        expect(v.payloadLength).toBeGreaterThanOrEqual(0);
      }),
      300,
    );
  });
});

describe('ARP', () => {
  it('reads back what writeArp wrote', () => {
    check(
      fc.property(u16, mac, u32, mac, u32, fc.integer({ min: 0, max: 9 }), (op, sm, si, tm, ti, off) => {
        const p = place(new Uint8Array(28), off);
        expect(writeArp(p.dv, off, op, sm, si, tm, ti)).toBe(28);
        const v = new ArpView();
        expect(v.bind(p.dv, off, 28)).toBe(ParseStatus.OK);
        expect([v.operation, v.senderMac, v.senderIp, v.targetMac, v.targetIp]).toEqual([op, sm, si, tm, ti]);
      }),
    );
  });

  it('binds any bytes without reading past them', () => {
    const v = new ArpView();
    check(
      fc.property(placedBytes(40), (p) => {
        const st = v.bind(p.dv, p.off, p.len);
        expect(STATUSES).toContain(st);
        if (st === ParseStatus.OK) void [v.operation, v.senderMac, v.senderIp, v.targetMac, v.targetIp];
      }),
      300,
    );
  });
});

describe('IPv4', () => {
  const fields = fc.record({
    tos: u8,
    id: u16,
    flagsFragment: u16,
    ttl: u8,
    protocol: u8,
    src: u32,
    dst: u32,
  });

  it('reads back what writeIpv4Header wrote, with a valid header checksum', () => {
    check(
      fc.property(fields, fc.integer({ min: 0, max: 100 }), fc.integer({ min: 0, max: 20 }), fc.integer({ min: 0, max: 9 }), (f, payloadLen, padding, off) => {
        const total = 20 + payloadLen;
        const p = place(new Uint8Array(total + padding), off);
        expect(writeIpv4Header(p.dv, off, { ...f, totalLength: total })).toBe(off + 20);
        const v = new Ipv4View();
        expect(v.bind(p.dv, off, p.len)).toBe(ParseStatus.OK);
        expect([v.tos, v.id, v.flagsFragment, v.ttl, v.protocol, v.src, v.dst]).toEqual([f.tos, f.id, f.flagsFragment, f.ttl, f.protocol, f.src, f.dst]);
        expect([v.headerLength, v.totalLength, v.payloadOffset, v.payloadLength]).toEqual([20, total, off + 20, payloadLen]);
        expect(v.fragmentOffset).toBe((f.flagsFragment & 0x1fff) * 8);
        expect(v.moreFragments).toBe((f.flagsFragment & 0x2000) !== 0);
        expect(v.checksumValid()).toBe(true);
        expect(naiveSum(p.buf.subarray(off, off + 20))).toBe(0xffff);
      }),
    );
  });

  it('setIpv4HeaderChecksum makes any header with options valid', () => {
    check(
      fc.property(fc.integer({ min: 5, max: 15 }), fc.uint8Array({ minLength: 60, maxLength: 60 }), (ihl, bytes) => {
        const b = Uint8Array.from(bytes);
        b[0] = 0x40 | ihl;
        const dv = new DataView(b.buffer);
        setIpv4HeaderChecksum(dv, 0);
        expect(naiveSum(b.subarray(0, ihl * 4))).toBe(0xffff);
      }),
    );
  });

  it('binds any bytes to a status; on OK every getter stays inside the packet', () => {
    const v = new Ipv4View();
    check(
      fc.property(placedBytes(80), fc.boolean(), (p, fixVersion) => {
        if (fixVersion && p.len > 0) p.buf[p.off] = 0x40 | (p.buf[p.off] & 15);
        const st = v.bind(p.dv, p.off, p.len);
        expect(STATUSES).toContain(st);
        if (st !== ParseStatus.OK) return;
        expect(v.headerLength).toBeGreaterThanOrEqual(20);
        expect(v.payloadOffset + v.payloadLength).toBeLessThanOrEqual(p.off + p.len);
        void [v.tos, v.id, v.flagsFragment, v.fragmentOffset, v.moreFragments, v.ttl, v.protocol, v.checksum, v.src, v.dst, v.checksumValid()];
      }),
      300,
    );
  });
});

describe('IPv6', () => {
  const addr = fc.uint8Array({ minLength: 16, maxLength: 16 });
  /** An extension header: its type and its length in 8-byte units beyond the first 8. */
  const ext = fc.oneof(
    fc.tuple(fc.constantFrom(IPV6_NEXT_HOP_BY_HOP, IPV6_NEXT_ROUTING, IPV6_NEXT_DEST_OPTS), fc.integer({ min: 0, max: 3 })),
    fc.constant([IPV6_NEXT_FRAGMENT, 0] as [number, number]),
  );
  const upper = fc.integer({ min: 0, max: 255 }).filter((n) => ![0, 43, 44, 60].includes(n));

  it('reads back what writeIpv6Header wrote', () => {
    check(
      fc.property(u16.filter((n) => n <= 200), u8, u8, addr, addr, fc.integer({ min: 0, max: 9 }), (pl, nh, hl, src, dst, off) => {
        const p = place(new Uint8Array(40 + pl), off);
        expect(writeIpv6Header(p.dv, off, pl, nh, hl, src, 0, dst, 0)).toBe(off + 40);
        const v = new Ipv6View();
        expect(v.bind(p.dv, off, p.len)).toBe(ParseStatus.OK);
        expect([v.payloadLength, v.nextHeader, v.hopLimit, v.trafficClass, v.flowLabel, v.payloadOffset]).toEqual([pl, nh, hl, 0, 0, off + 40]);
        expect(p.buf.subarray(v.srcOffset, v.srcOffset + 16)).toEqual(src);
        expect(p.buf.subarray(v.dstOffset, v.dstOffset + 16)).toEqual(dst);
      }),
    );
  });

  it('walks any chain of up to 8 extension headers to the upper layer (a first fragment included)', () => {
    check(
      fc.property(fc.array(ext, { maxLength: 10 }), upper, fc.integer({ min: 0, max: 16 }), (chain, proto, tail) => {
        const len = chain.reduce((n, [, units]) => n + 8 + 8 * units, 0) + tail;
        const b = new Uint8Array(40 + len);
        const dv = new DataView(b.buffer);
        writeIpv6Header(dv, 0, len, chain.length ? chain[0][0] : proto, 64, new Uint8Array(16), 0, new Uint8Array(16), 0);
        let pos = 40;
        chain.forEach(([type, units], i) => {
          b[pos] = i + 1 < chain.length ? chain[i + 1][0] : proto;
          if (type !== IPV6_NEXT_FRAGMENT) b[pos + 1] = units;
          pos += 8 + 8 * units;
        });
        const v = new Ipv6View();
        expect(v.bind(dv, 0, b.length)).toBe(ParseStatus.OK);
        const st = v.findUpperLayer();
        if (chain.length > IPV6_MAX_EXTENSION_HEADERS) {
          expect(st).toBe(ParseStatus.UNSUPPORTED);
          return;
        }
        expect(st).toBe(ParseStatus.OK);
        expect([v.upperProtocol, v.upperOffset]).toEqual([proto, pos]);
      }),
    );
  });

  it('regression: a chain of exactly 8 extension headers reaches its upper layer (was UNSUPPORTED: off by one)', () => {
    const b = new Uint8Array(40 + 8 * 8);
    const dv = new DataView(b.buffer);
    writeIpv6Header(dv, 0, 64, IPV6_NEXT_DEST_OPTS, 64, new Uint8Array(16), 0, new Uint8Array(16), 0);
    for (let i = 0; i < 8; i++) b[40 + 8 * i] = i < 7 ? IPV6_NEXT_DEST_OPTS : 6;
    const v = new Ipv6View();
    expect(v.bind(dv, 0, b.length)).toBe(ParseStatus.OK);
    expect(v.findUpperLayer()).toBe(ParseStatus.OK);
    expect([v.upperProtocol, v.upperOffset]).toEqual([6, 104]);
  });

  it('binds and walks any bytes without reading past the payload', () => {
    const v = new Ipv6View();
    check(
      fc.property(placedBytes(120), fc.boolean(), (p, fix) => {
        if (fix && p.len >= 40) {
          p.buf[p.off] = 0x60 | (p.buf[p.off] & 15);
          p.dv.setUint16(p.off + 4, p.dv.getUint16(p.off + 4) % (p.len - 39));
        }
        const st = v.bind(p.dv, p.off, p.len);
        expect(STATUSES).toContain(st);
        if (st !== ParseStatus.OK) return;
        void [v.trafficClass, v.flowLabel, v.nextHeader, v.hopLimit];
        const up = v.findUpperLayer();
        expect(STATUSES).toContain(up);
        if (up === ParseStatus.OK) expect(v.upperOffset).toBeLessThanOrEqual(p.off + 40 + v.payloadLength);
      }),
      400,
    );
  });
});

describe('ICMP', () => {
  it('reads back what writeIcmpHeader wrote; setIcmpChecksum makes the message verify', () => {
    check(
      fc.property(u8, u8, u32, fc.uint8Array({ maxLength: 80 }), fc.integer({ min: 0, max: 9 }), (type, code, rest, data, off) => {
        const p = place(new Uint8Array(8 + data.length), off);
        expect(writeIcmpHeader(p.dv, off, type, code, rest)).toBe(off + 8);
        p.buf.set(data, off + 8);
        setIcmpChecksum(p.dv, off, p.len);
        const v = new IcmpView();
        expect(v.bind(p.dv, off, p.len)).toBe(ParseStatus.OK);
        expect([v.type, v.code, v.identifier, v.sequence, v.nextHopMtu]).toEqual([type, code, rest >>> 16, rest & 0xffff, rest & 0xffff]);
        expect([v.payloadOffset, v.payloadLength]).toEqual([off + 8, data.length]);
        expect(v.isError).toBe([3, 4, 5, 11, 12].includes(type));
        expect(v.checksumValid()).toBe(true);
        expect(naiveSum(p.buf.subarray(off))).toBe(0xffff);
      }),
    );
  });

  it('binds any bytes without reading past them', () => {
    const v = new IcmpView();
    check(
      fc.property(placedBytes(40), (p) => {
        const st = v.bind(p.dv, p.off, p.len);
        expect([ParseStatus.OK, ParseStatus.TRUNCATED]).toContain(st);
        if (st === ParseStatus.OK) void [v.type, v.code, v.checksum, v.identifier, v.sequence, v.isError, v.checksumValid()];
      }),
      300,
    );
  });
});

describe('UDP', () => {
  it('reads back what writeUdpHeader wrote', () => {
    check(
      fc.property(u16, u16, fc.integer({ min: 0, max: 100 }), fc.integer({ min: 0, max: 10 }), fc.integer({ min: 0, max: 9 }), (sp, dp, n, extra, off) => {
        const p = place(new Uint8Array(8 + n + extra), off);
        expect(writeUdpHeader(p.dv, off, sp, dp, 8 + n)).toBe(off + 8);
        const v = new UdpView();
        expect(v.bind(p.dv, off, p.len)).toBe(ParseStatus.OK);
        expect([v.srcPort, v.dstPort, v.length, v.checksum, v.payloadOffset, v.payloadLength]).toEqual([sp, dp, 8 + n, 0, off + 8, n]);
      }),
    );
  });

  it('binds any bytes to a status; the length field never exceeds the bytes', () => {
    const v = new UdpView();
    check(
      fc.property(placedBytes(40), (p) => {
        const st = v.bind(p.dv, p.off, p.len);
        expect([ParseStatus.OK, ParseStatus.TRUNCATED, ParseStatus.BAD_LENGTH]).toContain(st);
        if (st === ParseStatus.OK) expect(v.payloadOffset + v.payloadLength).toBeLessThanOrEqual(p.off + p.len);
      }),
      300,
    );
  });
});

describe('TCP', () => {
  type Opt = { kind: 'mss'; v: number } | { kind: 'ws'; v: number } | { kind: 'sackp' } | { kind: 'ts'; v: number; e: number } | { kind: 'nop' } | { kind: 'other'; code: number; data: Uint8Array };
  const opt: fc.Arbitrary<Opt> = fc.oneof(
    u16.map((v) => ({ kind: 'mss', v }) as const),
    u8.map((v) => ({ kind: 'ws', v }) as const),
    fc.constant({ kind: 'sackp' } as const),
    fc.tuple(u32, u32).map(([v, e]) => ({ kind: 'ts', v, e }) as const),
    fc.constant({ kind: 'nop' } as const),
    fc.tuple(fc.integer({ min: 5, max: 255 }).filter((c) => c !== 8), fc.uint8Array({ maxLength: 6 })).map(([code, data]) => ({ kind: 'other', code, data }) as const),
  );

  function encode(opts: Opt[]): number[] {
    const out: number[] = [];
    for (const o of opts) {
      if (o.kind === 'mss') out.push(2, 4, o.v >> 8, o.v & 255);
      else if (o.kind === 'ws') out.push(3, 3, o.v);
      else if (o.kind === 'sackp') out.push(4, 2);
      else if (o.kind === 'ts') out.push(8, 10, ...[24, 16, 8, 0].map((s) => (o.v >>> s) & 255), ...[24, 16, 8, 0].map((s) => (o.e >>> s) & 255));
      else if (o.kind === 'nop') out.push(1);
      else out.push(o.code, 2 + o.data.length, ...o.data);
    }
    return out;
  }

  it('reads back the header and its options (the last of each kind wins, window scale capped at 14)', () => {
    const header = fc.record({ srcPort: u16, dstPort: u16, seq: u32, ack: u32, flags: u8, window: u16, urgentPointer: u16 });
    check(
      fc.property(header, fc.array(opt, { maxLength: 8 }), fc.uint8Array({ maxLength: 40 }), fc.integer({ min: 0, max: 9 }), (h, opts, payload, off) => {
        const bytes = encode(opts);
        fc.pre(bytes.length <= 40);
        while (bytes.length % 4) bytes.push(0);
        const hl = 20 + bytes.length;
        const p = place(new Uint8Array(hl + payload.length), off);
        expect(writeTcpHeader(p.dv, off, { ...h, headerLength: hl })).toBe(off + 20);
        p.buf.set(bytes, off + 20);
        p.buf.set(payload, off + hl);
        const v = new TcpView();
        expect(v.bind(p.dv, off, p.len)).toBe(ParseStatus.OK);
        expect([v.srcPort, v.dstPort, v.seq, v.ack, v.flags, v.window, v.urgentPointer, v.checksum]).toEqual([h.srcPort, h.dstPort, h.seq, h.ack, h.flags, h.window, h.urgentPointer, 0]);
        expect([v.headerLength, v.payloadOffset, v.payloadLength]).toEqual([hl, off + hl, payload.length]);
        const o = new TcpOptions();
        expect(v.readOptions(o)).toBe(ParseStatus.OK);
        const last = <K extends Opt['kind']>(k: K): Extract<Opt, { kind: K }> | undefined => opts.filter((x): x is Extract<Opt, { kind: K }> => x.kind === k).at(-1);
        expect(o.mss).toBe(last('mss')?.v ?? -1);
        const ws = last('ws');
        expect(o.windowScale).toBe(ws ? Math.min(ws.v, 14) : -1);
        expect(o.sackPermitted).toBe(last('sackp') !== undefined);
        expect([o.timestampValue, o.timestampEcho]).toEqual([last('ts')?.v ?? -1, last('ts')?.e ?? -1]);
      }),
    );
  });

  it('binds and reads the options of any bytes without looping or reading past the header', () => {
    const v = new TcpView();
    const o = new TcpOptions();
    check(
      fc.property(placedBytes(80), fc.integer({ min: 5, max: 15 }), fc.boolean(), (p, doff, fix) => {
        if (fix && p.len > 12) p.buf[p.off + 12] = (doff << 4) | (p.buf[p.off + 12] & 15);
        const st = v.bind(p.dv, p.off, p.len);
        expect([ParseStatus.OK, ParseStatus.TRUNCATED, ParseStatus.BAD_HEADER_LENGTH]).toContain(st);
        if (st !== ParseStatus.OK) return;
        expect(v.payloadLength).toBeGreaterThanOrEqual(0);
        expect([ParseStatus.OK, ParseStatus.BAD_LENGTH]).toContain(v.readOptions(o));
      }),
      400,
    );
  });
});
