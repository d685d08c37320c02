/**
 * The classic pcap file format (LINKTYPE_ETHERNET), readable by tcpdump, tshark and Wireshark.
 * Writers fill caller-provided buffers; the reader exists for tests and tools.
 */
import { UsernetError } from '../errors.js';

export const PCAP_GLOBAL_HEADER_LEN = 24;
export const PCAP_RECORD_HEADER_LEN = 16;
export const PCAP_MAGIC_USEC = 0xa1b2c3d4;
export const LINKTYPE_ETHERNET = 1;
export const PCAP_DEFAULT_SNAPLEN = 262144;
/** readPcap()'s error code: the bytes are not a whole pcap file. */
export const ERR_BAD_PCAP = 'ERR_BAD_PCAP';

/** Writes the 24-byte global header (little-endian, microsecond timestamps). */
export function writePcapGlobalHeader(dv: DataView, off: number, snaplen = PCAP_DEFAULT_SNAPLEN): number {
  dv.setUint32(off, PCAP_MAGIC_USEC, true);
  dv.setUint16(off + 4, 2, true);
  dv.setUint16(off + 6, 4, true);
  dv.setInt32(off + 8, 0, true);
  dv.setUint32(off + 12, 0, true);
  dv.setUint32(off + 16, snaplen, true);
  dv.setUint32(off + 20, LINKTYPE_ETHERNET, true);
  return off + PCAP_GLOBAL_HEADER_LEN;
}

/** Writes a 16-byte record header; returns the offset where the frame bytes go. */
export function writePcapRecordHeader(dv: DataView, off: number, sec: number, usec: number, capturedLength: number, originalLength: number): number {
  dv.setUint32(off, sec >>> 0, true);
  dv.setUint32(off + 4, usec >>> 0, true);
  dv.setUint32(off + 8, capturedLength, true);
  dv.setUint32(off + 12, originalLength, true);
  return off + PCAP_RECORD_HEADER_LEN;
}

export interface PcapRecord {
  sec: number;
  usec: number;
  originalLength: number;
  data: Buffer;
}

/**
 * Parses a whole pcap file (either byte order, microsecond or nanosecond magic). Anything else —
 * too short, a bad magic number, a record cut short, in its header or its data — throws a
 * UsernetError with code ERR_BAD_PCAP: a capture that lost its tail must not read as complete.
 */
export function readPcap(file: Buffer): { snaplen: number; linktype: number; records: PcapRecord[] } {
  const bad = (why: string): UsernetError => new UsernetError(ERR_BAD_PCAP, `pcap: ${why}`);
  if (file.length < PCAP_GLOBAL_HEADER_LEN) throw bad('shorter than its global header');
  const magicLe = file.readUInt32LE(0);
  let le: boolean;
  if (magicLe === 0xa1b2c3d4 || magicLe === 0xa1b23c4d) le = true;
  else if (file.readUInt32BE(0) === 0xa1b2c3d4 || file.readUInt32BE(0) === 0xa1b23c4d) le = false;
  else throw bad('bad magic number');
  const u32 = (o: number): number => (le ? file.readUInt32LE(o) : file.readUInt32BE(o));
  const records: PcapRecord[] = [];
  let off = PCAP_GLOBAL_HEADER_LEN;
  while (off < file.length) {
    if (off + PCAP_RECORD_HEADER_LEN > file.length) throw bad(`record header at ${off} runs past the end`);
    const incl = u32(off + 8);
    if (off + PCAP_RECORD_HEADER_LEN + incl > file.length) throw bad(`record at ${off} runs past the end`);
    records.push({ sec: u32(off), usec: u32(off + 4), originalLength: u32(off + 12), data: file.subarray(off + 16, off + 16 + incl) });
    off += PCAP_RECORD_HEADER_LEN + incl;
  }
  return { snaplen: u32(16), linktype: u32(20), records };
}

/**
 * Counts the complete records of a pcap stream fed in chunks of any size (sans-I/O): the CLI
 * tells how many frames it wrote without holding the file. `valid` turns false for a stream that does not
 * start with a pcap magic number; `partial` is true while a record (or the global header) is
 * incomplete, i.e. at the end of a stream that was cut short.
 */
export class PcapRecordCounter {
  records = 0;
  valid = true;
  private readonly head = Buffer.alloc(PCAP_RECORD_HEADER_LEN);
  private headUsed = 0;
  private started = false;
  private le = true;
  /** Bytes of record data (or of the global header) still to skip. */
  private skip = PCAP_GLOBAL_HEADER_LEN;
  /** The bytes being skipped are a record's data: it counts once they are all there. */
  private inRecord = false;

  get partial(): boolean {
    return this.valid && (this.skip > 0 || this.headUsed > 0 || !this.started);
  }

  push(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length && this.valid) {
      if (!this.started) {
        // The global header: its first 4 bytes say the byte order.
        const n = Math.min(4 - this.headUsed, chunk.length - i);
        this.head.set(chunk.subarray(i, i + n), this.headUsed);
        this.headUsed += n;
        i += n;
        if (this.headUsed < 4) return;
        const magicLe = this.head.readUInt32LE(0);
        const magicBe = this.head.readUInt32BE(0);
        if (magicLe === 0xa1b2c3d4 || magicLe === 0xa1b23c4d) this.le = true;
        else if (magicBe === 0xa1b2c3d4 || magicBe === 0xa1b23c4d) this.le = false;
        else {
          this.valid = false;
          return;
        }
        this.started = true;
        this.headUsed = 0;
        this.skip = PCAP_GLOBAL_HEADER_LEN - 4;
        continue;
      }
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - i);
        this.skip -= n;
        i += n;
        if (this.skip === 0 && this.inRecord) {
          this.inRecord = false;
          this.records++;
        }
        continue;
      }
      const n = Math.min(PCAP_RECORD_HEADER_LEN - this.headUsed, chunk.length - i);
      this.head.set(chunk.subarray(i, i + n), this.headUsed);
      this.headUsed += n;
      i += n;
      if (this.headUsed < PCAP_RECORD_HEADER_LEN) return;
      this.headUsed = 0;
      this.skip = this.le ? this.head.readUInt32LE(8) : this.head.readUInt32BE(8);
      if (this.skip === 0) this.records++;
      else this.inRecord = true;
    }
  }
}
