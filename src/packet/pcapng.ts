/**
 * The pcapng file format (draft-ietf-opsawg-pcapng), as far as a capture of several ports needs
 * it: a Section Header Block, one Interface Description Block per port (LINKTYPE_ETHERNET,
 * microsecond timestamps, the port's name in if_name) and Enhanced Packet Blocks, little-endian.
 * Wireshark and tshark read it, and show which port each frame crossed. Writers fill
 * caller-provided buffers; the reader (either byte order) is for replay, tests and tools.
 */
import { UsernetError } from '../errors.js';
import { LINKTYPE_ETHERNET, PCAP_DEFAULT_SNAPLEN, readPcap } from './pcap.js';

export const PCAPNG_SHB = 0x0a0d0d0a;
export const PCAPNG_IDB = 0x00000001;
export const PCAPNG_EPB = 0x00000006;
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;
const OPT_END = 0;
const IF_NAME = 2;
const IF_TSRESOL = 9;
/** readPcapng()'s and readCapture()'s error code: the bytes are not a whole capture file. */
export const ERR_BAD_CAPTURE = 'ERR_BAD_PCAP';

export const PCAPNG_SHB_LEN = 28;
export const PCAPNG_EPB_OVERHEAD = 32;

function pad4(n: number): number {
  return (n + 3) & ~3;
}

/** Writes a Section Header Block (no options, section length unknown). Returns the end offset. */
export function writePcapngSectionHeader(dv: DataView, off: number): number {
  dv.setUint32(off, PCAPNG_SHB, true);
  dv.setUint32(off + 4, PCAPNG_SHB_LEN, true);
  dv.setUint32(off + 8, BYTE_ORDER_MAGIC, true);
  dv.setUint16(off + 12, 1, true);
  dv.setUint16(off + 14, 0, true);
  dv.setInt32(off + 16, -1, true);
  dv.setInt32(off + 20, -1, true);
  dv.setUint32(off + 24, PCAPNG_SHB_LEN, true);
  return off + PCAPNG_SHB_LEN;
}

/** Bytes an Interface Description Block for a port named `name` takes. */
export function pcapngInterfaceLength(name: string): number {
  return 20 + 4 + pad4(Buffer.byteLength(name)) + 4 + 4 + 4;
}

/** Writes an Interface Description Block (Ethernet, µs timestamps, if_name). Returns the end offset. */
export function writePcapngInterface(buf: Uint8Array, dv: DataView, off: number, name: string, snaplen = PCAP_DEFAULT_SNAPLEN): number {
  const nameBytes = Buffer.from(name);
  const len = pcapngInterfaceLength(name);
  dv.setUint32(off, PCAPNG_IDB, true);
  dv.setUint32(off + 4, len, true);
  dv.setUint16(off + 8, LINKTYPE_ETHERNET, true);
  dv.setUint16(off + 10, 0, true);
  dv.setUint32(off + 12, snaplen, true);
  let p = off + 16;
  dv.setUint16(p, IF_NAME, true);
  dv.setUint16(p + 2, nameBytes.length, true);
  buf.fill(0, p + 4, p + 4 + pad4(nameBytes.length));
  buf.set(nameBytes, p + 4);
  p += 4 + pad4(nameBytes.length);
  dv.setUint16(p, IF_TSRESOL, true);
  dv.setUint16(p + 2, 1, true);
  dv.setUint32(p + 4, 0, true);
  dv.setUint8(p + 4, 6); // 10^-6 s
  p += 8;
  dv.setUint16(p, OPT_END, true);
  dv.setUint16(p + 2, 0, true);
  p += 4;
  dv.setUint32(p, len, true);
  return p + 4;
}

const EPB_FLAGS = 2;
/** epb_flags' direction bits: received on the interface, sent from it. */
export const PCAPNG_INBOUND = 1;
export const PCAPNG_OUTBOUND = 2;
/** epb_flags (8 bytes) and the end of options (4). */
const EPB_OPTIONS_LEN = 12;

/** Bytes an Enhanced Packet Block of `capturedLength` bytes takes (with its direction flag). */
export function pcapngPacketLength(capturedLength: number): number {
  return PCAPNG_EPB_OVERHEAD + pad4(capturedLength) + EPB_OPTIONS_LEN;
}

