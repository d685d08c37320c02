/**
 * The virtio-net header (struct virtio_net_hdr, 10 bytes) that the kernel puts in front of every
 * frame on a TAP opened with IFF_VNET_HDR. It carries offload state: "the checksum is still to be
 * computed from csum_start, stored at csum_start + csum_offset" (NEEDS_CSUM) and "this is a GSO
 * super-frame to be cut into gso_size segments" (gso_type). Fields are in host byte order
 * (little-endian on every platform usernet runs on), unlike everything else on the wire.
 */
import { ParseStatus } from './status.js';

export const VNET_HDR_LEN = 10;
export const VNET_F_NEEDS_CSUM = 1;
export const VNET_F_DATA_VALID = 2;
export const VNET_GSO_NONE = 0;
export const VNET_GSO_TCPV4 = 1;
export const VNET_GSO_UDP = 3;
export const VNET_GSO_TCPV6 = 4;
export const VNET_GSO_UDP_L4 = 5;
export const VNET_GSO_ECN = 0x80;

/** A decoded header; one instance is reused per port. */
export class VnetHeader {
  flags = 0;
  gsoType = VNET_GSO_NONE;
  hdrLen = 0;
  gsoSize = 0;
  csumStart = 0;
  csumOffset = 0;

  clear(): void {
    this.flags = 0;
    this.gsoType = VNET_GSO_NONE;
    this.hdrLen = 0;
    this.gsoSize = 0;
    this.csumStart = 0;
    this.csumOffset = 0;
  }

  /**
   * Reads the header at `off` for a frame of `frameLen` bytes that follows it. Validates what
   * later code will index with: a checksum position inside the frame, a GSO type we know with a
   * non-zero segment size.
   */
  read(dv: DataView, off: number, frameLen: number): ParseStatus {
    const flags = dv.getUint8(off);
    const gsoType = dv.getUint8(off + 1);
    this.flags = flags;
    this.gsoType = gsoType;
    this.hdrLen = dv.getUint16(off + 2, true);
    this.gsoSize = dv.getUint16(off + 4, true);
    this.csumStart = dv.getUint16(off + 6, true);
    this.csumOffset = dv.getUint16(off + 8, true);
    if (flags & VNET_F_NEEDS_CSUM && this.csumStart + this.csumOffset + 2 > frameLen) return ParseStatus.BAD_OFFLOAD;
    const base = gsoType & ~VNET_GSO_ECN;
    if (base !== VNET_GSO_NONE) {
      if (base !== VNET_GSO_TCPV4 && base !== VNET_GSO_TCPV6 && base !== VNET_GSO_UDP_L4) return ParseStatus.UNSUPPORTED;
      if (this.gsoSize === 0 || !(flags & VNET_F_NEEDS_CSUM)) return ParseStatus.BAD_OFFLOAD;
    }
    return ParseStatus.OK;
  }

  get isGso(): boolean {
    return this.gsoType !== VNET_GSO_NONE;
  }
}

/** Writes a virtio-net header at `off`. */
export function writeVnetHeader(
  dv: DataView,
  off: number,
  flags: number,
  gsoType: number,
  hdrLen: number,
  gsoSize: number,
  csumStart: number,
  csumOffset: number,
): void {
  dv.setUint8(off, flags);
  dv.setUint8(off + 1, gsoType);
  dv.setUint16(off + 2, hdrLen, true);
  dv.setUint16(off + 4, gsoSize, true);
  dv.setUint16(off + 6, csumStart, true);
  dv.setUint16(off + 8, csumOffset, true);
}

/** Writes an all-zero header: a complete frame, nothing left to do. */
export function writeEmptyVnetHeader(dv: DataView, off: number): void {
  dv.setUint32(off, 0);
  dv.setUint32(off + 4, 0);
  dv.setUint16(off + 8, 0);
}
