/**
 * A frame, decoded once into plain fields, for tests to match on and for failure messages to
 * show: `decodeFrame(bytes).tcp?.flags === 'SA'`, and a tcpdump-like one-line summary
 * ("10.0.2.100.40000 > 203.0.113.10.80: Flags [S], seq 1, win 65535, length 0"). Built on the
 * codecs' views; it allocates freely, since it serves tests and tools, never the data path.
 */
import { ARP_OP_REPLY, ARP_OP_REQUEST, ArpView } from '../packet/arp.js';
import { DHCP_CLIENT_PORT, DHCP_SERVER_PORT, DhcpMessage } from '../packet/dhcp.js';
import { ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, EthernetView } from '../packet/ethernet.js';
import { ICMP_DEST_UNREACH, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_TIME_EXCEEDED, IcmpView } from '../packet/icmp.js';
import { ipv4ToString } from '../packet/ip-address.js';
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, Ipv4View } from '../packet/ipv4.js';
import { macToString } from '../packet/mac.js';
import { ParseStatus } from '../packet/status.js';
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG, TcpView } from '../packet/tcp.js';
import { UdpView } from '../packet/udp.js';

export interface ArpInfo {
  op: 'request' | 'reply' | number;
  senderMac: string;
  senderIp: string;
  targetMac: string;
  targetIp: string;
}

export interface Ipv4Info {
  src: string;
  dst: string;
  protocol: number;
  ttl: number;
  id: number;
  totalLength: number;
  /** A fragment (offset ≠ 0 or more fragments). */
  fragment: boolean;
}

export interface TcpInfo {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  /** tcpdump's letters, in its order: S F R P U, then A ("SA" is a SYN-ACK, "" none). */
  flags: string;
  window: number;
  payload: Buffer;
}

export interface UdpInfo {
  srcPort: number;
  dstPort: number;
  payload: Buffer;
}

export interface IcmpInfo {
  type: number;
  code: number;
  /** Echo identifier and sequence (0 for other messages). */
  id: number;
  seq: number;
}

export interface DhcpInfo {
  /** DHCPDISCOVER 1, OFFER 2, REQUEST 3, DECLINE 4, ACK 5, NAK 6, RELEASE 7, INFORM 8. */
  messageType: number;
  xid: number;
  yourIp: string;
}

export interface FrameInfo {
  length: number;
  /** Ethernet source and destination as text (aa:bb:…). */
  src: string;
  dst: string;
  etherType: number;
  arp?: ArpInfo;
  ipv4?: Ipv4Info;
  tcp?: TcpInfo;
  udp?: UdpInfo;
  icmp?: IcmpInfo;
  dhcp?: DhcpInfo;
  /** Set when a header could not be parsed: what was wrong. */
  malformed?: string;
  /** One line, tcpdump-like. */
  summary: string;
}

const DHCP_TYPES = ['', 'DISCOVER', 'OFFER', 'REQUEST', 'DECLINE', 'ACK', 'NAK', 'RELEASE', 'INFORM'];

function tcpFlags(f: number): string {
  let s = '';
  if (f & TCP_SYN) s += 'S';
  if (f & TCP_FIN) s += 'F';
  if (f & TCP_RST) s += 'R';
  if (f & TCP_PSH) s += 'P';
  if (f & TCP_URG) s += 'U';
  if (f & TCP_ACK) s += 'A';
  return s;
}

