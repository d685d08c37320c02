/**
 * A DNS server the forwarder asks (an upstream), and how one is written: `IP`, `IP:PORT`,
 * `[IPv6]:PORT`. It lives with the forwarder, in the data path; the control plane reads
 * resolv.conf (control/resolv.ts) and the flags into these.
 */
import { isIPv6 } from 'node:net';
import { InvalidArgumentError } from '../errors.js';
import { tryParseIpv4 } from '../packet/ip-address.js';

/** A DNS server to forward to. */
export interface Upstream {
  /** As written: dotted quad, or IPv6 text (with `%zone` for a scoped address). */
  address: string;
  port: number;
  family: 4 | 6;
}

/** Formats an upstream as parseUpstream reads it: `IP:PORT` or `[IPv6]:PORT`. */
export function formatUpstream(u: Upstream): string {
  return u.family === 6 ? `[${u.address}]:${u.port}` : `${u.address}:${u.port}`;
}

/** Family of an address as resolv.conf or a flag gives it, or 0 if it is not one. */
export function addressFamily(text: string): 0 | 4 | 6 {
  if (tryParseIpv4(text) >= 0) return 4;
  // node:net accepts a %zone suffix; a zone needs a link-local (or multicast) address to mean
  // anything, but the kernel is the judge of that when the socket connects.
  if (isIPv6(text)) return 6;
  return 0;
}

/**
 * Parses an upstream given by a user: `IP`, `IP:PORT`, a bare IPv6 address, `[IPv6]` or
 * `[IPv6]:PORT` (port 53 when absent). Throws InvalidArgumentError naming the input.
 */
export function parseUpstream(text: string): Upstream {
  const fail = (why: string): never => {
    throw new InvalidArgumentError(`invalid DNS upstream "${text}": ${why}; expected IP, IP:PORT or [IPv6]:PORT such as 192.0.2.53:53`);
  };
  const t = text.trim();
  let host: string;
  let portText: string | undefined;
  if (t.startsWith('[')) {
    const close = t.indexOf(']');
    if (close < 0) fail('no closing "]"');
    host = t.slice(1, close);
    const rest = t.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) fail(`unexpected "${rest}" after "]"`);
      portText = rest.slice(1);
    }
    if (addressFamily(host) !== 6) fail(`"${host}" is not an IPv6 address`);
  } else {
    const colon = t.indexOf(':');
    if (colon >= 0 && t.indexOf(':', colon + 1) < 0) {
      host = t.slice(0, colon);
      portText = t.slice(colon + 1);
    } else {
      host = t; // no colon (IPv4) or several (a bare IPv6 address, which cannot carry a port)
    }
    if (host === '') fail('no address');
    if (addressFamily(host) === 0) fail(`"${host}" is not an IP address`);
  }
  let port = 53;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) fail(`port "${portText}" is not 1-65535`);
    port = Number(portText);
  }
  return { address: host, port, family: addressFamily(host) as 4 | 6 };
}

/** Element-wise equality of two upstream lists. */
export function sameUpstreams(a: readonly Upstream[], b: readonly Upstream[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    if (a[i].address !== b[i].address || a[i].port !== b[i].port || a[i].family !== b[i].family) return false;
  }
  return true;
}
