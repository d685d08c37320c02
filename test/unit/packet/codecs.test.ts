import { describe, it, expect } from 'vitest';
import { ParseStatus, parseStatusName } from '../../../src/packet/status.js';
import { checksum, finish, pseudoHeaderSumV4, sum16 } from '../../../src/packet/checksum.js';
import { EthernetView, writeEthernetHeader, ETH_P_IPV4, ETH_P_IPV6, ETH_P_ARP } from '../../../src/packet/ethernet.js';
import { ArpView, writeArp, ARP_OP_REQUEST } from '../../../src/packet/arp.js';
import { Ipv4View, writeIpv4Header, setIpv4HeaderChecksum, IPPROTO_TCP, IPV4_FLAG_DF, IPV4_FLAG_MF } from '../../../src/packet/ipv4.js';
import { Ipv6View, writeIpv6Header } from '../../../src/packet/ipv6.js';
import { IcmpView, writeIcmpHeader, setIcmpChecksum, ICMP_ECHO_REQUEST, ICMP_DEST_UNREACH, ICMP_UNREACH_NEEDFRAG } from '../../../src/packet/icmp.js';
import { UdpView, writeUdpHeader } from '../../../src/packet/udp.js';
import { TcpView, TcpOptions, writeTcpHeader, TCP_SYN, TCP_ACK, TCP_PSH } from '../../../src/packet/tcp.js';
import {
  VnetHeader,
  writeVnetHeader,
  writeEmptyVnetHeader,
  VNET_F_NEEDS_CSUM,
  VNET_F_DATA_VALID,
  VNET_GSO_TCPV4,
  VNET_GSO_TCPV6,
  VNET_GSO_UDP,
  VNET_GSO_UDP_L4,
  VNET_GSO_ECN,
  VNET_HDR_LEN,
} from '../../../src/packet/virtio-net.js';
import {
  BROADCAST_MAC,
  isGroupMac,
  isLocalMac,
  macFromBytes,
  macToBytes,
  macToString,
  parseMac,
  readMac,
  writeMac,
} from '../../../src/packet/mac.js';
import { ipv4ToString, ipv6ToString, parseIpv4, parseIpv4Cidr, prefixToMask, tryParseIpv4 } from '../../../src/packet/ip-address.js';
import { readPcap, writePcapGlobalHeader, writePcapRecordHeader, PCAP_GLOBAL_HEADER_LEN, PCAP_RECORD_HEADER_LEN } from '../../../src/packet/pcap.js';
import { InvalidArgumentError } from '../../../src/errors.js';
import { dvOf, hex, naiveChecksum } from '../helpers/frames.js';

// Reference frames generated once with scapy 2.5.0 (/usr/bin/python3), checksums computed by scapy.
const SCAPY = {
  // Ether/IP(id=0x1234, DF, ttl 64)/TCP(40000->80, seq 0x01020304, SYN, win 64240,
  //   options MSS 1460, SAckOK, Timestamp (0x11223344, 0), NOP, WScale 7)
  syn: '02000000000202000000000108004500003c1234400040063c47c000020bc63364029c4000500102030400000000a002faf07bd10000020405b40402080a112233440000000001030307',
  // Ether/IPv6(2001:db8::1 -> ::2, hlim 64)/UDP(5353->53)/"hello, usernet!"
  udp6: '02000000000202000000000186dd600000000017114020010db800000000000000000000000120010db800000000000000000000000214e900350017be7168656c6c6f2c20757365726e657421',
  // Ether(bcast)/ARP who-has 192.0.2.1 tell 192.0.2.11
  arp: 'ffffffffffff02000000000108060001080006040001020000000001c000020b000000000000c0000201',
  // Ether/IP(192.0.2.11 -> 192.0.2.1, id 7)/ICMP echo request id 0x4242 seq 3/"abcdefgh"
  icmp: '020000000002020000000001080045000024000700004001f6c5c000020bc000020108002425424200036162636465666768',
  // Ether/Dot1Q(vlan 100, prio 3)/IP/UDP(1->2)/"x"
  dot1q: '0200000000020200000000018100606408004500001d000100004011f6c2c000020bc000020100010002000903cc78',
  // Ether(0x88a8)/Dot1AD(vlan 200)/Dot1Q(vlan 10)/IPv6/UDP(1->2)
  qinq: '02000000000202000000000188a800c88100000a86dd600000000008114020010db800000000000000000000000120010db8000000000000000000000002000100020008a466',
  // Ether/IPv6/HopByHop/DestOpt/Fragment(offset 0, M, id 9)/UDP(7->9)/"frag"
  ext: '02000000000202000000000186dd600000000024004020010db800000000000000000000000120010db80000000000000000000000023c000104000000002c00010400000000110000010000000900070009000cdc7766726167',
  // Ether/IPv6/Fragment(offset 100, nh UDP)/"tail of a datagram"
  nonFirst: '02000000000202000000000186dd60000000001a2c4020010db800000000000000000000000120010db800000000000000000000000211000320000000097461696c206f66206120646174616772616d',
  // Ether/IP(192.0.2.11 -> 198.51.100.2, id 1)/UDP(1234->53)/"odd-length payload"
  udp4: '02000000000202000000000108004500002e0001000040118e7dc000020bc633640204d20035001a9bed6f64642d6c656e677468207061796c6f6164',
  // Ether/IPv6/TCP(443->50000, seq 1000, ack 2000, PA)/"GET / HTTP/1.1\r\n\r\n"
  tcp6: '02000000000202000000000186dd600000000026064020010db800000000000000000000000120010db800000000000000000000000201bbc350000003e8000007d05018200084e10000474554202f20485454502f312e310d0a0d0a',
};

/** A frame as bytes plus its DataView. */
function frame(name: keyof typeof SCAPY): { b: Buffer; dv: DataView } {
  const b = hex(SCAPY[name]);
  return { b, dv: dvOf(b) };
}

describe('ParseStatus', () => {
  it('has stable names', () => {
    expect(parseStatusName(ParseStatus.OK)).toBe('ok');
    expect(parseStatusName(ParseStatus.BAD_OFFLOAD)).toBe('bad_offload');
    expect(parseStatusName(99)).toBe('status_99');
  });
});

