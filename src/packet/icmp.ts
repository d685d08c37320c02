/** ICMP for IPv4 (RFC 792): echo and the error messages that quote an offending header. */
import { checksum } from './checksum.js';
import { ParseStatus } from './status.js';

export const ICMP_HLEN = 8;
export const ICMP_ECHO_REPLY = 0;
export const ICMP_DEST_UNREACH = 3;
export const ICMP_ECHO_REQUEST = 8;
export const ICMP_TIME_EXCEEDED = 11;
export const ICMP_UNREACH_NET = 0;
export const ICMP_UNREACH_HOST = 1;
export const ICMP_UNREACH_PROTOCOL = 2;
export const ICMP_UNREACH_PORT = 3;
export const ICMP_UNREACH_NEEDFRAG = 4;
export const ICMP_UNREACH_ADMIN_PROHIBITED = 13;

export class IcmpView {
  dv: DataView = new DataView(new ArrayBuffer(0));
  off = 0;
  len = 0;

  bind(dv: DataView, off: number, len: number): ParseStatus {
    this.dv = dv;
    this.off = off;
    this.len = len;
    if (len < ICMP_HLEN) return ParseStatus.TRUNCATED;
    return ParseStatus.OK;
  }

  get type(): number {
    return this.dv.getUint8(this.off);
  }
  get code(): number {
    return this.dv.getUint8(this.off + 1);
  }
  get checksum(): number {
    return this.dv.getUint16(this.off + 2);
  }
  /** Echo identifier (echo request/reply only). */
  get identifier(): number {
    return this.dv.getUint16(this.off + 4);
  }
  /** Echo sequence number (echo request/reply only). */
  get sequence(): number {
    return this.dv.getUint16(this.off + 6);
  }
  /** Next-hop MTU of a "fragmentation needed" message. */
  get nextHopMtu(): number {
    return this.dv.getUint16(this.off + 6);
  }
  get payloadOffset(): number {
    return this.off + ICMP_HLEN;
  }
  get payloadLength(): number {
    return this.len - ICMP_HLEN;
  }
  /** True for messages that quote an offending IP header (RFC 1122 3.2.2). */
  get isError(): boolean {
    const t = this.type;
    return t === 3 || t === 4 || t === 5 || t === 11 || t === 12;
  }
  checksumValid(): boolean {
    return checksum(this.dv, this.off, this.len) === 0;
  }
}

/** Writes an ICMP header at `off`; the checksum is left 0 (see setIcmpChecksum). */
export function writeIcmpHeader(dv: DataView, off: number, type: number, code: number, restOfHeader: number): number {
  dv.setUint8(off, type);
  dv.setUint8(off + 1, code);
  dv.setUint16(off + 2, 0);
  dv.setUint32(off + 4, restOfHeader >>> 0);
  return off + ICMP_HLEN;
}

/** Computes the checksum of the ICMP message of `len` bytes at `off` in place. */
export function setIcmpChecksum(dv: DataView, off: number, len: number): void {
  dv.setUint16(off + 2, 0);
  dv.setUint16(off + 2, checksum(dv, off, len));
}
