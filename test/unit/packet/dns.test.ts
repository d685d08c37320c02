import { describe, it, expect } from 'vitest';
import {
  buildServfail,
  dnsAncount,
  dnsArcount,
  dnsFlags,
  dnsId,
  dnsIsResponse,
  dnsIsTruncated,
  dnsNscount,
  dnsOpcode,
  dnsQdcount,
  dnsRcode,
  dnsRecursionDesired,
  DnsQueryInfo,
  questionEnd,
  sameQuestion,
  sameQuestionAt,
  setDnsId,
  skipName,
  validateQuery,
  DNS_RCODE_NXDOMAIN,
} from '../../../src/packet/dns.js';
import { ParseStatus } from '../../../src/packet/status.js';
import { dvOf, hex, prng } from '../helpers/frames.js';

// Queries captured once from dig 9.18.49 (Debian 12) sent to a loopback socket; answers and
// SERVFAILs built once with scapy 2.5.0 (dns_compress where noted).
const WIRE = {
  // dig www.example.com A: RD+AD, EDNS OPT udp 1232 with a client COOKIE
  digA: '2d6f0120000100000000000103777777076578616d706c6503636f6d000001000100002904d000000000000c000a0008a2fb4a8692036617',
  // dig +noedns +nocookie wWw.ExAmPlE.cOm AAAA (mixed case, as with 0x20 randomisation)
  digMixed: '143c0120000100000000000003775777074578416d506c4503634f6d00001c0001',
  // dig +cookie=0123456789abcdef example.org TXT
  digTxt: '846c01200001000000000001076578616d706c65036f7267000010000100002904d000000000000c000a00080123456789abcdef',
  // answer to digA: www.example.com A 192.0.2.1 (name compressed, c00c), OPT udp 1232 DO
  answerA: '2d6f8180000100010000000103777777076578616d706c6503636f6d0000010001c00c000100010000012c0004c000020100002904d0000080000000',
  // NXDOMAIN to digMixed, question in lower case
  nxdomain: '143c8183000100000000000003777777076578616d706c6503636f6d00001c0001',
  // two questions a.example.com A, b.example.com A; the second compressed (b + c00e)
  twoq: '0007010000020000000000000161076578616d706c6503636f6d00000100010162c00e00010001',
  // NOTIFY (opcode 4), RD=0, example.net SOA
  notify: '009920000001000000000000076578616d706c65036e65740000060001',
  servfailA: '2d6f8182000100000000000003777777076578616d706c6503636f6d0000010001',
  servfailTwoq: '0007818200010000000000000161076578616d706c6503636f6d0000010001',
  servfailNotify: '0099a0820001000000000000076578616d706c65036e65740000060001',
};

function wire(name: keyof typeof WIRE): Buffer {
  return hex(WIRE[name]);
}

/** A query header (id 1, RD, qdcount `qd`) followed by `rest` hex. */
function query(rest: string, qd = 1): Buffer {
  return hex(`00010100${qd.toString(16).padStart(4, '0')}000000000000${rest}`);
}

function validate(b: Buffer, info?: DnsQueryInfo): number {
  return validateQuery(dvOf(b), 0, b.length, info);
}

describe('DNS header accessors', () => {
  it('reads a query from dig', () => {
    const b = wire('digA');
    const dv = dvOf(b);
    expect(dnsId(dv, 0)).toBe(0x2d6f);
    expect(dnsFlags(dv, 0)).toBe(0x0120);
    expect(dnsIsResponse(dv, 0)).toBe(false);
    expect(dnsOpcode(dv, 0)).toBe(0);
    expect(dnsIsTruncated(dv, 0)).toBe(false);
    expect(dnsRecursionDesired(dv, 0)).toBe(true);
    expect(dnsRcode(dv, 0)).toBe(0);
    expect([dnsQdcount(dv, 0), dnsAncount(dv, 0), dnsNscount(dv, 0), dnsArcount(dv, 0)]).toEqual([1, 0, 0, 1]);
  });

  it('reads responses at an offset (TC, RCODE, counts)', () => {
    const pad = 5;
    const big = Buffer.concat([Buffer.alloc(pad), hex(BIG_TC)]);
    const dv = dvOf(big);
    expect(dnsIsResponse(dv, pad)).toBe(true);
    expect(dnsIsTruncated(dv, pad)).toBe(true);
    expect([dnsQdcount(dv, pad), dnsAncount(dv, pad), dnsArcount(dv, pad)]).toEqual([1, 2, 1]);
    const nx = dvOf(wire('nxdomain'));
    expect(dnsRcode(nx, 0)).toBe(DNS_RCODE_NXDOMAIN);
    expect(dnsIsTruncated(nx, 0)).toBe(false);
    expect(dnsOpcode(dvOf(wire('notify')), 0)).toBe(4);
  });

  it('sets the ID without touching the rest', () => {
    const b = wire('answerA');
    setDnsId(dvOf(b), 0, 0xbeef);
    expect(b.toString('hex')).toBe(`beef${WIRE.answerA.slice(4)}`);
  });
});

