/**
 * Published-port specs in Docker's `-p` syntax, parsed and printed. Pure: no sockets here.
 *
 *   [HOST_IP:][HOST_PORT[-END]]:CONTAINER_PORT[-END][/PROTO]
 *   CONTAINER_PORT[-END][/PROTO]                 any free host port (per container port), 0.0.0.0
 *
 * The rules are those of Docker's parser (go-connections nat.ParsePortSpec), re-implemented:
 *
 *  - The spec is split at ":"; the last part is the container port, the one before it the host
 *    port, everything before that the host address — so an IPv6 address may go in brackets
 *    (`[::1]:8080:80`) or bare (`::1:8080:80`), and `:80`, `::80` and `127.0.0.1::80` leave the
 *    host port empty: any free port.
 *  - The protocol follows the container port's first "/": tcp or udp in any case (`80/TCP`),
 *    tcp when absent or empty (`80/`). Docker's sctp is refused: usernet has no SCTP.
 *  - A port is decimal (leading zeros and a "+" allowed, as Go's ParseInt reads it); a range is
 *    N-M with N <= M. Host port 0 means any free port, as it does for bind(2) and Docker.
 *  - Host and container ranges of equal length pair up in order (`9000-9009:9000-9009`). A host
 *    range with a single container port (`8099-8100:80`) asks for one free port of that range.
 *  - HOST_IP defaults to 0.0.0.0 (Docker: every address). IPv6 addresses are kept in their
 *    canonical text (RFC 5952); an IPv4-mapped one is the IPv4 address it maps, as Docker binds
 *    it. Zones (`fe80::1%eth0`) are refused as Docker refuses them, and so is a link-local IPv6
 *    address without one, which no socket can bind.
 *
 * A spec expands to PortMappings, one per container port: that is what gets a listener, is
 * recorded in the state file (with the host port actually bound), and is listed.
 */
import { isIPv6 } from 'node:net';
import { InvalidArgumentError } from '../errors.js';
import { ipv4ToString, tryParseIpv4 } from '../packet/ip-address.js';

export type PublishProto = 'tcp' | 'udp';

export const ERR_BAD_PUBLISH_SPEC = 'ERR_BAD_PUBLISH_SPEC';

export interface PublishSpec {
  proto: PublishProto;
  /** Host address as text: dotted quad, or an IPv6 address (canonical, without brackets). */
  hostIp: string;
  family: 4 | 6;
  /** 0 for "any free port" (then hostPortEnd is 0 too). */
  hostPort: number;
  hostPortEnd: number;
  containerPort: number;
  containerPortEnd: number;
}

/**
 * One published port. hostPort 0 asks for any free port; `hostPortEnd` (when present) asks for
 * one free port of hostPort..hostPortEnd. Once listening, hostPort is the real port and
 * hostPortEnd is gone: that is what is recorded and listed.
 */
export interface PortMapping {
  proto: PublishProto;
  hostIp: string;
  hostPort: number;
  hostPortEnd?: number;
  containerPort: number;
}

/** A piece of the spec quoted for a message: JSON keeps it on one line. */
function q(text: string): string {
  return JSON.stringify(text);
}

function bad(spec: string, why: string): InvalidArgumentError {
  // JSON quoting keeps the message one line whatever the spec holds (a newline, a quote).
  return new InvalidArgumentError(`bad port spec ${JSON.stringify(spec)}: ${why}`, ERR_BAD_PUBLISH_SPEC);
}

/** A port number as Go's strconv.ParseInt(s, 10, 0) reads it, 0-65535; -1 when it is not one. */
function portNumber(text: string): number {
  if (!/^\+?[0-9]+$/.test(text)) return -1;
  const n = Number(text);
  return n <= 65535 ? n : -1;
}

/** "N" or "N-M" (cut at the first "-"), N <= M, as Docker's parsePortRange. */
function parseRange(spec: string, text: string, what: string): [number, number] {
  const dash = text.indexOf('-');
  const first = dash < 0 ? text : text.slice(0, dash);
  const last = dash < 0 ? first : text.slice(dash + 1);
  const a = portNumber(first);
  if (a < 0) throw bad(spec, `${what} ${q(text)} is not a port or a range of ports (N or N-M, 0-65535)`);
  if (dash < 0 || first === last) return [a, a];
  const b = portNumber(last);
  if (b < 0) throw bad(spec, `${what} ${q(text)} is not a port or a range of ports (N or N-M, 0-65535)`);
  if (b < a) throw bad(spec, `${what} range ${q(text)} ends before it starts`);
  return [a, b];
}

