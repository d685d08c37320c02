/**
 * DHCP/BOOTP messages (RFC 2131 format, RFC 2132 options, RFC 3396 long options, RFC 3397 domain
 * search).
 *
 * Theory of operation. A message is a 236-byte fixed part, the magic cookie, then options as
 * code/length/value triples (PAD and END are single bytes). `DhcpMessage.bind()` decodes in two
 * passes without throwing:
 *
 * 1. It walks the option areas in the order RFC 2131 gives — the `options` field, then `file`,
 *    then `sname` when option 52 (overload) says they carry options — checking every length
 *    against the end of its area, and records per option code how many instances it saw, where
 *    the first one is and their total length. Every step advances by at least one byte and stops
 *    at the area's end, so neither a truncated option nor a crafted one can read out of bounds or
 *    loop.
 * 2. It decodes the options a server needs. An option seen once is read (or viewed) in place. An
 *    option seen several times is, per RFC 3396, the concatenation of its instances: the pieces
 *    are gathered into a scratch buffer owned by the message (allocated on first need and reused),
 *    so a client that splits a parameter list or a search list is understood.
 *
 * Views (`paramRequestList`, `clientId`, `domainSearch`) point into the bound buffer or into the
 * scratch buffer: they stay valid until the next `bind()` and while the caller keeps the buffer.
 *
 * The writers fill a caller-provided buffer, split any option longer than 255 bytes into several
 * instances of the same code (RFC 3396), end with END and pad to the 300-byte BOOTP minimum that
 * many clients still expect. They throw only for caller mistakes (no room, invalid domain names):
 * they run on the control path, once per lease event, not per frame.
 */
import { InvalidArgumentError } from '../errors.js';
import { readMac, writeMac } from './mac.js';
import { ParseStatus } from './status.js';

export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;
export const DHCP_MAGIC_COOKIE = 0x63825363;

export const BOOTREQUEST = 1;
export const BOOTREPLY = 2;

export const DHCPDISCOVER = 1;
export const DHCPOFFER = 2;
export const DHCPREQUEST = 3;
export const DHCPDECLINE = 4;
export const DHCPACK = 5;
export const DHCPNAK = 6;
export const DHCPRELEASE = 7;
export const DHCPINFORM = 8;

export const DHCP_OPT_PAD = 0;
export const DHCP_OPT_SUBNET_MASK = 1;
export const DHCP_OPT_ROUTER = 3;
export const DHCP_OPT_DNS = 6;
export const DHCP_OPT_HOSTNAME = 12;
export const DHCP_OPT_DOMAIN_NAME = 15;
export const DHCP_OPT_MTU = 26;
export const DHCP_OPT_BROADCAST = 28;
export const DHCP_OPT_REQUESTED_IP = 50;
export const DHCP_OPT_LEASE_TIME = 51;
export const DHCP_OPT_OVERLOAD = 52;
export const DHCP_OPT_MESSAGE_TYPE = 53;
export const DHCP_OPT_SERVER_ID = 54;
export const DHCP_OPT_PARAM_REQUEST_LIST = 55;
export const DHCP_OPT_MESSAGE = 56;
export const DHCP_OPT_MAX_MESSAGE_SIZE = 57;
export const DHCP_OPT_RENEWAL_TIME = 58;
export const DHCP_OPT_REBINDING_TIME = 59;
export const DHCP_OPT_CLIENT_ID = 61;
export const DHCP_OPT_DOMAIN_SEARCH = 119;
export const DHCP_OPT_END = 255;

/** The broadcast bit of `flags`: the client cannot receive unicast before it is configured. */
export const DHCP_FLAG_BROADCAST = 0x8000;

/** Option 52 values: which legacy fields carry options. */
export const DHCP_OVERLOAD_FILE = 1;
export const DHCP_OVERLOAD_SNAME = 2;

/** op .. file: the BOOTP fixed part. */
export const DHCP_FIXED_LENGTH = 236;
/** Where the options start (after the 4-byte magic cookie). */
export const DHCP_OPTIONS_OFFSET = 240;
/** The BOOTP minimum message size (RFC 951: 236 + a 64-byte vendor area); replies are padded to it. */
export const DHCP_MIN_MESSAGE_LENGTH = 300;

const HTYPE_ETHERNET = 1;
const SNAME_OFFSET = 44;
const SNAME_LENGTH = 64;
const FILE_OFFSET = 108;
const FILE_LENGTH = 128;
const HOSTNAME_MAX = 255;

