/**
 * The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
 *
 * Sums are kept unfolded in a double (exact below 2^53, far beyond any frame) and folded once at
 * the end; the 4-way unrolled DataView loop is the fastest JS form measured on Node 20 (about
 * 180 ns per 1460 bytes). With virtio-net offloads the data path rarely needs it: the kernels at
 * both ends checksum the payload, and this module only completes checksums for ports without
 * offloads, for pcap, and for small control packets.
 */

/** One's-complement sum of `len` bytes at `off`, added to `seed`; result folded to 16 bits. */
export function sum16(dv: DataView, off: number, len: number, seed = 0): number {
  let a = 0;
  let b = 0;
  let c = 0;
  let d = 0;
  let i = off;
  const end16 = off + (len & ~15);
  for (; i < end16; i += 16) {
    a += dv.getUint32(i);
    b += dv.getUint32(i + 4);
    c += dv.getUint32(i + 8);
    d += dv.getUint32(i + 12);
  }
  let sum = seed + a + b + c + d;
  const end4 = off + (len & ~3);
  for (; i < end4; i += 4) sum += dv.getUint32(i);
  if (len & 2) {
    sum += dv.getUint16(i);
    i += 2;
  }
  if (len & 1) sum += dv.getUint8(i) << 8;
  return fold(sum);
}

/** Folds any non-negative sum (< 2^53) into 16 bits with end-around carry. */
export function fold(sum: number): number {
  sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  // Now below 0x10000 + 2^21: one more carry can still leave 17 bits (e.g. 2^49 + 0xffff).
  sum = (sum & 0xffff) + (sum >>> 16);
  return (sum & 0xffff) + (sum >>> 16);
}

/** The checksum field value for a folded sum: its one's complement. */
export function finish(sum: number): number {
  return ~fold(sum) & 0xffff;
}

/** Checksum of `len` bytes at `off` (for IPv4 headers and ICMP messages). */
export function checksum(dv: DataView, off: number, len: number): number {
  return finish(sum16(dv, off, len));
}

/** Pseudo-header sum for IPv4 (RFC 793/768): addresses, protocol, L4 length. Not complemented. */
export function pseudoHeaderSumV4(src: number, dst: number, protocol: number, l4Length: number): number {
  return fold((src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + protocol + l4Length);
}

/** Pseudo-header sum for IPv6 (RFC 8200 8.1); addresses read from the frame. Not complemented. */
export function pseudoHeaderSumV6(dv: DataView, srcOff: number, dstOff: number, nextHeader: number, l4Length: number): number {
  let sum = sum16(dv, srcOff, 16) + sum16(dv, dstOff, 16);
  sum += Math.floor(l4Length / 0x10000) + (l4Length & 0xffff) + nextHeader;
  return fold(sum);
}

/**
 * RFC 1624 eqn. 3: the new checksum after a 16-bit word of the covered data changed from
 * `oldWord` to `newWord`: HC' = ~(~HC + ~m + m').
 */
export function updateChecksum16(oldChecksum: number, oldWord: number, newWord: number): number {
  return ~fold((~oldChecksum & 0xffff) + (~oldWord & 0xffff) + newWord) & 0xffff;
}

/** As updateChecksum16 for a 32-bit value (an IPv4 address in a header or pseudo-header). */
export function updateChecksum32(oldChecksum: number, oldValue: number, newValue: number): number {
  const sum =
    (~oldChecksum & 0xffff) +
    (~(oldValue >>> 16) & 0xffff) +
    (~oldValue & 0xffff) +
    (newValue >>> 16) +
    (newValue & 0xffff);
  return ~fold(sum) & 0xffff;
}
