/**
 * DNS messages (RFC 1035), only as much as a forwarder needs: the 12-byte header, the question
 * section, and a SERVFAIL built from a query. The forwarder never rewrites answers beyond their
 * ID, so resource records are not decoded here at all — whatever an upstream sends (EDNS, DNSSEC,
 * TC, records of any size) passes through as bytes.
 *
 * Names are walked, never turned into strings: a label is a length byte (1-63) and that many
 * bytes, a zero byte ends the name, and a byte 0b11xxxxxx starts a 14-bit compression pointer to
 * an earlier offset in the message. A pointer must point strictly before the start of the run of
 * labels it ends (the name's first byte, or the previous pointer's target): reading forward from
 * a target at or after that start would come back to the same pointer, so the rule rejects every
 * loop without a visited set, and a forward or out-of-range pointer with it. Pointers into the
 * 12-byte header are rejected too. Label types 0b01 (RFC 2673, historic) and 0b10 are malformed.
 *
 * Like the other views these return a ParseStatus (or a negative one where an offset is the
 * result) and never throw: a malformed query is something to count, not an exception.
 */
import { InvalidArgumentError } from '../errors.js';
import { ParseStatus } from './status.js';

export const DNS_HLEN = 12;
export const DNS_PORT = 53;

export const DNS_FLAG_QR = 0x8000;
export const DNS_FLAG_AA = 0x0400;
export const DNS_FLAG_TC = 0x0200;
export const DNS_FLAG_RD = 0x0100;
export const DNS_FLAG_RA = 0x0080;
const OPCODE_SHIFT = 11;
const OPCODE_MASK = 0x7800;
const RCODE_MASK = 0x000f;

export const DNS_OPCODE_QUERY = 0;
export const DNS_RCODE_NOERROR = 0;
export const DNS_RCODE_FORMERR = 1;
export const DNS_RCODE_SERVFAIL = 2;
export const DNS_RCODE_NXDOMAIN = 3;

export const DNS_TYPE_A = 1;
export const DNS_TYPE_TXT = 16;
export const DNS_TYPE_AAAA = 28;
export const DNS_TYPE_OPT = 41;
export const DNS_CLASS_IN = 1;

/** Longest name in wire form, root label included (RFC 1035 §2.3.4). */
export const DNS_MAX_NAME = 255;

// ---- header fields, at `off` (the first byte of the DNS message) ----

export function dnsId(dv: DataView, off: number): number {
  return dv.getUint16(off);
}
export function setDnsId(dv: DataView, off: number, id: number): void {
  dv.setUint16(off, id);
}
/** The whole 16-bit flags word (QR, opcode, AA, TC, RD, RA, Z, AD, CD, RCODE). */
export function dnsFlags(dv: DataView, off: number): number {
  return dv.getUint16(off + 2);
}
export function dnsIsResponse(dv: DataView, off: number): boolean {
  return (dv.getUint16(off + 2) & DNS_FLAG_QR) !== 0;
}
export function dnsOpcode(dv: DataView, off: number): number {
  return (dv.getUint16(off + 2) & OPCODE_MASK) >>> OPCODE_SHIFT;
}
export function dnsIsTruncated(dv: DataView, off: number): boolean {
  return (dv.getUint16(off + 2) & DNS_FLAG_TC) !== 0;
}
export function dnsRecursionDesired(dv: DataView, off: number): boolean {
  return (dv.getUint16(off + 2) & DNS_FLAG_RD) !== 0;
}
/** The 4-bit header RCODE (EDNS extends it in the OPT record, which is not decoded here). */
export function dnsRcode(dv: DataView, off: number): number {
  return dv.getUint16(off + 2) & RCODE_MASK;
}
export function dnsQdcount(dv: DataView, off: number): number {
  return dv.getUint16(off + 4);
}
export function dnsAncount(dv: DataView, off: number): number {
  return dv.getUint16(off + 6);
}
export function dnsNscount(dv: DataView, off: number): number {
  return dv.getUint16(off + 8);
}
export function dnsArcount(dv: DataView, off: number): number {
  return dv.getUint16(off + 10);
}

