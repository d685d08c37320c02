/**
 * Builders for the frames a virtual host sends: Ethernet + IPv4 + UDP/ICMP/TCP with complete
 * checksums, ICMP errors that quote the offending datagram, and IPv4 fragmentation for datagrams
 * larger than the link's MTU. Pure: they fill caller-provided buffers.
 */
import { copyBytes } from './bytes.js';
import { checksum, finish, pseudoHeaderSumV4, sum16 } from './checksum.js';
import { ETH_HLEN, ETH_P_IPV4, writeEthernetHeader } from './ethernet.js';
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPV4_FLAG_DF, IPV4_FLAG_MF, IPV4_MIN_HLEN, writeIpv4Header } from './ipv4.js';
import { ICMP_HLEN } from './icmp.js';
import { UDP_HLEN } from './udp.js';
import { TCP_MIN_HLEN } from './tcp.js';

export interface Ipv4Endpoints {
  dstMac: number;
  srcMac: number;
  srcIp: number;
  dstIp: number;
  /** IPv4 identification; default 0. */
  id?: number;
  ttl?: number;
  /** Don't-fragment; default true. */
  dontFragment?: boolean;
}

/** Room a frame needs for Ethernet + IPv4 + UDP headers. */
export const UDP_FRAME_OVERHEAD = ETH_HLEN + IPV4_MIN_HLEN + UDP_HLEN;

/**
 * Ethernet + IPv4 + UDP around `payload[pOff, pOff+pLen)`, written at `off`. Returns the frame
 * length. `out` must have room for UDP_FRAME_OVERHEAD + pLen bytes. The UDP checksum is complete,
 * or with `partialChecksum` only the pseudo-header's sum, for a virtio-net header with
 * NEEDS_CSUM (csum_start at the UDP header, csum_offset 6): whoever takes the frame finishes it
 * over the payload (the container's kernel, or the switch for a port without offloads).
 */
export function buildUdpFrame(
  out: Uint8Array,
  dv: DataView,
  off: number,
  e: Ipv4Endpoints,
  srcPort: number,
  dstPort: number,
  payload: Uint8Array,
  pOff: number,
  pLen: number,
  partialChecksum = false,
): number {
  const ip = writeEthernetHeader(dv, off, e.dstMac, e.srcMac, ETH_P_IPV4);
  const udp = writeIpv4Header(dv, ip, {
    totalLength: IPV4_MIN_HLEN + UDP_HLEN + pLen,
    id: e.id ?? 0,
    flagsFragment: e.dontFragment === false ? 0 : IPV4_FLAG_DF,
    ttl: e.ttl ?? 64,
    protocol: IPPROTO_UDP,
    src: e.srcIp,
    dst: e.dstIp,
  });
  const udpLen = UDP_HLEN + pLen;
  dv.setUint16(udp, srcPort);
  dv.setUint16(udp + 2, dstPort);
  dv.setUint16(udp + 4, udpLen);
  dv.setUint16(udp + 6, 0);
  copyBytes(payload, pOff, out, udp + UDP_HLEN, pLen);
  if (partialChecksum) {
    dv.setUint16(udp + 6, pseudoHeaderSumV4(e.srcIp, e.dstIp, IPPROTO_UDP, udpLen));
    return ETH_HLEN + IPV4_MIN_HLEN + udpLen;
  }
  let c = finish(sum16(dv, udp, udpLen, pseudoHeaderSumV4(e.srcIp, e.dstIp, IPPROTO_UDP, udpLen)));
  if (c === 0) c = 0xffff;
  dv.setUint16(udp + 6, c);
  return ETH_HLEN + IPV4_MIN_HLEN + udpLen;
}

/**
 * Ethernet + IPv4 + ICMP message (`type`, `code`, the 4-byte rest of header, then `data`),
 * checksums complete. Returns the frame length.
 */
export function buildIcmpFrame(
  out: Uint8Array,
  dv: DataView,
  off: number,
  e: Ipv4Endpoints,
  type: number,
  code: number,
  restOfHeader: number,
  data: Uint8Array,
  dOff: number,
  dLen: number,
): number {
  const ip = writeEthernetHeader(dv, off, e.dstMac, e.srcMac, ETH_P_IPV4);
  const icmp = writeIpv4Header(dv, ip, {
    totalLength: IPV4_MIN_HLEN + ICMP_HLEN + dLen,
    id: e.id ?? 0,
    flagsFragment: e.dontFragment === false ? 0 : IPV4_FLAG_DF,
    ttl: e.ttl ?? 64,
    protocol: IPPROTO_ICMP,
    src: e.srcIp,
    dst: e.dstIp,
  });
  dv.setUint8(icmp, type);
  dv.setUint8(icmp + 1, code);
  dv.setUint16(icmp + 2, 0);
  dv.setUint32(icmp + 4, restOfHeader >>> 0);
  out.set(data.subarray(dOff, dOff + dLen), icmp + ICMP_HLEN);
  dv.setUint16(icmp + 2, checksum(dv, icmp, ICMP_HLEN + dLen));
  return ETH_HLEN + IPV4_MIN_HLEN + ICMP_HLEN + dLen;
}

