import { describe, it, expect } from 'vitest';
import { completeChecksum, segmentGso } from '../../../src/packet/offload.js';
import { ParseStatus } from '../../../src/packet/status.js';
import { TCP_ACK, TCP_CWR, TCP_FIN, TCP_PSH, TCP_ECE } from '../../../src/packet/tcp.js';
import {
  VnetHeader,
  VNET_F_NEEDS_CSUM,
  VNET_GSO_ECN,
  VNET_GSO_NONE,
  VNET_GSO_TCPV4,
  VNET_GSO_TCPV6,
  VNET_GSO_UDP,
  VNET_GSO_UDP_L4,
} from '../../../src/packet/virtio-net.js';
import {
  dvOf,
  inspect,
  naiveChecksum,
  naiveSum,
  partialize,
  patternPayload,
  prng,
  pseudoHeader,
  randomBytes,
  tcpFrame,
  udpFrame,
  type BuiltFrame,
} from '../helpers/frames.js';

/** NOP NOP Timestamp: the 12 option bytes Linux puts on every data segment. */
const TS_OPTIONS = Buffer.from('0101080a0001e24000abcdef', 'hex');
const SCRATCH = 65536 + 256;

function vnet(fields: Partial<Pick<VnetHeader, 'flags' | 'gsoType' | 'hdrLen' | 'gsoSize' | 'csumStart' | 'csumOffset'>>): VnetHeader {
  const v = new VnetHeader();
  Object.assign(v, { flags: VNET_F_NEEDS_CSUM, gsoType: VNET_GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 }, fields);
  return v;
}

/** Runs segmentGso on `frame` (placed at `at` inside a bigger buffer) and returns copies of the segments. */
function segment(frame: Buffer, v: VnetHeader, at = 0, outSize = SCRATCH): { status: number; segs: Buffer[]; srcUnchanged: boolean } {
  const src = Buffer.alloc(at + frame.length + 16, 0x5a);
  frame.copy(src, at);
  const before = Buffer.from(src);
  const out = Buffer.alloc(outSize);
  const segs: Buffer[] = [];
  const status = segmentGso(src, dvOf(src), at, frame.length, v, out, dvOf(out), {
    segment(buf, off, len) {
      segs.push(Buffer.from(buf.subarray(off, off + len)));
    },
  });
  return { status, segs, srcUnchanged: src.equals(before) };
}

/** Runs completeChecksum on a copy of `frame` placed at `at`; returns the status and the frame. */
function complete(frame: Buffer, csumStart: number, csumOffset: number, at = 0): { status: number; frame: Buffer } {
  const buf = Buffer.alloc(at + frame.length + 8, 0xa5);
  frame.copy(buf, at);
  const status = completeChecksum(dvOf(buf), at, frame.length, csumStart, csumOffset);
  return { status, frame: buf.subarray(at, at + frame.length) };
}