describe('EthernetView', () => {
  it('binds an untagged frame', () => {
    const { b, dv } = frame('syn');
    const e = new EthernetView();
    expect(e.bind(b, dv, 0, b.length)).toBe(ParseStatus.OK);
    expect(e.dst).toBe(0x020000000002);
    expect(e.src).toBe(0x020000000001);
    expect(e.etherType).toBe(ETH_P_IPV4);
    expect(e.vlanId).toBe(-1);
    expect(e.headerLength).toBe(14);
    expect(e.payloadOffset).toBe(14);
    expect(e.payloadLength).toBe(b.length - 14);
  });

  it('binds at an offset inside a larger buffer', () => {
    const inner = hex(SCAPY.arp);
    const b = Buffer.concat([Buffer.alloc(10, 0xee), inner, Buffer.alloc(7, 0xee)]);
    const e = new EthernetView();
    expect(e.bind(b, dvOf(b), 10, inner.length)).toBe(ParseStatus.OK);
    expect(e.dst).toBe(BROADCAST_MAC);
    expect(e.etherType).toBe(ETH_P_ARP);
    expect(e.payloadOffset).toBe(24);
    expect(e.payloadLength).toBe(28);
  });

  it('binds an 802.1Q tagged frame', () => {
    const { b, dv } = frame('dot1q');
    const e = new EthernetView();
    expect(e.bind(b, dv, 0, b.length)).toBe(ParseStatus.OK);
    expect(e.vlanId).toBe(100);
    expect(e.etherType).toBe(ETH_P_IPV4);
    expect(e.headerLength).toBe(18);
    expect(e.payloadLength).toBe(29);
  });

  it('binds a QinQ (802.1ad + 802.1Q) frame and reports the outer VLAN', () => {
    const { b, dv } = frame('qinq');
    const e = new EthernetView();
    expect(e.bind(b, dv, 0, b.length)).toBe(ParseStatus.OK);
    expect(e.vlanId).toBe(200);
    expect(e.etherType).toBe(ETH_P_IPV6);
    expect(e.headerLength).toBe(22);
  });

  it('stops after two tags: a third tag is left as the EtherType', () => {
    const b = hex('020000000002020000000001 8100 0001 8100 0002 8100 0003 0800 00000000');
    const e = new EthernetView();
    expect(e.bind(b, dvOf(b), 0, b.length)).toBe(ParseStatus.OK);
    expect(e.vlanId).toBe(1);
    expect(e.etherType).toBe(0x8100);
    expect(e.headerLength).toBe(22);
  });

  it('reports runts and truncated tags as TRUNCATED', () => {
    const e = new EthernetView();
    const { b, dv } = frame('qinq');
    expect(e.bind(b, dv, 0, 13)).toBe(ParseStatus.TRUNCATED);
    expect(e.bind(b, dv, 0, 0)).toBe(ParseStatus.TRUNCATED);
    // Outer tag needs bytes 14..17.
    expect(e.bind(b, dv, 0, 17)).toBe(ParseStatus.TRUNCATED);
    // Inner tag needs bytes 18..21.
    expect(e.bind(b, dv, 0, 21)).toBe(ParseStatus.TRUNCATED);
    expect(e.bind(b, dv, 0, 22)).toBe(ParseStatus.OK);
    expect(e.payloadLength).toBe(0);
    const q = frame('dot1q');
    expect(e.bind(q.b, q.dv, 0, 17)).toBe(ParseStatus.TRUNCATED);
    expect(e.bind(q.b, q.dv, 0, 18)).toBe(ParseStatus.OK);
  });

  it('forgets the VLAN of the previous frame when re-bound', () => {
    const e = new EthernetView();
    const q = frame('qinq');
    expect(e.bind(q.b, q.dv, 0, q.b.length)).toBe(ParseStatus.OK);
    const u = frame('udp6');
    expect(e.bind(u.b, u.dv, 0, u.b.length)).toBe(ParseStatus.OK);
    expect(e.vlanId).toBe(-1);
    expect(e.headerLength).toBe(14);
    expect(e.etherType).toBe(ETH_P_IPV6);
  });

  it('writeEthernetHeader writes dst, src and type', () => {
    const b = Buffer.alloc(20, 0xaa);
    expect(writeEthernetHeader(dvOf(b), 2, 0xffffffffffff, 0x020000000001, ETH_P_ARP)).toBe(16);
    expect(b.toString('hex')).toBe('aaaaffffffffffff0200000000010806aaaaaaaa');
  });
});

describe('ArpView', () => {
  const ARP_OFF = 14;

  it('decodes a request and writeArp reproduces it byte for byte', () => {
    const { b, dv } = frame('arp');
    const a = new ArpView();
    expect(a.bind(dv, ARP_OFF, 28)).toBe(ParseStatus.OK);
    expect(a.operation).toBe(ARP_OP_REQUEST);
    expect(a.senderMac).toBe(0x020000000001);
    expect(a.senderIp).toBe(0xc000020b);
    expect(a.targetMac).toBe(0);
    expect(a.targetIp).toBe(0xc0000201);
    const out = Buffer.alloc(28);
    expect(writeArp(dvOf(out), 0, ARP_OP_REQUEST, 0x020000000001, 0xc000020b, 0, 0xc0000201)).toBe(28);
    expect(out.equals(b.subarray(ARP_OFF))).toBe(true);
  });

  it('accepts trailing padding (60-byte minimum frame)', () => {
    const b = Buffer.concat([hex(SCAPY.arp), Buffer.alloc(18)]);
    expect(new ArpView().bind(dvOf(b), ARP_OFF, b.length - ARP_OFF)).toBe(ParseStatus.OK);
  });

  it('rejects bogus hardware/protocol sizes as BAD_LENGTH', () => {
    const a = new ArpView();
    const { b, dv } = frame('arp');
    b[ARP_OFF + 4] = 8; // hlen 8
    expect(a.bind(dv, ARP_OFF, 28)).toBe(ParseStatus.BAD_LENGTH);
    b[ARP_OFF + 4] = 6;
    b[ARP_OFF + 5] = 16; // plen 16
    expect(a.bind(dv, ARP_OFF, 28)).toBe(ParseStatus.BAD_LENGTH);
    b[ARP_OFF + 5] = 0;
    expect(a.bind(dv, ARP_OFF, 28)).toBe(ParseStatus.BAD_LENGTH);
  });

  it('reports non-Ethernet hardware or non-IPv4 protocol as UNSUPPORTED', () => {
    const a = new ArpView();
    const { b, dv } = frame('arp');
    b.writeUInt16BE(6, ARP_OFF); // IEEE 802
    expect(a.bind(dv, ARP_OFF, 28)).toBe(ParseStatus.UNSUPPORTED);
    b.writeUInt16BE(1, ARP_OFF);
    b.writeUInt16BE(0x86dd, ARP_OFF + 2);
    expect(a.bind(dv, ARP_OFF, 28)).toBe(ParseStatus.UNSUPPORTED);
  });

  it('reports fewer than 28 bytes as TRUNCATED', () => {
    const { dv } = frame('arp');
    expect(new ArpView().bind(dv, ARP_OFF, 27)).toBe(ParseStatus.TRUNCATED);
    expect(new ArpView().bind(dv, ARP_OFF, 0)).toBe(ParseStatus.TRUNCATED);
  });
});