// ---- names ----

/**
 * Steps through a possibly compressed name one label at a time. Reused (one per walker), so a
 * walk allocates nothing. After `next()` returns a length > 0, the label's bytes are at
 * `labelPos`..`labelPos + length`; 0 is the root label (the end); -1 a malformed or truncated
 * name. `end` is the offset just past the name where it sits (after its first pointer, if any).
 */
class NameCursor {
  private dv: DataView = new DataView(new ArrayBuffer(0));
  private msgOff = 0;
  private msgEnd = 0;
  private pos = 0;
  /** Pointers must point before this (see the theory at the top). */
  private limit = 0;
  private total = 0;
  labelPos = 0;
  end = -1;
  /** Set by next() when it returned -1: TRUNCATED if the name ran off the end, else BAD_LENGTH. */
  status: ParseStatus = ParseStatus.OK;

  reset(dv: DataView, msgOff: number, msgLen: number, pos: number): void {
    this.dv = dv;
    this.msgOff = msgOff;
    this.msgEnd = msgOff + msgLen;
    this.pos = pos;
    this.limit = pos;
    this.total = 0;
    this.end = -1;
    this.status = ParseStatus.OK;
  }

  next(): number {
    for (;;) {
      if (this.pos >= this.msgEnd) return this.fail(ParseStatus.TRUNCATED);
      const b = this.dv.getUint8(this.pos);
      const kind = b & 0xc0;
      if (kind === 0xc0) {
        if (this.pos + 2 > this.msgEnd) return this.fail(ParseStatus.TRUNCATED);
        const target = this.msgOff + (((b & 0x3f) << 8) | this.dv.getUint8(this.pos + 1));
        if (this.end < 0) this.end = this.pos + 2;
        if (target >= this.limit || target < this.msgOff + DNS_HLEN) return this.fail(ParseStatus.BAD_LENGTH);
        this.pos = target;
        this.limit = target;
        continue;
      }
      if (kind !== 0) return this.fail(ParseStatus.BAD_LENGTH);
      // A length byte plus the label (or the root's zero byte) count toward the 255-byte limit.
      this.total += b + 1;
      if (this.total > DNS_MAX_NAME) return this.fail(ParseStatus.BAD_LENGTH);
      if (b === 0) {
        if (this.end < 0) this.end = this.pos + 1;
        return 0;
      }
      if (this.pos + 1 + b > this.msgEnd) return this.fail(ParseStatus.TRUNCATED);
      this.labelPos = this.pos + 1;
      this.pos += 1 + b;
      return b;
    }
  }

  private fail(status: ParseStatus): number {
    this.status = status;
    return -1;
  }
}

const cursorA = new NameCursor();
const cursorB = new NameCursor();

/**
 * The offset just past the name starting at `pos` in the message at `msgOff` (`msgLen` bytes),
 * or a negative ParseStatus (-TRUNCATED, -BAD_LENGTH) if it is malformed.
 */
export function skipName(dv: DataView, msgOff: number, msgLen: number, pos: number): number {
  const c = cursorA;
  c.reset(dv, msgOff, msgLen, pos);
  let n: number;
  while ((n = c.next()) > 0);
  return n < 0 ? -c.status : c.end;
}

/**
 * The offset just past the question section (all `qdcount` questions, each a well-formed name
 * and 4 bytes of type and class) of the message at `off`, or a negative ParseStatus:
 * -TRUNCATED (shorter than the header, or a question runs off the end) or -BAD_LENGTH (a
 * malformed name). Answers are not looked at.
 */
export function questionEnd(dv: DataView, off: number, len: number): number {
  if (len < DNS_HLEN) return -ParseStatus.TRUNCATED;
  const count = dv.getUint16(off + 4);
  let pos = off + DNS_HLEN;
  for (let i = 0; i < count; i++) {
    pos = skipName(dv, off, len, pos);
    if (pos < 0) return pos;
    pos += 4;
    if (pos > off + len) return -ParseStatus.TRUNCATED;
  }
  return pos;
}