/** The host address part: "" (the default), IPv4, IPv6 bare or in brackets; canonical text and family. */
function parseHostIp(spec: string, text: string): { hostIp: string; family: 4 | 6 } {
  if (text === '') return { hostIp: '0.0.0.0', family: 4 };
  let addr = text;
  if (text.startsWith('[')) {
    // As net.SplitHostPort(text + ":") does: exactly one bracketed address, nothing around it.
    if (!text.endsWith(']') || text.indexOf(']') !== text.length - 1 || text.indexOf('[', 1) >= 0) {
      throw bad(spec, `${q(text)} is not a host address (an IPv6 address goes in brackets: [::1]:8080:80)`);
    }
    addr = text.slice(1, -1);
  }
  const v4 = tryParseIpv4(addr);
  if (v4 >= 0) return { hostIp: addr, family: 4 };
  if (addr.includes('%')) throw bad(spec, `${q(addr)} has an IPv6 zone, which a published port cannot take (give an address without %)`);
  if (!isIPv6(addr)) {
    const hint = text.includes(':') && !text.startsWith('[') ? ' (an IPv6 host address may go in brackets: [::1]:8080:80)' : '';
    throw bad(spec, `${q(addr)} is not an IPv4 or IPv6 address${hint}`);
  }
  let canonical: string;
  try {
    canonical = new URL(`http://[${addr}]/`).hostname.slice(1, -1);
  } catch {
    throw bad(spec, `${q(addr)} is not an IPv4 or IPv6 address`);
  }
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
  if (mapped) {
    const hostIp = ipv4ToString(parseInt(mapped[1] as string, 16) * 65536 + parseInt(mapped[2] as string, 16));
    return { hostIp, family: 4 };
  }
  const first = canonical.startsWith(':') ? 0 : parseInt(canonical.slice(0, canonical.indexOf(':')), 16);
  if ((first & 0xffc0) === 0xfe80) {
    throw bad(spec, `${canonical} is a link-local address, which can only be bound with a zone (an interface) that usernet does not take: publish on :: or on a global address`);
  }
  return { hostIp: canonical, family: 6 };
}

/** Parses one `-p` spec; throws InvalidArgumentError (code ERR_BAD_PUBLISH_SPEC) naming the problem. */
export function parsePublishSpec(spec: string): PublishSpec {
  if (typeof spec !== 'string' || spec.trim() === '') throw bad(String(spec), 'empty');
  const parts = spec.trim().split(':');
  const n = parts.length;
  const ipText = n >= 3 ? parts.slice(0, n - 2).join(':') : '';
  const hostPart = n >= 2 ? (parts[n - 2] as string) : '';
  const last = parts[n - 1] as string;
  const slash = last.indexOf('/');
  const containerPart = slash < 0 ? last : last.slice(0, slash);
  if (containerPart === '') throw bad(spec, 'no container port');
  const protoText = slash < 0 ? '' : last.slice(slash + 1).toLowerCase();
  let proto: PublishProto;
  if (protoText === '' || protoText === 'tcp') proto = 'tcp';
  else if (protoText === 'udp') proto = 'udp';
  else if (protoText === 'sctp') throw bad(spec, 'sctp is not supported (usernet publishes tcp and udp)');
  else throw bad(spec, `protocol ${q(last.slice(slash + 1))} is not tcp or udp`);
  const { hostIp, family } = parseHostIp(spec, ipText);
  const [cStart, cEnd] = parseRange(spec, containerPart, 'container port');
  if (cStart === 0) throw bad(spec, 'container port 0 is not a port (1-65535)');
  let hStart = 0;
  let hEnd = 0;
  if (hostPart !== '') {
    [hStart, hEnd] = parseRange(spec, hostPart, 'host port');
    if (hStart === 0 && hEnd !== 0) throw bad(spec, `host port range ${q(hostPart)} starts at 0 (host ports are 1-65535; 0 alone means any free port)`);
    if (hEnd - hStart !== cEnd - cStart && cEnd !== cStart) {
      throw bad(spec, `the host range has ${hEnd - hStart + 1} port(s) and the container range ${cEnd - cStart + 1}: ranges must be of equal length (or give one container port, for one free port of the host range)`);
    }
  }
  return { proto, hostIp, family, hostPort: hStart, hostPortEnd: hEnd, containerPort: cStart, containerPortEnd: cEnd };
}