describe('Ipv4View', () => {
  const L3 = 14;

  it('decodes a valid header', () => {
    const { b, dv } = frame('syn');
    const ip = new Ipv4View();
    expect(ip.bind(dv, L3, b.length - L3)).toBe(ParseStatus.OK);
    expect(ip.headerLength).toBe(20);
    expect(ip.totalLength).toBe(60);
    expect(ip.tos).toBe(0);
    expect(ip.id).toBe(0x1234);
    expect(ip.flagsFragment).toBe(IPV4_FLAG_DF);
    expect(ip.fragmentOffset).toBe(0);
    expect(ip.moreFragments).toBe(false);
    expect(ip.ttl).toBe(64);
    expect(ip.protocol).toBe(IPPROTO_TCP);
    expect(ip.checksum).toBe(0x3c47);
    expect(ip.src).toBe(0xc000020b);
    expect(ip.dst).toBe(0xc6336402);
    expect(ip.payloadOffset).toBe(34);
    expect(ip.payloadLength).toBe(40);
    expect(ip.checksumValid()).toBe(true);
  });

  it('detects a corrupted header checksum', () => {
    const { b, dv } = frame('syn');
    b[L3 + 8] = 63;
    const ip = new Ipv4View();
    expect(ip.bind(dv, L3, b.length - L3)).toBe(ParseStatus.OK);
    expect(ip.checksumValid()).toBe(false);
  });

  it('decodes fragment fields', () => {
    const { b, dv } = frame('syn');
    b.writeUInt16BE(IPV4_FLAG_MF | 185, L3 + 6);
    const ip = new Ipv4View();
    expect(ip.bind(dv, L3, b.length - L3)).toBe(ParseStatus.OK);
    expect(ip.moreFragments).toBe(true);
    expect(ip.fragmentOffset).toBe(1480);
  });

  it('rejects a wrong version', () => {
    const { b, dv } = frame('syn');
    b[L3] = 0x65;
    expect(new Ipv4View().bind(dv, L3, b.length - L3)).toBe(ParseStatus.BAD_VERSION);
    b[L3] = 0x05;
    expect(new Ipv4View().bind(dv, L3, b.length - L3)).toBe(ParseStatus.BAD_VERSION);
  });

  it('rejects IHL < 5', () => {
    const { b, dv } = frame('syn');
    for (const ihl of [0, 1, 4]) {
      b[L3] = 0x40 | ihl;
      expect(new Ipv4View().bind(dv, L3, b.length - L3), `ihl ${ihl}`).toBe(ParseStatus.BAD_HEADER_LENGTH);
    }
  });

  it('rejects an IHL beyond the buffer', () => {
    const { b, dv } = frame('syn');
    b[L3] = 0x4f; // 60 bytes of header
    expect(new Ipv4View().bind(dv, L3, 40)).toBe(ParseStatus.BAD_HEADER_LENGTH);
    // ... but accepts it when the bytes are there (and the total length covers it).
    b.writeUInt16BE(60, L3 + 2);
    const ip = new Ipv4View();
    expect(ip.bind(dv, L3, 60)).toBe(ParseStatus.OK);
    expect(ip.headerLength).toBe(60);
    expect(ip.payloadLength).toBe(0);
  });

  it('rejects a total length beyond the buffer or below the header length', () => {
    const { b, dv } = frame('syn');
    expect(new Ipv4View().bind(dv, L3, 59)).toBe(ParseStatus.BAD_LENGTH);
    b.writeUInt16BE(19, L3 + 2);
    expect(new Ipv4View().bind(dv, L3, 60)).toBe(ParseStatus.BAD_LENGTH);
    b.writeUInt16BE(0, L3 + 2);
    expect(new Ipv4View().bind(dv, L3, 60)).toBe(ParseStatus.BAD_LENGTH);
  });

  it('reports fewer than 20 bytes as TRUNCATED', () => {
    const { dv } = frame('syn');
    expect(new Ipv4View().bind(dv, L3, 19)).toBe(ParseStatus.TRUNCATED);
  });

  it('allows Ethernet padding after the total length', () => {
    // The ICMP echo is 36 bytes of IP; pad the frame to the 60-byte Ethernet minimum.
    const b = Buffer.concat([hex(SCAPY.icmp), Buffer.alloc(10)]);
    expect(b.length).toBe(60);
    const ip = new Ipv4View();
    expect(ip.bind(dvOf(b), L3, b.length - L3)).toBe(ParseStatus.OK);
    expect(ip.totalLength).toBe(36);
    expect(ip.payloadLength).toBe(16);
  });

  it('writeIpv4Header writes a valid header identical to scapy', () => {
    const { b } = frame('syn');
    const out = Buffer.alloc(20);
    const dv = dvOf(out);
    expect(writeIpv4Header(dv, 0, { totalLength: 60, id: 0x1234, protocol: IPPROTO_TCP, src: 0xc000020b, dst: 0xc6336402 })).toBe(20);
    expect(out.toString('hex')).toBe(b.subarray(L3, L3 + 20).toString('hex'));
    const ip = new Ipv4View();
    expect(ip.bind(dv, 0, 20)).toBe(ParseStatus.BAD_LENGTH); // total length says 60
    const full = Buffer.alloc(60);
    out.copy(full);
    expect(ip.bind(dvOf(full), 0, 60)).toBe(ParseStatus.OK);
    expect(ip.checksumValid()).toBe(true);
  });

  it('writeIpv4Header honours every field and always produces a valid checksum', () => {
    const b = Buffer.alloc(1500);
    const dv = dvOf(b);
    const fields = [
      { tos: 0xb8, totalLength: 1500, id: 0xffff, flagsFragment: IPV4_FLAG_MF | 0x1fff, ttl: 1, protocol: 17, src: 0xffffffff, dst: 0 },
      { totalLength: 20, protocol: 1, src: 0x0a000264, dst: 0x0a000202 },
      { totalLength: 576, id: 1, flagsFragment: 0, ttl: 255, protocol: 6, src: 0x80000000, dst: 0x7fffffff },
    ];
    for (const f of fields) {
      writeIpv4Header(dv, 0, f);
      const ip = new Ipv4View();
      expect(ip.bind(dv, 0, 1500)).toBe(ParseStatus.OK);
      expect(ip.checksumValid()).toBe(true);
      expect(ip.tos).toBe(f.tos ?? 0);
      expect(ip.totalLength).toBe(f.totalLength);
      expect(ip.id).toBe(f.id ?? 0);
      expect(ip.flagsFragment).toBe(f.flagsFragment ?? IPV4_FLAG_DF);
      expect(ip.ttl).toBe(f.ttl ?? 64);
      expect(ip.protocol).toBe(f.protocol);
      expect(ip.src).toBe(f.src);
      expect(ip.dst).toBe(f.dst);
      expect(checksum(dv, 0, 20)).toBe(0);
    }
  });

  it('setIpv4HeaderChecksum covers IPv4 options', () => {
    const b = Buffer.alloc(28);
    const dv = dvOf(b);
    writeIpv4Header(dv, 0, { totalLength: 28, protocol: 17, src: 1, dst: 2 });
    b[0] = 0x46; // IHL 6: one word of options
    b.writeUInt32BE(0x94040000, 20); // Router Alert
    setIpv4HeaderChecksum(dv, 0);
    const ip = new Ipv4View();
    expect(ip.bind(dv, 0, 28)).toBe(ParseStatus.OK);
    expect(ip.headerLength).toBe(24);
    expect(ip.checksumValid()).toBe(true);
    expect(b.readUInt16BE(10)).toBe(naiveChecksum(Buffer.concat([b.subarray(0, 10), b.subarray(12, 24)])));
  });
});

