/**
 * Published-port specs in Docker's `-p` syntax, parsed and printed. Pure: no sockets here.
 *
 *   [HOST_IP:]HOST_PORT[-END]:CONTAINER_PORT[-END][/tcp|/udp]
 *   [HOST_IP:]:CONTAINER_PORT[-END][/PROTO]     any free host port (per container port)
 *   CONTAINER_PORT[-END][/PROTO]                 the same, on 0.0.0.0
 *
 * HOST_IP defaults to 0.0.0.0; an IPv6 host address goes in brackets (`[::1]:8080:80`) and
 * forwards to the container's IPv4 address like any other. Ranges must be of equal length and
 * pair up in order (`9000-9009:9000-9009`). A spec expands to one PortMapping per port: that is
 * what gets a listener, is recorded in the state file, and is listed.
 */
import { isIPv6 } from 'node:net';
import { InvalidArgumentError } from '../errors.js';
import { tryParseIpv4 } from '../packet/ip-address.js';

export type PublishProto = 'tcp' | 'udp';

export const ERR_BAD_PUBLISH_SPEC = 'ERR_BAD_PUBLISH_SPEC';

export interface PublishSpec {
  proto: PublishProto;
  /** Host address as text: dotted quad, or an IPv6 address without brackets. */
  hostIp: string;
  family: 4 | 6;
  /** 0 for "any free port" (then hostPortEnd is 0 too). */
  hostPort: number;
  hostPortEnd: number;
  containerPort: number;
  containerPortEnd: number;
}

/** One published port. hostPort 0 asks for any free port; once listening it is the real one. */
export interface PortMapping {
  proto: PublishProto;
  hostIp: string;
  hostPort: number;
  containerPort: number;
}

function bad(spec: string, why: string): InvalidArgumentError {
  return new InvalidArgumentError(`bad port spec "${spec}": ${why}`, ERR_BAD_PUBLISH_SPEC);
}

/** "N" or "N-M" of ports 1-65535, N <= M. */
function parseRange(spec: string, text: string, what: string): [number, number] {
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text);
  if (!m) throw bad(spec, `${what} "${text}" is not a port or a range of ports (N or N-M)`);
  const a = Number(m[1]);
  const b = m[2] === undefined ? a : Number(m[2]);
  for (const p of [a, b]) if (p < 1 || p > 65535) throw bad(spec, `${what} ${p} is not 1-65535`);
  if (b < a) throw bad(spec, `${what} range ${text} ends before it starts`);
  return [a, b];
}

/** Parses one `-p` spec; throws InvalidArgumentError (code ERR_BAD_PUBLISH_SPEC) naming the problem. */
export function parsePublishSpec(spec: string): PublishSpec {
  if (typeof spec !== 'string' || spec.trim() === '') throw bad(String(spec), 'empty');
  let rest = spec.trim();
  let proto: PublishProto = 'tcp';
  const slash = rest.lastIndexOf('/');
  if (slash >= 0) {
    const p = rest.slice(slash + 1);
    if (p !== 'tcp' && p !== 'udp') throw bad(spec, `protocol "${p}" is not tcp or udp`);
    proto = p;
    rest = rest.slice(0, slash);
  }
  let hostIp = '0.0.0.0';
  let family: 4 | 6 = 4;
  let hostPart: string | null;
  let containerPart: string;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0) throw bad(spec, 'an IPv6 host address opened with "[" is not closed with "]"');
    const addr = rest.slice(1, close);
    if (!isIPv6(addr)) throw bad(spec, `"${addr}" is not an IPv6 address`);
    hostIp = addr.toLowerCase();
    family = 6;
    const after = rest.slice(close + 1);
    if (!after.startsWith(':')) throw bad(spec, 'a host address needs ":HOST_PORT:CONTAINER_PORT" after it');
    const parts = after.slice(1).split(':');
    if (parts.length !== 2) throw bad(spec, 'expected [HOST_IP]:HOST_PORT:CONTAINER_PORT');
    [hostPart, containerPart] = parts as [string, string];
  } else {
    const parts = rest.split(':');
    if (parts.length > 3) throw bad(spec, 'too many ":" (an IPv6 host address goes in brackets: [::1]:8080:80)');
    if (parts.length === 3) {
      const [ip, h, c] = parts as [string, string, string];
      if (tryParseIpv4(ip) < 0) throw bad(spec, `"${ip}" is not an IPv4 address (IPv6 goes in brackets: [::1]:8080:80)`);
      hostIp = ip;
      hostPart = h;
      containerPart = c;
    } else if (parts.length === 2) {
      [hostPart, containerPart] = parts as [string, string];
      if (hostPart === '') throw bad(spec, 'no host port before ":" (write CONTAINER_PORT alone for any free host port)');
    } else {
      hostPart = '';
      containerPart = parts[0] as string;
    }
  }
  if (containerPart === '') throw bad(spec, 'no container port');
  const [cStart, cEnd] = parseRange(spec, containerPart, 'container port');
  let hStart = 0;
  let hEnd = 0;
  if (hostPart !== '') {
    [hStart, hEnd] = parseRange(spec, hostPart, 'host port');
    if (hEnd - hStart !== cEnd - cStart) {
      throw bad(spec, `the host range has ${hEnd - hStart + 1} port(s) and the container range ${cEnd - cStart + 1}: ranges must be of equal length`);
    }
  }
  return { proto, hostIp, family, hostPort: hStart, hostPortEnd: hEnd, containerPort: cStart, containerPortEnd: cEnd };
}

/** One mapping per port of the spec, in order. */
export function expandPublishSpec(s: PublishSpec): PortMapping[] {
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

/** `HOST_IP:HOST_PORT` as a listener address reads (`[::1]:8080` for IPv6). */
export function formatHostAddress(m: { hostIp: string; hostPort: number }): string {
  return m.hostIp.includes(':') ? `[${m.hostIp}]:${m.hostPort}` : `${m.hostIp}:${m.hostPort}`;
}

/** The mapping in the spec syntax it came from: `0.0.0.0:8080:80/tcp`. */
export function formatMapping(m: PortMapping): string {
  return `${formatHostAddress(m)}:${m.containerPort}/${m.proto}`;
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
 * address or a wildcard of the same family (what bind(2) refuses with EADDRINUSE).
 */
export function mappingsClash(a: PortMapping, b: PortMapping): boolean {
  if (a.proto !== b.proto || a.hostPort === 0 || a.hostPort !== b.hostPort) return false;
  const fa = a.hostIp.includes(':') ? 6 : 4;
  const fb = b.hostIp.includes(':') ? 6 : 4;
  if (fa !== fb) return false;
  return a.hostIp === b.hostIp || isWildcard(a.hostIp) || isWildcard(b.hostIp);
}
