/**
 * Properties of the frame builders (build.ts), IPv4 fragmentation, the virtio-net header, the
 * software offloads (checksum completion, GSO segmentation) and the pcap format:
 *
 * - what a builder writes parses back, through the views, to the values it was given, with
 *   checksums that a naive sum verifies;
 * - fragments and GSO segments put back together are the original datagram / stream;
 * - any bytes and any virtio-net header give a status, never an exception or a read outside
 *   the frame (the DataViews end at the frame's last byte).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildIcmpError, buildIcmpFrame, buildTcpControlFrame, buildUdpFrame, fragmentIpv4Frame, icmpQuoteLength, type Ipv4Endpoints } from '../../../src/packet/build.js';
import { EthernetView } from '../../../src/packet/ethernet.js';
import { IcmpView } from '../../../src/packet/icmp.js';
import { IPV4_FLAG_DF, IPV4_FLAG_MF, Ipv4View } from '../../../src/packet/ipv4.js';
import { completeChecksum, segmentGso } from '../../../src/packet/offload.js';
import { ERR_BAD_PCAP, PcapRecordCounter, PCAP_GLOBAL_HEADER_LEN, PCAP_RECORD_HEADER_LEN, readPcap, writePcapGlobalHeader, writePcapRecordHeader } from '../../../src/packet/pcap.js';
import { ParseStatus } from '../../../src/packet/status.js';
import { TCP_CWR, TCP_FIN, TCP_PSH, TcpView } from '../../../src/packet/tcp.js';
import { UdpView } from '../../../src/packet/udp.js';
import { VNET_F_NEEDS_CSUM, VNET_GSO_ECN, VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_GSO_TCPV6, VNET_GSO_UDP_L4, VnetHeader, writeVnetHeader } from '../../../src/packet/virtio-net.js';
import { inspect, partialize, tcpFrame, udpFrame, type BuiltFrame } from '../helpers/frames.js';
import { check, mac, naiveSum, place, throwsOnly, u16, u32, u8 } from './fc.js';

const endpoints: fc.Arbitrary<Ipv4Endpoints> = fc.record({
  dstMac: mac,
  srcMac: mac,
  srcIp: u32,
  dstIp: u32,
  id: u16,
  ttl: u8,
  dontFragment: fc.boolean(),
});

/** Parses an untagged IPv4 frame with the views; checks the IP header checksum. */
function parseV4(buf: Uint8Array, len: number): { eth: EthernetView; ip: Ipv4View; dv: DataView } {
  const dv = new DataView(buf.buffer, buf.byteOffset, len);
  const eth = new EthernetView();
  expect(eth.bind(buf, dv, 0, len)).toBe(ParseStatus.OK);
  expect(eth.etherType).toBe(0x0800);
  const ip = new Ipv4View();
  expect(ip.bind(dv, eth.payloadOffset, eth.payloadLength)).toBe(ParseStatus.OK);
  expect(ip.checksumValid()).toBe(true);
  return { eth, ip, dv };
}

function l4ChecksumOk(buf: Uint8Array, ip: Ipv4View, proto: number): boolean {
  const ph = new Uint8Array(12);
  const pdv = new DataView(ph.buffer);
  pdv.setUint32(0, ip.src);
  pdv.setUint32(4, ip.dst);
  ph[9] = proto;
  pdv.setUint16(10, ip.payloadLength);
  return naiveSum(buf.subarray(ip.payloadOffset, ip.payloadOffset + ip.payloadLength), naiveSum(ph)) === 0xffff;
}