/** A decoded DHCP message; one instance is reused, fields overwritten by bind(). */
export class DhcpMessage {
  dv: DataView = new DataView(new ArrayBuffer(0));
  off = 0;
  len = 0;

  op = 0;
  htype = 0;
  hlen = 0;
  hops = 0;
  xid = 0;
  secs = 0;
  flags = 0;
  ciaddr = 0;
  yiaddr = 0;
  siaddr = 0;
  giaddr = 0;
  /** The client MAC (48-bit number) when htype is 1 (Ethernet) and hlen 6, else -1. */
  chaddr = -1;
  /** Option 52: DHCP_OVERLOAD_FILE | DHCP_OVERLOAD_SNAME, or 0 (then `file`/`sname` are plain fields). */
  overload = 0;
  /** Option 53, or 0 when absent (plain BOOTP). */
  messageType = 0;
  /** Option 50, or -1. */
  requestedIp = -1;
  /** Option 54, or -1. */
  serverId = -1;
  /** Option 51 in seconds, or -1. */
  leaseTime = -1;
  /** Option 57 as sent (RFC 2132 says at least 576; clamp before use), or -1. */
  maxMessageSize = -1;
  /** Option 55, concatenated if repeated; a view valid until the next bind(). */
  paramRequestList: Uint8Array | null = null;
  /** Option 61 (type byte + identifier); a view valid until the next bind(). An empty option counts as absent. */
  clientId: Uint8Array | null = null;
  /** Option 12 with only printable ASCII (0x20-0x7e) kept, at most 255 characters; null when absent or empty. */
  hostname: string | null = null;
  /** Option 119 as wire data (concatenated); decode with decodeSearchList(). */
  domainSearch: Uint8Array | null = null;

  // Per option code: instances seen, offset of the first one's data, total data length.
  private readonly optCount = new Int32Array(256);
  private readonly optFirst = new Int32Array(256);
  private readonly optTotal = new Int32Array(256);
  // The option areas walked, in order (options, file, sname): [start, end) offsets into dv.
  private readonly areaStart = new Int32Array(3);
  private readonly areaEnd = new Int32Array(3);
  private areas = 0;
  private bytes: Uint8Array = new Uint8Array(0);
  private scratch: Uint8Array = new Uint8Array(0);
  private scratchUsed = 0;
  private readonly small = new Uint8Array(4);