describe('Ipv6View', () => {
  const L3 = 14;

  it('decodes a valid header and finds UDP right after it', () => {
    const { b, dv } = frame('udp6');
    const ip = new Ipv6View();
    expect(ip.bind(dv, L3, b.length - L3)).toBe(ParseStatus.OK);
    expect(ip.payloadLength).toBe(23);
    expect(ip.nextHeader).toBe(17);
    expect(ip.hopLimit).toBe(64);
    expect(ip.trafficClass).toBe(0);
    expect(ip.flowLabel).toBe(0);
    expect(ip.srcOffset).toBe(22);
    expect(ip.dstOffset).toBe(38);
    expect(ip.payloadOffset).toBe(54);
    expect(ip.findUpperLayer()).toBe(ParseStatus.OK);
    expect(ip.upperProtocol).toBe(17);
    expect(ip.upperOffset).toBe(54);
  });

  it('decodes traffic class and flow label', () => {
    const { b, dv } = frame('udp6');
    b.writeUInt32BE(0x6abcdef1, L3);
    const ip = new Ipv6View();
    expect(ip.bind(dv, L3, b.length - L3)).toBe(ParseStatus.OK);
    expect(ip.trafficClass).toBe(0xab);
    expect(ip.flowLabel).toBe(0xcdef1);
  });

  it('rejects a truncated header, a wrong version and a payload length beyond the buffer', () => {
    const { b, dv } = frame('udp6');
    expect(new Ipv6View().bind(dv, L3, 39)).toBe(ParseStatus.TRUNCATED);
    expect(new Ipv6View().bind(dv, L3, 40 + 22)).toBe(ParseStatus.BAD_LENGTH);
    b.writeUInt16BE(0xffff, L3 + 4);
    expect(new Ipv6View().bind(dv, L3, b.length - L3)).toBe(ParseStatus.BAD_LENGTH);
    b[L3] = 0x45;
    expect(new Ipv6View().bind(dv, L3, b.length - L3)).toBe(ParseStatus.BAD_VERSION);
  });

  it('allows trailing bytes after the payload length (padding)', () => {
    const b = Buffer.concat([hex(SCAPY.qinq), Buffer.alloc(8)]);
    const ip = new Ipv6View();
    expect(ip.bind(dvOf(b), 22, b.length - 22)).toBe(ParseStatus.OK);
    expect(ip.payloadLength).toBe(8);
  });

  it('walks hop-by-hop, destination options and a first fragment to the upper layer', () => {
    const { b, dv } = frame('ext');
    const ip = new Ipv6View();
    expect(ip.bind(dv, L3, b.length - L3)).toBe(ParseStatus.OK);
    expect(ip.nextHeader).toBe(0);
    expect(ip.findUpperLayer()).toBe(ParseStatus.OK);
    expect(ip.upperProtocol).toBe(17);
    expect(ip.upperOffset).toBe(L3 + 40 + 8 + 8 + 8);
    const udp = new UdpView();
    expect(udp.bind(dv, ip.upperOffset, L3 + 40 + ip.payloadLength - ip.upperOffset)).toBe(ParseStatus.OK);
    expect(udp.srcPort).toBe(7);
    expect(udp.dstPort).toBe(9);
  });

  it('walks a routing header with a length in 8-byte units beyond the first', () => {
    // IPv6 nh=43 | Routing(nh=6, len=1 -> 16 bytes) | TCP header (20 bytes)
    const b = Buffer.alloc(40 + 16 + 20);
    b[0] = 0x60;
    b.writeUInt16BE(36, 4);
    b[6] = 43;
    b[40] = 6;
    b[41] = 1;
    const ip = new Ipv6View();
    expect(ip.bind(dvOf(b), 0, b.length)).toBe(ParseStatus.OK);
    expect(ip.findUpperLayer()).toBe(ParseStatus.OK);
    expect(ip.upperProtocol).toBe(6);
    expect(ip.upperOffset).toBe(56);
  });

  it('reports a non-first fragment as UNSUPPORTED (no upper-layer header in it)', () => {
    const { b, dv } = frame('nonFirst');
    const ip = new Ipv6View();
    expect(ip.bind(dv, L3, b.length - L3)).toBe(ParseStatus.OK);
    expect(ip.findUpperLayer()).toBe(ParseStatus.UNSUPPORTED);
    expect(ip.upperProtocol).toBe(-1);
  });

  it('reports extension headers running past the payload as BAD_LENGTH', () => {
    const { b, dv } = frame('ext');
    const ip = new Ipv6View();
    // Hop-by-hop header length 5 (48 bytes) in a 36-byte payload.
    b[L3 + 41] = 5;
    expect(ip.bind(dv, L3, b.length - L3)).toBe(ParseStatus.OK);
    expect(ip.findUpperLayer()).toBe(ParseStatus.BAD_LENGTH);
    b[L3 + 41] = 0;
    // Destination options length 3 (32 bytes) overruns too.
    b[L3 + 49] = 3;
    expect(ip.bind(dv, L3, b.length - L3)).toBe(ParseStatus.OK);
    expect(ip.findUpperLayer()).toBe(ParseStatus.BAD_LENGTH);
    b[L3 + 49] = 0;
    // Payload too short to hold even the first 8 bytes of the hop-by-hop header.
    b.writeUInt16BE(4, L3 + 4);
    expect(ip.bind(dv, L3, b.length - L3)).toBe(ParseStatus.OK);
    expect(ip.findUpperLayer()).toBe(ParseStatus.BAD_LENGTH);
    // Payload ends inside the fragment header.
    b.writeUInt16BE(20, L3 + 4);
    expect(ip.bind(dv, L3, b.length - L3)).toBe(ParseStatus.OK);
    expect(ip.findUpperLayer()).toBe(ParseStatus.BAD_LENGTH);
  });

  it('judges extension headers against the payload length, not the bytes in the buffer', () => {
    // The routing header is present in the buffer but the payload length says only 8 bytes.
    const b = Buffer.alloc(40 + 16 + 20);
    b[0] = 0x60;
    b.writeUInt16BE(8, 4);
    b[6] = 43;
    b[40] = 6;
    b[41] = 1;
    const ip = new Ipv6View();
    expect(ip.bind(dvOf(b), 0, b.length)).toBe(ParseStatus.OK);
    expect(ip.findUpperLayer()).toBe(ParseStatus.BAD_LENGTH);
  });

  it('gives up on an endless chain of extension headers instead of looping', () => {
    const n = 12;
    const b = Buffer.alloc(40 + 8 * n);
    b[0] = 0x60;
    b.writeUInt16BE(8 * n, 4);
    b[6] = 60;
    for (let i = 0; i < n; i++) b[40 + 8 * i] = 60; // destination options, again and again
    const ip = new Ipv6View();
    expect(ip.bind(dvOf(b), 0, b.length)).toBe(ParseStatus.OK);
    expect(ip.findUpperLayer()).toBe(ParseStatus.UNSUPPORTED);
  });

  it('writeIpv6Header reproduces scapy', () => {
    const { b } = frame('udp6');
    const out = Buffer.alloc(40);
    expect(writeIpv6Header(dvOf(out), 0, 23, 17, 64, b, L3 + 8, b, L3 + 24)).toBe(40);
    expect(out.equals(b.subarray(L3, L3 + 40))).toBe(true);
  });
});