describe('frame builders', () => {
  it('buildUdpFrame: parses back to its endpoints, ports and payload, checksums valid and never 0', () => {
    check(
      fc.property(endpoints, u16, u16, fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 0, max: 8 }), (e, sp, dp, data, pOff) => {
        const payload = new Uint8Array(pOff + data.length);
        payload.set(data, pOff);
        const out = new Uint8Array(42 + data.length);
        const n = buildUdpFrame(out, new DataView(out.buffer), 0, e, sp, dp, payload, pOff, data.length);
        expect(n).toBe(out.length);
        const { eth, ip, dv } = parseV4(out, n);
        expect([eth.dst, eth.src]).toEqual([e.dstMac, e.srcMac]);
        expect([ip.src, ip.dst, ip.id, ip.ttl, ip.protocol, ip.flagsFragment]).toEqual([e.srcIp, e.dstIp, e.id, e.ttl, 17, e.dontFragment === false ? 0 : IPV4_FLAG_DF]);
        const udp = new UdpView();
        expect(udp.bind(dv, ip.payloadOffset, ip.payloadLength)).toBe(ParseStatus.OK);
        expect([udp.srcPort, udp.dstPort, udp.length]).toEqual([sp, dp, 8 + data.length]);
        expect(out.subarray(udp.payloadOffset, udp.payloadOffset + udp.payloadLength)).toEqual(data);
        expect(udp.checksum).not.toBe(0);
        expect(l4ChecksumOk(out, ip, 17)).toBe(true);
      }),
    );
  });

  it('buildIcmpFrame: parses back to its type, code, rest of header and data, checksum valid', () => {
    check(
      fc.property(endpoints, u8, u8, u32, fc.uint8Array({ maxLength: 300 }), (e, type, code, rest, data) => {
        const out = new Uint8Array(42 + data.length);
        const n = buildIcmpFrame(out, new DataView(out.buffer), 0, e, type, code, rest, data, 0, data.length);
        const { ip, dv } = parseV4(out, n);
        expect(ip.protocol).toBe(1);
        const icmp = new IcmpView();
        expect(icmp.bind(dv, ip.payloadOffset, ip.payloadLength)).toBe(ParseStatus.OK);
        expect([icmp.type, icmp.code, icmp.identifier * 65536 + icmp.sequence]).toEqual([type, code, rest]);
        expect(out.subarray(icmp.payloadOffset, icmp.payloadOffset + icmp.payloadLength)).toEqual(data);
        expect(icmp.checksumValid()).toBe(true);
      }),
    );
  });

  it('buildIcmpError quotes the offending datagram within 576 bytes, at least its header + 8', () => {
    check(
      fc.property(endpoints, fc.integer({ min: 5, max: 15 }), fc.uint8Array({ minLength: 0, maxLength: 1500 }), (e, ihl, rest) => {
        const quoted = new Uint8Array(ihl * 4 + rest.length);
        quoted[0] = 0x40 | ihl;
        quoted.set(rest, ihl * 4);
        const q = icmpQuoteLength(ihl * 4, quoted.length);
        expect(q).toBeLessThanOrEqual(quoted.length);
        expect(q).toBeGreaterThanOrEqual(Math.min(quoted.length, ihl * 4 + 8));
        if (ihl * 4 + 8 <= 548) expect(20 + 8 + q).toBeLessThanOrEqual(576);
        const out = new Uint8Array(42 + q);
        const n = buildIcmpError(out, new DataView(out.buffer), 0, e, 3, 3, 0, quoted, 0, quoted.length);
        expect(n).toBe(42 + q);
        const { ip, dv } = parseV4(out, n);
        expect(ip.flagsFragment & IPV4_FLAG_DF).toBe(0);
        const icmp = new IcmpView();
        icmp.bind(dv, ip.payloadOffset, ip.payloadLength);
        expect(icmp.isError).toBe(true);
        expect(out.subarray(icmp.payloadOffset, n)).toEqual(quoted.subarray(0, q));
        expect(icmp.checksumValid()).toBe(true);
      }),
    );
  });

  it('buildTcpControlFrame: parses back to its ports, numbers, flags and window, checksum valid', () => {
    check(
      fc.property(endpoints, u16, u16, u32, u32, u8, u16, (e, sp, dp, seq, ack, flags, win) => {
        const out = new Uint8Array(54);
        const n = buildTcpControlFrame(out, new DataView(out.buffer), 0, e, sp, dp, seq, ack, flags, win);
        expect(n).toBe(54);
        const { ip, dv } = parseV4(out, n);
        const tcp = new TcpView();
        expect(tcp.bind(dv, ip.payloadOffset, ip.payloadLength)).toBe(ParseStatus.OK);
        expect([tcp.srcPort, tcp.dstPort, tcp.seq, tcp.ack, tcp.flags, tcp.window, tcp.payloadLength]).toEqual([sp, dp, seq, ack, flags, win, 0]);
        expect(l4ChecksumOk(out, ip, 6)).toBe(true);
      }),
    );
  });
});