/**
 * One mapping per container port, in order. A host range with a single container port stays one
 * mapping that asks for one free port of the range (hostPortEnd).
 */
export function expandPublishSpec(s: PublishSpec): PortMapping[] {
  if (s.containerPortEnd === s.containerPort && s.hostPortEnd > s.hostPort) {
    return [{ proto: s.proto, hostIp: s.hostIp, hostPort: s.hostPort, hostPortEnd: s.hostPortEnd, containerPort: s.containerPort }];
  }
  const out: PortMapping[] = [];
  for (let i = 0; i <= s.containerPortEnd - s.containerPort; i++) {
    out.push({ proto: s.proto, hostIp: s.hostIp, hostPort: s.hostPort === 0 ? 0 : s.hostPort + i, containerPort: s.containerPort + i });
  }
  return out;
}

/** Parses and expands. */
export function publishSpecMappings(spec: string): PortMapping[] {
  return expandPublishSpec(parsePublishSpec(spec));
}

/** `HOST_IP:HOST_PORT` as a listener address reads (`[::1]:8080` for IPv6; `…:8099-8100` for a range not yet bound). */
export function formatHostAddress(m: { hostIp: string; hostPort: number; hostPortEnd?: number }): string {
  const port = m.hostPortEnd !== undefined && m.hostPortEnd !== m.hostPort ? `${m.hostPort}-${m.hostPortEnd}` : `${m.hostPort}`;
  return m.hostIp.includes(':') ? `[${m.hostIp}]:${port}` : `${m.hostIp}:${port}`;
}

/** The mapping in the spec syntax it came from: `0.0.0.0:8080:80/tcp`. */
export function formatMapping(m: PortMapping): string {
  return `${formatHostAddress(m)}:${m.containerPort}/${m.proto}`;
}

/**
 * Whether a mapping from an unpublish spec selects a published (bound) one: same protocol, host
 * address and container port, and the same host port — any, for a spec without one (0), and any
 * inside the range, for a spec with a host range.
 */
export function specSelects(spec: PortMapping, bound: PortMapping): boolean {
  if (spec.proto !== bound.proto || spec.hostIp !== bound.hostIp || spec.containerPort !== bound.containerPort) return false;
  if (spec.hostPort === 0) return true;
  return spec.hostPortEnd === undefined ? bound.hostPort === spec.hostPort : bound.hostPort >= spec.hostPort && bound.hostPort <= spec.hostPortEnd;
}

/** Same mapping (host address, host port, container port, protocol). */
export function sameMapping(a: PortMapping, b: PortMapping): boolean {
  return a.proto === b.proto && a.hostIp === b.hostIp && a.hostPort === b.hostPort && a.containerPort === b.containerPort;
}

function isWildcard(ip: string): boolean {
  return ip === '0.0.0.0' || ip === '::';
}

/**
 * Whether two listeners would fight over a port: the same protocol and port, and the same
 * address or a wildcard of the same family (what bind(2) refuses with EADDRINUSE). A mapping
 * that asks for any free port, or for one of a range, clashes with nothing: it will take a port
 * that is free.
 */
export function mappingsClash(a: PortMapping, b: PortMapping): boolean {
  if (a.proto !== b.proto || a.hostPort === 0 || a.hostPort !== b.hostPort) return false;
  if (a.hostPortEnd !== undefined || b.hostPortEnd !== undefined) return false;
  const fa = a.hostIp.includes(':') ? 6 : 4;
  const fb = b.hostIp.includes(':') ? 6 : 4;
  if (fa !== fb) return false;
  return a.hostIp === b.hostIp || isWildcard(a.hostIp) || isWildcard(b.hostIp);
}