describe('completeChecksum', () => {
  const rand = prng(2024);
  const cases: Array<[string, (payload: Buffer) => BuiltFrame]> = [
    ['TCP/IPv4', (payload) => tcpFrame({ payload, tcpOptions: TS_OPTIONS })],
    ['TCP/IPv6', (payload) => tcpFrame({ payload, v6: true })],
    ['UDP/IPv4', (payload) => udpFrame({ payload })],
    ['UDP/IPv6', (payload) => udpFrame({ payload, v6: true })],
  ];
  for (const [name, build] of cases) {
    it(`${name}: pseudo-header sum only -> the full checksum, for even and odd lengths`, () => {
      for (const n of [0, 1, 2, 3, 17, 100, 1447, 1448, 8999]) {
        const b = build(randomBytes(rand, n));
        const partial = partialize(b);
        expect(partial.equals(b.frame)).toBe(false); // the field really changed
        for (const at of [0, 3]) {
          const r = complete(partial, b.l4, b.csumOffset, at);
          expect(r.status, `${name} n=${n}`).toBe(ParseStatus.OK);
          expect(r.frame.toString('hex'), `${name} n=${n} at=${at}`).toBe(b.frame.toString('hex'));
          expect(inspect(r.frame).l4ChecksumOk).toBe(true);
        }
      }
    });
  }

  it('never sums Ethernet padding after the IP length', () => {
    const b = udpFrame({ payload: Buffer.from('hi') });
    expect(b.frame.length).toBe(14 + 20 + 10);
    const padded = Buffer.concat([partialize(b), Buffer.from('deadbeefcafebabe00112233', 'hex')]);
    const r = complete(padded, b.l4, 6);
    expect(r.status).toBe(ParseStatus.OK);
    expect(r.frame.subarray(0, b.frame.length).equals(b.frame)).toBe(true);
  });

  it('turns a UDP checksum of 0 into 0xffff', () => {
    // Pick the last payload word so that the datagram sums to 0xffff, i.e. a computed checksum of 0.
    const payload = patternPayload(64);
    payload.writeUInt16BE(0, 62);
    const probe = udpFrame({ payload });
    const s = naiveSum(pseudoHeader(false, 17, 72), probe.frame.subarray(34, 34 + 6), Buffer.alloc(2), payload);
    payload.writeUInt16BE(~s & 0xffff, 62);
    const b = udpFrame({ payload });
    expect(naiveChecksum(pseudoHeader(false, 17, 72), b.frame.subarray(34, 40), Buffer.alloc(2), payload)).toBe(0);
    expect(b.frame.readUInt16BE(34 + 6)).toBe(0xffff);
    const r = complete(partialize(b), b.l4, 6);
    expect(r.status).toBe(ParseStatus.OK);
    expect(r.frame.readUInt16BE(34 + 6)).toBe(0xffff);
    // The same for IPv6, where a UDP checksum of 0 is forbidden outright.
    const p6 = patternPayload(64);
    p6.writeUInt16BE(0, 62);
    const probe6 = udpFrame({ payload: p6, v6: true });
    const s6 = naiveSum(pseudoHeader(true, 17, 72), probe6.frame.subarray(54, 60), Buffer.alloc(2), p6);
    p6.writeUInt16BE(~s6 & 0xffff, 62);
    const b6 = udpFrame({ payload: p6, v6: true });
    expect(b6.frame.readUInt16BE(54 + 6)).toBe(0xffff);
    expect(complete(partialize(b6), b6.l4, 6).frame.readUInt16BE(54 + 6)).toBe(0xffff);
  });

  it('handles a VLAN-tagged frame (csum_start counts the tag)', () => {
    const b = tcpFrame({ payload: patternPayload(333) });
    const partial = partialize(b);
    const tag = Buffer.from('81000064', 'hex');
    const tagged = Buffer.concat([partial.subarray(0, 12), tag, partial.subarray(12)]);
    const r = complete(tagged, b.l4 + 4, 16);
    expect(r.status).toBe(ParseStatus.OK);
    expect(r.frame.readUInt16BE(b.l4 + 4 + 16)).toBe(b.frame.readUInt16BE(b.l4 + 16));
  });

  it('rejects positions outside the frame or inside the Ethernet header (BAD_OFFLOAD)', () => {
    const b = tcpFrame({ payload: patternPayload(10) });
    const partial = partialize(b);
    expect(complete(partial, 10, 16).status).toBe(ParseStatus.BAD_OFFLOAD);
    expect(complete(partial, b.l4, partial.length).status).toBe(ParseStatus.BAD_OFFLOAD);
    expect(complete(partial, partial.length - 1, 0).status).toBe(ParseStatus.BAD_OFFLOAD);
    // A field in the Ethernet padding, past the IP total length, is outside the packet.
    const padded = Buffer.concat([partial, Buffer.alloc(20)]);
    expect(complete(padded, partial.length, 0).status).toBe(ParseStatus.BAD_OFFLOAD);
  });

  it('sums to the end of the frame for a non-IP EtherType', () => {
    const f = Buffer.concat([Buffer.from('02000000000202000000000188b5', 'hex'), patternPayload(31)]);
    f.writeUInt16BE(0, 18); // no seed in the field: the sum then covers exactly the bytes present
    const r = complete(f, 14, 4);
    expect(r.status).toBe(ParseStatus.OK);
    expect(naiveSum(r.frame.subarray(14))).toBe(0xffff);
  });
});

interface TcpSeg {
  seq: number;
  flags: number;
  id: number;
  payload: Buffer;
}

