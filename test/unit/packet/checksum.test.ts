import { describe, it, expect } from 'vitest';
import {
  checksum,
  finish,
  fold,
  pseudoHeaderSumV4,
  pseudoHeaderSumV6,
  sum16,
  updateChecksum16,
  updateChecksum32,
} from '../../../src/packet/checksum.js';
import { setIpv4HeaderChecksum, writeIpv4Header, Ipv4View, IPPROTO_TCP } from '../../../src/packet/ipv4.js';
import { dvOf, hex, naiveChecksum, naiveSum, prng, randomBytes } from '../helpers/frames.js';

/** Reference fold in BigInt: the one's-complement residue, 0 only for 0. */
function refFold(x: bigint): number {
  if (x === 0n) return 0;
  const r = Number(x % 0xffffn);
  return r === 0 ? 0xffff : r;
}

describe('sum16 / checksum (RFC 1071)', () => {
  it('computes the RFC 1071 section 3 example', () => {
    // RFC 1071: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2, whose complement is 0x220d.
    const b = hex('0001f203f4f5f6f7');
    expect(sum16(dvOf(b), 0, 8)).toBe(0xddf2);
    expect(checksum(dvOf(b), 0, 8)).toBe(0x220d);
  });

  it('gives 0 for an empty range and complements to 0xffff', () => {
    const b = Buffer.alloc(4);
    expect(sum16(dvOf(b), 0, 0)).toBe(0);
    expect(checksum(dvOf(b), 0, 0)).toBe(0xffff);
  });

  it('pads an odd trailing byte with a zero low byte', () => {
    expect(sum16(dvOf(hex('01')), 0, 1)).toBe(0x0100);
    expect(sum16(dvOf(hex('123456')), 0, 3)).toBe(0x1234 + 0x5600);
    // The byte after the range must not be read.
    expect(sum16(dvOf(hex('123456ff')), 0, 3)).toBe(0x1234 + 0x5600);
  });

  it('matches a naive implementation for every length 0..80 at offsets 0..5', () => {
    const rand = prng(1071);
    const data = randomBytes(rand, 100);
    const dv = dvOf(data);
    for (let off = 0; off < 6; off++) {
      for (let len = 0; len <= 80; len++) {
        const slice = data.subarray(off, off + len);
        expect(sum16(dv, off, len), `off ${off} len ${len}`).toBe(naiveSum(slice));
        expect(checksum(dv, off, len)).toBe(naiveChecksum(slice));
      }
    }
  });

  it('matches a naive implementation on a 64 KiB buffer of 0xff (many carries)', () => {
    const data = Buffer.alloc(65535, 0xff);
    expect(sum16(dvOf(data), 0, data.length)).toBe(naiveSum(data));
    const rand = prng(7);
    const r = randomBytes(rand, 65535);
    expect(sum16(dvOf(r), 0, r.length)).toBe(naiveSum(r));
  });

  it('works on a DataView that does not start at the beginning of its ArrayBuffer', () => {
    const backing = Buffer.alloc(64);
    hex('0001f203f4f5f6f7').copy(backing, 21);
    const dv = new DataView(backing.buffer, backing.byteOffset + 20, 20);
    expect(sum16(dv, 1, 8)).toBe(0xddf2);
  });

  it('adds a seed, and chained sums over even splits equal one sum', () => {
    const rand = prng(42);
    const data = randomBytes(rand, 301);
    const dv = dvOf(data);
    for (let trial = 0; trial < 50; trial++) {
      const seed = Math.floor(rand() * 0x10000);
      expect(sum16(dv, 0, 301, seed)).toBe(fold(seed + sum16(dv, 0, 301)));
      const split = 2 * Math.floor(rand() * 150);
      expect(sum16(dv, split, 301 - split, sum16(dv, 0, split))).toBe(sum16(dv, 0, 301));
    }
    // A large, unfolded seed is accepted too.
    expect(sum16(dv, 0, 301, 0x12345678)).toBe(refFold(BigInt(0x12345678 + naiveSum(data))));
  });

  it('verifies: data followed by its own checksum sums to 0xffff', () => {
    const rand = prng(3);
    for (const n of [2, 10, 20, 64, 1500]) {
      const data = randomBytes(rand, n + 2);
      data.writeUInt16BE(0, n);
      data.writeUInt16BE(checksum(dvOf(data), 0, n), n);
      expect(sum16(dvOf(data), 0, n + 2)).toBe(0xffff);
      expect(checksum(dvOf(data), 0, n + 2)).toBe(0);
    }
  });
});