/** What validateQuery found out, for callers that want more than the status (reused, not allocated). */
export class DnsQueryInfo {
  id = 0;
  opcode = 0;
  qdcount = 0;
  /** Type and class of the first question. */
  qtype = 0;
  qclass = 0;
  /** Offset just past the first question (it is never compressed: nothing precedes it to point to). */
  firstQuestionEnd = 0;
  /** Offset just past the whole question section; EDNS and other records follow. */
  questionEnd = 0;
}

/**
 * Whether the message at `off` (`len` bytes) is a query a forwarder can pass on: a full header,
 * QR = 0, at least one question, and every question well formed (names as described at the top,
 * type and class present). Returns OK, TRUNCATED (short header or question), UNSUPPORTED (QR = 1:
 * a response is not a query) or BAD_LENGTH (qdcount 0, or a malformed name). The opcode is not
 * judged: the upstream answers NOTIMP itself if it must. Fills `info` on OK.
 */
export function validateQuery(dv: DataView, off: number, len: number, info?: DnsQueryInfo): ParseStatus {
  if (len < DNS_HLEN) return ParseStatus.TRUNCATED;
  const flags = dv.getUint16(off + 2);
  if ((flags & DNS_FLAG_QR) !== 0) return ParseStatus.UNSUPPORTED;
  const qdcount = dv.getUint16(off + 4);
  if (qdcount === 0) return ParseStatus.BAD_LENGTH;
  let pos = off + DNS_HLEN;
  let first = 0;
  for (let i = 0; i < qdcount; i++) {
    pos = skipName(dv, off, len, pos);
    if (pos < 0) return -pos as ParseStatus;
    pos += 4;
    if (pos > off + len) return ParseStatus.TRUNCATED;
    if (i === 0) first = pos;
  }
  if (info) {
    info.id = dv.getUint16(off);
    info.opcode = (flags & OPCODE_MASK) >>> OPCODE_SHIFT;
    info.qdcount = qdcount;
    info.qtype = dv.getUint16(first - 4);
    info.qclass = dv.getUint16(first - 2);
    info.firstQuestionEnd = first;
    info.questionEnd = pos;
  }
  return ParseStatus.OK;
}

function lower(b: number): number {
  return b >= 0x41 && b <= 0x5a ? b | 0x20 : b;
}

/**
 * Whether two messages carry the same question section: same qdcount and, question by question,
 * the same name (ASCII case-insensitively, so an upstream that answers a 0x20-mixed query in
 * another case still matches; compressed or not) and the same type and class. A forwarder
 * accepts an answer only if this holds against its query (RFC 5452 §9.1), so an off-path spoofer
 * has to guess the question as well as the ID and port. A malformed section on either side is
 * never the same.
 */
export function sameQuestion(a: Uint8Array, b: Uint8Array): boolean {
  return sameQuestionAt(viewOf(a), 0, a.byteLength, viewOf(b), 0, b.byteLength);
}

/** sameQuestion over DataViews and offsets, for callers that already have views. */
export function sameQuestionAt(a: DataView, aOff: number, aLen: number, b: DataView, bOff: number, bLen: number): boolean {
  if (aLen < DNS_HLEN || bLen < DNS_HLEN) return false;
  const count = a.getUint16(aOff + 4);
  if (count !== b.getUint16(bOff + 4)) return false;
  let pa = aOff + DNS_HLEN;
  let pb = bOff + DNS_HLEN;
  for (let i = 0; i < count; i++) {
    cursorA.reset(a, aOff, aLen, pa);
    cursorB.reset(b, bOff, bLen, pb);
    for (;;) {
      const la = cursorA.next();
      const lb = cursorB.next();
      if (la < 0 || la !== lb) return false;
      if (la === 0) break;
      const sa = cursorA.labelPos;
      const sb = cursorB.labelPos;
      for (let k = 0; k < la; k++) {
        if (lower(a.getUint8(sa + k)) !== lower(b.getUint8(sb + k))) return false;
      }
    }
    pa = cursorA.end;
    pb = cursorB.end;
    if (pa + 4 > aOff + aLen || pb + 4 > bOff + bLen) return false;
    if (a.getUint32(pa) !== b.getUint32(pb)) return false;
    pa += 4;
    pb += 4;
  }
  return true;
}

