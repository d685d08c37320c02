/**
 * Properties of the address text codecs (MAC, IPv4, IPv4 CIDR, IPv6 formatting) and of the
 * Internet checksum: formatting then parsing is the identity, any string parses to an address
 * or an InvalidArgumentError, and the checksum agrees with a naive sum at any offset and length.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fold, pseudoHeaderSumV4, pseudoHeaderSumV6, sum16, updateChecksum16, updateChecksum32, checksum, finish } from '../../../src/packet/checksum.js';
import { ipv4ToString, ipv6ToString, parseIpv4, parseIpv4Cidr, prefixToMask, tryParseIpv4 } from '../../../src/packet/ip-address.js';
import { isGroupMac, isLocalMac, macFromBytes, macToBytes, macToString, parseMac, readMac, writeMac } from '../../../src/packet/mac.js';
import { check, mac, naiveSum, place, u16, u32, throwsOnly } from './fc.js';

const INVALID = ['ERR_INVALID_ARGUMENT'];
/** Strings near the formats: mostly the characters addresses are made of. */
const addressish = fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF:.-/ x%[]'.split('')), maxLength: 24 });
const anyString = fc.oneof(addressish, fc.string({ maxLength: 24 }), fc.string({ unit: 'binary', maxLength: 24 }));

describe('MAC addresses', () => {
  it('macToString then parseMac is the identity, and bytes round-trip', () => {
    check(
      fc.property(mac, fc.boolean(), fc.boolean(), (m, upper, dashes) => {
        let text = macToString(m);
        expect(text).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
        if (upper) text = text.toUpperCase();
        if (dashes) text = text.replaceAll(':', '-');
        expect(parseMac(text)).toBe(m);
        expect(macFromBytes(macToBytes(m))).toBe(m);
        const b = new Uint8Array(9);
        const dv = new DataView(b.buffer);
        writeMac(dv, 3, m);
        expect(readMac(dv, 3)).toBe(m);
        expect(isGroupMac(m)).toBe((b[3] & 1) === 1);
        expect(isLocalMac(m)).toBe((b[3] & 2) === 2);
      }),
    );
  });

  it('parseMac takes any string to a 48-bit number or an InvalidArgumentError', () => {
    check(
      fc.property(anyString, (s) => {
        throwsOnly(() => {
          const m = parseMac(s);
          expect(Number.isInteger(m) && m >= 0 && m < 2 ** 48).toBe(true);
        }, INVALID);
      }),
      300,
    );
  });
});

describe('IPv4 addresses', () => {
  it('ipv4ToString then parse is the identity', () => {
    check(
      fc.property(u32, (a) => {
        const text = ipv4ToString(a);
        expect(tryParseIpv4(text)).toBe(a);
        expect(parseIpv4(` ${text} `)).toBe(a);
      }),
    );
  });

  it('agrees with fast-check’s own IPv4 generator (no leading zeros)', () => {
    check(
      fc.property(fc.ipV4(), (text) => {
        expect(ipv4ToString(tryParseIpv4(text))).toBe(text);
      }),
    );
  });

  it('any string parses to a uint32 or -1 (tryParseIpv4) / an InvalidArgumentError (parseIpv4)', () => {
    check(
      fc.property(anyString, (s) => {
        const a = tryParseIpv4(s);
        expect(a === -1 || (Number.isInteger(a) && a >= 0 && a <= 0xffffffff)).toBe(true);
        if (a >= 0) expect(ipv4ToString(a)).toBe(s);
        throwsOnly(() => parseIpv4(s), INVALID);
      }),
      300,
    );
  });

  it('CIDRs round-trip, and any string is a CIDR or an InvalidArgumentError', () => {
    check(
      fc.property(u32, fc.integer({ min: 0, max: 32 }), (a, prefix) => {
        expect(parseIpv4Cidr(`${ipv4ToString(a)}/${prefix}`)).toEqual({ address: a, prefix });
        expect(prefixToMask(prefix)).toBe(2 ** 32 - 2 ** (32 - prefix));
      }),
    );
    check(
      fc.property(anyString, fc.option(fc.integer({ min: 0, max: 32 }), { nil: undefined }), fc.integer({ min: 0, max: 32 }), (s, dflt, min) => {
        throwsOnly(() => {
          const c = parseIpv4Cidr(s, dflt, min);
          expect(c.prefix).toBeGreaterThanOrEqual(min);
          expect(c.prefix).toBeLessThanOrEqual(32);
        }, INVALID);
      }),
      300,
    );
  });
});