  /**
   * Binds to the DHCP message (the UDP payload) at `off` with `len` bytes. Returns TRUNCATED
   * below 240 bytes, UNSUPPORTED for an op other than BOOTREQUEST/BOOTREPLY, BAD_VERSION for a
   * wrong magic cookie, BAD_LENGTH for an hlen above 16 (or not 6 on Ethernet), an option running
   * past its area, or a decoded option of the wrong size, UNSUPPORTED for an overload value other
   * than 1-3 or a message type of 0.
   */
  bind(dv: DataView, off: number, len: number): ParseStatus {
    this.reset(dv, off, len);
    if (len < DHCP_OPTIONS_OFFSET) return ParseStatus.TRUNCATED;
    if (off < 0 || len > dv.byteLength - off) return ParseStatus.BAD_LENGTH;
    const op = dv.getUint8(off);
    if (op !== BOOTREQUEST && op !== BOOTREPLY) return ParseStatus.UNSUPPORTED;
    const htype = dv.getUint8(off + 1);
    const hlen = dv.getUint8(off + 2);
    if (hlen > 16 || (htype === HTYPE_ETHERNET && hlen !== 6)) return ParseStatus.BAD_LENGTH;
    if (dv.getUint32(off + DHCP_FIXED_LENGTH) !== DHCP_MAGIC_COOKIE) return ParseStatus.BAD_VERSION;
    this.op = op;
    this.htype = htype;
    this.hlen = hlen;
    this.hops = dv.getUint8(off + 3);
    this.xid = dv.getUint32(off + 4);
    this.secs = dv.getUint16(off + 8);
    this.flags = dv.getUint16(off + 10);
    this.ciaddr = dv.getUint32(off + 12);
    this.yiaddr = dv.getUint32(off + 16);
    this.siaddr = dv.getUint32(off + 20);
    this.giaddr = dv.getUint32(off + 24);
    this.chaddr = htype === HTYPE_ETHERNET ? readMac(dv, off + 28) : -1;

    if (dv.buffer !== this.bytes.buffer || dv.byteOffset !== this.bytes.byteOffset || dv.byteLength !== this.bytes.byteLength) {
      this.bytes = new Uint8Array(dv.buffer, dv.byteOffset, dv.byteLength);
    }
    let st = this.walk(off + DHCP_OPTIONS_OFFSET, off + len, true);
    if (st !== ParseStatus.OK) return st;
    const overload = this.readFixed(DHCP_OPT_OVERLOAD, 1);
    if (overload === -2) return ParseStatus.BAD_LENGTH;
    if (overload !== -1) {
      if (overload < 1 || overload > 3) return ParseStatus.UNSUPPORTED;
      this.overload = overload;
      // RFC 2131 4.1: the options field first, then file, then sname.
      if (overload & DHCP_OVERLOAD_FILE) {
        st = this.walk(off + FILE_OFFSET, off + FILE_OFFSET + FILE_LENGTH, false);
        if (st !== ParseStatus.OK) return st;
      }
      if (overload & DHCP_OVERLOAD_SNAME) {
        st = this.walk(off + SNAME_OFFSET, off + SNAME_OFFSET + SNAME_LENGTH, false);
        if (st !== ParseStatus.OK) return st;
      }
    }

    const type = this.readFixed(DHCP_OPT_MESSAGE_TYPE, 1);
    if (type === -2) return ParseStatus.BAD_LENGTH;
    if (type === 0) return ParseStatus.UNSUPPORTED;
    const requestedIp = this.readFixed(DHCP_OPT_REQUESTED_IP, 4);
    const serverId = this.readFixed(DHCP_OPT_SERVER_ID, 4);
    const leaseTime = this.readFixed(DHCP_OPT_LEASE_TIME, 4);
    const maxSize = this.readFixed(DHCP_OPT_MAX_MESSAGE_SIZE, 2);
    if (requestedIp === -2 || serverId === -2 || leaseTime === -2 || maxSize === -2) return ParseStatus.BAD_LENGTH;
    this.messageType = type === -1 ? 0 : type;
    this.requestedIp = requestedIp;
    this.serverId = serverId;
    this.leaseTime = leaseTime;
    this.maxMessageSize = maxSize;

    this.scratchUsed = 0;
    this.paramRequestList = this.view(DHCP_OPT_PARAM_REQUEST_LIST);
    const cid = this.view(DHCP_OPT_CLIENT_ID);
    this.clientId = cid !== null && cid.length > 0 ? cid : null;
    this.domainSearch = this.view(DHCP_OPT_DOMAIN_SEARCH);
    const host = this.view(DHCP_OPT_HOSTNAME);
    if (host !== null) {
      let s = '';
      for (let i = 0; i < host.length && s.length < HOSTNAME_MAX; i++) {
        const c = host[i];
        if (c >= 0x20 && c <= 0x7e) s += String.fromCharCode(c);
      }
      this.hostname = s.length > 0 ? s : null;
    }
    return ParseStatus.OK;
  }

  /**
   * The data of any option after a successful bind(): all instances concatenated (RFC 3396), or
   * null when absent. For tools and tests: it returns a copy when the option was split.
   */
  option(code: number): Uint8Array | null {
    const n = this.optCount[code & 255];
    if (n === 0) return null;
    if (n === 1) return this.bytes.subarray(this.optFirst[code & 255], this.optFirst[code & 255] + this.optTotal[code & 255]);
    const out = new Uint8Array(this.optTotal[code & 255]);
    this.gather(code & 255, out, 0);
    return out;
  }

  /** How many instances of option `code` the message carried (after a successful bind()). */
  optionCount(code: number): number {
    return this.optCount[code & 255];
  }

  private reset(dv: DataView, off: number, len: number): void {
    this.dv = dv;
    this.off = off;
    this.len = len;
    this.op = this.htype = this.hlen = this.hops = this.xid = this.secs = this.flags = 0;
    this.ciaddr = this.yiaddr = this.siaddr = this.giaddr = 0;
    this.chaddr = -1;
    this.overload = 0;
    this.messageType = 0;
    this.requestedIp = this.serverId = this.leaseTime = this.maxMessageSize = -1;
    this.paramRequestList = this.clientId = this.domainSearch = null;
    this.hostname = null;
    this.areas = 0;
    this.optCount.fill(0);
  }