/** Checks the invariants every TCP segment must satisfy and decodes the interesting fields. */
function checkTcpSegment(seg: Buffer, v6: boolean, l4: number, superFrame: Buffer, mss: number): TcpSeg {
  const p = inspect(seg);
  expect(p.ipChecksumOk).toBe(true);
  expect(p.l4ChecksumOk).toBe(true);
  expect(p.proto).toBe(6);
  const doff = (seg[l4 + 12] >> 4) * 4;
  const payload = seg.subarray(l4 + doff);
  expect(payload.length).toBeLessThanOrEqual(mss);
  expect(payload.length).toBeGreaterThan(0);
  if (v6) {
    expect(seg.readUInt16BE(18)).toBe(seg.length - 54);
  } else {
    expect(seg.readUInt16BE(16)).toBe(seg.length - 14);
  }
  // Everything else in the headers is copied: MACs, TTL/hop limit, addresses, ports, ack, window, options.
  const same = (a: number, b: number): void => expect(seg.subarray(a, b).toString('hex')).toBe(superFrame.subarray(a, b).toString('hex'));
  same(0, 14);
  if (v6) {
    same(14, 18); // version, traffic class, flow label
    same(20, 54); // next header, hop limit, addresses
  } else {
    same(14, 16); // version, IHL, TOS
    same(20, 24); // flags, fragment offset, TTL, protocol
    same(26, 34); // addresses
  }
  same(l4, l4 + 4); // ports
  same(l4 + 8, l4 + 13); // ack, data offset
  same(l4 + 14, l4 + 16); // window
  same(l4 + 18, l4 + doff); // urgent pointer, options
  return { seq: seg.readUInt32BE(l4 + 4), flags: seg[l4 + 13], id: v6 ? 0 : seg.readUInt16BE(18), payload };
}