/**
 * Writes an Enhanced Packet Block header for interface `interfaceId` at `timestampUs`
 * (microseconds since the epoch); the caller copies the frame to the returned offset and then
 * calls finishPcapngPacket. Returns where the frame bytes go.
 */
export function writePcapngPacketHeader(dv: DataView, off: number, interfaceId: number, timestampUs: number, capturedLength: number, originalLength: number): number {
  const len = pcapngPacketLength(capturedLength);
  dv.setUint32(off, PCAPNG_EPB, true);
  dv.setUint32(off + 4, len, true);
  dv.setUint32(off + 8, interfaceId, true);
  const high = Math.floor(timestampUs / 0x1_0000_0000);
  dv.setUint32(off + 12, high >>> 0, true);
  dv.setUint32(off + 16, (timestampUs - high * 0x1_0000_0000) >>> 0, true);
  dv.setUint32(off + 20, capturedLength, true);
  dv.setUint32(off + 24, originalLength, true);
  return off + 28;
}

/**
 * Pads the frame written at `dataOff`, writes its direction (PCAPNG_INBOUND: received on the
 * interface, PCAPNG_OUTBOUND: sent from it) and closes the block. Returns the block's end offset.
 */
export function finishPcapngPacket(buf: Uint8Array, dv: DataView, dataOff: number, capturedLength: number, direction: number): number {
  let p = dataOff + pad4(capturedLength);
  buf.fill(0, dataOff + capturedLength, p);
  dv.setUint16(p, EPB_FLAGS, true);
  dv.setUint16(p + 2, 4, true);
  dv.setUint32(p + 4, direction & 3, true);
  dv.setUint32(p + 8, 0, true);
  p += EPB_OPTIONS_LEN;
  dv.setUint32(p, pcapngPacketLength(capturedLength), true);
  return p + 4;
}

export interface CaptureInterface {
  linktype: number;
  name: string;
  /** Timestamp units per second (10^6 unless if_tsresol says otherwise). */
  unitsPerSecond: number;
}

export interface CaptureRecord {
  /** Index into `interfaces` (0 for classic pcap). */
  interfaceId: number;
  /** Microseconds since the epoch. */
  timestampUs: number;
  originalLength: number;
  data: Buffer;
  /** From pcapng's epb_flags, when the file says. */
  direction?: 'inbound' | 'outbound';
}

export interface CaptureFile {
  format: 'pcap' | 'pcapng';
  interfaces: CaptureInterface[];
  records: CaptureRecord[];
}

/**
 * Parses a whole pcapng file: Section Headers (either byte order; several sections are read
 * one after another), Interface Descriptions (if_name, if_tsresol), Enhanced and Simple Packet
 * Blocks; other blocks are skipped. A truncated or malformed block throws a UsernetError with
 * code ERR_BAD_PCAP.
 */
