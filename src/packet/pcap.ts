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
