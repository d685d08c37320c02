import { describe, it, expect } from 'vitest';
import {
  UDP_FRAME_OVERHEAD,
  buildIcmpError,
  buildIcmpFrame,
  buildTcpControlFrame,
  buildUdpFrame,
  fragmentIpv4Frame,
  icmpQuoteLength,
  type FragmentSink,
  type Ipv4Endpoints,
} from '../../../src/packet/build.js';
import { parseIpv4 } from '../../../src/packet/ip-address.js';
import { completeChecksum } from '../../../src/packet/offload.js';
import { ParseStatus } from '../../../src/packet/status.js';
import { TCP_ACK, TCP_RST } from '../../../src/packet/tcp.js';
import { MAC_A, MAC_B, dvOf, inspect, macBytes, naiveChecksum, naiveSum, patternPayload, udpFrame } from '../helpers/frames.js';

const SRC = parseIpv4('10.0.2.2');
const DST = parseIpv4('10.0.2.100');
const E: Ipv4Endpoints = { dstMac: MAC_B, srcMac: MAC_A, srcIp: SRC, dstIp: DST, id: 0x1234 };

function out(size = 70_000): { buf: Buffer; dv: DataView } {
  const buf = Buffer.alloc(size, 0xee);
  return { buf, dv: dvOf(buf) };
}

/** IPv4 header checksum verifies (independent sum). */
function ipHeaderOk(frame: Uint8Array, l3 = 14): boolean {
  const ihl = (frame[l3] & 15) * 4;
  return naiveSum(frame.subarray(l3, l3 + ihl)) === 0xffff;
}

/** A fragment collector that copies what it is lent. */
class Collector implements FragmentSink {
  readonly frames: Buffer[] = [];
  readonly lent: Array<{ buf: Uint8Array; off: number; len: number }> = [];
  fragment(buf: Uint8Array, off: number, len: number): void {
    this.lent.push({ buf, off, len });
    this.frames.push(Buffer.from(buf.subarray(off, off + len)));
  }
}

/** Reassembles fragments (any order) into the IP payload; checks that they tile it exactly. */
function reassemble(frames: Buffer[]): { payload: Buffer; lastMf: boolean; base: number } {
  const pieces = frames
    .map((f) => {
      const ihl = (f[14] & 15) * 4;
      const total = f.readUInt16BE(16);
      const ff = f.readUInt16BE(20);
      return { offset: (ff & 0x1fff) * 8, mf: (ff & 0x2000) !== 0, data: f.subarray(14 + ihl, 14 + total) };
    })
    .sort((a, b) => a.offset - b.offset);
  const base = pieces[0].offset;
  let at = base;
  for (const p of pieces) {
    expect(p.offset).toBe(at);
    at += p.data.length;
  }
  return { payload: Buffer.concat(pieces.map((p) => p.data)), lastMf: pieces[pieces.length - 1].mf, base };
}