describe('IPv4 fragmentation', () => {
  it('fragments reassemble to the datagram; each fits the MTU, offsets in 8-byte units, MF on all but the last', () => {
    check(
      fc.property(
        fc.integer({ min: 5, max: 15 }),
        fc.uint8Array({ minLength: 0, maxLength: 3000 }),
        fc.integer({ min: 68, max: 1600 }),
        fc.boolean(),
        fc.integer({ min: 0, max: 100 }),
        (ihl, data, mtu, df, baseUnits) => {
          const hl = ihl * 4;
          const total = hl + data.length;
          const frame = new Uint8Array(14 + total);
          const dv = new DataView(frame.buffer);
          frame.fill(0x11, 0, 12);
          dv.setUint16(12, 0x0800);
          frame[14] = 0x40 | ihl;
          dv.setUint16(16, total);
          dv.setUint16(18, 0x1234);
          // A datagram that is itself a non-last fragment keeps MF on every piece.
          const origMf = baseUnits % 2 === 1;
          dv.setUint16(20, (df ? IPV4_FLAG_DF : 0) | (origMf ? IPV4_FLAG_MF : 0) | baseUnits);
          frame[22] = 64;
          frame[23] = 17;
          for (let i = 24; i < 14 + hl; i++) frame[i] = i;
          frame.set(data, 14 + hl);
          const pieces: Uint8Array[] = [];
          const scratch = new Uint8Array(14 + mtu + 8);
          const ok = fragmentIpv4Frame(frame, 0, frame.length, mtu, scratch, { fragment: (b, o, l) => pieces.push(Uint8Array.from(b.subarray(o, o + l))) });
          if (total <= mtu) {
            expect(ok).toBe(true);
            expect(pieces).toEqual([frame]);
            return;
          }
          if (df || ((mtu - hl) & ~7) < 8) {
            expect(ok).toBe(false);
            expect(pieces).toEqual([]);
            return;
          }
          expect(ok).toBe(true);
          const joined: number[] = [];
          pieces.forEach((p, i) => {
            const { ip } = parseV4(p, p.length);
            expect(ip.totalLength).toBeLessThanOrEqual(mtu);
            expect(ip.headerLength).toBe(hl);
            expect(ip.id).toBe(0x1234);
            expect(ip.fragmentOffset).toBe(baseUnits * 8 + joined.length);
            expect(ip.moreFragments).toBe(i < pieces.length - 1 || origMf);
            if (i < pieces.length - 1) expect(ip.payloadLength % 8).toBe(0);
            expect(p.subarray(0, 14)).toEqual(frame.subarray(0, 14));
            joined.push(...p.subarray(ip.payloadOffset, ip.payloadOffset + ip.payloadLength));
          });
          expect(Uint8Array.from(joined)).toEqual(data);
        },
      ),
    );
  });
});