describe('IcmpView', () => {
  const L4 = 34;

  it('decodes an echo request and verifies its checksum', () => {
    const { b, dv } = frame('icmp');
    const icmp = new IcmpView();
    expect(icmp.bind(dv, L4, b.length - L4)).toBe(ParseStatus.OK);
    expect(icmp.type).toBe(ICMP_ECHO_REQUEST);
    expect(icmp.code).toBe(0);
    expect(icmp.checksum).toBe(0x2425);
    expect(icmp.identifier).toBe(0x4242);
    expect(icmp.sequence).toBe(3);
    expect(icmp.isError).toBe(false);
    expect(icmp.payloadOffset).toBe(L4 + 8);
    expect(icmp.payloadLength).toBe(8);
    expect(icmp.checksumValid()).toBe(true);
    b[b.length - 1] ^= 1;
    expect(icmp.checksumValid()).toBe(false);
  });

  it('writeIcmpHeader + setIcmpChecksum reproduce scapy', () => {
    const { b } = frame('icmp');
    const out = Buffer.from(b.subarray(L4));
    out.fill(0, 0, 8);
    const dv = dvOf(out);
    expect(writeIcmpHeader(dv, 0, ICMP_ECHO_REQUEST, 0, (0x4242 << 16) | 3)).toBe(8);
    expect(dv.getUint16(2)).toBe(0);
    setIcmpChecksum(dv, 0, out.length);
    expect(out.equals(b.subarray(L4))).toBe(true);
  });

  it('checksums odd-length messages', () => {
    const out = Buffer.alloc(8 + 3);
    const dv = dvOf(out);
    writeIcmpHeader(dv, 0, ICMP_ECHO_REQUEST, 0, 0x00010001);
    out.write('abc', 8);
    setIcmpChecksum(dv, 0, out.length);
    const icmp = new IcmpView();
    expect(icmp.bind(dv, 0, out.length)).toBe(ParseStatus.OK);
    expect(icmp.checksumValid()).toBe(true);
    const zeroed = Buffer.from(out);
    zeroed.writeUInt16BE(0, 2);
    expect(icmp.checksum).toBe(naiveChecksum(zeroed));
  });

  it('recognises error messages and reads the next-hop MTU', () => {
    const out = Buffer.alloc(8 + 28);
    const dv = dvOf(out);
    writeIcmpHeader(dv, 0, ICMP_DEST_UNREACH, ICMP_UNREACH_NEEDFRAG, 1400);
    const icmp = new IcmpView();
    expect(icmp.bind(dv, 0, out.length)).toBe(ParseStatus.OK);
    expect(icmp.isError).toBe(true);
    expect(icmp.nextHopMtu).toBe(1400);
    for (const [type, err] of [[0, false], [3, true], [4, true], [5, true], [8, false], [11, true], [12, true], [13, false]] as const) {
      out[0] = type;
      expect(icmp.isError, `type ${type}`).toBe(err);
    }
  });

  it('reports fewer than 8 bytes as TRUNCATED', () => {
    const { dv } = frame('icmp');
    expect(new IcmpView().bind(dv, L4, 7)).toBe(ParseStatus.TRUNCATED);
  });
});

describe('UdpView', () => {
  const L4 = 34;

  it('decodes a datagram', () => {
    const { b, dv } = frame('udp4');
    const u = new UdpView();
    expect(u.bind(dv, L4, b.length - L4)).toBe(ParseStatus.OK);
    expect(u.srcPort).toBe(1234);
    expect(u.dstPort).toBe(53);
    expect(u.length).toBe(26);
    expect(u.checksum).toBe(0x9bed);
    expect(u.payloadOffset).toBe(L4 + 8);
    expect(u.payloadLength).toBe(18);
    expect(b.subarray(u.payloadOffset, u.payloadOffset + u.payloadLength).toString()).toBe('odd-length payload');
    // And scapy's checksum verifies over the odd-length datagram.
    expect(finish(sum16(dv, L4, 26, pseudoHeaderSumV4(0xc000020b, 0xc6336402, 17, 26)))).toBe(0);
  });

  it('accepts an IP length larger than the UDP length field', () => {
    const { dv } = frame('udp4');
    const u = new UdpView();
    expect(u.bind(dv, L4, 40)).toBe(ParseStatus.OK);
    expect(u.length).toBe(26);
  });

  it('rejects a length field below 8 or beyond the IP payload', () => {
    const { b, dv } = frame('udp4');
    expect(new UdpView().bind(dv, L4, 25)).toBe(ParseStatus.BAD_LENGTH);
    for (const l of [0, 7]) {
      b.writeUInt16BE(l, L4 + 4);
      expect(new UdpView().bind(dv, L4, 26), `length ${l}`).toBe(ParseStatus.BAD_LENGTH);
    }
    b.writeUInt16BE(8, L4 + 4);
    const u = new UdpView();
    expect(u.bind(dv, L4, 26)).toBe(ParseStatus.OK);
    expect(u.payloadLength).toBe(0);
  });

  it('reports fewer than 8 bytes as TRUNCATED', () => {
    const { dv } = frame('udp4');
    expect(new UdpView().bind(dv, L4, 7)).toBe(ParseStatus.TRUNCATED);
  });

  it('writeUdpHeader writes the fields and a zero checksum', () => {
    const out = Buffer.alloc(8, 0xff);
    expect(writeUdpHeader(dvOf(out), 0, 1234, 53, 26)).toBe(8);
    expect(out.toString('hex')).toBe('04d20035001a0000');
  });
});

