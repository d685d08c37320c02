/**
 * Properties of the DHCP and DNS codecs: messages written by the writers (or by a test encoder,
 * for DNS, which has no writer but SERVFAIL) parse back to what was written; any bytes — random,
 * or a valid message with a few bytes overwritten — parse to OK or a ParseStatus, never an
 * exception; and bytes beyond the length given change nothing (the parsers read only their own
 * message, even from a buffer that goes on).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DHCP_MIN_MESSAGE_LENGTH,
  DhcpMessage,
  decodeSearchList,
  encodeSearchList,
  writeDhcpReply,
  writeDhcpRequest,
  type DhcpReplyFields,
  type DhcpRequestFields,
} from '../../../src/packet/dhcp.js';
import { buildDnsResponse, buildServfail, DNS_FLAG_QR, DNS_TYPE_A, DnsQueryInfo, questionEnd, readDnsMessage, sameQuestion, skipName, validateQuery, writeDnsQuery } from '../../../src/packet/dns.js';
import { ParseStatus } from '../../../src/packet/status.js';
import { check, mac, throwsOnly, u16, u32, u8 } from './fc.js';

const INVALID = ['ERR_INVALID_ARGUMENT'];
const STATUSES = new Set<number>(Object.values(ParseStatus));

// ---- domain names ----

const labelChar = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_'.split(''));
const label = fc.string({ unit: labelChar, minLength: 1, maxLength: 63 });
/** A name usernet accepts: labels of 1-63 LDH/underscore characters, at most 253 characters. */
const domain = fc.array(label, { minLength: 1, maxLength: 6 }).map((ls) => ls.join('.')).filter((n) => n.length <= 253);

describe('DHCP search lists (option 119)', () => {
  it('decodeSearchList(encodeSearchList(names)) gives the names back (a trailing dot dropped)', () => {
    check(
      fc.property(fc.array(fc.tuple(domain, fc.boolean()), { minLength: 1, maxLength: 5 }), (names) => {
        const wire = encodeSearchList(names.map(([n, dot]) => (dot ? `${n}.` : n)));
        expect(decodeSearchList(wire)).toEqual(names.map(([n]) => n));
      }),
    );
  });

  it('compression pointers that point backwards decode to the names they point at', () => {
    check(
      fc.property(domain, fc.array(label, { minLength: 0, maxLength: 3 }), (base, prefix) => {
        const first = encodeSearchList([base]);
        fc.pre(prefix.join('.').length + base.length + 1 <= 253);
        const second: number[] = [];
        for (const l of prefix) second.push(l.length, ...Buffer.from(l, 'latin1'));
        second.push(0xc0, 0); // -> the start of the first name
        expect(decodeSearchList(Uint8Array.from([...first, ...second]))).toEqual([base, [...prefix, base].join('.')]);
      }),
    );
  });

  it('any bytes decode to names or an InvalidArgumentError; any strings encode or raise one', () => {
    check(fc.property(fc.uint8Array({ maxLength: 80 }), (b) => throwsOnly(() => decodeSearchList(b), INVALID)), 400);
    check(fc.property(fc.array(fc.string({ maxLength: 70 }), { maxLength: 3 }), (names) => throwsOnly(() => encodeSearchList(names), INVALID)), 300);
  });
});

// ---- DHCP messages ----

const printable = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), minLength: 1, maxLength: 255 });
/** Codes the writer does not already use, for `options` (119 included: it is parsed too). */
const extraCode = fc.integer({ min: 1, max: 254 }).filter((c) => ![12, 50, 51, 52, 53, 54, 55, 56, 57, 61].includes(c));

const requestFields: fc.Arbitrary<DhcpRequestFields> = fc.record(
  {
    messageType: fc.integer({ min: 1, max: 255 }),
    xid: u32,
    chaddr: mac,
    flags: u16,
    secs: u16,
    hops: u8,
    ciaddr: u32,
    giaddr: u32,
    requestedIp: u32,
    serverId: u32,
    clientId: fc.uint8Array({ maxLength: 300 }),
    hostname: fc.oneof(printable, fc.string({ maxLength: 300 })),
    paramRequestList: fc.array(u8, { maxLength: 600 }),
    maxMessageSize: u16,
    leaseTime: u32,
    message: fc.string({ maxLength: 300 }),
    options: fc.array(fc.tuple(extraCode, fc.uint8Array({ maxLength: 300 })), { maxLength: 4 }),
  },
  { requiredKeys: ['messageType', 'xid', 'chaddr'] },
);