describe('fold / finish', () => {
  it('folds small values with end-around carry', () => {
    expect(fold(0)).toBe(0);
    expect(fold(0xffff)).toBe(0xffff);
    expect(fold(0x10000)).toBe(1);
    expect(fold(0x1fffe)).toBe(0xffff);
    expect(fold(0x2fffd)).toBe(0xffff);
    expect(finish(0)).toBe(0xffff);
    expect(finish(0xffff)).toBe(0);
    expect(finish(0x1fffe)).toBe(0);
    expect(finish(0xddf2)).toBe(0x220d);
  });

  it('always returns 16 bits, congruent mod 0xffff, for any sum below 2^53', () => {
    // 2^49 + 0xffff used to come out as 0x10001: three folds are not enough above 2^48.
    const special = [2 ** 49 + 0xffff, 2 ** 53 - 1, 2 ** 48, 2 ** 48 - 1, 2 ** 32 + 0xffff, 0xffff_ffff, 2 ** 52 + 2 ** 36 + 0xffff];
    const rand = prng(53);
    const values = [...special];
    for (let i = 0; i < 2000; i++) values.push(Math.floor(rand() * 2 ** 53));
    for (const v of values) {
      const f = fold(v);
      expect(f, `fold(${v})`).toBeGreaterThanOrEqual(0);
      expect(f, `fold(${v})`).toBeLessThanOrEqual(0xffff);
      expect(f, `fold(${v})`).toBe(refFold(BigInt(v)));
    }
  });
});

describe('incremental update (RFC 1624)', () => {
  it('reproduces the RFC 1624 section 4 example (eqn. 3 gives 0x0000, not 0xffff)', () => {
    // Other header bytes sum to 0xcd7a; m changes from 0x5555 to 0x3285.
    expect(updateChecksum16(0xdd2f, 0x5555, 0x3285)).toBe(0x0000);
  });

  it('equals recomputation for random 16-bit edits', () => {
    const rand = prng(1624);
    for (let trial = 0; trial < 2000; trial++) {
      const n = 2 * (1 + Math.floor(rand() * 40));
      const data = randomBytes(rand, n);
      const dv = dvOf(data);
      const before = checksum(dv, 0, n);
      const at = 2 * Math.floor(rand() * (n / 2));
      const oldWord = data.readUInt16BE(at);
      // Mix in edge words that trip naive implementations.
      const pick = rand();
      const newWord = pick < 0.1 ? 0 : pick < 0.2 ? 0xffff : Math.floor(rand() * 0x10000);
      data.writeUInt16BE(newWord, at);
      if (naiveSum(data) === 0) continue; // all-zero data: the one place the two forms may differ
      expect(updateChecksum16(before, oldWord, newWord), `trial ${trial}`).toBe(checksum(dv, 0, n));
    }
  });

  it('equals recomputation for random 32-bit edits (addresses)', () => {
    const rand = prng(32);
    for (let trial = 0; trial < 2000; trial++) {
      const n = 4 * (1 + Math.floor(rand() * 20));
      const data = randomBytes(rand, n);
      const dv = dvOf(data);
      const before = checksum(dv, 0, n);
      const at = 4 * Math.floor(rand() * (n / 4));
      const oldValue = data.readUInt32BE(at);
      const pick = rand();
      const newValue = pick < 0.1 ? 0 : pick < 0.2 ? 0xffffffff : Math.floor(rand() * 2 ** 32);
      data.writeUInt32BE(newValue, at);
      if (naiveSum(data) === 0) continue;
      expect(updateChecksum32(before, oldValue, newValue), `trial ${trial}`).toBe(checksum(dv, 0, n));
    }
  });

  it('keeps an IPv4 header valid when TTL and an address are rewritten incrementally', () => {
    const b = Buffer.alloc(20);
    const dv = dvOf(b);
    writeIpv4Header(dv, 0, { totalLength: 20, id: 0x1234, protocol: IPPROTO_TCP, src: 0xc000020b, dst: 0xc6336402 });
    // Decrement TTL (the word at 8 is TTL << 8 | protocol).
    const oldWord = dv.getUint16(8);
    dv.setUint8(8, dv.getUint8(8) - 1);
    dv.setUint16(10, updateChecksum16(dv.getUint16(10), oldWord, dv.getUint16(8)));
    // SNAT the source address.
    const oldSrc = dv.getUint32(12);
    dv.setUint32(12, 0xcb007101);
    dv.setUint16(10, updateChecksum32(dv.getUint16(10), oldSrc, 0xcb007101));
    const v = new Ipv4View();
    expect(v.bind(dv, 0, 20)).toBe(0);
    expect(v.checksumValid()).toBe(true);
    const incremental = dv.getUint16(10);
    setIpv4HeaderChecksum(dv, 0);
    expect(dv.getUint16(10)).toBe(incremental);
  });
});