  /** Pass 1 over one area: validates the framing and records each code's instances. */
  private walk(start: number, end: number, isOptionsField: boolean): ParseStatus {
    const b = this.bytes;
    this.areaStart[this.areas] = start;
    this.areaEnd[this.areas] = end;
    this.areas++;
    let p = start;
    while (p < end) {
      const code = b[p];
      if (code === DHCP_OPT_PAD) {
        p++;
        continue;
      }
      if (code === DHCP_OPT_END) break;
      if (p + 2 > end) return ParseStatus.BAD_LENGTH;
      const ol = b[p + 1];
      const data = p + 2;
      if (data + ol > end) return ParseStatus.BAD_LENGTH;
      // Overload belongs in the options field only (RFC 2131 4.1); elsewhere it is ignored.
      if (code !== DHCP_OPT_OVERLOAD || isOptionsField) {
        if (this.optCount[code]++ === 0) {
          this.optFirst[code] = data;
          this.optTotal[code] = ol;
        } else {
          this.optTotal[code] += ol;
        }
      }
      p = data + ol;
    }
    return ParseStatus.OK;
  }

  /** Copies every instance of `code`, in order, to `dst` at `at`. The areas were validated by walk(). */
  private gather(code: number, dst: Uint8Array, at: number): void {
    const b = this.bytes;
    for (let a = 0; a < this.areas; a++) {
      const end = this.areaEnd[a];
      let p = this.areaStart[a];
      while (p < end) {
        const c = b[p];
        if (c === DHCP_OPT_PAD) {
          p++;
          continue;
        }
        if (c === DHCP_OPT_END || p + 2 > end) break;
        const ol = b[p + 1];
        if (p + 2 + ol > end) break;
        if (c === code && (c !== DHCP_OPT_OVERLOAD || a === 0)) {
          for (let i = 0; i < ol; i++) dst[at + i] = b[p + 2 + i];
          at += ol;
        }
        p += 2 + ol;
      }
    }
  }

  /** A fixed-size unsigned option: its value, -1 when absent, -2 when its (total) length is not `size`. */
  private readFixed(code: number, size: number): number {
    const n = this.optCount[code];
    if (n === 0) return -1;
    if (this.optTotal[code] !== size) return -2;
    let src = this.bytes;
    let p = this.optFirst[code];
    if (n > 1) {
      this.gather(code, this.small, 0);
      src = this.small;
      p = 0;
    }
    let v = 0;
    for (let i = 0; i < size; i++) v = v * 256 + src[p + i];
    return v;
  }