describe('virtio-net header', () => {
  it('reads back what writeVnetHeader wrote, and judges it as documented', () => {
    check(
      fc.property(u8, u8, u16, u16, u16, u16, fc.integer({ min: 0, max: 70000 }), (flags, gso, hdrLen, gsoSize, cs, co, frameLen) => {
        const b = new Uint8Array(10);
        const dv = new DataView(b.buffer);
        writeVnetHeader(dv, 0, flags, gso, hdrLen, gsoSize, cs, co);
        const h = new VnetHeader();
        const st = h.read(dv, 0, frameLen);
        expect([h.flags, h.gsoType, h.hdrLen, h.gsoSize, h.csumStart, h.csumOffset]).toEqual([flags, gso, hdrLen, gsoSize, cs, co]);
        const base = gso & ~VNET_GSO_ECN;
        let want: number = ParseStatus.OK;
        if (flags & VNET_F_NEEDS_CSUM && cs + co + 2 > frameLen) want = ParseStatus.BAD_OFFLOAD;
        else if (base !== VNET_GSO_NONE && ![VNET_GSO_TCPV4, VNET_GSO_TCPV6, VNET_GSO_UDP_L4].includes(base)) want = ParseStatus.UNSUPPORTED;
        else if (base !== VNET_GSO_NONE && (gsoSize === 0 || !(flags & VNET_F_NEEDS_CSUM))) want = ParseStatus.BAD_OFFLOAD;
        expect(st).toBe(want);
        expect(h.isGso).toBe(gso !== VNET_GSO_NONE);
      }),
      300,
    );
  });
});

/** A TCP or UDP frame over IPv4 or IPv6 (helpers/frames.ts), optionally with a VLAN tag and Ethernet padding. */
const l4Frame = fc
  .record({
    tcp: fc.boolean(),
    v6: fc.boolean(),
    payload: fc.uint8Array({ maxLength: 4000 }),
    seq: u32,
    flags: u8,
    vlan: fc.boolean(),
    padding: fc.integer({ min: 0, max: 20 }),
  })
  .map((o) => {
    const b = o.tcp ? tcpFrame({ v6: o.v6, payload: o.payload, seq: o.seq, flags: o.flags }) : udpFrame({ v6: o.v6, payload: o.payload });
    // partialize() reads the EtherType at 12: take the partial checksum before inserting a tag.
    const partial = partialize(b);
    return o.vlan ? { ...o, b: tagged(b), partial: tagged({ ...b, frame: partial }).frame } : { ...o, b, partial };
  });

/** The same frame with an 802.1Q tag inserted after the MACs. */
function tagged(b: BuiltFrame): BuiltFrame {
  const f = Buffer.concat([b.frame.subarray(0, 12), Buffer.from([0x81, 0x00, 0x00, 0x05]), b.frame.subarray(12)]);
  return { frame: f, l3: b.l3 + 4, l4: b.l4 + 4, l4Len: b.l4Len, csumOffset: b.csumOffset };
}

function untag(f: Uint8Array, vlan: boolean): Uint8Array {
  return vlan ? Uint8Array.from([...f.subarray(0, 12), ...f.subarray(16)]) : f;
}