function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * A SERVFAIL response to `query`: its ID, QR = 1, its opcode and RD, RA = 1, RCODE 2, and its
 * first question copied (qdcount 1). Nothing else — in particular no EDNS OPT: the query's
 * options (cookies, client subnet) were meant for a server that never answered. Written into
 * `out` when it is large enough (the result is then a view of it), else into a new Buffer. A
 * query whose question cannot be parsed gets a header-only response (qdcount 0); one shorter than
 * its ID gets ID 0.
 */
export function buildServfail(query: Uint8Array, out?: Uint8Array): Buffer {
  const qv = viewOf(query);
  const len = query.byteLength;
  let qEnd = -1;
  if (len >= DNS_HLEN && qv.getUint16(4) > 0) {
    const nameEnd = skipName(qv, 0, len, DNS_HLEN);
    if (nameEnd >= 0 && nameEnd + 4 <= len) qEnd = nameEnd + 4;
  }
  const size = qEnd < 0 ? DNS_HLEN : qEnd;
  const buf =
    out && out.byteLength >= size ? Buffer.from(out.buffer, out.byteOffset, size) : Buffer.allocUnsafe(size);
  const id = len >= 2 ? qv.getUint16(0) : 0;
  const qflags = len >= 4 ? qv.getUint16(2) : 0;
  buf.writeUInt16BE(id, 0);
  buf.writeUInt16BE(DNS_FLAG_QR | (qflags & (OPCODE_MASK | DNS_FLAG_RD)) | DNS_FLAG_RA | DNS_RCODE_SERVFAIL, 2);
  buf.writeUInt16BE(qEnd < 0 ? 0 : 1, 4);
  buf.writeUInt16BE(0, 6);
  buf.writeUInt32BE(0, 8);
  // The first question is never compressed (a pointer could only point into the header, which
  // skipName refuses), so its bytes stand alone in the copy.
  if (qEnd > 0) buf.set(query.subarray(DNS_HLEN, qEnd), DNS_HLEN);
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Whole messages, for tools and tests (they allocate; the forwarder's path above does not)
// ---------------------------------------------------------------------------------------------

export interface DnsQuestion {
  name: string;
  type: number;
  class: number;
}

export interface DnsRecord {
  name: string;
  type: number;
  class: number;
  ttl: number;
  /** RDATA as sent (an A record's 4 bytes, say). */
  data: Uint8Array;
}

export interface DnsMessageInfo {
  id: number;
  flags: number;
  rcode: number;
  questions: DnsQuestion[];
  answers: DnsRecord[];
}

/** The name at `pos` as dotted text ("" for the root), or null if it is malformed. */
export function readName(dv: DataView, msgOff: number, msgLen: number, pos: number): string | null {
  const c = cursorB;
  c.reset(dv, msgOff, msgLen, pos);
  const labels: string[] = [];
  let n: number;
  while ((n = c.next()) > 0) {
    let s = '';
    for (let i = 0; i < n; i++) s += String.fromCharCode(dv.getUint8(c.labelPos + i));
    labels.push(s);
  }
  return n < 0 ? null : labels.join('.');
}

/**
 * Reads a whole DNS message: header, questions and the answer section (authority and additional
 * sections are skipped). Null when any part is malformed or cut short.
 */
export function readDnsMessage(buf: Uint8Array, off: number, len: number): DnsMessageInfo | null {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (len < DNS_HLEN || off + len > buf.byteLength) return null;
  const info: DnsMessageInfo = { id: dnsId(dv, off), flags: dnsFlags(dv, off), rcode: dnsRcode(dv, off), questions: [], answers: [] };
  let pos = off + DNS_HLEN;
  const end = off + len;
  for (let i = dnsQdcount(dv, off); i > 0; i--) {
    const name = readName(dv, off, len, pos);
    const after = skipName(dv, off, len, pos);
    if (name === null || after < 0 || after + 4 > end) return null;
    info.questions.push({ name, type: dv.getUint16(after), class: dv.getUint16(after + 2) });
    pos = after + 4;
  }
  for (let i = dnsAncount(dv, off); i > 0; i--) {
    const name = readName(dv, off, len, pos);
    const after = skipName(dv, off, len, pos);
    if (name === null || after < 0 || after + 10 > end) return null;
    const rdlen = dv.getUint16(after + 8);
    if (after + 10 + rdlen > end) return null;
    info.answers.push({ name, type: dv.getUint16(after), class: dv.getUint16(after + 2), ttl: dv.getUint32(after + 4), data: buf.subarray(after + 10, after + 10 + rdlen) });
    pos = after + 10 + rdlen;
  }
  return info;
}

/** Writes `name` in wire form at `at`; returns the offset after it. Throws on a name DNS cannot carry. */
function writeName(out: Uint8Array, at: number, name: string): number {
  const trimmed = name.endsWith('.') ? name.slice(0, -1) : name;
  const labels = trimmed === '' ? [] : trimmed.split('.');
  let total = 1;
  for (const l of labels) {
    if (l.length === 0 || l.length > 63 || !/^[\x21-\x7e]+$/.test(l)) throw new InvalidArgumentError(`"${name}" is not a DNS name (labels of 1-63 printable ASCII characters)`);
    total += l.length + 1;
  }
  if (total > DNS_MAX_NAME) throw new InvalidArgumentError(`"${name}" is longer than a DNS name can be (255 bytes)`);
  for (const l of labels) {
    out[at++] = l.length;
    for (let i = 0; i < l.length; i++) out[at++] = l.charCodeAt(i);
  }
  out[at++] = 0;
  return at;
}

/** Writes a query (one question, class IN, RD set) at `off`; returns its length. */
export function writeDnsQuery(out: Uint8Array, off: number, id: number, name: string, type: number): number {
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  dv.setUint16(off, id & 0xffff);
  dv.setUint16(off + 2, DNS_FLAG_RD);
  dv.setUint16(off + 4, 1);
  dv.setUint32(off + 6, 0);
  dv.setUint16(off + 10, 0);
  let at = writeName(out, off + DNS_HLEN, name);
  dv.setUint16(at, type);
  dv.setUint16(at + 2, DNS_CLASS_IN);
  at += 4;
  return at - off;
}

/**
 * The answer to `query` (its ID and question echoed, QR, RD copied, RA set) with `rcode` and
 * the given answer records (names written in full, no compression). For scripted servers.
 */
export function buildDnsResponse(query: DnsMessageInfo, rcode: number, answers: ReadonlyArray<{ name: string; type: number; ttl: number; data: Uint8Array }>): Buffer {
  const out = Buffer.alloc(512 + answers.reduce((n, a) => n + 270 + a.data.length, 0));
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  dv.setUint16(0, query.id);
  dv.setUint16(2, DNS_FLAG_QR | (query.flags & DNS_FLAG_RD) | DNS_FLAG_RA | (rcode & 15));
  dv.setUint16(4, query.questions.length);
  dv.setUint16(6, answers.length);
  dv.setUint32(8, 0);
  let at = DNS_HLEN;
  for (const q of query.questions) {
    at = writeName(out, at, q.name);
    dv.setUint16(at, q.type);
    dv.setUint16(at + 2, q.class);
    at += 4;
  }
  for (const a of answers) {
    at = writeName(out, at, a.name);
    dv.setUint16(at, a.type);
    dv.setUint16(at + 2, DNS_CLASS_IN);
    dv.setUint32(at + 4, a.ttl >>> 0);
    dv.setUint16(at + 8, a.data.length);
    out.set(a.data, at + 10);
    at += 10 + a.data.length;
  }
  return out.subarray(0, at);
}