  /** A variable-length option as a view: in place when seen once, gathered into scratch when split. */
  private view(code: number): Uint8Array | null {
    const n = this.optCount[code];
    if (n === 0) return null;
    const total = this.optTotal[code];
    if (n === 1) return this.bytes.subarray(this.optFirst[code], this.optFirst[code] + total);
    if (this.scratch.length - this.scratchUsed < total) {
      // Rare: only a message with split options needs it; the pieces all fit in `len` bytes.
      this.scratch = new Uint8Array(Math.max(1024, this.len));
      this.scratchUsed = 0;
    }
    const out = this.scratch.subarray(this.scratchUsed, this.scratchUsed + total);
    this.scratchUsed += total;
    this.gather(code, out, 0);
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Writers

export interface DhcpReplyFields {
  messageType: number;
  xid: number;
  flags: number;
  ciaddr: number;
  yiaddr: number;
  siaddr: number;
  giaddr: number;
  /** 48-bit MAC. */
  chaddr: number;
  serverId: number;
  leaseTime?: number;
  renewalTime?: number;
  rebindingTime?: number;
  subnetMask?: number;
  router?: number;
  dnsServers?: number[];
  domainName?: string;
  searchList?: string[];
  mtu?: number;
  broadcast?: number;
  /** Option 56, e.g. why a NAK was sent. Non-ASCII characters become '?'. */
  message?: string;
}

export interface DhcpRequestFields {
  /** DHCPDISCOVER, DHCPREQUEST, DHCPDECLINE, DHCPRELEASE or DHCPINFORM (any value is written). */
  messageType: number;
  xid: number;
  /** 48-bit MAC. */
  chaddr: number;
  flags?: number;
  secs?: number;
  hops?: number;
  ciaddr?: number;
  giaddr?: number;
  /** Option 50. */
  requestedIp?: number;
  /** Option 54. */
  serverId?: number;
  /** Option 61, as sent (type byte first). */
  clientId?: Uint8Array;
  /** Option 12. */
  hostname?: string;
  /** Option 55. */
  paramRequestList?: ArrayLike<number>;
  /** Option 57. */
  maxMessageSize?: number;
  /** Option 51. */
  leaseTime?: number;
  /** Option 56. */
  message?: string;
  /** More options, written in order before END (split if longer than 255 bytes). */
  options?: ReadonlyArray<readonly [code: number, data: Uint8Array]>;
  /** Pad with zeros to at least this many bytes (default 300, the BOOTP minimum; 0 for none). */
  minLength?: number;
}

/** Writes a BOOTREPLY into buf at off; returns its length (at least 300 bytes: pad to the BOOTP minimum, as many clients expect). */
export function writeDhcpReply(buf: Uint8Array, off: number, f: DhcpReplyFields): number {
  const w = new OptionWriter(buf, off);
  writeFixedPart(w, BOOTREPLY, f.xid, 0, 0, f.flags, f.ciaddr, f.yiaddr, f.siaddr, f.giaddr, f.chaddr);
  w.u8(DHCP_OPT_MESSAGE_TYPE, f.messageType);
  w.u32(DHCP_OPT_SERVER_ID, f.serverId);
  if (f.leaseTime !== undefined) w.u32(DHCP_OPT_LEASE_TIME, f.leaseTime);
  if (f.renewalTime !== undefined) w.u32(DHCP_OPT_RENEWAL_TIME, f.renewalTime);
  if (f.rebindingTime !== undefined) w.u32(DHCP_OPT_REBINDING_TIME, f.rebindingTime);
  if (f.subnetMask !== undefined) w.u32(DHCP_OPT_SUBNET_MASK, f.subnetMask);
  if (f.broadcast !== undefined) w.u32(DHCP_OPT_BROADCAST, f.broadcast);
  if (f.router !== undefined) w.u32(DHCP_OPT_ROUTER, f.router);
  if (f.dnsServers !== undefined && f.dnsServers.length > 0) {
    const d = new Uint8Array(4 * f.dnsServers.length);
    const dv = new DataView(d.buffer);
    f.dnsServers.forEach((a, i) => dv.setUint32(4 * i, a >>> 0));
    w.option(DHCP_OPT_DNS, d);
  }
  if (f.domainName !== undefined) w.option(DHCP_OPT_DOMAIN_NAME, Buffer.from(checkDomain(f.domainName, 'domain name'), 'latin1'));
  if (f.searchList !== undefined && f.searchList.length > 0) w.option(DHCP_OPT_DOMAIN_SEARCH, encodeSearchList(f.searchList));
  if (f.mtu !== undefined) {
    if (!Number.isInteger(f.mtu) || f.mtu < 68 || f.mtu > 65535) throw new InvalidArgumentError(`invalid MTU ${f.mtu} for DHCP option 26 (must be 68-65535)`);
    w.u16(DHCP_OPT_MTU, f.mtu);
  }
  if (f.message !== undefined) w.option(DHCP_OPT_MESSAGE, asciiBytes(f.message));
  return w.finish(DHCP_MIN_MESSAGE_LENGTH);
}

/**
 * Writes a client message (BOOTREQUEST) into buf at off; returns its length. For tests and tools:
 * it writes what it is given, valid or not (the server must cope with both). Options go in the
 * order 53, 61, 50, 54, 55, 57, 51, 12, 56, then `options`.
 */
export function writeDhcpRequest(buf: Uint8Array, off: number, f: DhcpRequestFields): number {
  const w = new OptionWriter(buf, off);
  writeFixedPart(w, BOOTREQUEST, f.xid, f.hops ?? 0, f.secs ?? 0, f.flags ?? 0, f.ciaddr ?? 0, 0, 0, f.giaddr ?? 0, f.chaddr);
  w.u8(DHCP_OPT_MESSAGE_TYPE, f.messageType);
  if (f.clientId !== undefined) w.option(DHCP_OPT_CLIENT_ID, f.clientId);
  if (f.requestedIp !== undefined) w.u32(DHCP_OPT_REQUESTED_IP, f.requestedIp);
  if (f.serverId !== undefined) w.u32(DHCP_OPT_SERVER_ID, f.serverId);
  if (f.paramRequestList !== undefined) w.option(DHCP_OPT_PARAM_REQUEST_LIST, Uint8Array.from(f.paramRequestList));
  if (f.maxMessageSize !== undefined) w.u16(DHCP_OPT_MAX_MESSAGE_SIZE, f.maxMessageSize);
  if (f.leaseTime !== undefined) w.u32(DHCP_OPT_LEASE_TIME, f.leaseTime);
  if (f.hostname !== undefined) w.option(DHCP_OPT_HOSTNAME, asciiBytes(f.hostname));
  if (f.message !== undefined) w.option(DHCP_OPT_MESSAGE, asciiBytes(f.message));
  if (f.options !== undefined) for (const [code, data] of f.options) w.option(code, data);
  return w.finish(f.minLength ?? DHCP_MIN_MESSAGE_LENGTH);
}

/**
 * Writes option `code` with `data` at `p` in `buf`, split into instances of at most 255 bytes
 * (RFC 3396); empty data gives one zero-length instance. Returns the offset after it. Throws a
 * RangeError when it does not fit before `end` (default: the end of buf).
 */
export function writeDhcpOption(buf: Uint8Array, p: number, code: number, data: Uint8Array, end = buf.length): number {
  if (p + dhcpOptionLength(data.length) > end) throw new RangeError(`DHCP option ${code} (${data.length} bytes) does not fit in the buffer`);
  let i = 0;
  do {
    const n = Math.min(255, data.length - i);
    buf[p] = code;
    buf[p + 1] = n;
    buf.set(data.subarray(i, i + n), p + 2);
    p += 2 + n;
    i += n;
  } while (i < data.length);
  return p;
}

/** Bytes that `dataLength` bytes of option data take once split into 255-byte instances. */
export function dhcpOptionLength(dataLength: number): number {
  return dataLength + 2 * Math.max(1, Math.ceil(dataLength / 255));
}

/** Sequential option writing with a bounds check per option (the writers' buffer is the caller's). */
class OptionWriter {
  readonly dv: DataView;
  p: number;
  private readonly tmp = new Uint8Array(4);
  private readonly tmpDv = new DataView(this.tmp.buffer);

  constructor(
    readonly buf: Uint8Array,
    readonly off: number,
  ) {
    if (off < 0 || buf.length - off < DHCP_OPTIONS_OFFSET + 1) {
      throw new RangeError(`a DHCP message needs at least ${DHCP_OPTIONS_OFFSET + 1} bytes at offset ${off}`);
    }
    this.dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.p = off + DHCP_OPTIONS_OFFSET;
  }

  option(code: number, data: Uint8Array): void {
    // Keep one byte for END.
    this.p = writeDhcpOption(this.buf, this.p, code, data, this.buf.length - 1);
  }
  u8(code: number, v: number): void {
    this.tmp[0] = v;
    this.option(code, this.tmp.subarray(0, 1));
  }
  u16(code: number, v: number): void {
    this.tmpDv.setUint16(0, v);
    this.option(code, this.tmp.subarray(0, 2));
  }
  u32(code: number, v: number): void {
    this.tmpDv.setUint32(0, v >>> 0);
    this.option(code, this.tmp);
  }

  /** Writes END and zero padding up to `minLength`; returns the message length. */
  finish(minLength: number): number {
    this.buf[this.p++] = DHCP_OPT_END;
    const len = Math.max(this.p - this.off, minLength);
    if (this.off + len > this.buf.length) throw new RangeError(`a DHCP message of ${len} bytes does not fit at offset ${this.off}`);
    this.buf.fill(0, this.p, this.off + len);
    return len;
  }
}

function writeFixedPart(
  w: OptionWriter,
  op: number,
  xid: number,
  hops: number,
  secs: number,
  flags: number,
  ciaddr: number,
  yiaddr: number,
  siaddr: number,
  giaddr: number,
  chaddr: number,
): void {
  const { buf, dv, off } = w;
  buf.fill(0, off, off + DHCP_OPTIONS_OFFSET);
  buf[off] = op;
  buf[off + 1] = HTYPE_ETHERNET;
  buf[off + 2] = 6;
  buf[off + 3] = hops;
  dv.setUint32(off + 4, xid >>> 0);
  dv.setUint16(off + 8, secs);
  dv.setUint16(off + 10, flags);
  dv.setUint32(off + 12, ciaddr >>> 0);
  dv.setUint32(off + 16, yiaddr >>> 0);
  dv.setUint32(off + 20, siaddr >>> 0);
  dv.setUint32(off + 24, giaddr >>> 0);
  writeMac(dv, off + 28, chaddr);
  dv.setUint32(off + DHCP_FIXED_LENGTH, DHCP_MAGIC_COOKIE);
}

/** NVT ASCII bytes of `s`; anything outside 0x20-0x7e becomes '?'. */
function asciiBytes(s: string): Uint8Array {
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    b[i] = c >= 0x20 && c <= 0x7e ? c : 0x3f;
  }
  return b;
}

// ---------------------------------------------------------------------------------------------
// Domain names (option 15) and search lists (option 119)

const LABEL_RE = /^[A-Za-z0-9_-]+$/;

/** Validates a domain name and returns it without a trailing dot; throws InvalidArgumentError naming it. */
function checkDomain(domain: string, what: string): string {
  const name = domain.endsWith('.') ? domain.slice(0, -1) : domain;
  const bad = (why: string): InvalidArgumentError =>
    new InvalidArgumentError(`invalid ${what} "${domain}": ${why} (use labels of 1-63 letters, digits, '-' or '_' separated by dots)`);
  if (name.length === 0) throw bad('it is empty');
  if (name.length > 253) throw bad(`${name.length} characters, the limit is 253`);
  for (const label of name.split('.')) {
    if (label.length === 0) throw bad('empty label');
    if (label.length > 63) throw bad(`label of ${label.length} characters, the limit is 63`);
    if (!LABEL_RE.test(label)) throw bad(`label "${label}" has characters other than letters, digits, '-' and '_'`);
  }
  return name;
}

/** RFC 1035 label encoding of a search list as used by option 119 (no compression required; RFC 3397 allows either), with validation: labels 1-63 bytes, names <= 253, only LDH + underscore characters; throws InvalidArgumentError (from ../errors.js) naming the bad domain. */
export function encodeSearchList(domains: string[]): Buffer {
  const names = domains.map((d) => checkDomain(d, 'search domain'));
  let size = 0;
  for (const n of names) size += n.length + 2; // length bytes replace the dots, plus first length and the root
  const out = Buffer.alloc(size);
  let p = 0;
  for (const n of names) {
    for (const label of n.split('.')) {
      out[p++] = label.length;
      p += out.write(label, p, 'latin1');
    }
    out[p++] = 0;
  }
  return out;
}

/**
 * Decodes option 119 data (already concatenated) into names without the trailing dot; the root
 * name is ".". Follows RFC 1035 compression pointers, which must point strictly before every byte
 * the name has used so far (so a loop is impossible). Bytes outside LDH and '_' are shown as
 * \DDD. Throws InvalidArgumentError on malformed data. For tests and tools, not the data path.
 */
export function decodeSearchList(data: Uint8Array): string[] {
  const out: string[] = [];
  let p = 0;
  while (p < data.length) {
    const labels: string[] = [];
    let pos = p;
    let lowest = p;
    let next = -1;
    let wire = 1;
    for (;;) {
      if (pos >= data.length) throw new InvalidArgumentError(`malformed search list: name at offset ${p} runs past the end`);
      const l = data[pos];
      if (l === 0) {
        if (next < 0) next = pos + 1;
        break;
      }
      if ((l & 0xc0) === 0xc0) {
        if (pos + 1 >= data.length) throw new InvalidArgumentError(`malformed search list: truncated pointer at offset ${pos}`);
        const target = ((l & 0x3f) << 8) | data[pos + 1];
        if (target >= lowest) throw new InvalidArgumentError(`malformed search list: pointer at offset ${pos} to ${target} does not point backwards (a loop)`);
        if (next < 0) next = pos + 2;
        lowest = target;
        pos = target;
        continue;
      }
      if (l & 0xc0) throw new InvalidArgumentError(`malformed search list: reserved label type 0x${l.toString(16)} at offset ${pos}`);
      if (pos + 1 + l > data.length) throw new InvalidArgumentError(`malformed search list: label at offset ${pos} runs past the end`);
      wire += l + 1;
      if (wire > 255) throw new InvalidArgumentError(`malformed search list: name at offset ${p} is longer than 255 bytes`);
      let label = '';
      for (let i = pos + 1; i <= pos + l; i++) {
        const c = data[i];
        const ldh = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2d || c === 0x5f;
        label += ldh ? String.fromCharCode(c) : `\\${String(c).padStart(3, '0')}`;
      }
      labels.push(label);
      pos += 1 + l;
    }
    out.push(labels.length === 0 ? '.' : labels.join('.'));
    p = next;
  }
  return out;
}