describe('software offloads', () => {
  it('completeChecksum turns a NEEDS_CSUM frame into the complete one, not summing Ethernet padding', () => {
    check(
      fc.property(l4Frame, fc.integer({ min: 0, max: 7 }), ({ b, partial, padding }, off) => {
        const bytes = new Uint8Array(partial.length + padding);
        bytes.set(partial);
        bytes.fill(0xee, partial.length);
        const p = place(bytes, off);
        expect(completeChecksum(p.dv, off, p.len, b.l4, b.csumOffset)).toBe(ParseStatus.OK);
        expect(p.buf.subarray(off, off + b.frame.length)).toEqual(new Uint8Array(b.frame));
      }),
    );
  });

  it('completeChecksum on any bytes and positions: OK or BAD_OFFLOAD, never outside the frame', () => {
    check(
      fc.property(fc.uint8Array({ maxLength: 120 }), u16, u16, fc.integer({ min: 0, max: 7 }), fc.boolean(), (bytes, cs, co, off, ipv4) => {
        if (ipv4 && bytes.length >= 14) {
          bytes[12] = 0x08;
          bytes[13] = 0x00;
        }
        const p = place(bytes, off);
        expect([ParseStatus.OK, ParseStatus.BAD_OFFLOAD]).toContain(completeChecksum(p.dv, off, p.len, cs % 140, co % 40));
      }),
      400,
    );
  });

  it('segmentGso: segments carry the stream in order, each within gso_size, checksums valid, flags and numbers right', () => {
    check(
      fc.property(l4Frame, fc.integer({ min: 1, max: 1500 }), fc.integer({ min: 0, max: 7 }), ({ b, partial, tcp, v6, payload, seq, flags, vlan }, mss, off) => {
        const p = place(partial, off);
        const vnet = new VnetHeader();
        const gso = tcp ? (v6 ? VNET_GSO_TCPV6 : VNET_GSO_TCPV4) : VNET_GSO_UDP_L4;
        const hb = new Uint8Array(10);
        writeVnetHeader(new DataView(hb.buffer), 0, VNET_F_NEEDS_CSUM, gso, 0, mss, b.l4, b.csumOffset);
        expect(vnet.read(new DataView(hb.buffer), 0, partial.length)).toBe(ParseStatus.OK);
        const out = new Uint8Array(b.l4 + b.l4Len + mss);
        const segs: Uint8Array[] = [];
        const st = segmentGso(p.buf, p.dv, off, p.len, vnet, out, new DataView(out.buffer), { segment: (buf, o, l) => segs.push(Uint8Array.from(buf.subarray(o, o + l))) });
        expect(st).toBe(ParseStatus.OK);
        expect(segs.length).toBe(Math.max(1, Math.ceil(payload.length / mss)));
        const stream: number[] = [];
        segs.forEach((raw, i) => {
          const s = untag(raw, vlan);
          const ins = inspect(s);
          expect(ins.l4ChecksumOk).toBe(true);
          expect(ins.ipChecksumOk).toBe(true);
          const body = s.subarray(ins.l4 + b.l4Len, ins.l4 + ins.l4Total);
          expect(body.length).toBeLessThanOrEqual(mss);
          expect(s.length).toBe(ins.l4 + ins.l4Total);
          const sdv = new DataView(s.buffer, s.byteOffset, s.length);
          if (tcp) {
            expect(sdv.getUint32(ins.l4 + 4)).toBe((seq + stream.length) >>> 0);
            let want = flags;
            if (i !== segs.length - 1) want &= ~(TCP_FIN | TCP_PSH);
            if (i !== 0) want &= ~TCP_CWR;
            expect(s[ins.l4 + 13]).toBe(want);
          } else {
            expect(sdv.getUint16(ins.l4 + 4)).toBe(ins.l4Total);
          }
          if (!v6) expect(sdv.getUint16(18)).toBe((0x1000 + i) & 0xffff);
          stream.push(...body);
        });
        expect(Uint8Array.from(stream)).toEqual(payload);
      }),
      150,
    );
  });

  it('segmentGso on any bytes and any header: a status, never an exception, every segment inside `out`', () => {
    const statuses = new Set<number>(Object.values(ParseStatus));
    const gsoType = fc.constantFrom(VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_GSO_TCPV6, VNET_GSO_UDP_L4, 3, 0x81, 7);
    check(
      fc.property(fc.uint8Array({ maxLength: 200 }), u8, gsoType, u16, u16, u16, fc.integer({ min: 0, max: 7 }), fc.constantFrom(0x0800, 0x86dd, 0x8100), (bytes, flags, gso, mss, cs, co, off, type) => {
        if (bytes.length >= 14) {
          bytes[12] = type >> 8;
          bytes[13] = type & 255;
          if (bytes.length > 14) bytes[14] = type === 0x0800 ? 0x45 : 0x60;
        }
        const p = place(bytes, off);
        const vnet = new VnetHeader();
        const hb = new Uint8Array(10);
        writeVnetHeader(new DataView(hb.buffer), 0, flags, gso, 0, mss % 300, cs % 120, co % 40);
        if (vnet.read(new DataView(hb.buffer), 0, bytes.length) !== ParseStatus.OK) return;
        const out = new Uint8Array(256);
        const st = segmentGso(p.buf, p.dv, off, p.len, vnet, out, new DataView(out.buffer), {
          segment: (buf, o, l) => {
            expect(buf).toBe(out);
            expect(o + l).toBeLessThanOrEqual(out.length);
          },
        });
        expect(statuses).toContain(st);
      }),
      500,
    );
  });
});