/**
 * How much of an offending datagram an ICMP error quotes: its IP header and as much of its
 * payload as keeps the error within 576 bytes (RFC 1812 4.3.2.3), at least the 8 bytes RFC 792
 * requires (the ports of TCP/UDP) when present.
 */
export function icmpQuoteLength(ipHeaderLength: number, datagramLength: number): number {
  const max = 576 - IPV4_MIN_HLEN - ICMP_HLEN;
  return Math.min(datagramLength, Math.max(ipHeaderLength + 8, max));
}

/**
 * An ICMP error (destination unreachable, time exceeded …) about the IPv4 datagram at
 * `quoted[qOff, qOff+qLen)`, quoting it per icmpQuoteLength. Returns the frame length.
 */
export function buildIcmpError(
  out: Uint8Array,
  dv: DataView,
  off: number,
  e: Ipv4Endpoints,
  type: number,
  code: number,
  restOfHeader: number,
  quoted: Uint8Array,
  qOff: number,
  qLen: number,
): number {
  const ihl = (quoted[qOff] & 15) * 4;
  const n = icmpQuoteLength(ihl, qLen);
  return buildIcmpFrame(out, dv, off, { ...e, dontFragment: false }, type, code, restOfHeader, quoted, qOff, n);
}

/** TCP segment without payload (RST, ACK), checksums complete. Returns the frame length. */
export function buildTcpControlFrame(
  out: Uint8Array,
  dv: DataView,
  off: number,
  e: Ipv4Endpoints,
  srcPort: number,
  dstPort: number,
  seq: number,
  ack: number,
  flags: number,
  window: number,
): number {
  const ip = writeEthernetHeader(dv, off, e.dstMac, e.srcMac, ETH_P_IPV4);
  const tcp = writeIpv4Header(dv, ip, {
    totalLength: IPV4_MIN_HLEN + TCP_MIN_HLEN,
    id: e.id ?? 0,
    flagsFragment: IPV4_FLAG_DF,
    ttl: e.ttl ?? 64,
    protocol: IPPROTO_TCP,
    src: e.srcIp,
    dst: e.dstIp,
  });
  dv.setUint16(tcp, srcPort);
  dv.setUint16(tcp + 2, dstPort);
  dv.setUint32(tcp + 4, seq >>> 0);
  dv.setUint32(tcp + 8, ack >>> 0);
  dv.setUint8(tcp + 12, (TCP_MIN_HLEN / 4) << 4);
  dv.setUint8(tcp + 13, flags);
  dv.setUint16(tcp + 14, window);
  dv.setUint16(tcp + 16, 0);
  dv.setUint16(tcp + 18, 0);
  dv.setUint16(tcp + 16, finish(sum16(dv, tcp, TCP_MIN_HLEN, pseudoHeaderSumV4(e.srcIp, e.dstIp, IPPROTO_TCP, TCP_MIN_HLEN))));
  return ETH_HLEN + IPV4_MIN_HLEN + TCP_MIN_HLEN;
}

/** Receives the fragments made by fragmentIpv4Frame(). */
export interface FragmentSink {
  fragment(buf: Uint8Array, off: number, len: number): void;
}

/**
 * Cuts the IPv4 frame at `off` (Ethernet header first, untagged, IP header without options is
 * not required) into frames whose IP datagrams fit `mtu`, each written into `scratch` at 0 and
 * handed to `sink` (which must consume it before returning). A datagram that fits is handed over
 * as it is. Returns false when it cannot be fragmented (DF set, or an MTU too small for 8 bytes
 * of payload after the header).
 */
export function fragmentIpv4Frame(src: Uint8Array, off: number, len: number, mtu: number, scratch: Uint8Array, sink: FragmentSink): boolean {
  const sdv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const ip = off + ETH_HLEN;
  const ihl = (src[ip] & 15) * 4;
  const total = sdv.getUint16(ip + 2);
  if (total <= mtu) {
    sink.fragment(src, off, len);
    return true;
  }
  const ff = sdv.getUint16(ip + 6);
  if ((ff & IPV4_FLAG_DF) !== 0) return false;
  const maxData = (mtu - ihl) & ~7;
  if (maxData < 8) return false;
  const baseOffset = (ff & 0x1fff) * 8;
  const lastHasMore = (ff & IPV4_FLAG_MF) !== 0;
  const dataLen = total - ihl;
  const ddv = new DataView(scratch.buffer, scratch.byteOffset, scratch.byteLength);
  for (let at = 0; at < dataLen; at += maxData) {
    const n = Math.min(maxData, dataLen - at);
    scratch.set(src.subarray(off, ip + ihl), 0);
    scratch.set(src.subarray(ip + ihl + at, ip + ihl + at + n), ETH_HLEN + ihl);
    const more = at + n < dataLen || lastHasMore;
    ddv.setUint16(ETH_HLEN + 2, ihl + n);
    ddv.setUint16(ETH_HLEN + 6, (more ? IPV4_FLAG_MF : 0) | ((baseOffset + at) / 8));
    ddv.setUint16(ETH_HLEN + 10, 0);
    ddv.setUint16(ETH_HLEN + 10, checksum(ddv, ETH_HLEN, ihl));
    sink.fragment(scratch, 0, ETH_HLEN + ihl + n);
  }
  return true;
}