describe('TcpView', () => {
  const L4 = 34;

  it('decodes a SYN and its options (MSS, SACK-permitted, timestamps, window scale)', () => {
    const { dv } = frame('syn');
    const t = new TcpView();
    expect(t.bind(dv, L4, 40)).toBe(ParseStatus.OK);
    expect(t.srcPort).toBe(40000);
    expect(t.dstPort).toBe(80);
    expect(t.seq).toBe(0x01020304);
    expect(t.ack).toBe(0);
    expect(t.flags).toBe(TCP_SYN);
    expect(t.window).toBe(64240);
    expect(t.checksum).toBe(0x7bd1);
    expect(t.urgentPointer).toBe(0);
    expect(t.headerLength).toBe(40);
    expect(t.payloadOffset).toBe(L4 + 40);
    expect(t.payloadLength).toBe(0);
    const o = new TcpOptions();
    expect(t.readOptions(o)).toBe(ParseStatus.OK);
    expect(o.mss).toBe(1460);
    expect(o.sackPermitted).toBe(true);
    expect(o.timestampValue).toBe(0x11223344);
    expect(o.timestampEcho).toBe(0);
    expect(o.windowScale).toBe(7);
  });

  it('decodes a data segment over IPv6', () => {
    const { dv } = frame('tcp6');
    const t = new TcpView();
    expect(t.bind(dv, 54, 38)).toBe(ParseStatus.OK);
    expect(t.flags).toBe(TCP_PSH | TCP_ACK);
    expect(t.seq).toBe(1000);
    expect(t.ack).toBe(2000);
    expect(t.payloadLength).toBe(18);
    const o = new TcpOptions();
    o.mss = 99;
    expect(t.readOptions(o)).toBe(ParseStatus.OK);
    expect(o.mss).toBe(-1); // reset: no options in this segment
    expect(o.windowScale).toBe(-1);
    expect(o.sackPermitted).toBe(false);
    expect(o.timestampValue).toBe(-1);
  });

  it('rejects a data offset below 5 or beyond the segment', () => {
    const { b, dv } = frame('syn');
    for (const doff of [0, 4]) {
      b[L4 + 12] = doff << 4;
      expect(new TcpView().bind(dv, L4, 40), `doff ${doff}`).toBe(ParseStatus.BAD_HEADER_LENGTH);
    }
    b[L4 + 12] = 0xa0;
    expect(new TcpView().bind(dv, L4, 39)).toBe(ParseStatus.BAD_HEADER_LENGTH);
    b[L4 + 12] = 0xf0; // 60 bytes
    expect(new TcpView().bind(dv, L4, 40)).toBe(ParseStatus.BAD_HEADER_LENGTH);
    expect(new TcpView().bind(dv, L4, 19)).toBe(ParseStatus.TRUNCATED);
  });

  /** A TCP header (data offset from the options' length) followed by nothing. */
  function withOptions(opts: string): TcpView {
    const o = hex(opts);
    const b = Buffer.alloc(20 + o.length);
    const dv = dvOf(b);
    writeTcpHeader(dv, 0, { srcPort: 1, dstPort: 2, seq: 0, ack: 0, flags: TCP_SYN, window: 0, headerLength: 20 + o.length });
    o.copy(b, 20);
    const t = new TcpView();
    expect(t.bind(dv, 0, b.length)).toBe(ParseStatus.OK);
    return t;
  }

  it('returns BAD_LENGTH (and does not loop) on option lengths 0, 1 and overruns', () => {
    const o = new TcpOptions();
    expect(withOptions('02000000').readOptions(o)).toBe(ParseStatus.BAD_LENGTH); // MSS, length 0
    expect(withOptions('02010000').readOptions(o)).toBe(ParseStatus.BAD_LENGTH); // MSS, length 1
    expect(withOptions('fe000000').readOptions(o)).toBe(ParseStatus.BAD_LENGTH); // unknown kind, length 0
    expect(withOptions('0208 05b4').readOptions(o)).toBe(ParseStatus.BAD_LENGTH); // MSS claims 8 bytes in 4
    expect(withOptions('01010108').readOptions(o)).toBe(ParseStatus.BAD_LENGTH); // kind at the last byte, no length
    expect(withOptions('0204 05b4 080a 1122 3344 0000').readOptions(o)).toBe(ParseStatus.BAD_LENGTH); // TS overruns
  });

  it('stops at End of Option List and skips NOPs and unknown options', () => {
    const o = new TcpOptions();
    // NOP NOP | unknown kind 30 len 4 | MSS 1400 | EOL | garbage that must not be parsed
    expect(withOptions('0101 1e04 0000 0204 0578 00 02 00 00 ff ff').readOptions(o)).toBe(ParseStatus.OK);
    expect(o.mss).toBe(1400);
  });

  it('ignores known options with the wrong length and clamps the window scale to 14', () => {
    const o = new TcpOptions();
    // MSS with length 3 | WScale 20 | SACK-permitted with length 3 | NOP NOP NOP
    expect(withOptions('020305 030314 040300 010101').readOptions(o)).toBe(ParseStatus.OK);
    expect(o.mss).toBe(-1);
    expect(o.windowScale).toBe(14);
    expect(o.sackPermitted).toBe(false);
  });

  it('writeTcpHeader + options + pseudo-header checksum reproduce the scapy SYN', () => {
    const { b } = frame('syn');
    const out = Buffer.alloc(40);
    const dv = dvOf(out);
    const optOff = writeTcpHeader(dv, 0, { srcPort: 40000, dstPort: 80, seq: 0x01020304, ack: 0, flags: TCP_SYN, window: 64240, headerLength: 40 });
    expect(optOff).toBe(20);
    hex('020405b40402080a112233440000000001030307').copy(out, optOff);
    dv.setUint16(16, finish(sum16(dv, 0, 40, pseudoHeaderSumV4(0xc000020b, 0xc6336402, 6, 40))));
    expect(out.toString('hex')).toBe(b.subarray(L4).toString('hex'));
  });
});

