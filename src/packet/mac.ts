/**
 * MAC addresses as numbers: a 48-bit MAC fits exactly in a double, so the switch keys its table
 * with numbers (about 2 ns to read) instead of strings (about 50 ns to build).
 */
import { InvalidArgumentError } from '../errors.js';

export const BROADCAST_MAC = 0xffff_ffff_ffff;
const TWO_32 = 0x1_0000_0000;

/** Reads the 6-byte MAC at `off` as a number. */
export function readMac(dv: DataView, off: number): number {
  return dv.getUint16(off) * TWO_32 + dv.getUint32(off + 2);
}

/** Writes a numeric MAC as 6 bytes at `off`. */
export function writeMac(dv: DataView, off: number, mac: number): void {
  dv.setUint16(off, Math.floor(mac / TWO_32));
  dv.setUint32(off + 2, mac % TWO_32);
}

/** True for group (multicast and broadcast) addresses: the I/G bit, lowest bit of the first byte. */
export function isGroupMac(mac: number): boolean {
  return Math.floor(mac / 0x100_0000_0000) % 2 === 1;
}

/** True for a locally administered address (U/L bit set). */
export function isLocalMac(mac: number): boolean {
  return (Math.floor(mac / 0x100_0000_0000) & 2) === 2;
}

/** Formats as lower-case colon-separated hex, like `ip link` and `bridge fdb` do. */
export function macToString(mac: number): string {
  let s = '';
  for (let shift = 40; shift >= 0; shift -= 8) {
    const byte = Math.floor(mac / 2 ** shift) % 256;
    s += (byte < 16 ? '0' : '') + byte.toString(16) + (shift ? ':' : '');
  }
  return s;
}

/** Six bytes for a numeric MAC. */
export function macToBytes(mac: number): Buffer {
  const b = Buffer.alloc(6);
  writeMac(new DataView(b.buffer, b.byteOffset, 6), 0, mac);
  return b;
}

/** The MAC in six bytes (Buffer/Uint8Array at `off`) as a number. */
export function macFromBytes(bytes: Uint8Array, off = 0): number {
  if (bytes.length < off + 6) throw new InvalidArgumentError('a MAC address needs 6 bytes');
  let mac = 0;
  for (let i = 0; i < 6; i++) mac = mac * 256 + bytes[off + i];
  return mac;
}

const MAC_RE = /^([0-9a-fA-F]{1,2})([:-])([0-9a-fA-F]{1,2})\2([0-9a-fA-F]{1,2})\2([0-9a-fA-F]{1,2})\2([0-9a-fA-F]{1,2})\2([0-9a-fA-F]{1,2})$/;

/** Parses `02:42:0a:00:02:64` (or with `-`); throws InvalidArgumentError naming the input. */
export function parseMac(text: string): number {
  const m = MAC_RE.exec(text.trim());
  if (!m) throw new InvalidArgumentError(`invalid MAC address "${text}" (expected six hex bytes like 02:42:0a:00:02:64)`);
  let mac = 0;
  for (const i of [1, 3, 4, 5, 6, 7]) mac = mac * 256 + parseInt(m[i], 16);
  return mac;
}
