/** IPv4 headers (RFC 791). */
import { checksum, sum16 } from './checksum.js';
import { ParseStatus } from './status.js';

export const IPV4_MIN_HLEN = 20;
export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_ICMPV6 = 58;
export const IPV4_FLAG_DF = 0x4000;
export const IPV4_FLAG_MF = 0x2000;

export class Ipv4View {
  dv: DataView = new DataView(new ArrayBuffer(0));
  off = 0;
  /** Header length in bytes (IHL * 4). */
  headerLength = 0;
  /** Total length from the header (may be less than the bytes present: Ethernet padding). */
  totalLength = 0;

  /**
   * Binds to the IPv4 packet at `off` with `len` bytes available. Checks version, IHL against
   * the buffer and the total length against the bytes present.
   */
  bind(dv: DataView, off: number, len: number): ParseStatus {
    this.dv = dv;
    this.off = off;
    if (len < IPV4_MIN_HLEN) return ParseStatus.TRUNCATED;
    const vihl = dv.getUint8(off);
    if (vihl >> 4 !== 4) return ParseStatus.BAD_VERSION;
    const hl = (vihl & 15) * 4;
    if (hl < IPV4_MIN_HLEN || hl > len) return ParseStatus.BAD_HEADER_LENGTH;
    const total = dv.getUint16(off + 2);
    if (total < hl || total > len) return ParseStatus.BAD_LENGTH;
    this.headerLength = hl;
    this.totalLength = total;
    return ParseStatus.OK;
  }

  get tos(): number {
    return this.dv.getUint8(this.off + 1);
  }
  get id(): number {
    return this.dv.getUint16(this.off + 4);
  }
  /** Flags and fragment offset, as in the header (DF = 0x4000, MF = 0x2000). */
  get flagsFragment(): number {
    return this.dv.getUint16(this.off + 6);
  }
  /** Fragment offset in bytes. */
  get fragmentOffset(): number {
    return (this.dv.getUint16(this.off + 6) & 0x1fff) * 8;
  }
  get moreFragments(): boolean {
    return (this.dv.getUint16(this.off + 6) & IPV4_FLAG_MF) !== 0;
  }
  get ttl(): number {
    return this.dv.getUint8(this.off + 8);
  }
  get protocol(): number {
    return this.dv.getUint8(this.off + 9);
  }
  get checksum(): number {
    return this.dv.getUint16(this.off + 10);
  }
  get src(): number {
    return this.dv.getUint32(this.off + 12);
  }
  get dst(): number {
    return this.dv.getUint32(this.off + 16);
  }
  get payloadOffset(): number {
    return this.off + this.headerLength;
  }
  get payloadLength(): number {
    return this.totalLength - this.headerLength;
  }
  /** True when the header checksum verifies. */
  checksumValid(): boolean {
    return sum16(this.dv, this.off, this.headerLength) === 0xffff;
  }
}

export interface Ipv4HeaderFields {
  tos?: number;
  totalLength: number;
  id?: number;
  /** Flags + fragment offset word; default DF. */
  flagsFragment?: number;
  ttl?: number;
  protocol: number;
  src: number;
  dst: number;
}

/** Writes a 20-byte IPv4 header with a valid checksum at `off`; returns the payload offset. */
export function writeIpv4Header(dv: DataView, off: number, f: Ipv4HeaderFields): number {
  dv.setUint8(off, 0x45);
  dv.setUint8(off + 1, f.tos ?? 0);
  dv.setUint16(off + 2, f.totalLength);
  dv.setUint16(off + 4, f.id ?? 0);
  dv.setUint16(off + 6, f.flagsFragment ?? IPV4_FLAG_DF);
  dv.setUint8(off + 8, f.ttl ?? 64);
  dv.setUint8(off + 9, f.protocol);
  dv.setUint16(off + 10, 0);
  dv.setUint32(off + 12, f.src >>> 0);
  dv.setUint32(off + 16, f.dst >>> 0);
  dv.setUint16(off + 10, checksum(dv, off, IPV4_MIN_HLEN));
  return off + IPV4_MIN_HLEN;
}

/** Recomputes the header checksum of the IPv4 header at `off` in place. */
export function setIpv4HeaderChecksum(dv: DataView, off: number): void {
  const hl = (dv.getUint8(off) & 15) * 4;
  dv.setUint16(off + 10, 0);
  dv.setUint16(off + 10, checksum(dv, off, hl));
}