/** What bind() should make of option data written as `s`: NVT ASCII, printable only, at most 255. */
function hostnameOf(s: string): string | null {
  let out = '';
  for (const ch of s) {
    const c = ch.charCodeAt(0);
    // The writer maps every UTF-16 unit outside 0x20-0x7e to '?', one per unit.
    out += c >= 0x20 && c <= 0x7e ? ch : '?'.repeat(ch.length);
  }
  out = out.slice(0, 255);
  return out.length ? out : null;
}

function asciiOf(s: string): Uint8Array {
  return Uint8Array.from(s, (ch) => ch.charCodeAt(0)).map((c) => (c >= 0x20 && c <= 0x7e ? c : 0x3f));
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

describe('DHCP messages', () => {
  it('a request written by writeDhcpRequest binds back to its fields and options', () => {
    const m = new DhcpMessage();
    check(
      fc.property(requestFields, fc.integer({ min: 0, max: 9 }), fc.uint8Array({ maxLength: 16 }), (f, off, trailer) => {
        const buf = new Uint8Array(off + 8192 + trailer.length);
        const n = writeDhcpRequest(buf, off, f);
        expect(n).toBeGreaterThanOrEqual(DHCP_MIN_MESSAGE_LENGTH);
        buf.set(trailer, off + n);
        const dv = new DataView(buf.buffer);
        expect(m.bind(dv, off, n)).toBe(ParseStatus.OK);
        expect([m.op, m.htype, m.hlen, m.xid, m.chaddr, m.messageType]).toEqual([1, 1, 6, f.xid, f.chaddr, f.messageType]);
        expect([m.flags, m.secs, m.hops, m.ciaddr, m.giaddr]).toEqual([f.flags ?? 0, f.secs ?? 0, f.hops ?? 0, f.ciaddr ?? 0, f.giaddr ?? 0]);
        expect([m.requestedIp, m.serverId, m.leaseTime, m.maxMessageSize]).toEqual([f.requestedIp ?? -1, f.serverId ?? -1, f.leaseTime ?? -1, f.maxMessageSize ?? -1]);
        expect(m.clientId === null ? null : [...m.clientId]).toEqual(f.clientId === undefined || f.clientId.length === 0 ? null : [...f.clientId]);
        expect(m.paramRequestList === null ? null : [...m.paramRequestList]).toEqual(f.paramRequestList === undefined ? null : Array.from(f.paramRequestList));
        expect(m.hostname).toBe(f.hostname === undefined ? null : hostnameOf(f.hostname));
        expect(m.option(56)).toEqual(f.message === undefined ? null : asciiOf(f.message));
        const extras = new Map<number, Uint8Array[]>();
        for (const [code, data] of f.options ?? []) extras.set(code, [...(extras.get(code) ?? []), data]);
        for (const [code, parts] of extras) expect(m.option(code)).toEqual(concat(parts));
        if (extras.has(119)) expect(m.domainSearch).toEqual(concat(extras.get(119) as Uint8Array[]));
      }),
    );
  });

  const ip = u32;
  const replyFields: fc.Arbitrary<DhcpReplyFields> = fc.record(
    {
      messageType: fc.integer({ min: 1, max: 255 }),
      xid: u32,
      flags: u16,
      ciaddr: ip,
      yiaddr: ip,
      siaddr: ip,
      giaddr: ip,
      chaddr: mac,
      serverId: ip,
      leaseTime: u32,
      renewalTime: u32,
      rebindingTime: u32,
      subnetMask: ip,
      router: ip,
      dnsServers: fc.array(ip, { maxLength: 80 }),
      domainName: domain,
      searchList: fc.array(domain, { maxLength: 4 }),
      mtu: fc.integer({ min: 68, max: 65535 }),
      broadcast: ip,
      message: fc.string({ maxLength: 300 }),
    },
    { requiredKeys: ['messageType', 'xid', 'flags', 'ciaddr', 'yiaddr', 'siaddr', 'giaddr', 'chaddr', 'serverId'] },
  );
  const u32Bytes = (v: number): Uint8Array => Uint8Array.of(v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255);

  it('a reply written by writeDhcpReply binds back to its fields and options', () => {
    const m = new DhcpMessage();
    check(
      fc.property(replyFields, (f) => {
        const buf = new Uint8Array(4096);
        const n = writeDhcpReply(buf, 0, f);
        expect(n).toBeGreaterThanOrEqual(DHCP_MIN_MESSAGE_LENGTH);
        expect(m.bind(new DataView(buf.buffer), 0, n)).toBe(ParseStatus.OK);
        expect([m.op, m.messageType, m.xid, m.flags, m.ciaddr, m.yiaddr, m.siaddr, m.giaddr, m.chaddr, m.serverId]).toEqual([2, f.messageType, f.xid, f.flags, f.ciaddr, f.yiaddr, f.siaddr, f.giaddr, f.chaddr, f.serverId]);
        expect(m.leaseTime).toBe(f.leaseTime ?? -1);
        const u32Option = (code: number, v: number | undefined): void => expect(m.option(code)).toEqual(v === undefined ? null : u32Bytes(v));
        u32Option(58, f.renewalTime);
        u32Option(59, f.rebindingTime);
        u32Option(1, f.subnetMask);
        u32Option(3, f.router);
        u32Option(28, f.broadcast);
        expect(m.option(6)).toEqual(f.dnsServers === undefined || f.dnsServers.length === 0 ? null : concat(f.dnsServers.map(u32Bytes)));
        expect(m.option(15)).toEqual(f.domainName === undefined ? null : Uint8Array.from(Buffer.from(f.domainName, 'latin1')));
        if (f.searchList !== undefined && f.searchList.length > 0) expect(decodeSearchList(m.domainSearch as Uint8Array)).toEqual(f.searchList);
        else expect(m.domainSearch).toBeNull();
        expect(m.option(26)).toEqual(f.mtu === undefined ? null : Uint8Array.of(f.mtu >> 8, f.mtu & 255));
        expect(m.option(56)).toEqual(f.message === undefined ? null : asciiOf(f.message));
      }),
    );
  });

  it('writeDhcpReply with any domain text writes a message or refuses it with an InvalidArgumentError', () => {
    check(
      fc.property(fc.string({ maxLength: 80 }), fc.array(fc.string({ maxLength: 40 }), { maxLength: 3 }), (name, search) => {
        throwsOnly(() => writeDhcpReply(new Uint8Array(2048), 0, { messageType: 2, xid: 1, flags: 0, ciaddr: 0, yiaddr: 0, siaddr: 0, giaddr: 0, chaddr: 2, serverId: 1, domainName: name, searchList: search }), INVALID);
      }),
      300,
    );
  });

  /** A message with a valid fixed part and cookie, then random option areas (and overload sometimes). */
  const headed = fc.tuple(fc.uint8Array({ minLength: 240, maxLength: 600 }), fc.constantFrom(0, 1, 2, 3, 9), fc.boolean()).map(([b, overload, fix]) => {
    const m = Uint8Array.from(b);
    if (fix) {
      m[0] = 1;
      m[1] = 1;
      m[2] = 6;
      m.set([0x63, 0x82, 0x53, 0x63], 236);
      if (overload && m.length >= 243) m.set([52, 1, overload], 240);
    }
    return m;
  });

  /** A valid request with a few bytes overwritten. */
  const damaged = fc.tuple(requestFields, fc.array(fc.tuple(fc.nat(), u8), { minLength: 1, maxLength: 6 })).map(([f, edits]) => {
    const buf = new Uint8Array(8192);
    const n = writeDhcpRequest(buf, 0, f);
    const m = buf.slice(0, n);
    for (const [at, v] of edits) m[240 + (at % (n - 240))] = v;
    return m;
  });

  it('any bytes bind to a status without an exception; bytes past the length change nothing', () => {
    const a = new DhcpMessage();
    const b = new DhcpMessage();
    check(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 400 }), headed, damaged), fc.uint8Array({ minLength: 1, maxLength: 64 }), (msg, trailer) => {
        const exact = new DataView(msg.buffer, msg.byteOffset, msg.length);
        const st = a.bind(exact, 0, msg.length);
        expect(STATUSES).toContain(st);
        const longer = new Uint8Array(msg.length + trailer.length);
        longer.set(msg);
        longer.set(trailer, msg.length);
        expect(b.bind(new DataView(longer.buffer), 0, msg.length)).toBe(st);
        if (st !== ParseStatus.OK) return;
        const summary = (m: DhcpMessage): unknown => [m.messageType, m.requestedIp, m.serverId, m.leaseTime, m.maxMessageSize, m.hostname, m.overload, m.clientId && [...m.clientId], m.paramRequestList && [...m.paramRequestList], m.domainSearch && [...m.domainSearch]];
        expect(summary(b)).toEqual(summary(a));
        for (let code = 0; code < 256; code++) {
          expect(a.optionCount(code)).toBe(b.optionCount(code));
          if (a.optionCount(code) === 0) continue;
          const x = a.option(code);
          expect(x === null ? null : [...x]).toEqual(b.option(code) === null ? null : [...(b.option(code) as Uint8Array)]);
        }
      }),
      400,
    );
  });
});