describe('buildUdpFrame', () => {
  it('writes Ethernet, IPv4 and UDP headers with valid checksums (independent check)', () => {
    const { buf, dv } = out();
    const payload = patternPayload(333, 5);
    const n = buildUdpFrame(buf, dv, 0, E, 53, 40000, payload, 0, payload.length);
    expect(n).toBe(UDP_FRAME_OVERHEAD + 333);
    const f = buf.subarray(0, n);
    expect(f.subarray(0, 6).equals(macBytes(MAC_B))).toBe(true);
    expect(f.subarray(6, 12).equals(macBytes(MAC_A))).toBe(true);
    expect(f.readUInt16BE(12)).toBe(0x0800);
    expect(f[14]).toBe(0x45);
    expect(f.readUInt16BE(16)).toBe(20 + 8 + 333);
    expect(f.readUInt16BE(18)).toBe(0x1234);
    expect(f.readUInt16BE(20)).toBe(0x4000); // DF by default
    expect(f[22]).toBe(64);
    expect(f[23]).toBe(17);
    expect(f.readUInt32BE(26)).toBe(SRC);
    expect(f.readUInt32BE(30)).toBe(DST);
    expect(f.readUInt16BE(34)).toBe(53);
    expect(f.readUInt16BE(36)).toBe(40000);
    expect(f.readUInt16BE(38)).toBe(8 + 333);
    expect(f.subarray(42).equals(payload)).toBe(true);
    const p = inspect(f);
    expect(p.ipChecksumOk).toBe(true);
    expect(p.l4ChecksumOk).toBe(true);
    expect(p.l4Total).toBe(341);
  });

  it('honours id, ttl and dontFragment: false; writes at an offset from a payload slice', () => {
    const { buf, dv } = out();
    const payload = patternPayload(100);
    const n = buildUdpFrame(buf, dv, 10, { ...E, id: 7, ttl: 1, dontFragment: false }, 67, 68, payload, 20, 50);
    expect(n).toBe(UDP_FRAME_OVERHEAD + 50);
    expect(buf.subarray(0, 10).every((b) => b === 0xee)).toBe(true);
    expect(buf[10 + n]).toBe(0xee);
    const f = buf.subarray(10, 10 + n);
    expect(f.readUInt16BE(18)).toBe(7);
    expect(f.readUInt16BE(20)).toBe(0);
    expect(f[22]).toBe(1);
    expect(f.subarray(42).equals(payload.subarray(20, 70))).toBe(true);
    expect(inspect(f)).toMatchObject({ ipChecksumOk: true, l4ChecksumOk: true });
    // No id given: 0.
    const m = buildUdpFrame(buf, dv, 0, { dstMac: MAC_B, srcMac: MAC_A, srcIp: SRC, dstIp: DST }, 1, 2, payload, 0, 0);
    expect(buf.readUInt16BE(18)).toBe(0);
    expect(inspect(buf.subarray(0, m))).toMatchObject({ ipChecksumOk: true, l4ChecksumOk: true });
  });

  it("with partialChecksum, leaves the pseudo-header's sum for NEEDS_CSUM: completed, it is the full checksum, byte for byte", () => {
    for (const len of [0, 1, 333, 1472, 8000]) {
      const full = out();
      const part = out();
      const payload = patternPayload(len, len);
      const n = buildUdpFrame(full.buf, full.dv, 0, E, 4000, 53, payload, 0, len);
      expect(buildUdpFrame(part.buf, part.dv, 0, E, 4000, 53, payload, 0, len, true)).toBe(n);
      expect(part.buf.subarray(0, 40).equals(full.buf.subarray(0, 40))).toBe(true);
      expect(part.buf.subarray(42, n).equals(full.buf.subarray(42, n))).toBe(true);
      expect(completeChecksum(part.dv, 0, n, 34, 6)).toBe(ParseStatus.OK);
      expect(part.buf.subarray(0, n).equals(full.buf.subarray(0, n))).toBe(true);
    }
  });

  it('sends a computed checksum of 0 as 0xffff (RFC 768)', () => {
    const { buf, dv } = out();
    const payload = Buffer.alloc(8);
    let n = buildUdpFrame(buf, dv, 0, E, 1000, 2000, payload, 0, 8);
    // Put the checksum it got into the payload: the one's complement sum becomes 0xffff, the checksum 0.
    payload.writeUInt16BE(buf.readUInt16BE(40), 0);
    n = buildUdpFrame(buf, dv, 0, E, 1000, 2000, payload, 0, 8);
    expect(buf.readUInt16BE(40)).toBe(0xffff);
    expect(inspect(buf.subarray(0, n)).l4ChecksumOk).toBe(true);
  });
});