describe('pseudo-header sums', () => {
  it('IPv4: 192.0.2.11 -> 198.51.100.2, TCP, 40 bytes', () => {
    // c000 + 020b + c633 + 6402 + 0006 + 0028 = 0x1ec6e -> 0xec6f
    expect(pseudoHeaderSumV4(0xc000020b, 0xc6336402, 6, 40)).toBe(0xec6f);
  });

  it('IPv4: all-ones addresses fold correctly', () => {
    // ffff*4 + 0x11 + 0xffff = 5 * 0xffff + 0x11 -> 0x11 (mod 0xffff) = 0x0011
    expect(pseudoHeaderSumV4(0xffffffff, 0xffffffff, 17, 0xffff)).toBe(0x0011);
    expect(pseudoHeaderSumV4(0, 0, 0, 0)).toBe(0);
  });

  it('IPv6: 2001:db8::1 -> 2001:db8::2, UDP, 23 bytes', () => {
    const b = Buffer.concat([hex('20010db8000000000000000000000001'), hex('20010db8000000000000000000000002')]);
    // 2001 + 0db8 + 0001 + 2001 + 0db8 + 0002 + 0011 + 0017 = 0x5b9d
    expect(pseudoHeaderSumV6(dvOf(b), 0, 16, 17, 23)).toBe(0x5b9d);
    // A jumbo length (> 0xffff) contributes both of its 16-bit halves: + 0x0001 + 0x2345.
    expect(pseudoHeaderSumV6(dvOf(b), 0, 16, 6, 0x12345)).toBe(0x7ec1);
    // Addresses may be anywhere in the buffer, in any order.
    expect(pseudoHeaderSumV6(dvOf(b), 16, 0, 17, 23)).toBe(0x5b9d);
  });

  it('reproduces the checksums scapy computed for real frames', () => {
    // TCP SYN (scapy): checksum 0x7bd1 at TCP offset 16.
    const syn = hex(
      '02000000000202000000000108004500003c1234400040063c47c000020bc63364029c4000500102030400000000a002faf07bd10000020405b40402080a112233440000000001030307',
    );
    const dv = dvOf(syn);
    expect(dv.getUint16(34 + 16)).toBe(0x7bd1);
    dv.setUint16(34 + 16, 0);
    expect(finish(sum16(dv, 34, 40, pseudoHeaderSumV4(dv.getUint32(26), dv.getUint32(30), 6, 40)))).toBe(0x7bd1);
    // UDP over IPv6 (scapy): checksum 0xbe71 at UDP offset 6.
    const u6 = hex(
      '02000000000202000000000186dd600000000017114020010db800000000000000000000000120010db800000000000000000000000214e900350017be7168656c6c6f2c20757365726e657421',
    );
    const dv6 = dvOf(u6);
    expect(dv6.getUint16(54 + 6)).toBe(0xbe71);
    dv6.setUint16(54 + 6, 0);
    expect(finish(sum16(dv6, 54, 23, pseudoHeaderSumV6(dv6, 22, 38, 17, 23)))).toBe(0xbe71);
  });
});