describe('software offloads on damaged frames', () => {
  // A valid GSO frame with a few bytes overwritten and the header fields nudged: reaches the
  // checks deep inside segmentGso() that random bytes never get past.
  const damaged = fc.tuple(
    l4Frame,
    fc.array(fc.tuple(fc.nat(), u8), { minLength: 1, maxLength: 4 }),
    fc.integer({ min: 1, max: 1500 }),
    fc.integer({ min: -24, max: 24 }),
    fc.integer({ min: -4, max: 4 }),
    fc.constantFrom(VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_GSO_TCPV6, VNET_GSO_UDP_L4),
    fc.integer({ min: -30, max: 30 }),
  );

  it('segmentGso: a status, never an exception; every segment fits `out`', () => {
    const statuses = new Set<number>(Object.values(ParseStatus));
    check(
      fc.property(damaged, ([{ b, partial }, edits, mss, dStart, dOff, gso, dLen]) => {
        const bytes = Uint8Array.from(partial.subarray(0, Math.max(0, partial.length + Math.min(0, dLen))));
        for (const [at, v] of edits) if (bytes.length) bytes[at % bytes.length] = v;
        const p = place(bytes, 3);
        const hb = new Uint8Array(10);
        writeVnetHeader(new DataView(hb.buffer), 0, VNET_F_NEEDS_CSUM, gso, 0, mss, Math.max(0, b.l4 + dStart), Math.max(0, b.csumOffset + dOff));
        const vnet = new VnetHeader();
        if (vnet.read(new DataView(hb.buffer), 0, bytes.length) !== ParseStatus.OK) return;
        const out = new Uint8Array(b.l4 + 60 + mss);
        const st = segmentGso(p.buf, p.dv, 3, p.len, vnet, out, new DataView(out.buffer), {
          segment: (buf, o, l) => {
            expect(buf).toBe(out);
            expect(o + l).toBeLessThanOrEqual(out.length);
          },
        });
        expect(statuses).toContain(st);
        expect([ParseStatus.OK, ParseStatus.BAD_OFFLOAD]).toContain(completeChecksum(p.dv, 3, p.len, vnet.csumStart, vnet.csumOffset));
      }),
      300,
    );
  });
});

