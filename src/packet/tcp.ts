/** TCP headers and options (RFC 9293, RFC 7323). */
import { ParseStatus } from './status.js';

export const TCP_MIN_HLEN = 20;
export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
export const TCP_URG = 0x20;
export const TCP_ECE = 0x40;
export const TCP_CWR = 0x80;

export const TCP_OPT_END = 0;
export const TCP_OPT_NOP = 1;
export const TCP_OPT_MSS = 2;
export const TCP_OPT_WSCALE = 3;
export const TCP_OPT_SACK_PERMITTED = 4;
export const TCP_OPT_SACK = 5;
export const TCP_OPT_TIMESTAMP = 8;

/** Options found in a segment; -1 / false when absent. Reused between segments. */
export class TcpOptions {
  mss = -1;
  windowScale = -1;
  sackPermitted = false;
  timestampValue = -1;
  timestampEcho = -1;
  reset(): void {
    this.mss = -1;
    this.windowScale = -1;
    this.sackPermitted = false;
    this.timestampValue = -1;
    this.timestampEcho = -1;
  }
}

export class TcpView {
  dv: DataView = new DataView(new ArrayBuffer(0));
  off = 0;
  /** Bytes of this segment (header + payload), as given by the IP layer. */
  len = 0;
  headerLength = 0;

  bind(dv: DataView, off: number, len: number): ParseStatus {
    this.dv = dv;
    this.off = off;
    this.len = len;
    if (len < TCP_MIN_HLEN) return ParseStatus.TRUNCATED;
    const hl = (dv.getUint8(off + 12) >> 4) * 4;
    if (hl < TCP_MIN_HLEN || hl > len) return ParseStatus.BAD_HEADER_LENGTH;
    this.headerLength = hl;
    return ParseStatus.OK;
  }

  get srcPort(): number {
    return this.dv.getUint16(this.off);
  }
  get dstPort(): number {
    return this.dv.getUint16(this.off + 2);
  }
  get seq(): number {
    return this.dv.getUint32(this.off + 4);
  }
  get ack(): number {
    return this.dv.getUint32(this.off + 8);
  }
  get flags(): number {
    return this.dv.getUint8(this.off + 13);
  }
  get window(): number {
    return this.dv.getUint16(this.off + 14);
  }
  get checksum(): number {
    return this.dv.getUint16(this.off + 16);
  }
  get urgentPointer(): number {
    return this.dv.getUint16(this.off + 18);
  }
  get payloadOffset(): number {
    return this.off + this.headerLength;
  }
  get payloadLength(): number {
    return this.len - this.headerLength;
  }

  /**
   * Reads the options into `out`. Returns BAD_LENGTH for an option whose length runs past the
   * header or is below 2 (a classic way to make parsers loop forever).
   */
  readOptions(out: TcpOptions): ParseStatus {
    out.reset();
    const dv = this.dv;
    const end = this.off + this.headerLength;
    let p = this.off + TCP_MIN_HLEN;
    while (p < end) {
      const kind = dv.getUint8(p);
      if (kind === TCP_OPT_END) break;
      if (kind === TCP_OPT_NOP) {
        p++;
        continue;
      }
      if (p + 2 > end) return ParseStatus.BAD_LENGTH;
      const ol = dv.getUint8(p + 1);
      if (ol < 2 || p + ol > end) return ParseStatus.BAD_LENGTH;
      if (kind === TCP_OPT_MSS && ol === 4) out.mss = dv.getUint16(p + 2);
      else if (kind === TCP_OPT_WSCALE && ol === 3) out.windowScale = Math.min(dv.getUint8(p + 2), 14);
      else if (kind === TCP_OPT_SACK_PERMITTED && ol === 2) out.sackPermitted = true;
      else if (kind === TCP_OPT_TIMESTAMP && ol === 10) {
        out.timestampValue = dv.getUint32(p + 2);
        out.timestampEcho = dv.getUint32(p + 6);
      }
      p += ol;
    }
    return ParseStatus.OK;
  }
}

export interface TcpHeaderFields {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  /** Header length including options already written after the fixed part (default 20). */
  headerLength?: number;
  urgentPointer?: number;
}

/** Writes the fixed 20-byte TCP header with checksum 0; returns the options offset. */
export function writeTcpHeader(dv: DataView, off: number, f: TcpHeaderFields): number {
  dv.setUint16(off, f.srcPort);
  dv.setUint16(off + 2, f.dstPort);
  dv.setUint32(off + 4, f.seq >>> 0);
  dv.setUint32(off + 8, f.ack >>> 0);
  dv.setUint8(off + 12, ((f.headerLength ?? TCP_MIN_HLEN) / 4) << 4);
  dv.setUint8(off + 13, f.flags);
  dv.setUint16(off + 14, f.window);
  dv.setUint16(off + 16, 0);
  dv.setUint16(off + 18, f.urgentPointer ?? 0);
  return off + TCP_MIN_HLEN;
}
