/** IPv6 headers (RFC 8200), and a walk over the extension headers to the upper layer. */
import { ParseStatus } from './status.js';

export const IPV6_HLEN = 40;
export const IPV6_NEXT_HOP_BY_HOP = 0;
export const IPV6_NEXT_ROUTING = 43;
export const IPV6_NEXT_FRAGMENT = 44;
export const IPV6_NEXT_DEST_OPTS = 60;
export const IPV6_NEXT_NONE = 59;
/** Extension headers walked before giving up (UNSUPPORTED): bounds the walk of a crafted chain. */
export const IPV6_MAX_EXTENSION_HEADERS = 8;

export class Ipv6View {
  dv: DataView = new DataView(new ArrayBuffer(0));
  off = 0;
  payloadLength = 0;
  /** After `findUpperLayer()`: the upper-layer protocol and its absolute offset. */
  upperProtocol = -1;
  upperOffset = -1;

  bind(dv: DataView, off: number, len: number): ParseStatus {
    this.dv = dv;
    this.off = off;
    this.upperProtocol = -1;
    this.upperOffset = -1;
    if (len < IPV6_HLEN) return ParseStatus.TRUNCATED;
    if (dv.getUint8(off) >> 4 !== 6) return ParseStatus.BAD_VERSION;
    const pl = dv.getUint16(off + 4);
    if (IPV6_HLEN + pl > len) return ParseStatus.BAD_LENGTH;
    this.payloadLength = pl;
    return ParseStatus.OK;
  }

  get trafficClass(): number {
    return (this.dv.getUint16(this.off) >> 4) & 0xff;
  }
  get flowLabel(): number {
    return this.dv.getUint32(this.off) & 0xfffff;
  }
  get nextHeader(): number {
    return this.dv.getUint8(this.off + 6);
  }
  get hopLimit(): number {
    return this.dv.getUint8(this.off + 7);
  }
  /** Absolute offsets of the 16-byte addresses. */
  get srcOffset(): number {
    return this.off + 8;
  }
  get dstOffset(): number {
    return this.off + 24;
  }
  get payloadOffset(): number {
    return this.off + IPV6_HLEN;
  }

  /**
   * Walks hop-by-hop, routing, fragment and destination-options headers to the upper-layer
   * protocol; sets `upperProtocol`/`upperOffset`. Returns BAD_LENGTH if an extension header runs
   * past the payload, UNSUPPORTED for a non-first fragment (no upper header in it) or a chain of
   * more than IPV6_MAX_EXTENSION_HEADERS.
   */
  findUpperLayer(): ParseStatus {
    const end = this.off + IPV6_HLEN + this.payloadLength;
    let next = this.nextHeader;
    let pos = this.off + IPV6_HLEN;
    // One step per extension header, plus the step that finds the upper layer.
    for (let i = 0; i <= IPV6_MAX_EXTENSION_HEADERS; i++) {
      if (next === IPV6_NEXT_HOP_BY_HOP || next === IPV6_NEXT_ROUTING || next === IPV6_NEXT_DEST_OPTS) {
        if (pos + 8 > end) return ParseStatus.BAD_LENGTH;
        const hl = (this.dv.getUint8(pos + 1) + 1) * 8;
        if (pos + hl > end) return ParseStatus.BAD_LENGTH;
        next = this.dv.getUint8(pos);
        pos += hl;
      } else if (next === IPV6_NEXT_FRAGMENT) {
        if (pos + 8 > end) return ParseStatus.BAD_LENGTH;
        if ((this.dv.getUint16(pos + 2) & 0xfff8) !== 0) return ParseStatus.UNSUPPORTED;
        next = this.dv.getUint8(pos);
        pos += 8;
      } else {
        this.upperProtocol = next;
        this.upperOffset = pos;
        return ParseStatus.OK;
      }
    }
    return ParseStatus.UNSUPPORTED;
  }
}

/** Writes a 40-byte IPv6 header at `off` (addresses copied from `src`/`dst` at their offsets). */
export function writeIpv6Header(
  dv: DataView,
  off: number,
  payloadLength: number,
  nextHeader: number,
  hopLimit: number,
  src: Uint8Array,
  srcOff: number,
  dst: Uint8Array,
  dstOff: number,
): number {
  dv.setUint32(off, 0x60000000);
  dv.setUint16(off + 4, payloadLength);
  dv.setUint8(off + 6, nextHeader);
  dv.setUint8(off + 7, hopLimit);
  const bytes = new Uint8Array(dv.buffer, dv.byteOffset, dv.byteLength);
  bytes.set(src.subarray(srcOff, srcOff + 16), off + 8);
  bytes.set(dst.subarray(dstOff, dstOff + 16), off + 24);
  return off + IPV6_HLEN;
}
