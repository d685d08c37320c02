/**
 * Test helpers: byte builders and an independent (deliberately naive) Internet checksum, so that
 * the tests never check src/packet/checksum.ts against itself.
 */

/** Bytes from hex text; whitespace is ignored. */
export function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}

export function dvOf(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** mulberry32: a tiny seeded PRNG, so "random" tests are the same on every run. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomBytes(rand: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

/** Payload whose byte i is a function of i only, so reassembled data is easy to compare. */
export function patternPayload(n: number, salt = 0): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + (i >>> 8) + salt) & 0xff;
  return b;
}

/** Naive RFC 1071 sum of the concatenation of `parts` (odd parts are padded only at the very end). */
export function naiveSum(...parts: Uint8Array[]): number {
  const all = Buffer.concat(parts);
  let sum = 0;
  for (let i = 0; i < all.length; i += 2) {
    sum += (all[i] << 8) | (i + 1 < all.length ? all[i + 1] : 0);
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

export function naiveChecksum(...parts: Uint8Array[]): number {
  return ~naiveSum(...parts) & 0xffff;
}

export const MAC_A = 0x02_00_00_00_00_0a;
export const MAC_B = 0x02_00_00_00_00_0b;
export const MAC_C = 0x02_00_00_00_00_0c;
export const MAC_D = 0x02_00_00_00_00_0d;
export const MAC_E = 0x02_00_00_00_00_0e;

export function macBytes(mac: number): Buffer {
  return Buffer.from(mac.toString(16).padStart(12, '0'), 'hex');
}

/** An Ethernet frame: dst, src, EtherType, then `payload` (bytes or a length of pattern bytes). */
export function ethFrame(dst: number, src: number, etherType: number, payload: Uint8Array | number = 46): Buffer {
  const body = typeof payload === 'number' ? patternPayload(payload) : payload;
  const h = Buffer.alloc(14);
  macBytes(dst).copy(h, 0);
  macBytes(src).copy(h, 6);
  h.writeUInt16BE(etherType, 12);
  return Buffer.concat([h, body]);
}

export const V4_SRC = Buffer.from([192, 0, 2, 11]);
export const V4_DST = Buffer.from([198, 51, 100, 2]);
export const V6_SRC = hex('20010db8000000000000000000000001');
export const V6_DST = hex('20010db8000000000000000000000002');

export interface L4FrameOptions {
  v6?: boolean;
  dst?: number;
  src?: number;
  payload: Uint8Array;
  /** TCP only. */
  seq?: number;
  ack?: number;
  flags?: number;
  /** TCP options (length a multiple of 4). */
  tcpOptions?: Uint8Array;
  /** IPv4 identification. */
  id?: number;
}

export interface BuiltFrame {
  frame: Buffer;
  /** Offsets from the start of the Ethernet header. */
  l3: number;
  l4: number;
  l4Len: number;
  /** Offset of the L4 checksum field within the L4 header (16 TCP, 6 UDP). */
  csumOffset: number;
}

function ipHeader(v6: boolean, proto: number, l4Total: number, id: number): Buffer {
  if (v6) {
    const h = Buffer.alloc(40);
    h.writeUInt32BE(0x60000000, 0);
    h.writeUInt16BE(l4Total, 4);
    h[6] = proto;
    h[7] = 64;
    V6_SRC.copy(h, 8);
    V6_DST.copy(h, 24);
    return h;
  }
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + l4Total, 2);
  h.writeUInt16BE(id, 4);
  h.writeUInt16BE(0x4000, 6);
  h[8] = 64;
  h[9] = proto;
  V4_SRC.copy(h, 12);
  V4_DST.copy(h, 16);
  h.writeUInt16BE(naiveChecksum(h), 10);
  return h;
}

/** Pseudo-header bytes (RFC 768/793 for v4, RFC 8200 8.1 for v6). */
export function pseudoHeader(v6: boolean, proto: number, l4Len: number, src = v6 ? V6_SRC : V4_SRC, dst = v6 ? V6_DST : V4_DST): Buffer {
  if (v6) {
    const p = Buffer.alloc(40);
    src.copy(p, 0);
    dst.copy(p, 16);
    p.writeUInt32BE(l4Len, 32);
    p[39] = proto;
    return p;
  }
  const p = Buffer.alloc(12);
  src.copy(p, 0);
  dst.copy(p, 4);
  p[9] = proto;
  p.writeUInt16BE(l4Len, 10);
  return p;
}

/** A TCP/IPv4 or TCP/IPv6 frame with a complete, valid checksum. */
export function tcpFrame(o: L4FrameOptions): BuiltFrame {
  const v6 = o.v6 ?? false;
  const opts = o.tcpOptions ?? Buffer.alloc(0);
  const th = Buffer.alloc(20 + opts.length);
  th.writeUInt16BE(40000, 0);
  th.writeUInt16BE(80, 2);
  th.writeUInt32BE((o.seq ?? 1000) >>> 0, 4);
  th.writeUInt32BE((o.ack ?? 5000) >>> 0, 8);
  th[12] = (th.length / 4) << 4;
  th[13] = o.flags ?? 0x18;
  th.writeUInt16BE(502, 14);
  Buffer.from(opts).copy(th, 20);
  const l4Len = th.length + o.payload.length;
  th.writeUInt16BE(naiveChecksum(pseudoHeader(v6, 6, l4Len), th, o.payload), 16);
  const ip = ipHeader(v6, 6, l4Len, o.id ?? 0x1000);
  const frame = ethFrame(o.dst ?? MAC_B, o.src ?? MAC_A, v6 ? 0x86dd : 0x0800, Buffer.concat([ip, th, o.payload]));
  return { frame, l3: 14, l4: 14 + ip.length, l4Len: th.length, csumOffset: 16 };
}

/** A UDP/IPv4 or UDP/IPv6 frame with a complete, valid checksum (0 replaced by 0xffff). */
export function udpFrame(o: L4FrameOptions): BuiltFrame {
  const v6 = o.v6 ?? false;
  const uh = Buffer.alloc(8);
  uh.writeUInt16BE(5353, 0);
  uh.writeUInt16BE(53, 2);
  const l4Len = 8 + o.payload.length;
  uh.writeUInt16BE(l4Len & 0xffff, 4);
  const c = naiveChecksum(pseudoHeader(v6, 17, l4Len), uh, o.payload);
  uh.writeUInt16BE(c === 0 ? 0xffff : c, 6);
  const ip = ipHeader(v6, 17, l4Len, o.id ?? 0x1000);
  const frame = ethFrame(o.dst ?? MAC_B, o.src ?? MAC_A, v6 ? 0x86dd : 0x0800, Buffer.concat([ip, uh, o.payload]));
  return { frame, l3: 14, l4: 14 + ip.length, l4Len: 8, csumOffset: 6 };
}

/**
 * Turns a built frame into what a kernel hands over with NEEDS_CSUM: the L4 checksum field holds
 * only the folded pseudo-header sum (not complemented). Returns the new copy.
 */
export function partialize(b: BuiltFrame): Buffer {
  const f = Buffer.from(b.frame);
  const v6 = f.readUInt16BE(12) === 0x86dd;
  const l4Total = f.length - b.l4;
  const proto = b.csumOffset === 16 ? 6 : 17;
  f.writeUInt16BE(naiveSum(pseudoHeader(v6, proto, l4Total)), b.l4 + b.csumOffset);
  return f;
}

export interface ParsedL4 {
  v6: boolean;
  l3: number;
  l4: number;
  /** L4 length according to the IP header. */
  l4Total: number;
  proto: number;
  ipChecksumOk: boolean;
  l4ChecksumOk: boolean;
}

/** Independent parse + checksum verification of an untagged TCP/UDP over IPv4/IPv6 frame (no extension headers). */
export function inspect(frame: Uint8Array): ParsedL4 {
  const f = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  const type = f.readUInt16BE(12);
  const v6 = type === 0x86dd;
  const l3 = 14;
  let l4: number;
  let l4Total: number;
  let proto: number;
  let ipChecksumOk = true;
  let src: Buffer;
  let dst: Buffer;
  if (v6) {
    l4 = l3 + 40;
    l4Total = f.readUInt16BE(l3 + 4);
    proto = f[l3 + 6];
    src = f.subarray(l3 + 8, l3 + 24);
    dst = f.subarray(l3 + 24, l3 + 40);
  } else {
    const ihl = (f[l3] & 15) * 4;
    l4 = l3 + ihl;
    l4Total = f.readUInt16BE(l3 + 2) - ihl;
    proto = f[l3 + 9];
    ipChecksumOk = naiveSum(f.subarray(l3, l3 + ihl)) === 0xffff;
    src = f.subarray(l3 + 12, l3 + 16);
    dst = f.subarray(l3 + 16, l3 + 20);
  }
  const seg = f.subarray(l4, l4 + l4Total);
  let l4ChecksumOk = naiveSum(pseudoHeader(v6, proto, l4Total, src, dst), seg) === 0xffff;
  if (proto === 17 && seg.readUInt16BE(6) === 0) l4ChecksumOk = false; // we always expect a checksum
  return { v6, l3, l4, l4Total, proto, ipChecksumOk, l4ChecksumOk };
}