describe('buildIcmpFrame', () => {
  it('writes an ICMP message with valid IP and ICMP checksums', () => {
    const { buf, dv } = out();
    const data = patternPayload(57, 3);
    const n = buildIcmpFrame(buf, dv, 0, E, 0, 0, 0xabcd0007, data, 0, data.length);
    expect(n).toBe(14 + 20 + 8 + 57);
    const f = buf.subarray(0, n);
    expect(f[23]).toBe(1);
    expect(f.readUInt16BE(16)).toBe(20 + 8 + 57);
    expect(f.readUInt16BE(20)).toBe(0x4000);
    expect(ipHeaderOk(f)).toBe(true);
    expect(f[34]).toBe(0);
    expect(f[35]).toBe(0);
    expect(f.readUInt32BE(38)).toBe(0xabcd0007);
    expect(f.subarray(42).equals(data)).toBe(true);
    expect(naiveSum(f.subarray(34))).toBe(0xffff);
    // Independently computed.
    const icmp = Buffer.from(f.subarray(34));
    icmp.writeUInt16BE(0, 2);
    expect(f.readUInt16BE(36)).toBe(naiveChecksum(icmp));
  });
});

describe('buildTcpControlFrame', () => {
  it('writes a bare TCP segment with valid checksums', () => {
    const { buf, dv } = out();
    const n = buildTcpControlFrame(buf, dv, 4, E, 80, 40000, 0xfffffff0, 0x80000001, TCP_RST | TCP_ACK, 0);
    expect(n).toBe(14 + 20 + 20);
    const f = buf.subarray(4, 4 + n);
    expect(f[23]).toBe(6);
    expect(f.readUInt16BE(16)).toBe(40);
    expect(f.readUInt16BE(20)).toBe(0x4000);
    expect(f.readUInt16BE(34)).toBe(80);
    expect(f.readUInt16BE(36)).toBe(40000);
    expect(f.readUInt32BE(38)).toBe(0xfffffff0);
    expect(f.readUInt32BE(42)).toBe(0x80000001);
    expect(f[46]).toBe(0x50);
    expect(f[47]).toBe(TCP_RST | TCP_ACK);
    expect(f.readUInt16BE(48)).toBe(0);
    expect(f.readUInt16BE(52)).toBe(0);
    expect(inspect(f)).toMatchObject({ proto: 6, ipChecksumOk: true, l4ChecksumOk: true, l4Total: 20 });
    // Window and negative-looking sequence numbers.
    const m = buildTcpControlFrame(buf, dv, 0, E, 1, 2, -1, 5, TCP_ACK, 65535);
    expect(buf.readUInt32BE(38)).toBe(0xffffffff);
    expect(buf.readUInt16BE(48)).toBe(65535);
    expect(inspect(buf.subarray(0, m)).l4ChecksumOk).toBe(true);
  });
});

describe('icmpQuoteLength and buildIcmpError', () => {
  it('quotes the whole datagram when small, at least the header + 8 bytes, at most what keeps the error at 576 bytes', () => {
    expect(icmpQuoteLength(20, 28)).toBe(28);
    expect(icmpQuoteLength(20, 21)).toBe(21); // less than 8 bytes of payload: all there is
    expect(icmpQuoteLength(20, 548)).toBe(548);
    expect(icmpQuoteLength(20, 549)).toBe(548);
    expect(icmpQuoteLength(20, 65535)).toBe(548);
    expect(icmpQuoteLength(60, 68)).toBe(68);
    expect(icmpQuoteLength(60, 2000)).toBe(548);
    for (const ihl of [20, 24, 40, 60]) {
      for (const total of [ihl, ihl + 7, ihl + 8, ihl + 9, 500, 548, 549, 1500, 65535]) {
        const q = icmpQuoteLength(ihl, total);
        expect(q).toBeLessThanOrEqual(total);
        expect(q).toBeGreaterThanOrEqual(Math.min(total, ihl + 8));
        expect(20 + 8 + q).toBeLessThanOrEqual(576);
      }
    }
  });

  it('builds a destination unreachable quoting the offending datagram, without DF', () => {
    const { buf, dv } = out();
    const offending = udpFrame({ payload: patternPayload(1000), src: MAC_B, dst: MAC_A }).frame;
    const n = buildIcmpError(buf, dv, 0, E, 3, 3, 0, offending, 14, offending.length - 14);
    expect(n).toBe(14 + 576);
    const f = buf.subarray(0, n);
    expect(f.readUInt16BE(16)).toBe(576);
    expect(f.readUInt16BE(20) & 0x4000).toBe(0);
    expect(ipHeaderOk(f)).toBe(true);
    expect(f[34]).toBe(3);
    expect(f[35]).toBe(3);
    expect(f.readUInt32BE(38)).toBe(0);
    expect(f.subarray(42).equals(offending.subarray(14, 14 + 548))).toBe(true);
    expect(naiveSum(f.subarray(34))).toBe(0xffff);
    // A small datagram is quoted whole.
    const small = udpFrame({ payload: Buffer.from('hi') }).frame;
    const m = buildIcmpError(buf, dv, 0, E, 3, 3, 0, small, 14, small.length - 14);
    expect(m).toBe(14 + 20 + 8 + 30);
    expect(buf.subarray(42, m).equals(small.subarray(14))).toBe(true);
  });
});