describe('virtio-net header', () => {
  it('writes little-endian fields and reads them back', () => {
    const b = Buffer.alloc(12, 0xee);
    writeVnetHeader(dvOf(b), 1, VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, 66, 1448, 34, 16);
    expect(b.toString('hex')).toBe('ee' + '01' + '01' + '4200' + 'a805' + '2200' + '1000' + 'ee');
    const v = new VnetHeader();
    expect(v.read(dvOf(b), 1, 2000)).toBe(ParseStatus.OK);
    expect(v.flags).toBe(VNET_F_NEEDS_CSUM);
    expect(v.gsoType).toBe(VNET_GSO_TCPV4);
    expect(v.hdrLen).toBe(66);
    expect(v.gsoSize).toBe(1448);
    expect(v.csumStart).toBe(34);
    expect(v.csumOffset).toBe(16);
    expect(v.isGso).toBe(true);
    v.clear();
    expect([v.flags, v.gsoType, v.hdrLen, v.gsoSize, v.csumStart, v.csumOffset, v.isGso]).toEqual([0, 0, 0, 0, 0, 0, false]);
  });

  it('decodes fields above 255 with the right byte order', () => {
    const b = hex('01 00 0201 0403 0605 0807');
    const v = new VnetHeader();
    v.read(dvOf(b), 0, 0xffff);
    expect(v.hdrLen).toBe(0x0102);
    expect(v.gsoSize).toBe(0x0304);
    expect(v.csumStart).toBe(0x0506);
    expect(v.csumOffset).toBe(0x0708);
  });

  it('accepts an all-zero header and DATA_VALID alone', () => {
    const b = Buffer.alloc(VNET_HDR_LEN);
    const v = new VnetHeader();
    expect(v.read(dvOf(b), 0, 60)).toBe(ParseStatus.OK);
    expect(v.isGso).toBe(false);
    b[0] = VNET_F_DATA_VALID;
    expect(v.read(dvOf(b), 0, 60)).toBe(ParseStatus.OK);
  });

  it('rejects NEEDS_CSUM with the checksum field beyond the frame (BAD_OFFLOAD)', () => {
    const b = Buffer.alloc(VNET_HDR_LEN);
    const v = new VnetHeader();
    writeVnetHeader(dvOf(b), 0, VNET_F_NEEDS_CSUM, 0, 0, 0, 34, 16);
    expect(v.read(dvOf(b), 0, 52)).toBe(ParseStatus.OK); // field at 50..51: exactly fits
    expect(v.read(dvOf(b), 0, 51)).toBe(ParseStatus.BAD_OFFLOAD);
    writeVnetHeader(dvOf(b), 0, VNET_F_NEEDS_CSUM, 0, 0, 0, 0xffff, 0xffff);
    expect(v.read(dvOf(b), 0, 65535)).toBe(ParseStatus.BAD_OFFLOAD);
    // Without NEEDS_CSUM the positions are not used, hence not judged.
    writeVnetHeader(dvOf(b), 0, 0, 0, 0, 0, 0xffff, 0xffff);
    expect(v.read(dvOf(b), 0, 60)).toBe(ParseStatus.OK);
  });

  it('rejects unknown GSO types as UNSUPPORTED', () => {
    const b = Buffer.alloc(VNET_HDR_LEN);
    const v = new VnetHeader();
    for (const type of [VNET_GSO_UDP, 2, 6, 0x7f, VNET_GSO_UDP | VNET_GSO_ECN]) {
      writeVnetHeader(dvOf(b), 0, VNET_F_NEEDS_CSUM, type, 54, 1400, 34, 6);
      expect(v.read(dvOf(b), 0, 2000), `gso type ${type}`).toBe(ParseStatus.UNSUPPORTED);
    }
  });

  it('accepts the known GSO types, with or without the ECN bit', () => {
    const b = Buffer.alloc(VNET_HDR_LEN);
    const v = new VnetHeader();
    for (const type of [VNET_GSO_TCPV4, VNET_GSO_TCPV6, VNET_GSO_UDP_L4, VNET_GSO_TCPV4 | VNET_GSO_ECN, VNET_GSO_TCPV6 | VNET_GSO_ECN]) {
      writeVnetHeader(dvOf(b), 0, VNET_F_NEEDS_CSUM, type, 66, 1448, 34, 16);
      expect(v.read(dvOf(b), 0, 2000), `gso type ${type}`).toBe(ParseStatus.OK);
      expect(v.isGso).toBe(true);
    }
  });

  it('rejects GSO with gso_size 0, or without NEEDS_CSUM (BAD_OFFLOAD)', () => {
    const b = Buffer.alloc(VNET_HDR_LEN);
    const v = new VnetHeader();
    writeVnetHeader(dvOf(b), 0, VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, 66, 0, 34, 16);
    expect(v.read(dvOf(b), 0, 2000)).toBe(ParseStatus.BAD_OFFLOAD);
    writeVnetHeader(dvOf(b), 0, 0, VNET_GSO_TCPV4, 66, 1448, 34, 16);
    expect(v.read(dvOf(b), 0, 2000)).toBe(ParseStatus.BAD_OFFLOAD);
  });

  it('writeEmptyVnetHeader zeroes exactly 10 bytes', () => {
    const b = Buffer.alloc(14, 0xff);
    writeEmptyVnetHeader(dvOf(b), 2);
    expect(b.toString('hex')).toBe('ffff' + '00'.repeat(10) + 'ffff');
  });
});

describe('MAC helpers', () => {
  it('parses colon and dash forms, any case, and formats lower case', () => {
    expect(parseMac('02:42:0a:00:02:64')).toBe(0x02420a000264);
    expect(parseMac('02-42-0A-00-02-64')).toBe(0x02420a000264);
    expect(parseMac(' ff:ff:ff:ff:ff:ff ')).toBe(BROADCAST_MAC);
    expect(parseMac('2:42:a:0:2:64')).toBe(0x02420a000264);
    expect(macToString(0x02420a000264)).toBe('02:42:0a:00:02:64');
    expect(macToString(0)).toBe('00:00:00:00:00:00');
    expect(macToString(BROADCAST_MAC)).toBe('ff:ff:ff:ff:ff:ff');
    expect(macToString(parseMac('01:80:C2:00:00:0E'))).toBe('01:80:c2:00:00:0e');
  });

  it('throws InvalidArgumentError naming the input', () => {
    for (const bad of ['', '02:42:0a:00:02', '02:42:0a:00:02:64:01', '02:42-0a:00:02:64', 'zz:42:0a:00:02:64', '0242.0a00.0264', '002:42:0a:00:02:64']) {
      let err: unknown;
      try {
        parseMac(bad);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(bad)).toBeInstanceOf(InvalidArgumentError);
      expect((err as InvalidArgumentError).code).toBe('ERR_INVALID_ARGUMENT');
      expect((err as Error).message).toContain(`"${bad}"`);
    }
  });

  it('reads and writes MACs in frames', () => {
    const b = Buffer.alloc(8);
    writeMac(dvOf(b), 1, 0xfedcba987654);
    expect(b.toString('hex')).toBe('00fedcba98765400');
    expect(readMac(dvOf(b), 1)).toBe(0xfedcba987654);
    expect(macToBytes(0x020000000001).toString('hex')).toBe('020000000001');
    expect(macFromBytes(hex('aa020000000001'), 1)).toBe(0x020000000001);
    expect(() => macFromBytes(hex('0200000000'))).toThrow(InvalidArgumentError);
  });

  it('classifies group and locally administered addresses', () => {
    expect(isGroupMac(BROADCAST_MAC)).toBe(true);
    expect(isGroupMac(parseMac('01:00:5e:01:02:03'))).toBe(true);
    expect(isGroupMac(parseMac('33:33:00:00:00:fb'))).toBe(true);
    expect(isGroupMac(parseMac('01:80:c2:00:00:00'))).toBe(true);
    expect(isGroupMac(parseMac('02:42:0a:00:02:64'))).toBe(false);
    expect(isGroupMac(parseMac('fe:ff:ff:ff:ff:ff'))).toBe(false);
    expect(isLocalMac(parseMac('02:42:0a:00:02:64'))).toBe(true);
    expect(isLocalMac(parseMac('00:16:3e:00:00:01'))).toBe(false);
  });
});

