/**
 * Software fallbacks for virtio-net offloads, used only towards ports that cannot take them
 * (ports without a vnet header, pcap capture):
 *
 *  - completeChecksum(): a NEEDS_CSUM frame carries only the pseudo-header sum in its L4 checksum
 *    field; sum from csum_start to the end of the L4 data and store the complement.
 *  - segmentGso(): cut a GSO super-frame (TCPv4, TCPv6, UDP_L4) into gso_size pieces, each with
 *    its own headers: IPv4 total length, ID + i and header checksum; IPv6 payload length; TCP
 *    sequence + i * gso_size, FIN/PSH only on the last piece, CWR only on the first; full L4
 *    checksums. The virtio-net header's hdr_len is not trusted (the kernel may set it to the
 *    whole first packet): the header length is csum_start + the L4 header length.
 *
 * Pure functions over buffers: segments are written one at a time into the caller's scratch
 * buffer and handed to a sink, which must consume (write or copy) each before returning.
 */
import { finish, pseudoHeaderSumV4, pseudoHeaderSumV6, sum16 } from './checksum.js';
import { ETH_P_8021AD, ETH_P_8021Q, ETH_P_IPV4, ETH_P_IPV6 } from './ethernet.js';
import { IPPROTO_TCP, IPPROTO_UDP } from './ipv4.js';
import { Ipv6View } from './ipv6.js';
import { ParseStatus } from './status.js';
import { TCP_CWR, TCP_FIN, TCP_PSH } from './tcp.js';
import { VNET_GSO_ECN, VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_GSO_TCPV6, VNET_GSO_UDP_L4, type VnetHeader } from './virtio-net.js';

/** Reused to walk IPv6 extension headers in segmentGso() (the data path is single-threaded). */
const ipv6 = new Ipv6View();

/** Receives the segments produced by segmentGso(). */
export interface SegmentSink {
  segment(buf: Uint8Array, off: number, len: number): void;
}

/** Length of the Ethernet header at `off` including up to two VLAN tags, or -1 if truncated. */
function l2HeaderLength(dv: DataView, off: number, len: number): number {
  if (len < 14) return -1;
  let hl = 14;
  let type = dv.getUint16(off + 12);
  for (let t = 0; t < 2 && (type === ETH_P_8021Q || type === ETH_P_8021AD); t++) {
    if (len < hl + 4) return -1;
    type = dv.getUint16(off + hl + 2);
    hl += 4;
  }
  return hl;
}

/**
 * End of the IP packet (absolute offset), from its own length field, so that Ethernet padding is
 * never summed; -1 when the L3 header is not IPv4/IPv6 or its length does not fit the frame.
 */
function l3End(dv: DataView, frameOff: number, frameLen: number, l2Len: number): number {
  const type = dv.getUint16(frameOff + l2Len - 2);
  const l3 = frameOff + l2Len;
  if (type === ETH_P_IPV4) {
    if (frameLen < l2Len + 20) return -1;
    const total = dv.getUint16(l3 + 2);
    if (total < 20 || l2Len + total > frameLen) return -1;
    return l3 + total;
  }
  if (type === ETH_P_IPV6) {
    if (frameLen < l2Len + 40) return -1;
    const end = l3 + 40 + dv.getUint16(l3 + 4);
    if (end > frameOff + frameLen) return -1;
    return end;
  }
  return -1;
}

/**
 * Completes the partial checksum of the frame at `frameOff` in place. `csumStart` is relative to
 * the start of the Ethernet header (as on a TAP). Returns BAD_OFFLOAD when the positions do not
 * fit inside the frame.
 */
export function completeChecksum(dv: DataView, frameOff: number, frameLen: number, csumStart: number, csumOffset: number): ParseStatus {
  const l2Len = l2HeaderLength(dv, frameOff, frameLen);
  let end = l2Len < 0 ? -1 : l3End(dv, frameOff, frameLen, l2Len);
  if (end < 0) end = frameOff + frameLen; // not IP: sum to the end of the frame, as the NIC would
  const start = frameOff + csumStart;
  const field = start + csumOffset;
  if (csumStart < 14 || field + 2 > end) return ParseStatus.BAD_OFFLOAD;
  const seed = dv.getUint16(field);
  dv.setUint16(field, 0);
  let c = finish(sum16(dv, start, end - start, seed));
  if (c === 0 && csumOffset === 6) c = 0xffff; // UDP: 0 means "no checksum"
  dv.setUint16(field, c);
  return ParseStatus.OK;
}

/**
 * Segments the GSO frame at `frameOff` (Ethernet header first) according to `vnet`, writing each
 * segment into `out` at offset 0 and passing it to `sink`. `out` must hold the headers plus
 * gso_size bytes. A frame that needs no segmentation is copied once, with its checksum completed.
 */
