/** UDP headers (RFC 768). */
import { ParseStatus } from './status.js';

export const UDP_HLEN = 8;

export class UdpView {
  dv: DataView = new DataView(new ArrayBuffer(0));
  off = 0;
  /** The length field: header + payload. */
  length = 0;

  /** `len` is the bytes the IP layer says belong to this datagram. */
  bind(dv: DataView, off: number, len: number): ParseStatus {
    this.dv = dv;
    this.off = off;
    if (len < UDP_HLEN) return ParseStatus.TRUNCATED;
    const l = dv.getUint16(off + 4);
    if (l < UDP_HLEN || l > len) return ParseStatus.BAD_LENGTH;
    this.length = l;
    return ParseStatus.OK;
  }

  get srcPort(): number {
    return this.dv.getUint16(this.off);
  }
  get dstPort(): number {
    return this.dv.getUint16(this.off + 2);
  }
  get checksum(): number {
    return this.dv.getUint16(this.off + 6);
  }
  get payloadOffset(): number {
    return this.off + UDP_HLEN;
  }
  get payloadLength(): number {
    return this.length - UDP_HLEN;
  }
}

/** Writes a UDP header with checksum 0 (fill it with the pseudo-header sum or a full checksum). */
export function writeUdpHeader(dv: DataView, off: number, srcPort: number, dstPort: number, length: number): number {
  dv.setUint16(off, srcPort);
  dv.setUint16(off + 2, dstPort);
  dv.setUint16(off + 4, length);
  dv.setUint16(off + 6, 0);
  return off + UDP_HLEN;
}