describe('validateQuery / questionEnd', () => {
  it('accepts real queries and reports the end of the question', () => {
    const info = new DnsQueryInfo();
    expect(validate(wire('digA'), info)).toBe(ParseStatus.OK);
    // 12 header + www.example.com (17) + type/class (4); the OPT record follows
    expect(info).toMatchObject({ id: 0x2d6f, opcode: 0, qdcount: 1, qtype: 1, qclass: 1, firstQuestionEnd: 33, questionEnd: 33 });
    expect(questionEnd(dvOf(wire('digA')), 0, wire('digA').length)).toBe(33);
    expect(validate(wire('digMixed'), info)).toBe(ParseStatus.OK);
    expect(info.qtype).toBe(28);
    expect(validate(wire('digTxt'), info)).toBe(ParseStatus.OK);
    expect(info.qtype).toBe(16);
    expect(validate(wire('notify'), info)).toBe(ParseStatus.OK);
    expect(info.opcode).toBe(4);
  });

  it('accepts a second question compressed against the first', () => {
    const b = wire('twoq');
    const info = new DnsQueryInfo();
    expect(validate(b, info)).toBe(ParseStatus.OK);
    expect(info.qdcount).toBe(2);
    expect(info.firstQuestionEnd).toBe(12 + 15 + 4);
    expect(info.questionEnd).toBe(b.length);
    // the compressed name ends right after its pointer
    expect(skipName(dvOf(b), 0, b.length, 31)).toBe(31 + 2 + 2);
  });

  it('works at an offset inside a larger buffer', () => {
    const q = wire('digA');
    const b = Buffer.concat([Buffer.from('udp header'), q, Buffer.from('trailing junk')]);
    const info = new DnsQueryInfo();
    expect(validateQuery(dvOf(b), 10, q.length, info)).toBe(ParseStatus.OK);
    expect(info.questionEnd).toBe(10 + 33);
    // the length bounds the walk, not the buffer
    expect(validateQuery(dvOf(b), 10, 30, info)).toBe(ParseStatus.TRUNCATED);
  });

  it('refuses responses, empty questions and short messages', () => {
    expect(validate(wire('answerA'))).toBe(ParseStatus.UNSUPPORTED);
    expect(validate(wire('digA').subarray(0, 11))).toBe(ParseStatus.TRUNCATED);
    expect(validate(Buffer.alloc(0))).toBe(ParseStatus.TRUNCATED);
    expect(validate(query('', 0))).toBe(ParseStatus.BAD_LENGTH);
    expect(questionEnd(dvOf(Buffer.alloc(4)), 0, 4)).toBe(-ParseStatus.TRUNCATED);
  });

  it('refuses a question cut anywhere', () => {
    const b = wire('digMixed');
    for (let len = 12; len < b.length; len++) {
      expect(validate(b.subarray(0, len)), `length ${len}`).toBe(ParseStatus.TRUNCATED);
    }
    const two = wire('twoq');
    for (let len = 31; len < two.length; len++) {
      expect(validate(two.subarray(0, len)), `length ${len}`).toBe(ParseStatus.TRUNCATED);
    }
  });

  it('refuses reserved label types', () => {
    expect(validate(query('4161000001000100'))).toBe(ParseStatus.BAD_LENGTH); // 0x40: 64-byte "label"
    expect(validate(query('8161000001000100'))).toBe(ParseStatus.BAD_LENGTH); // 0x80
  });

  it('refuses compression pointers that loop, point forward, into the header or out of bounds', () => {
    expect(validate(query('c00c00010001'))).toBe(ParseStatus.BAD_LENGTH); // to itself
    expect(validate(query('c00000010001'))).toBe(ParseStatus.BAD_LENGTH); // into the header
    expect(validate(query('c00e000100010000'))).toBe(ParseStatus.BAD_LENGTH); // forward
    expect(validate(query('ffff00010001'))).toBe(ParseStatus.BAD_LENGTH); // out of bounds
    expect(validate(query('c0'))).toBe(ParseStatus.TRUNCATED); // half a pointer
    // Second question: "b" then a pointer back to its own "b": reading from there comes back to
    // the same pointer.
    // 12: 01 'a' 00, type, class | 19: 01 'b' c0 13
    expect(validate(query('01610000010001' + '0162c01300010001', 2))).toBe(ParseStatus.BAD_LENGTH);
    // Second question points into the first's label text (13: 'a' = 0x61, a reserved label type)
    expect(validate(query('01610000010001' + '0162c00d00010001', 2))).toBe(ParseStatus.BAD_LENGTH);
    // Third question (27) -> second (19) -> first (12): a legal backward chain.
    const chain = query('01610000010001' + '0162c00c00010001' + '0163c01300010001', 3);
    expect(validate(chain)).toBe(ParseStatus.OK);
    expect(questionEnd(dvOf(chain), 0, chain.length)).toBe(chain.length);
  });

  it('enforces the 255-byte name limit', () => {
    const label = (n: number): string => n.toString(16).padStart(2, '0') + '61'.repeat(n);
    const max = label(63) + label(63) + label(63) + label(61) + '00'; // 64*3 + 62 + 1 = 255
    expect(validate(query(max + '00010001'))).toBe(ParseStatus.OK);
    const over = label(63) + label(63) + label(63) + label(62) + '00';
    expect(validate(query(over + '00010001'))).toBe(ParseStatus.BAD_LENGTH);
    // also when the excess comes through a pointer
    const first = label(63) + label(63) + label(63) + '00'; // 193 bytes at offset 12
    const second = label(62) + 'c00c'; // 63 + 193 = 256
    expect(validate(query(first + '00010001' + second + '00010001', 2))).toBe(ParseStatus.BAD_LENGTH);
  });

  it('never throws on mutated or random input', () => {
    const rand = prng(53);
    const seeds = [wire('digA'), wire('twoq'), wire('digMixed')];
    for (let i = 0; i < 5000; i++) {
      const b = Buffer.from(seeds[i % seeds.length]);
      const flips = 1 + Math.floor(rand() * 4);
      for (let k = 0; k < flips; k++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
      const len = Math.floor(rand() * (b.length + 1));
      const dv = dvOf(b);
      const status = validateQuery(dv, 0, len);
      const end = questionEnd(dv, 0, len);
      if (status === ParseStatus.OK) {
        expect(end).toBeGreaterThan(12);
        expect(end).toBeLessThanOrEqual(len);
        expect(buildServfail(b.subarray(0, len)).readUInt16BE(4)).toBe(1);
      }
      sameQuestion(b.subarray(0, len), seeds[0]);
    }
  });
});

describe('sameQuestion', () => {
  it('matches an answer to its query, whatever the records after the question', () => {
    expect(sameQuestion(wire('digA'), wire('answerA'))).toBe(true);
    expect(sameQuestion(wire('digTxt'), hex(BIG_TC))).toBe(true);
  });

  it('ignores ASCII case (0x20 mixing) but nothing else', () => {
    expect(sameQuestion(wire('digMixed'), wire('nxdomain'))).toBe(true);
    const other = wire('nxdomain');
    other[12 + 1] = 0x76; // www -> vww
    expect(sameQuestion(wire('digMixed'), other)).toBe(false);
    // 0x20 only folds letters: '[' (0x5b) and '{' (0x7b) differ by 0x20 too but are not letters
    const a = query('015b0000010001');
    const b = query('017b0000010001');
    expect(sameQuestion(a, b)).toBe(false);
  });

  it('compares type, class, qdcount and name length', () => {
    const a = wire('digA');
    const aaaa = Buffer.from(a);
    aaaa.writeUInt16BE(28, 29);
    expect(sameQuestion(a, aaaa)).toBe(false);
    const chaos = Buffer.from(a);
    chaos.writeUInt16BE(3, 31);
    expect(sameQuestion(a, chaos)).toBe(false);
    const none = Buffer.from(wire('answerA'));
    none.writeUInt16BE(0, 4);
    expect(sameQuestion(a, none)).toBe(false);
    expect(sameQuestion(query('01610000010001'), query('0261610000010001'))).toBe(false); // a vs aa
    expect(sameQuestion(wire('digA'), wire('digA').subarray(0, 30))).toBe(false);
    expect(sameQuestion(Buffer.alloc(3), wire('digA'))).toBe(false);
  });

  it('compares compressed and uncompressed forms of the same questions', () => {
    const compressed = wire('twoq');
    const plain = query('0161076578616d706c6503636f6d0000010001' + '0162076578616d706c6503636f6d0000010001', 2);
    expect(sameQuestion(compressed, plain)).toBe(true);
    const reordered = query('0162076578616d706c6503636f6d0000010001' + '0161076578616d706c6503636f6d0000010001', 2);
    expect(sameQuestion(compressed, reordered)).toBe(false);
  });

  it('is never true for a malformed question', () => {
    const loop = query('c00c00010001');
    expect(sameQuestion(loop, loop)).toBe(false);
  });

  it('works on DataViews at offsets', () => {
    const q = wire('digA');
    const b = Buffer.concat([Buffer.alloc(8), wire('answerA')]);
    expect(sameQuestionAt(dvOf(q), 0, q.length, dvOf(b), 8, b.length - 8)).toBe(true);
    expect(sameQuestionAt(dvOf(q), 0, q.length, dvOf(b), 0, b.length)).toBe(false);
  });
});

describe('buildServfail', () => {
  it('answers dig: same ID, QR, RD, RA, SERVFAIL, the question, no OPT (as scapy builds it)', () => {
    expect(buildServfail(wire('digA')).toString('hex')).toBe(WIRE.servfailA);
    // the query's AD bit and EDNS cookie are not echoed
  });

  it('keeps the opcode and a clear RD', () => {
    expect(buildServfail(wire('notify')).toString('hex')).toBe(WIRE.servfailNotify);
  });

  it('copies only the first of several questions', () => {
    expect(buildServfail(wire('twoq')).toString('hex')).toBe(WIRE.servfailTwoq);
  });

  it('writes into a given buffer when it is large enough', () => {
    const out = Buffer.alloc(100, 0xee);
    const r = buildServfail(wire('digA'), out);
    expect(r.buffer).toBe(out.buffer);
    expect(r.toString('hex')).toBe(WIRE.servfailA);
    const small = Buffer.alloc(20);
    const r2 = buildServfail(wire('digA'), small);
    expect(r2.buffer).not.toBe(small.buffer);
    expect(r2.toString('hex')).toBe(WIRE.servfailA);
  });

  it('gives a malformed query a header-only answer', () => {
    const loop = query('c00c00010001');
    expect(buildServfail(loop).toString('hex')).toBe('000181820000000000000000');
    expect(buildServfail(hex('abcd')).toString('hex')).toBe('abcd80820000000000000000');
    expect(buildServfail(hex('ab')).toString('hex')).toBe('000080820000000000000000');
  });
});

// Answer to digTxt from scapy (dns_compress): TC set, two TXT records of 401 and 201 bytes of
// strings, OPT udp 1232; 667 bytes.
const BIG_TC =
  '846c83800001000200000001076578616d706c65036f72670000100001c00c001000010000003c0192c8' +
  '78'.repeat(200) +
  'c8' +
  '79'.repeat(200) +
  'c00c001000010000003c00c9c8' +
  '7a'.repeat(200) +
  '00002904d0000080000000';

describe('fixtures', () => {
  it('the large TC answer is what scapy made', () => {
    expect(hex(BIG_TC).length).toBe(667);
  });
});