export function segmentGso(
  src: Uint8Array,
  srcDv: DataView,
  frameOff: number,
  frameLen: number,
  vnet: VnetHeader,
  out: Uint8Array,
  outDv: DataView,
  sink: SegmentSink,
): ParseStatus {
  const gsoType = vnet.gsoType & ~VNET_GSO_ECN;
  const l2Len = l2HeaderLength(srcDv, frameOff, frameLen);
  if (l2Len < 0) return ParseStatus.TRUNCATED;
  const end = l3End(srcDv, frameOff, frameLen, l2Len);
  if (end < 0) return ParseStatus.BAD_LENGTH;
  const l3 = frameOff + l2Len;
  const isV4 = srcDv.getUint16(l3 - 2) === ETH_P_IPV4;
  const isUdp = gsoType === VNET_GSO_UDP_L4;
  if (gsoType === VNET_GSO_NONE) {
    if (frameLen > out.length) return ParseStatus.BAD_LENGTH;
    out.set(src.subarray(frameOff, frameOff + frameLen), 0);
    const st = vnet.flags & 1 ? completeChecksum(outDv, 0, frameLen, vnet.csumStart, vnet.csumOffset) : ParseStatus.OK;
    if (st === ParseStatus.OK) sink.segment(out, 0, frameLen);
    return st;
  }
  if ((gsoType === VNET_GSO_TCPV4 && !isV4) || (gsoType === VNET_GSO_TCPV6 && isV4)) return ParseStatus.BAD_OFFLOAD;
  if (gsoType !== VNET_GSO_TCPV4 && gsoType !== VNET_GSO_TCPV6 && !isUdp) return ParseStatus.UNSUPPORTED;

  const l4 = frameOff + vnet.csumStart;
  const minL3 = isV4 ? 20 : 40;
  if (l4 < l3 + minL3 || l4 + (isUdp ? 8 : 20) > end) return ParseStatus.BAD_OFFLOAD;
  const l4Proto = isUdp ? IPPROTO_UDP : IPPROTO_TCP;
  if (isV4) {
    // L4 must start right after the header (IHL), which is rewritten and checksummed as l4 - l3 bytes.
    const vihl = srcDv.getUint8(l3);
    if (vihl >> 4 !== 4 || l4 !== l3 + (vihl & 15) * 4) return ParseStatus.BAD_OFFLOAD;
    if (srcDv.getUint8(l3 + 9) !== l4Proto) return ParseStatus.BAD_OFFLOAD;
  } else {
    // L4 must be where the extension-header chain ends, and be the protocol the GSO type says.
    if (ipv6.bind(srcDv, l3, end - l3) !== ParseStatus.OK || ipv6.findUpperLayer() !== ParseStatus.OK) return ParseStatus.BAD_OFFLOAD;
    if (ipv6.upperOffset !== l4 || ipv6.upperProtocol !== l4Proto) return ParseStatus.BAD_OFFLOAD;
  }
  const l4Len = isUdp ? 8 : (srcDv.getUint8(l4 + 12) >> 4) * 4;
  if (l4Len < (isUdp ? 8 : 20) || l4 + l4Len > end) return ParseStatus.BAD_OFFLOAD;

  const hdrLen = l4 + l4Len - frameOff; // headers from the Ethernet header to the end of L4's
  const payloadStart = frameOff + hdrLen;
  const payloadTotal = end - payloadStart;
  const mss = vnet.gsoSize;
  if (mss === 0 || hdrLen + Math.min(mss, payloadTotal) > out.length) return ParseStatus.BAD_LENGTH;

  const l3Out = l2Len;
  const l4Out = hdrLen - l4Len;
  const seq0 = isUdp ? 0 : srcDv.getUint32(l4 + 4);
  const flags0 = isUdp ? 0 : srcDv.getUint8(l4 + 13);
  const id0 = isV4 ? srcDv.getUint16(l3 + 4) : 0;
  const ipHdrLen = l4 - l3; // IPv4 header or IPv6 header + extension headers
  const segments = Math.max(1, Math.ceil(payloadTotal / mss));

  for (let i = 0; i < segments; i++) {
    const pOff = i * mss;
    const pLen = Math.min(mss, payloadTotal - pOff);
    out.set(src.subarray(frameOff, payloadStart), 0);
    if (pLen > 0) out.set(src.subarray(payloadStart + pOff, payloadStart + pOff + pLen), hdrLen);
    const l4SegLen = l4Len + pLen;
    if (isV4) {
      outDv.setUint16(l3Out + 2, ipHdrLen + l4SegLen);
      outDv.setUint16(l3Out + 4, (id0 + i) & 0xffff);
      outDv.setUint16(l3Out + 10, 0);
      outDv.setUint16(l3Out + 10, finish(sum16(outDv, l3Out, ipHdrLen)));
    } else {
      outDv.setUint16(l3Out + 4, ipHdrLen - 40 + l4SegLen);
    }
    if (isUdp) {
      outDv.setUint16(l4Out + 4, l4SegLen);
    } else {
      outDv.setUint32(l4Out + 4, (seq0 + pOff) >>> 0);
      let flags = flags0;
      if (i !== segments - 1) flags &= ~(TCP_FIN | TCP_PSH);
      if (i !== 0) flags &= ~TCP_CWR;
      outDv.setUint8(l4Out + 13, flags);
    }
    const pseudo = isV4
      ? pseudoHeaderSumV4(outDv.getUint32(l3Out + 12), outDv.getUint32(l3Out + 16), l4Proto, l4SegLen)
      : pseudoHeaderSumV6(outDv, l3Out + 8, l3Out + 24, l4Proto, l4SegLen);
    const field = l4Out + (isUdp ? 6 : 16);
    outDv.setUint16(field, 0);
    let c = finish(sum16(outDv, l4Out, l4SegLen, pseudo));
    if (c === 0 && isUdp) c = 0xffff;
    outDv.setUint16(field, c);
    sink.segment(out, 0, hdrLen + pLen);
  }
  return ParseStatus.OK;
}