describe('pcap', () => {
  const record = fc.record({ sec: u32, usec: fc.integer({ min: 0, max: 999_999 }), data: fc.uint8Array({ maxLength: 100 }), extra: fc.integer({ min: 0, max: 1000 }) });

  it('readPcap gives back the records written with the pcap writers', () => {
    check(
      fc.property(fc.array(record, { maxLength: 8 }), fc.integer({ min: 1, max: 262144 }), (records, snaplen) => {
        const file = Buffer.alloc(PCAP_GLOBAL_HEADER_LEN + records.reduce((n, r) => n + PCAP_RECORD_HEADER_LEN + r.data.length, 0));
        const dv = new DataView(file.buffer, file.byteOffset, file.length);
        let off = writePcapGlobalHeader(dv, 0, snaplen);
        for (const r of records) {
          off = writePcapRecordHeader(dv, off, r.sec, r.usec, r.data.length, r.data.length + r.extra);
          file.set(r.data, off);
          off += r.data.length;
        }
        const p = readPcap(file);
        expect([p.snaplen, p.linktype]).toEqual([snaplen, 1]);
        expect(p.records.map((r) => ({ sec: r.sec, usec: r.usec, data: new Uint8Array(r.data), originalLength: r.originalLength }))).toEqual(
          records.map((r) => ({ sec: r.sec, usec: r.usec, data: r.data, originalLength: r.data.length + r.extra })),
        );
        // Any truncation of a non-empty capture is reported, never read as a shorter capture.
        if (file.length > PCAP_GLOBAL_HEADER_LEN) {
          for (const cut of [file.length - 1, PCAP_GLOBAL_HEADER_LEN + 1]) {
            if (cut <= PCAP_GLOBAL_HEADER_LEN || cut >= file.length) continue;
            const boundary = records.reduce<number[]>((acc, r) => [...acc, acc[acc.length - 1] + PCAP_RECORD_HEADER_LEN + r.data.length], [PCAP_GLOBAL_HEADER_LEN]);
            if (boundary.includes(cut)) continue;
            expect(() => readPcap(file.subarray(0, cut))).toThrow(expect.objectContaining({ code: ERR_BAD_PCAP }));
          }
        }
      }),
    );
  });

  it('any bytes read as a capture or fail with ERR_BAD_PCAP', () => {
    const magic = fc.constantFrom(Uint8Array.of(0xd4, 0xc3, 0xb2, 0xa1), Uint8Array.of(0xa1, 0xb2, 0xc3, 0xd4), Uint8Array.of(0x4d, 0x3c, 0xb2, 0xa1));
    check(
      fc.property(fc.uint8Array({ maxLength: 120 }), fc.option(magic), (bytes, m) => {
        const file = Buffer.from(bytes);
        if (m && file.length >= 4) file.set(m, 0);
        throwsOnly(() => readPcap(file), [ERR_BAD_PCAP]);
      }),
      400,
    );
  });

  it('PcapRecordCounter counts the complete records of a stream however it is chunked (either byte order)', () => {
    check(
      fc.property(fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 6 }), fc.boolean(), fc.array(fc.nat(), { maxLength: 6 }), fc.nat(), (datas, be, cuts, cutAt) => {
        const u32 = (b: Buffer, v: number, o: number): number => (be ? b.writeUInt32BE(v, o) : b.writeUInt32LE(v, o));
        const head = Buffer.alloc(24);
        u32(head, 0xa1b2c3d4, 0);
        const recs = datas.map((d) => {
          const r = Buffer.alloc(16 + d.length);
          u32(r, d.length, 8);
          u32(r, d.length, 12);
          r.set(d, 16);
          return r;
        });
        const full = Buffer.concat([head, ...recs]);
        const end = cutAt % (full.length + 1);
        const stream = full.subarray(0, end);
        const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
        const c = new PcapRecordCounter();
        let at = 0;
        for (const p of [...points, stream.length]) {
          c.push(stream.subarray(at, p));
          at = p;
        }
        let complete = 0;
        let off = 24;
        for (const r of recs) {
          if (off + r.length > end) break;
          off += r.length;
          complete++;
        }
        expect(c.valid).toBe(true);
        expect(c.records).toBe(complete);
        expect(c.partial).toBe(end !== off || end < 24);
      }),
      300,
    );
    const junk = new PcapRecordCounter();
    junk.push(Buffer.from('{"not":"pcap"}'));
    expect([junk.valid, junk.records]).toEqual([false, 0]);
  });

  it('regression: a record header cut short is an error, not a silently shorter capture', () => {
    const file = Buffer.alloc(PCAP_GLOBAL_HEADER_LEN + 10);
    writePcapGlobalHeader(new DataView(file.buffer, file.byteOffset, file.length), 0);
    expect(() => readPcap(file)).toThrow(expect.objectContaining({ code: ERR_BAD_PCAP, message: expect.stringMatching(/record header at 24/) }));
  });
});