/** Decodes an Ethernet frame (no virtio-net header). Never throws. */
export function decodeFrame(frame: Uint8Array): FrameInfo {
  const buf = Buffer.isBuffer(frame) ? frame : Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const eth = new EthernetView();
  const info: FrameInfo = { length: buf.length, src: '', dst: '', etherType: 0, summary: '' };
  if (eth.bind(buf, dv, 0, buf.length) !== ParseStatus.OK) {
    info.malformed = 'truncated Ethernet header';
    info.summary = `runt frame, length ${buf.length}`;
    return info;
  }
  info.src = macToString(eth.src);
  info.dst = macToString(eth.dst);
  info.etherType = eth.etherType;
  const l3 = eth.payloadOffset;
  if (eth.etherType === ETH_P_ARP) {
    const a = new ArpView();
    if (a.bind(dv, l3, buf.length - l3) !== ParseStatus.OK) return malformed(info, 'ARP');
    const op = a.operation === ARP_OP_REQUEST ? 'request' : a.operation === ARP_OP_REPLY ? 'reply' : a.operation;
    info.arp = { op, senderMac: macToString(a.senderMac), senderIp: ipv4ToString(a.senderIp), targetMac: macToString(a.targetMac), targetIp: ipv4ToString(a.targetIp) };
    info.summary =
      op === 'request'
        ? `ARP, Request who-has ${info.arp.targetIp} tell ${info.arp.senderIp}`
        : op === 'reply'
          ? `ARP, Reply ${info.arp.senderIp} is-at ${info.arp.senderMac}`
          : `ARP, op ${op}`;
    return info;
  }
  if (eth.etherType === ETH_P_IPV6) {
    info.summary = `IP6, length ${buf.length - l3}`;
    return info;
  }
  if (eth.etherType !== ETH_P_IPV4) {
    info.summary = `ethertype 0x${eth.etherType.toString(16).padStart(4, '0')}, length ${buf.length}`;
    return info;
  }
  const ip = new Ipv4View();
  if (ip.bind(dv, l3, buf.length - l3) !== ParseStatus.OK) return malformed(info, 'IPv4');
  const src = ipv4ToString(ip.src);
  const dst = ipv4ToString(ip.dst);
  const fragment = (ip.flagsFragment & 0x3fff) !== 0;
  info.ipv4 = { src, dst, protocol: ip.protocol, ttl: ip.ttl, id: ip.id, totalLength: ip.totalLength, fragment };
  if (fragment && ip.fragmentOffset !== 0) {
    info.summary = `IP ${src} > ${dst}: fragment id ${ip.id} offset ${ip.fragmentOffset * 8}, length ${ip.payloadLength}`;
    return info;
  }
  const l4 = ip.payloadOffset;
  const l4Len = ip.payloadLength;
  if (ip.protocol === IPPROTO_TCP) {
    const t = new TcpView();
    if (t.bind(dv, l4, l4Len) !== ParseStatus.OK) return malformed(info, 'TCP');
    const payload = buf.subarray(t.payloadOffset, t.payloadOffset + t.payloadLength);
    info.tcp = { srcPort: t.srcPort, dstPort: t.dstPort, seq: t.seq, ack: t.ack, flags: tcpFlags(t.flags), window: t.window, payload };
    const shown = info.tcp.flags.replace('A', '.') || 'none';
    info.summary = `IP ${src}.${t.srcPort} > ${dst}.${t.dstPort}: Flags [${shown}], seq ${t.seq}${t.flags & TCP_ACK ? `, ack ${t.ack}` : ''}, win ${t.window}, length ${payload.length}`;
    return info;
  }
  if (ip.protocol === IPPROTO_UDP) {
    const u = new UdpView();
    if (u.bind(dv, l4, l4Len) !== ParseStatus.OK) return malformed(info, 'UDP');
    const payload = buf.subarray(u.payloadOffset, u.payloadOffset + u.payloadLength);
    info.udp = { srcPort: u.srcPort, dstPort: u.dstPort, payload };
    info.summary = `IP ${src}.${u.srcPort} > ${dst}.${u.dstPort}: UDP, length ${payload.length}`;
    if ((u.dstPort === DHCP_SERVER_PORT || u.dstPort === DHCP_CLIENT_PORT) && (u.srcPort === DHCP_SERVER_PORT || u.srcPort === DHCP_CLIENT_PORT)) {
      const m = new DhcpMessage();
      if (m.bind(dv, u.payloadOffset, u.payloadLength) === ParseStatus.OK) {
        info.dhcp = { messageType: m.messageType, xid: m.xid, yourIp: ipv4ToString(m.yiaddr) };
        info.summary += `, DHCP ${DHCP_TYPES[m.messageType] ?? m.messageType}${m.yiaddr ? ` ${info.dhcp.yourIp}` : ''}`;
      }
    }
    return info;
  }
  if (ip.protocol === IPPROTO_ICMP) {
    const c = new IcmpView();
    if (c.bind(dv, l4, l4Len) !== ParseStatus.OK) return malformed(info, 'ICMP');
    const echo = c.type === ICMP_ECHO_REQUEST || c.type === ICMP_ECHO_REPLY;
    info.icmp = { type: c.type, code: c.code, id: echo ? c.identifier : 0, seq: echo ? c.sequence : 0 };
    const what =
      c.type === ICMP_ECHO_REQUEST
        ? `echo request, id ${c.identifier}, seq ${c.sequence}`
        : c.type === ICMP_ECHO_REPLY
          ? `echo reply, id ${c.identifier}, seq ${c.sequence}`
          : c.type === ICMP_DEST_UNREACH
            ? `destination unreachable, code ${c.code}`
            : c.type === ICMP_TIME_EXCEEDED
              ? 'time exceeded'
              : `type ${c.type}, code ${c.code}`;
    info.summary = `IP ${src} > ${dst}: ICMP ${what}, length ${l4Len}`;
    return info;
  }
  info.summary = `IP ${src} > ${dst}: protocol ${ip.protocol}, length ${l4Len}`;
  return info;
}

function malformed(info: FrameInfo, what: string): FrameInfo {
  info.malformed = `bad ${what} header`;
  info.summary = `${info.src} > ${info.dst}: malformed ${what}, length ${info.length}`;
  return info;
}