describe('segmentGso: TCP', () => {
  const allFlags = TCP_ACK | TCP_PSH | TCP_FIN | TCP_CWR | TCP_ECE;

  for (const v6 of [false, true]) {
    const name = v6 ? 'TCPv6' : 'TCPv4';
    it(`${name}: a 64 KiB super-frame becomes ceil(n/1448) valid segments`, () => {
      const l3Len = v6 ? 40 : 20;
      const n = (v6 ? 65535 : 65535 - 20) - 32; // the largest payload the length field allows
      const payload = patternPayload(n, 3);
      const seq0 = 0xffff_8000; // wraps past 2^32 half-way through
      const id0 = 0xffe0; // wraps past 2^16
      const b = tcpFrame({ v6, payload, seq: seq0, flags: allFlags, tcpOptions: TS_OPTIONS, id: id0 });
      const superFrame = partialize(b);
      expect(b.l4).toBe(14 + l3Len);
      const v = vnet({ gsoType: v6 ? VNET_GSO_TCPV6 : VNET_GSO_TCPV4, hdrLen: b.l4 + 32, gsoSize: 1448, csumStart: b.l4, csumOffset: 16 });
      const { status, segs, srcUnchanged } = segment(superFrame, v, 7);
      expect(status).toBe(ParseStatus.OK);
      expect(srcUnchanged).toBe(true);
      expect(segs).toHaveLength(Math.ceil(n / 1448));
      const decoded = segs.map((s) => checkTcpSegment(s, v6, b.l4, superFrame, 1448));
      expect(Buffer.concat(decoded.map((d) => d.payload)).equals(payload)).toBe(true);
      decoded.forEach((d, i) => {
        expect(d.seq, `segment ${i}`).toBe((seq0 + i * 1448) >>> 0);
        if (i > 0) expect(d.seq).toBe((decoded[i - 1].seq + decoded[i - 1].payload.length) >>> 0);
        if (!v6) expect(d.id, `segment ${i}`).toBe((id0 + i) & 0xffff);
        const last = i === segs.length - 1;
        expect(d.flags & TCP_FIN, `FIN on ${i}`).toBe(last ? TCP_FIN : 0);
        expect(d.flags & TCP_PSH, `PSH on ${i}`).toBe(last ? TCP_PSH : 0);
        expect(d.flags & TCP_CWR, `CWR on ${i}`).toBe(i === 0 ? TCP_CWR : 0);
        expect(d.flags & (TCP_ACK | TCP_ECE)).toBe(TCP_ACK | TCP_ECE);
        if (!last) expect(segs[i].length).toBe(14 + l3Len + 32 + 1448);
      });
    });
  }

  it('cuts a payload that is an exact multiple of gso_size into full segments', () => {
    const payload = patternPayload(1448 * 3);
    const b = tcpFrame({ payload, flags: TCP_ACK | TCP_PSH });
    const { status, segs } = segment(partialize(b), vnet({ gsoType: VNET_GSO_TCPV4, gsoSize: 1448, csumStart: 34, csumOffset: 16 }));
    expect(status).toBe(ParseStatus.OK);
    expect(segs.map((s) => s.length)).toEqual([1502, 1502, 1502]);
    expect(segs.map((s) => s[34 + 13] & TCP_PSH)).toEqual([0, 0, TCP_PSH]);
  });

  it('emits one segment, flags intact, when the payload fits in gso_size', () => {
    const payload = patternPayload(500);
    const b = tcpFrame({ payload, flags: allFlags, seq: 77 });
    const { status, segs } = segment(partialize(b), vnet({ gsoType: VNET_GSO_TCPV4 | VNET_GSO_ECN, gsoSize: 1448, csumStart: 34, csumOffset: 16 }));
    expect(status).toBe(ParseStatus.OK);
    expect(segs).toHaveLength(1);
    expect(segs[0].equals(b.frame)).toBe(true);
  });

  it('does not trust hdr_len', () => {
    const payload = patternPayload(5000);
    const b = tcpFrame({ payload, tcpOptions: TS_OPTIONS });
    const partial = partialize(b);
    const base = segment(partial, vnet({ gsoType: VNET_GSO_TCPV4, hdrLen: 66, gsoSize: 1000, csumStart: 34, csumOffset: 16 }));
    for (const hdrLen of [0, 14, 1514, 0xffff]) {
      const r = segment(partial, vnet({ gsoType: VNET_GSO_TCPV4, hdrLen, gsoSize: 1000, csumStart: 34, csumOffset: 16 }));
      expect(r.status).toBe(ParseStatus.OK);
      expect(r.segs.map((s) => s.toString('hex'))).toEqual(base.segs.map((s) => s.toString('hex')));
    }
    expect(base.segs).toHaveLength(5);
  });

  it('handles IPv6 extension headers between the IPv6 and TCP headers', () => {
    // IPv6 (nh = destination options) | DestOpt (8 bytes, nh TCP) | TCP | payload
    const payload = patternPayload(3000, 9);
    const b = tcpFrame({ v6: true, payload, seq: 1, flags: TCP_ACK | TCP_FIN });
    const f = Buffer.concat([b.frame.subarray(0, 54), Buffer.from('0600010400000000', 'hex'), b.frame.subarray(54)]);
    f[14 + 6] = 60;
    f.writeUInt16BE(f.length - 54, 18);
    const { status, segs } = segment(f, vnet({ gsoType: VNET_GSO_TCPV6, gsoSize: 1200, csumStart: 62, csumOffset: 16 }));
    expect(status).toBe(ParseStatus.OK);
    expect(segs).toHaveLength(3);
    const got: Buffer[] = [];
    segs.forEach((s, i) => {
      expect(s.readUInt16BE(18)).toBe(s.length - 54);
      expect(s.subarray(54, 62).toString('hex')).toBe('0600010400000000');
      const l4Len = s.length - 62;
      expect(naiveSum(pseudoHeader(true, 6, l4Len), s.subarray(62)), `segment ${i}`).toBe(0xffff);
      expect(s.readUInt32BE(62 + 4)).toBe(1 + i * 1200);
      got.push(s.subarray(62 + 20));
    });
    expect(Buffer.concat(got).equals(payload)).toBe(true);
  });
});

describe('segmentGso: UDP_L4', () => {
  for (const v6 of [false, true]) {
    it(`UDP over ${v6 ? 'IPv6' : 'IPv4'}: each segment is a datagram of gso_size with valid checksums`, () => {
      const n = 10_000;
      const payload = patternPayload(n, 5);
      const b = udpFrame({ v6, payload, id: 100 });
      const { status, segs, srcUnchanged } = segment(partialize(b), vnet({ gsoType: VNET_GSO_UDP_L4, gsoSize: 1400, csumStart: b.l4, csumOffset: 6 }), 1);
      expect(status).toBe(ParseStatus.OK);
      expect(srcUnchanged).toBe(true);
      expect(segs).toHaveLength(Math.ceil(n / 1400));
      const got: Buffer[] = [];
      segs.forEach((s, i) => {
        const p = inspect(s);
        expect(p.ipChecksumOk).toBe(true);
        expect(p.l4ChecksumOk, `segment ${i}`).toBe(true);
        expect(s.readUInt16BE(b.l4 + 4)).toBe(s.length - b.l4);
        expect(s.readUInt16BE(b.l4)).toBe(5353);
        expect(s.readUInt16BE(b.l4 + 2)).toBe(53);
        if (!v6) expect(s.readUInt16BE(18)).toBe(100 + i);
        got.push(s.subarray(b.l4 + 8));
      });
      expect(got.slice(0, -1).every((g) => g.length === 1400)).toBe(true);
      expect(Buffer.concat(got).equals(payload)).toBe(true);
    });
  }
});