// ---- DNS ----

interface Question {
  name: string[];
  type: number;
  klass: number;
}

const dnsLabel = fc.uint8Array({ minLength: 1, maxLength: 63 });
const question = fc.record({
  name: fc.array(dnsLabel, { maxLength: 4 }).map((ls) => ls.map((l) => Buffer.from(l).toString('latin1'))),
  type: u16,
  klass: u16,
});

/** Test-side encoder: header, questions (later ones may point at the first's name), then `tail`. */
function encodeQuery(id: number, flags: number, qs: Question[], compress: boolean, tail: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out: number[] = [id >> 8, id & 255, flags >> 8, flags & 255, qs.length >> 8, qs.length & 255, 0, 0, 0, 0, 0, 0];
  qs.forEach((q, i) => {
    if (compress && i > 0 && q.name.join('.') === qs[0].name.join('.') && q.name.length > 0) {
      out.push(0xc0, 12);
    } else {
      for (const l of q.name) out.push(l.length, ...Buffer.from(l, 'latin1'));
      out.push(0);
    }
    out.push(q.type >> 8, q.type & 255, q.klass >> 8, q.klass & 255);
  });
  return Uint8Array.from([...out, ...tail]);
}

const validName = (q: Question): boolean => q.name.reduce((n, l) => n + l.length + 1, 1) <= 255;
const flipCase = (s: string): string => s.replace(/[a-zA-Z]/g, (c) => (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()));