describe('fragmentIpv4Frame', () => {
  function bigUdp(payloadLength: number, e: Ipv4Endpoints = { ...E, dontFragment: false }): { buf: Buffer; n: number; payload: Buffer } {
    const { buf, dv } = out();
    const payload = patternPayload(payloadLength, 9);
    const n = buildUdpFrame(buf, dv, 0, e, 53, 40000, payload, 0, payload.length);
    return { buf, n, payload };
  }

  it('hands a datagram that fits over as it is, not copied', () => {
    const { buf, n } = bigUdp(1472);
    const c = new Collector();
    expect(fragmentIpv4Frame(buf, 0, n, 1500, Buffer.alloc(2000), c)).toBe(true);
    expect(c.lent).toEqual([{ buf, off: 0, len: n }]);
  });

  it('refuses a datagram with DF set, and an MTU with no room for 8 bytes of data', () => {
    const df = bigUdp(3000, E);
    const c = new Collector();
    expect(fragmentIpv4Frame(df.buf, 0, df.n, 1500, Buffer.alloc(2000), c)).toBe(false);
    const ok = bigUdp(3000);
    expect(fragmentIpv4Frame(ok.buf, 0, ok.n, 27, Buffer.alloc(2000), c)).toBe(false);
    expect(c.frames).toEqual([]);
    expect(fragmentIpv4Frame(ok.buf, 0, ok.n, 28, Buffer.alloc(2000), c)).toBe(true);
    expect(c.frames).toHaveLength(Math.ceil(3008 / 8));
  });

  for (const [payloadLength, mtu] of [
    [4000, 1500],
    [1473, 1500],
    [3000, 1000],
    [65000, 1500],
    [2000, 576],
    [100, 68],
  ] as const) {
    it(`cuts ${payloadLength} bytes of UDP for MTU ${mtu} into aligned fragments that reassemble`, () => {
      const { buf, n } = bigUdp(payloadLength);
      const original = Buffer.from(buf.subarray(0, n));
      const c = new Collector();
      const scratch = Buffer.alloc(mtu + 14);
      expect(fragmentIpv4Frame(buf, 0, n, mtu, scratch, c)).toBe(true);
      const maxData = (mtu - 20) & ~7;
      expect(c.frames).toHaveLength(Math.ceil((payloadLength + 8) / maxData));
      c.frames.forEach((f, i) => {
        const last = i === c.frames.length - 1;
        expect(f.length).toBeLessThanOrEqual(14 + mtu);
        expect(f.subarray(0, 14).equals(original.subarray(0, 14))).toBe(true);
        expect(f.readUInt16BE(16)).toBe(f.length - 14);
        expect(f.readUInt16BE(18)).toBe(0x1234);
        const ff = f.readUInt16BE(20);
        expect((ff & 0x2000) !== 0, `MF of fragment ${i}`).toBe(!last);
        expect(ff & 0x4000).toBe(0);
        expect((ff & 0x1fff) * 8).toBe(i * maxData);
        if (!last) expect(f.length - 34).toBe(maxData);
        expect((f.length - 34) % 8 === 0 || last).toBe(true);
        expect(f[23]).toBe(17);
        expect(f.readUInt32BE(26)).toBe(SRC);
        expect(f.readUInt32BE(30)).toBe(DST);
        expect(ipHeaderOk(f), `header checksum of fragment ${i}`).toBe(true);
      });
      const r = reassemble(c.frames);
      expect(r.base).toBe(0);
      expect(r.lastMf).toBe(false);
      expect(r.payload.equals(original.subarray(34))).toBe(true);
      // The reassembled UDP datagram still carries a valid checksum.
      const whole = Buffer.concat([original.subarray(0, 34), r.payload]);
      expect(inspect(whole).l4ChecksumOk).toBe(true);
      // The source is left alone.
      expect(buf.subarray(0, n).equals(original)).toBe(true);
    });
  }

  it('reads a frame at an offset and keeps IP options in every fragment', () => {
    const { buf, n } = bigUdp(2000);
    // Rebuild with a 4-byte option (NOP NOP NOP EOL) at offset 6 of a bigger buffer.
    const src = Buffer.alloc(n + 4 + 6, 0xcc);
    buf.copy(src, 6, 0, 34);
    src[6 + 14] = 0x46;
    src.writeUInt32BE(0x01010100, 6 + 34);
    buf.copy(src, 6 + 38, 34, n);
    src.writeUInt16BE(n - 14 + 4, 6 + 16);
    src.writeUInt16BE(0, 6 + 24);
    src.writeUInt16BE(naiveChecksum(src.subarray(6 + 14, 6 + 38)), 6 + 24);
    const c = new Collector();
    expect(fragmentIpv4Frame(src, 6, n + 4, 1000, Buffer.alloc(1100), c)).toBe(true);
    const maxData = (1000 - 24) & ~7;
    expect(c.frames).toHaveLength(Math.ceil(2008 / maxData));
    for (const f of c.frames) {
      expect(f[14]).toBe(0x46);
      expect(f.readUInt32BE(34)).toBe(0x01010100);
      expect(f.length - 14).toBeLessThanOrEqual(1000);
      expect(ipHeaderOk(f)).toBe(true);
    }
    expect(reassemble(c.frames).payload.equals(buf.subarray(34, n))).toBe(true);
  });

  it('fragments a fragment: keeps its base offset, and MF on the last piece when the original had it', () => {
    const { buf, n } = bigUdp(3000);
    const original = Buffer.from(buf.subarray(0, n));
    // Pretend this is a middle fragment at offset 800 (100 units) of some larger datagram.
    buf.writeUInt16BE(0x2000 | 100, 20);
    buf.writeUInt16BE(0, 24);
    buf.writeUInt16BE(naiveChecksum(buf.subarray(14, 34)), 24);
    const c = new Collector();
    expect(fragmentIpv4Frame(buf, 0, n, 1500, Buffer.alloc(1600), c)).toBe(true);
    expect(c.frames).toHaveLength(3);
    for (const [i, f] of c.frames.entries()) {
      expect((f.readUInt16BE(20) & 0x1fff) * 8).toBe(800 + i * 1480);
      expect(f.readUInt16BE(20) & 0x2000).toBe(0x2000);
      expect(ipHeaderOk(f)).toBe(true);
    }
    const r = reassemble(c.frames);
    expect(r.base).toBe(800);
    expect(r.lastMf).toBe(true);
    expect(r.payload.equals(original.subarray(34))).toBe(true);

    // A last fragment (offset set, no MF): only its last piece goes without MF.
    buf.writeUInt16BE(100, 20);
    buf.writeUInt16BE(0, 24);
    buf.writeUInt16BE(naiveChecksum(buf.subarray(14, 34)), 24);
    const d = new Collector();
    expect(fragmentIpv4Frame(buf, 0, n, 1500, Buffer.alloc(1600), d)).toBe(true);
    expect(d.frames.map((f) => f.readUInt16BE(20))).toEqual([0x2000 | 100, 0x2000 | 285, 470]);
  });

  it('uses one scratch buffer for every fragment (the sink must consume each before the next)', () => {
    const { buf, n } = bigUdp(4000);
    const scratch = Buffer.alloc(1600);
    const c = new Collector();
    fragmentIpv4Frame(buf, 0, n, 1500, scratch, c);
    expect(c.lent.every((l) => l.buf === scratch && l.off === 0)).toBe(true);
  });
});