describe('IPv4/IPv6 address helpers', () => {
  it('parses and formats dotted quads', () => {
    expect(parseIpv4('192.0.2.1')).toBe(0xc0000201);
    expect(parseIpv4('255.255.255.255')).toBe(0xffffffff);
    expect(parseIpv4(' 0.0.0.0 ')).toBe(0);
    expect(ipv4ToString(0xc0000201)).toBe('192.0.2.1');
    expect(ipv4ToString(0xffffffff)).toBe('255.255.255.255');
    expect(ipv4ToString(0)).toBe('0.0.0.0');
    expect(tryParseIpv4('10.0.2.100')).toBe(0x0a000264);
    expect(tryParseIpv4('10.0.2')).toBe(-1);
  });

  it('throws InvalidArgumentError naming a bad IPv4 address', () => {
    for (const bad of ['256.0.2.1', '192.0.2', '192.0.2.4.5', '192.0.02.4', 'a.b.c.d', '', '192.0.2.4/24', '-192.0.2.4']) {
      let err: unknown;
      try {
        parseIpv4(bad);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(bad)).toBeInstanceOf(InvalidArgumentError);
      expect((err as Error).message).toContain(`"${bad}"`);
    }
  });

  it('parses CIDRs and names the input in errors', () => {
    expect(parseIpv4Cidr('10.0.2.100/24')).toEqual({ address: 0x0a000264, prefix: 24 });
    expect(parseIpv4Cidr('10.0.2.100/0')).toEqual({ address: 0x0a000264, prefix: 0 });
    expect(parseIpv4Cidr('10.0.2.100', 32)).toEqual({ address: 0x0a000264, prefix: 32 });
    for (const bad of ['10.0.2.100', '10.0.2.100/33', '10.0.2.100/', '10.0.2.100/-1', '10.0.2.100/x', '10.0.2/24', '300.0.0.1/8']) {
      expect(() => parseIpv4Cidr(bad), bad).toThrow(InvalidArgumentError);
      expect(() => parseIpv4Cidr(bad), bad).toThrow(`"${bad}"`);
    }
  });

  it('computes netmasks', () => {
    expect(prefixToMask(0)).toBe(0);
    expect(prefixToMask(1)).toBe(0x80000000);
    expect(prefixToMask(24)).toBe(0xffffff00);
    expect(prefixToMask(32)).toBe(0xffffffff);
  });

  it('formats IPv6 per RFC 5952', () => {
    const f = (h: string): string => ipv6ToString(hex(h));
    expect(f('20010db8000000000000000000000001')).toBe('2001:db8::1');
    expect(f('00000000000000000000000000000000')).toBe('::');
    expect(f('00000000000000000000000000000001')).toBe('::1');
    expect(f('fe800000000000000000000000000000')).toBe('fe80::');
    // A single zero group is not shortened.
    expect(f('20010db8000000010001000100010001')).toBe('2001:db8:0:1:1:1:1:1');
    // The longest run wins; on a tie, the first.
    expect(f('20010000000000010000000000000001')).toBe('2001:0:0:1::1');
    expect(f('20010db8000000000001000000000001')).toBe('2001:db8::1:0:0:1');
    // At an offset inside a frame.
    expect(ipv6ToString(hex(SCAPY.udp6), 14 + 24)).toBe('2001:db8::2');
  });
});

describe('pcap', () => {
  // wrpcap() of two frames by scapy: little-endian, microseconds, snaplen 65535.
  const SCAPY_PCAP =
    'd4c3b2a1020004000000000000000000ffff000001000000' +
    '00f1536540e201002a0000002a000000' +
    '02000000000202000000000108060001080006040001020000000001c000020b000000000000c0000201' +
    '01f15365020000001500000015000000' +
    '02000000000202000000000188b5757365726e6574';

  it('writes byte-for-byte what scapy writes', () => {
    const frames = [
      { sec: 1700000000, usec: 123456, data: hex('02000000000202000000000108060001080006040001020000000001c000020b000000000000c0000201') },
      { sec: 1700000001, usec: 2, data: hex('02000000000202000000000188b5757365726e6574') },
    ];
    const file = Buffer.alloc(PCAP_GLOBAL_HEADER_LEN + frames.reduce((n, f) => n + PCAP_RECORD_HEADER_LEN + f.data.length, 0));
    const dv = dvOf(file);
    let off = writePcapGlobalHeader(dv, 0, 65535);
    for (const f of frames) {
      off = writePcapRecordHeader(dv, off, f.sec, f.usec, f.data.length, f.data.length);
      f.data.copy(file, off);
      off += f.data.length;
    }
    expect(off).toBe(file.length);
    expect(file.toString('hex')).toBe(SCAPY_PCAP);
  });

  it('round-trips through readPcap, including a truncated capture', () => {
    const full = hex(SCAPY.syn);
    const snap = 40;
    const file = Buffer.alloc(24 + 16 + snap + 16 + full.length);
    const dv = dvOf(file);
    let off = writePcapGlobalHeader(dv, 0, snap);
    off = writePcapRecordHeader(dv, off, 5, 999999, snap, full.length);
    full.copy(file, off, 0, snap);
    off += snap;
    off = writePcapRecordHeader(dv, off, 6, 0, full.length, full.length);
    full.copy(file, off);
    const p = readPcap(file);
    expect(p.snaplen).toBe(snap);
    expect(p.linktype).toBe(1);
    expect(p.records).toHaveLength(2);
    expect(p.records[0]).toMatchObject({ sec: 5, usec: 999999, originalLength: full.length });
    expect(p.records[0].data.equals(full.subarray(0, snap))).toBe(true);
    expect(p.records[1]).toMatchObject({ sec: 6, usec: 0, originalLength: full.length });
    expect(p.records[1].data.equals(full)).toBe(true);
  });

  it('reads scapy output, big-endian files and nanosecond magic', () => {
    const le = readPcap(hex(SCAPY_PCAP));
    expect(le.snaplen).toBe(65535);
    expect(le.records.map((r) => [r.sec, r.usec, r.data.length])).toEqual([
      [1700000000, 123456, 42],
      [1700000001, 2, 21],
    ]);
    const be = hex('a1b2c3d4 0002 0004 00000000 00000000 0000ffff 00000001' + '00000007 00000008 00000003 00000004' + 'aabbcc');
    const pb = readPcap(be);
    expect(pb.linktype).toBe(1);
    expect(pb.records).toHaveLength(1);
    expect(pb.records[0]).toMatchObject({ sec: 7, usec: 8, originalLength: 4 });
    expect(pb.records[0].data.toString('hex')).toBe('aabbcc');
    const ns = hex('4d3cb2a1 0200 0400 00000000 00000000 ffff0000 01000000');
    expect(readPcap(ns).records).toHaveLength(0);
  });

  it('rejects short files, bad magic and records past the end', () => {
    expect(() => readPcap(Buffer.alloc(10))).toThrow(/global header/);
    expect(() => readPcap(Buffer.alloc(24))).toThrow(/magic/);
    const file = Buffer.alloc(24 + 16 + 4);
    const dv = dvOf(file);
    writePcapGlobalHeader(dv, 0);
    writePcapRecordHeader(dv, 24, 0, 0, 5, 5);
    expect(() => readPcap(file)).toThrow(/past the end/);
  });
});