describe('DNS', () => {
  it('validateQuery accepts an encoded query and reports its first question and the section end', () => {
    const info = new DnsQueryInfo();
    check(
      fc.property(u16, u16.map((f) => f & ~DNS_FLAG_QR), fc.array(question, { minLength: 1, maxLength: 4 }).filter((qs) => qs.every(validName)), fc.uint8Array({ maxLength: 20 }), (id, flags, qs, tail) => {
        const body = encodeQuery(id, flags, qs, false);
        const msg = encodeQuery(id, flags, qs, false, tail);
        const dv = new DataView(msg.buffer);
        expect(validateQuery(dv, 0, msg.length, info)).toBe(ParseStatus.OK);
        expect([info.id, info.opcode, info.qdcount, info.qtype, info.qclass, info.questionEnd]).toEqual([id, (flags >> 11) & 15, qs.length, qs[0].type, qs[0].klass, body.length]);
        expect(questionEnd(dv, 0, msg.length)).toBe(body.length);
        expect(skipName(dv, 0, msg.length, 12)).toBe(info.firstQuestionEnd - 4);
      }),
    );
  });

  it('sameQuestion: reflexive, blind to ASCII case and to compression, and sees a changed type', () => {
    check(
      fc.property(u16, fc.array(question, { minLength: 1, maxLength: 3 }).filter((qs) => qs.every(validName)), fc.boolean(), (id, qs, repeat) => {
        const all = repeat ? [...qs, qs[0]] : qs;
        const plain = encodeQuery(id, 0x0100, all, false);
        expect(sameQuestion(plain, plain)).toBe(true);
        expect(sameQuestion(plain, encodeQuery(id ^ 1, 0x8180, all, true))).toBe(true);
        expect(sameQuestion(plain, encodeQuery(id, 0x0100, all.map((q) => ({ ...q, name: q.name.map(flipCase) })), false))).toBe(true);
        expect(sameQuestion(plain, encodeQuery(id, 0x0100, [{ ...all[0], type: all[0].type ^ 1 }, ...all.slice(1)], false))).toBe(false);
      }),
    );
  });

  it('buildServfail answers with the query’s ID and first question, RCODE 2, no other section', () => {
    check(
      fc.property(u16, u16.map((f) => f & ~DNS_FLAG_QR), fc.array(question, { minLength: 1, maxLength: 3 }).filter((qs) => qs.every(validName)), fc.boolean(), (id, flags, qs, into) => {
        const q = encodeQuery(id, flags, qs, false, Uint8Array.of(0, 0, 41));
        const r = buildServfail(q, into ? new Uint8Array(600) : undefined);
        const dv = new DataView(r.buffer, r.byteOffset, r.length);
        expect(dv.getUint16(0)).toBe(id);
        expect(dv.getUint16(2)).toBe(0x8000 | (flags & 0x7900) | 0x0080 | 2);
        expect([dv.getUint16(4), dv.getUint16(6), dv.getUint16(8), dv.getUint16(10)]).toEqual([1, 0, 0, 0]);
        expect(sameQuestion(r, encodeQuery(0, 0, [qs[0]], false))).toBe(true);
        expect(r.length).toBe(encodeQuery(0, 0, [qs[0]], false).length);
      }),
    );
  });

  /** A valid query with a few bytes overwritten. */
  const damaged = fc.tuple(u16, fc.array(question, { minLength: 1, maxLength: 3 }), fc.boolean(), fc.array(fc.tuple(fc.nat(), u8), { minLength: 1, maxLength: 4 })).map(([id, qs, c, edits]) => {
    const m = Uint8Array.from(encodeQuery(id, 0x0100, qs, c));
    for (const [at, v] of edits) m[at % m.length] = v;
    return m;
  });

  it('any bytes: statuses or offsets, never an exception; bytes past the length change nothing', () => {
    const info = new DnsQueryInfo();
    check(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 80 }), damaged), fc.uint8Array({ minLength: 1, maxLength: 40 }), fc.integer({ min: 0, max: 8 }), (msg, trailer, off) => {
        const exact = new Uint8Array(off + msg.length);
        exact.set(msg, off);
        const longer = new Uint8Array(off + msg.length + trailer.length);
        longer.set(msg, off);
        longer.set(trailer, off + msg.length);
        const dvE = new DataView(exact.buffer);
        const dvL = new DataView(longer.buffer);
        const st = validateQuery(dvE, off, msg.length, info);
        expect(STATUSES).toContain(st);
        expect(validateQuery(dvL, off, msg.length)).toBe(st);
        const qe = questionEnd(dvE, off, msg.length);
        expect(questionEnd(dvL, off, msg.length)).toBe(qe);
        expect(qe <= off + msg.length && (qe >= off + 12 || -qe === ParseStatus.TRUNCATED || -qe === ParseStatus.BAD_LENGTH)).toBe(true);
        if (msg.length > 12) expect(skipName(dvL, off, msg.length, off + 12)).toBe(skipName(dvE, off, msg.length, off + 12));
        const sq = sameQuestion(msg, msg);
        expect(sq).toBe(msg.length >= 12 && questionEnd(new DataView(msg.buffer, msg.byteOffset, msg.length), 0, msg.length) >= 0);
        const r = buildServfail(msg);
        expect(r.length).toBeGreaterThanOrEqual(12);
        expect(buildServfail(longer.subarray(off, off + msg.length))).toEqual(r);
      }),
      500,
    );
  });
});