describe('IPv6 formatting', () => {
  it('matches the WHATWG URL serializer (RFC 5952 text) and names the same 16 bytes', () => {
    // Words biased towards zero, so the "longest run of zeros" rule is exercised.
    const word = fc.oneof(fc.constant(0), fc.constant(0), u16);
    check(
      fc.property(fc.array(word, { minLength: 8, maxLength: 8 }), fc.integer({ min: 0, max: 5 }), (words, off) => {
        const b = new Uint8Array(off + 16);
        words.forEach((w, i) => {
          b[off + 2 * i] = w >> 8;
          b[off + 2 * i + 1] = w & 255;
        });
        const text = ipv6ToString(b, off);
        expect(text).toBe(new URL(`http://[${text}]/`).hostname.slice(1, -1));
        // Parse it back independently: expand "::" and compare the words.
        const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
        const h = head === '' ? [] : head.split(':');
        const t = tail === undefined ? [] : tail === '' ? [] : tail.split(':');
        const all = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
        expect(all.map((x) => parseInt(x, 16))).toEqual(words);
      }),
      300,
    );
  });
});

describe('Internet checksum', () => {
  it('sum16 equals a naive RFC 1071 sum at any offset, length and seed', () => {
    check(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 0xffffff }), (bytes, off, seed) => {
        const p = place(bytes, off);
        expect(sum16(p.dv, off, bytes.length, seed)).toBe(naiveSum(bytes, seed));
        expect(checksum(p.dv, off, bytes.length)).toBe(~naiveSum(bytes) & 0xffff);
      }),
      300,
    );
  });

  it('fold gives the end-around-carry sum of any value below 2^53', () => {
    check(
      fc.property(fc.maxSafeNat(), (n) => {
        let s = n;
        while (s > 0xffff) s = (s % 0x10000) + Math.floor(s / 0x10000);
        expect(fold(n)).toBe(s);
        expect(finish(n)).toBe(~s & 0xffff);
      }),
    );
  });

  it('RFC 1624 incremental updates equal recomputing the checksum (up to the two zeros)', () => {
    // One's complement has two zeros; RFC 1624's form may give 0xffff where a recomputation gives 0.
    const same = (x: number, y: number): boolean => x === y || ((x === 0 || x === 0xffff) && (y === 0 || y === 0xffff));
    check(
      fc.property(fc.uint8Array({ minLength: 4, maxLength: 64 }), fc.nat(), u16, u32, (bytes, at, w, v) => {
        const b = new Uint8Array(bytes.length & ~3 || 4);
        b.set(bytes.subarray(0, b.length));
        const dv = new DataView(b.buffer);
        const i16 = 2 * (at % (b.length / 2));
        const c0 = checksum(dv, 0, b.length);
        const old16 = dv.getUint16(i16);
        dv.setUint16(i16, w);
        expect(same(updateChecksum16(c0, old16, w), checksum(dv, 0, b.length))).toBe(true);
        const i32 = 4 * (at % (b.length / 4));
        const c1 = checksum(dv, 0, b.length);
        const old32 = dv.getUint32(i32);
        dv.setUint32(i32, v);
        expect(same(updateChecksum32(c1, old32, v), checksum(dv, 0, b.length))).toBe(true);
      }),
    );
  });

  it('pseudo-header sums equal a naive sum over the pseudo-header bytes', () => {
    check(
      fc.property(u32, u32, fc.integer({ min: 0, max: 255 }), u16, (src, dst, proto, len) => {
        const b = new Uint8Array(12);
        const dv = new DataView(b.buffer);
        dv.setUint32(0, src);
        dv.setUint32(4, dst);
        b[9] = proto;
        dv.setUint16(10, len);
        expect(pseudoHeaderSumV4(src, dst, proto, len)).toBe(naiveSum(b));
      }),
    );
    check(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 0xffffffff }), (addrs, proto, len) => {
        const p = new Uint8Array(40);
        p.set(addrs, 0);
        new DataView(p.buffer).setUint32(32, len);
        p[39] = proto;
        const dv = new DataView(addrs.buffer, addrs.byteOffset, 32);
        expect(pseudoHeaderSumV6(dv, 0, 16, proto, len)).toBe(naiveSum(p));
      }),
    );
  });
});