export function readPcapng(file: Buffer): CaptureFile {
  const bad = (why: string): UsernetError => new UsernetError(ERR_BAD_CAPTURE, `pcapng: ${why}`);
  if (file.length < 12 || file.readUInt32LE(0) !== PCAPNG_SHB) throw bad('does not start with a section header block');
  const interfaces: CaptureInterface[] = [];
  const records: CaptureRecord[] = [];
  let sectionBase = 0;
  let le = true;
  let off = 0;
  while (off < file.length) {
    if (off + 12 > file.length) throw bad(`block at ${off} runs past the end`);
    const typeLe = file.readUInt32LE(off);
    if (typeLe === PCAPNG_SHB) {
      const magic = file.readUInt32LE(off + 8);
      if (magic === BYTE_ORDER_MAGIC) le = true;
      else if (file.readUInt32BE(off + 8) === BYTE_ORDER_MAGIC) le = false;
      else throw bad(`section header at ${off} has a bad byte-order magic`);
      sectionBase = interfaces.length;
    }
    const u32 = (o: number): number => (le ? file.readUInt32LE(o) : file.readUInt32BE(o));
    const u16 = (o: number): number => (le ? file.readUInt16LE(o) : file.readUInt16BE(o));
    const type = u32(off);
    const len = u32(off + 4);
    if (len < 12 || len % 4 !== 0 || off + len > file.length) throw bad(`block at ${off} has a bad length ${len}`);
    if (u32(off + len - 4) !== len) throw bad(`block at ${off}: trailing length differs`);
    if (type === PCAPNG_IDB) {
      if (len < 20) throw bad(`interface block at ${off} is too short`);
      const iface: CaptureInterface = { linktype: u16(off + 8), name: '', unitsPerSecond: 1e6 };
      let p = off + 16;
      const end = off + len - 4;
      while (p + 4 <= end) {
        const code = u16(p);
        const olen = u16(p + 2);
        if (code === OPT_END) break;
        if (p + 4 + olen > end) throw bad(`interface block at ${off}: option runs past the block`);
        if (code === IF_NAME) iface.name = file.toString('utf8', p + 4, p + 4 + olen);
        else if (code === IF_TSRESOL && olen >= 1) {
          const r = file[p + 4];
          iface.unitsPerSecond = (r & 0x80) !== 0 ? 2 ** (r & 0x7f) : 10 ** (r & 0x7f);
        }
        p += 4 + pad4(olen);
      }
      interfaces.push(iface);
    } else if (type === PCAPNG_EPB) {
      if (len < PCAPNG_EPB_OVERHEAD) throw bad(`packet block at ${off} is too short`);
      const ifId = sectionBase + u32(off + 8);
      const iface = interfaces[ifId];
      if (!iface) throw bad(`packet block at ${off} names interface ${ifId - sectionBase}, which was not described`);
      const ts = u32(off + 12) * 0x1_0000_0000 + u32(off + 16);
      const caplen = u32(off + 20);
      if (28 + caplen > len - 4) throw bad(`packet block at ${off}: captured length ${caplen} runs past the block`);
      const rec: CaptureRecord = {
        interfaceId: ifId,
        timestampUs: iface.unitsPerSecond === 1e6 ? ts : Math.round((ts * 1e6) / iface.unitsPerSecond),
        originalLength: u32(off + 24),
        data: file.subarray(off + 28, off + 28 + caplen),
      };
      let p = off + 28 + pad4(caplen);
      const end = off + len - 4;
      while (p + 4 <= end) {
        const code = u16(p);
        const olen = u16(p + 2);
        if (code === OPT_END || p + 4 + olen > end) break;
        if (code === EPB_FLAGS && olen === 4) {
          const d = u32(p + 4) & 3;
          if (d === PCAPNG_INBOUND) rec.direction = 'inbound';
          else if (d === PCAPNG_OUTBOUND) rec.direction = 'outbound';
        }
        p += 4 + pad4(olen);
      }
      records.push(rec);
    } else if (type === 3) {
      // Simple Packet Block: interface 0 of the section, no timestamp.
      const orig = u32(off + 8);
      const caplen = Math.min(orig, len - 16);
      if (!interfaces[sectionBase]) throw bad(`simple packet block at ${off} before any interface`);
      records.push({ interfaceId: sectionBase, timestampUs: 0, originalLength: orig, data: file.subarray(off + 12, off + 12 + caplen) });
    }
    off += len;
  }
  return { format: 'pcapng', interfaces, records };
}

/** Parses a classic pcap or a pcapng file, whichever it is. */
export function readCapture(file: Buffer): CaptureFile {
  if (file.length >= 4 && file.readUInt32LE(0) === PCAPNG_SHB) return readPcapng(file);
  const p = readPcap(file);
  // Nanosecond-magic files keep their sub-microsecond digits in usec; scale them.
  const nano = file.readUInt32LE(0) === 0xa1b23c4d || file.readUInt32BE(0) === 0xa1b23c4d;
  return {
    format: 'pcap',
    interfaces: [{ linktype: p.linktype, name: '', unitsPerSecond: nano ? 1e9 : 1e6 }],
    records: p.records.map((r) => ({ interfaceId: 0, timestampUs: r.sec * 1e6 + (nano ? Math.floor(r.usec / 1000) : r.usec), originalLength: r.originalLength, data: r.data })),
  };
}