describe('DNS whole messages (writeDnsQuery, buildDnsResponse, readDnsMessage)', () => {
  it('a query and a response built for it read back to what was written', () => {
    check(
      fc.property(u16, domain, fc.constantFrom(DNS_TYPE_A, 28, 16, 15), fc.array(fc.tuple(u32, fc.uint8Array({ minLength: 0, maxLength: 40 })), { maxLength: 5 }), fc.integer({ min: 0, max: 15 }), (id, name, type, records, rcode) => {
        const q = Buffer.alloc(300);
        const n = writeDnsQuery(q, 0, id, name, type);
        const query = readDnsMessage(q, 0, n);
        expect(query).not.toBeNull();
        expect(query!.id).toBe(id);
        expect(query!.questions).toEqual([{ name, type, class: 1 }]);
        const answers = records.map(([ttl, data]) => ({ name, type, ttl, data }));
        const r = buildDnsResponse(query!, rcode, answers);
        const back = readDnsMessage(r, 0, r.length);
        expect(back).not.toBeNull();
        expect(back!.rcode).toBe(rcode);
        expect(back!.flags & DNS_FLAG_QR).toBe(DNS_FLAG_QR);
        expect(back!.answers.map((a) => [a.name, a.type, a.ttl, Buffer.from(a.data).toString('hex')])).toEqual(answers.map((a) => [a.name, a.type, a.ttl, Buffer.from(a.data).toString('hex')]));
      }),
    );
  });

  it('any bytes read to a message or null, never an exception, never past the length given', () => {
    check(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 600 }), fc.nat(), (bytes, cut) => {
        const len = bytes.length === 0 ? 0 : cut % (bytes.length + 1);
        const m = readDnsMessage(bytes, 0, len);
        if (m !== null) for (const a of m.answers) expect(a.data.byteOffset + a.data.length).toBeLessThanOrEqual(bytes.byteOffset + len);
      }),
      500,
    );
  });
});
