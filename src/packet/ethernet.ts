/**
 * Ethernet II frames, with one or two 802.1Q / 802.1ad tags.
 *
 * Like every view in this folder, EthernetView is created once and re-bound to each frame:
 * `bind()` validates the lengths and returns a ParseStatus; the getters then read straight from
 * the buffer. Nothing is allocated per frame, and a view never outlives the buffer it reads
 * (frames are lent by the link layer for the duration of a callback).
 */
import { readMac, writeMac } from './mac.js';
import { ParseStatus } from './status.js';

export const ETH_HLEN = 14;
export const ETH_ALEN = 6;
export const ETH_P_IPV4 = 0x0800;
export const ETH_P_ARP = 0x0806;
export const ETH_P_IPV6 = 0x86dd;
export const ETH_P_8021Q = 0x8100;
export const ETH_P_8021AD = 0x88a8;
/** Smallest frame accepted: a complete Ethernet header. Anything shorter is a runt. */
export const ETH_MIN_FRAME = ETH_HLEN;

export class EthernetView {
  buf: Uint8Array = new Uint8Array(0);
  dv: DataView = new DataView(this.buf.buffer);
  off = 0;
  len = 0;
  /** Offset of the payload (after any VLAN tags) relative to `off`. */
  headerLength = ETH_HLEN;
  /** The EtherType after any VLAN tags. */
  etherType = 0;
  /** VLAN ID of the outer tag, or -1 when untagged. */
  vlanId = -1;

  /** Binds to `len` bytes at `off`. */
  bind(buf: Uint8Array, dv: DataView, off: number, len: number): ParseStatus {
    this.buf = buf;
    this.dv = dv;
    this.off = off;
    this.len = len;
    this.vlanId = -1;
    if (len < ETH_HLEN) return ParseStatus.TRUNCATED;
    let type = dv.getUint16(off + 12);
    let hl = ETH_HLEN;
    // Up to two tags (QinQ); each needs 4 more bytes before the EtherType.
    for (let tags = 0; tags < 2 && (type === ETH_P_8021Q || type === ETH_P_8021AD); tags++) {
      if (len < hl + 4) return ParseStatus.TRUNCATED;
      if (this.vlanId < 0) this.vlanId = dv.getUint16(off + hl) & 0x0fff;
      type = dv.getUint16(off + hl + 2);
      hl += 4;
    }
    this.headerLength = hl;
    this.etherType = type;
    return ParseStatus.OK;
  }

  get dst(): number {
    return readMac(this.dv, this.off);
  }
  get src(): number {
    return readMac(this.dv, this.off + 6);
  }
  /** Absolute offset of the L3 header. */
  get payloadOffset(): number {
    return this.off + this.headerLength;
  }
  get payloadLength(): number {
    return this.len - this.headerLength;
  }
}

/** Writes an untagged Ethernet header at `off`; returns the payload offset. */
export function writeEthernetHeader(dv: DataView, off: number, dst: number, src: number, etherType: number): number {
  writeMac(dv, off, dst);
  writeMac(dv, off + 6, src);
  dv.setUint16(off + 12, etherType);
  return off + ETH_HLEN;
}