describe('segmentGso: no GSO', () => {
  it('copies a NEEDS_CSUM frame once, with its checksum completed', () => {
    const b = tcpFrame({ payload: patternPayload(999) });
    const { status, segs, srcUnchanged } = segment(partialize(b), vnet({ csumStart: 34, csumOffset: 16 }));
    expect(status).toBe(ParseStatus.OK);
    expect(srcUnchanged).toBe(true);
    expect(segs).toHaveLength(1);
    expect(segs[0].equals(b.frame)).toBe(true);
  });
});

describe('segmentGso: malformed input returns a non-OK status and emits nothing', () => {
  const payload = patternPayload(4000);
  const t4 = tcpFrame({ payload, tcpOptions: TS_OPTIONS });
  const t6 = tcpFrame({ payload, v6: true });
  const u4 = udpFrame({ payload });
  const gso4 = { gsoType: VNET_GSO_TCPV4, gsoSize: 1448, csumStart: 34, csumOffset: 16 };
  const gso6 = { gsoType: VNET_GSO_TCPV6, gsoSize: 1448, csumStart: 54, csumOffset: 16 };

  function expectRejected(frame: Buffer, fields: Parameters<typeof vnet>[0], outSize?: number): number {
    const { status, segs, srcUnchanged } = segment(frame, vnet(fields), 0, outSize);
    expect(status).not.toBe(ParseStatus.OK);
    expect(segs).toHaveLength(0);
    expect(srcUnchanged).toBe(true);
    return status;
  }

  it('csum_start inside the IP header', () => {
    expectRejected(t4.frame, { ...gso4, csumStart: 14 + 10 });
    expectRejected(t4.frame, { ...gso4, csumStart: 14 });
    expectRejected(t6.frame, { ...gso6, csumStart: 14 + 20 });
    expectRejected(t4.frame, { ...gso4, csumStart: 0 });
  });

  it('csum_start inside an IPv4 header with options', () => {
    // IHL 6: the TCP header starts at 38, so csum_start 34 points into the IP options. The ack
    // number is chosen so that the byte csum_start + 12 looks like a plausible data offset (5).
    const t = tcpFrame({ payload, tcpOptions: TS_OPTIONS, ack: 0x50000000 });
    const f = Buffer.concat([t.frame.subarray(0, 34), Buffer.from('01010101', 'hex'), t.frame.subarray(34)]);
    f[14] = 0x46;
    f.writeUInt16BE(f.length - 14, 16);
    expectRejected(f, { ...gso4, csumStart: 34 });
    // ... and the right csum_start works.
    const ok = segment(f, vnet({ ...gso4, csumStart: 38 }));
    expect(ok.status).toBe(ParseStatus.OK);
    for (const s of ok.segs) {
      expect(s[14]).toBe(0x46);
      expect(naiveSum(s.subarray(14, 38))).toBe(0xffff);
      expect(s.readUInt16BE(16)).toBe(s.length - 14);
      expect(naiveSum(pseudoHeader(false, 6, s.length - 38), s.subarray(38))).toBe(0xffff);
    }
  });

  it('csum_start inside IPv6 extension headers, or past the start of the TCP header', () => {
    // IPv6 | DestOpt (8 bytes) | TCP: the TCP header starts at 62. With csum_start 54 the byte at
    // csum_start + 12 is the first byte of the sequence number: make it look like a data offset.
    const t = tcpFrame({ v6: true, payload, seq: 0x50000000 });
    const f = Buffer.concat([t.frame.subarray(0, 54), Buffer.from('0600010400000000', 'hex'), t.frame.subarray(54)]);
    f[14 + 6] = 60;
    f.writeUInt16BE(f.length - 54, 18);
    expectRejected(f, { ...gso6, csumStart: 54 });
    expect(segment(f, vnet({ ...gso6, csumStart: 62 })).status).toBe(ParseStatus.OK);
    // Without extension headers, csum_start past the TCP header start is wrong too.
    const g = Buffer.from(t6.frame);
    g[54 + 4 + 12] = 0x50; // byte at csum_start 58 + 12: the ack number's first byte
    expectRejected(g, { ...gso6, csumStart: 58 });
  });

  it('an upper-layer protocol that does not match the GSO type (IPv6)', () => {
    const f = Buffer.from(t6.frame);
    f[14 + 6] = 17; // next header UDP, but TCPV6 GSO
    expectRejected(f, gso6);
    const u6 = udpFrame({ payload, v6: true });
    expectRejected(u6.frame, { gsoType: VNET_GSO_TCPV6, gsoSize: 1448, csumStart: 54, csumOffset: 16 });
    const t = Buffer.from(t6.frame);
    expectRejected(t, { gsoType: VNET_GSO_UDP_L4, gsoSize: 1400, csumStart: 54, csumOffset: 6 });
  });

  it('an IP version nibble that disagrees with the EtherType', () => {
    const f = Buffer.from(t4.frame);
    f[14] = 0x65;
    expectRejected(f, gso4);
    const g = Buffer.from(t6.frame);
    g[14] = 0x40 | (g[14] & 15);
    expectRejected(g, gso6);
  });

  it('csum_start past the start of the TCP header', () => {
    // Byte csum_start + 12 is the high byte of the window (502 = 0x01f6): make it look like a data offset.
    const f = Buffer.from(t4.frame);
    f[34 + 14] = 0x50;
    expectRejected(f, { ...gso4, csumStart: 36 });
    expectRejected(t4.frame, { ...gso4, csumStart: 38 });
  });

  it('wrong IP version for the GSO type', () => {
    expect(expectRejected(t6.frame, { ...gso4, csumStart: 54 })).toBe(ParseStatus.BAD_OFFLOAD);
    expect(expectRejected(t4.frame, { ...gso6, csumStart: 34 })).toBe(ParseStatus.BAD_OFFLOAD);
  });

  it('a GSO type that does not match the IPv4 protocol', () => {
    expectRejected(t4.frame, { gsoType: VNET_GSO_UDP_L4, gsoSize: 1400, csumStart: 34, csumOffset: 6 });
    expectRejected(u4.frame, { ...gso4 });
  });

  it('UFO (VNET_GSO_UDP) is UNSUPPORTED', () => {
    expect(expectRejected(u4.frame, { gsoType: VNET_GSO_UDP, gsoSize: 1400, csumStart: 34, csumOffset: 6 })).toBe(ParseStatus.UNSUPPORTED);
  });

  it('IP lengths past the frame', () => {
    expectRejected(t4.frame.subarray(0, t4.frame.length - 1), gso4);
    expectRejected(t6.frame.subarray(0, t6.frame.length - 1), gso6);
    expectRejected(t4.frame.subarray(0, 30), gso4);
    expectRejected(t6.frame.subarray(0, 50), gso6);
  });

  it('a TCP data offset past the end of the packet, or below 5', () => {
    const small = tcpFrame({ payload: patternPayload(10) });
    const f = Buffer.from(small.frame);
    f[34 + 12] = 0xf0;
    expectRejected(f, gso4);
    f[34 + 12] = 0x40;
    expectRejected(f, gso4);
  });

  it('csum_start past the end of the frame', () => {
    expectRejected(t4.frame, { ...gso4, csumStart: t4.frame.length - 4 });
    expectRejected(t4.frame, { ...gso4, csumStart: 0xffff });
  });

  it('runts, non-IP EtherTypes, gso_size 0 and scratch buffers too small', () => {
    expect(expectRejected(t4.frame.subarray(0, 10), gso4)).toBe(ParseStatus.TRUNCATED);
    const arpLike = Buffer.from(t4.frame);
    arpLike.writeUInt16BE(0x88b5, 12);
    expectRejected(arpLike, gso4);
    expectRejected(t4.frame, { ...gso4, gsoSize: 0 });
    expectRejected(t4.frame, gso4, 14 + 20 + 32 + 1000);
  });
});
