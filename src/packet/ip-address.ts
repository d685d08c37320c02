/**
 * IPv4 addresses are unsigned 32-bit numbers everywhere inside usernet; strings exist only at the
 * edges (flags, API, logs). IPv6 addresses stay as 16 bytes in the frame.
 */
import { InvalidArgumentError } from '../errors.js';

/** Formats a uint32 as dotted quad. */
export function ipv4ToString(addr: number): string {
  return `${addr >>> 24}.${(addr >>> 16) & 255}.${(addr >>> 8) & 255}.${addr & 255}`;
}

const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parses a dotted quad into a uint32, or returns -1. */
export function tryParseIpv4(text: string): number {
  const m = IPV4_RE.exec(text);
  if (!m) return -1;
  let addr = 0;
  for (let i = 1; i <= 4; i++) {
    if (m[i].length > 1 && m[i][0] === '0') return -1; // no octal-looking octets
    const octet = Number(m[i]);
    if (octet > 255) return -1;
    addr = addr * 256 + octet;
  }
  return addr;
}

/** Parses a dotted quad; throws InvalidArgumentError naming the input. */
export function parseIpv4(text: string): number {
  const addr = tryParseIpv4(text.trim());
  if (addr < 0) throw new InvalidArgumentError(`invalid IPv4 address "${text}"`);
  return addr;
}

/** Netmask of a prefix length as uint32 (prefix 0 -> 0). */
export function prefixToMask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

export interface Ipv4Cidr {
  address: number;
  prefix: number;
}

/** Parses `10.0.2.100/24` (prefix required unless `defaultPrefix` is given; at least `minPrefix`). */
export function parseIpv4Cidr(text: string, defaultPrefix?: number, minPrefix = 0): Ipv4Cidr {
  const slash = text.indexOf('/');
  const addrText = slash < 0 ? text : text.slice(0, slash);
  let prefix: number;
  if (slash < 0) {
    if (defaultPrefix === undefined) {
      throw new InvalidArgumentError(`invalid address "${text}": expected ADDRESS/PREFIX such as 10.0.2.100/24`);
    }
    prefix = defaultPrefix;
  } else {
    const p = text.slice(slash + 1);
    if (!/^\d{1,2}$/.test(p) || Number(p) > 32 || Number(p) < minPrefix) {
      throw new InvalidArgumentError(`invalid prefix length in "${text}": must be ${minPrefix}-32`);
    }
    prefix = Number(p);
  }
  const address = tryParseIpv4(addrText.trim());
  if (address < 0) throw new InvalidArgumentError(`invalid IPv4 address in "${text}"`);
  return { address, prefix };
}

/** Formats 16 bytes at `off` as an IPv6 address (RFC 5952: lower case, longest zero run as ::). */
export function ipv6ToString(bytes: Uint8Array, off = 0): string {
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push((bytes[off + 2 * i] << 8) | bytes[off + 2 * i + 1]);
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}
