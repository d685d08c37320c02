/** ARP for IPv4 over Ethernet (RFC 826). Other hardware/protocol sizes are UNSUPPORTED. */
import { readMac, writeMac } from './mac.js';
import { ParseStatus } from './status.js';

export const ARP_LEN = 28;
export const ARP_HTYPE_ETHERNET = 1;
export const ARP_OP_REQUEST = 1;
export const ARP_OP_REPLY = 2;

export class ArpView {
  dv: DataView = new DataView(new ArrayBuffer(0));
  off = 0;

  bind(dv: DataView, off: number, len: number): ParseStatus {
    this.dv = dv;
    this.off = off;
    if (len < ARP_LEN) return ParseStatus.TRUNCATED;
    // Hardware and protocol sizes decide where every later field is: validate them, never trust.
    if (dv.getUint16(off) !== ARP_HTYPE_ETHERNET || dv.getUint16(off + 2) !== 0x0800) return ParseStatus.UNSUPPORTED;
    if (dv.getUint8(off + 4) !== 6 || dv.getUint8(off + 5) !== 4) return ParseStatus.BAD_LENGTH;
    return ParseStatus.OK;
  }

  get operation(): number {
    return this.dv.getUint16(this.off + 6);
  }
  get senderMac(): number {
    return readMac(this.dv, this.off + 8);
  }
  get senderIp(): number {
    return this.dv.getUint32(this.off + 14);
  }
  get targetMac(): number {
    return readMac(this.dv, this.off + 18);
  }
  get targetIp(): number {
    return this.dv.getUint32(this.off + 24);
  }
}

/** Writes an Ethernet/IPv4 ARP packet at `off`; returns its length (28). */
export function writeArp(
  dv: DataView,
  off: number,
  operation: number,
  senderMac: number,
  senderIp: number,
  targetMac: number,
  targetIp: number,
): number {
  dv.setUint16(off, ARP_HTYPE_ETHERNET);
  dv.setUint16(off + 2, 0x0800);
  dv.setUint8(off + 4, 6);
  dv.setUint8(off + 5, 4);
  dv.setUint16(off + 6, operation);
  writeMac(dv, off + 8, senderMac);
  dv.setUint32(off + 14, senderIp >>> 0);
  writeMac(dv, off + 18, targetMac);
  dv.setUint32(off + 24, targetIp >>> 0);
  return ARP_LEN;
}
