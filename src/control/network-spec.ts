/**
 * A network as a user writes it (CLI flags, API fields, the state file), checked and turned into
 * the numbers the data path runs on (gateway/network.ts's NetworkConfig). Every problem is one
 * sentence naming the flag, which is why this lives in the control plane and not in gateway/.
 */
import { InvalidArgumentError } from '../errors.js';
import { DEFAULT_LEASE_TIME_SEC } from '../gateway/dhcp-server.js';
import type { NetworkConfig, NetworkSpec } from '../gateway/network.js';
import { parseUpstream } from '../gateway/upstream.js';
import { ipv4ToString, parseIpv4, prefixToMask, tryParseIpv4 } from '../packet/ip-address.js';
import { NAME_PATTERN } from './validate.js';

const DOMAIN_RE = /^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;

/** Throws InvalidArgumentError unless `d` is a domain name DHCP and resolv.conf can carry. */
export function checkDomain(d: string): void {
  if (!DOMAIN_RE.test(d)) throw new InvalidArgumentError(`--dns-search "${d}" is not a domain name`);
}

function broadcastOf(network: number, prefix: number): number {
  return (network | ~prefixToMask(prefix)) >>> 0;
}

function parseAddressIn(what: string, text: string, network: number, prefix: number): number {
  const ip = tryParseIpv4(text.trim());
  if (ip < 0) throw new InvalidArgumentError(`--${what} "${text}" is not an IPv4 address`);
  if (((ip & prefixToMask(prefix)) >>> 0) !== network) {
    throw new InvalidArgumentError(`--${what} ${text} is outside the subnet ${ipv4ToString(network)}/${prefix}`);
  }
  if (ip === network || ip === broadcastOf(network, prefix)) {
    throw new InvalidArgumentError(`--${what} ${text} is the ${ip === network ? 'network' : 'broadcast'} address of ${ipv4ToString(network)}/${prefix}`);
  }
  return ip;
}

/** Validates a spec against the networks that exist; every problem is one clear sentence. */
export function validateNetworkSpec(spec: NetworkSpec, others: readonly NetworkConfig[]): NetworkConfig {
  if (!NAME_PATTERN.test(spec.name)) {
    throw new InvalidArgumentError(`network name "${spec.name}" must be 1-64 letters, digits, "_", "." or "-", starting with a letter or digit`);
  }
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(spec.subnet.trim());
  const addr = m ? tryParseIpv4(m[1]) : -1;
  if (!m || addr < 0 || Number(m[2]) > 32) throw new InvalidArgumentError(`--subnet "${spec.subnet}" is not a valid CIDR (expected A.B.C.D/NN like 10.0.2.0/24)`);
  const prefix = Number(m[2]);
  const network = (addr & prefixToMask(prefix)) >>> 0;
  if (network !== addr) {
    throw new InvalidArgumentError(`--subnet needs a network address like ${ipv4ToString(network)}/${prefix}, not like ${spec.subnet}`);
  }
  const first = network >>> 24;
  if (first === 0 || first === 127 || first >= 224 || (network & 0xffff0000) >>> 0 === 0xa9fe0000) {
    throw new InvalidArgumentError(
      `--subnet ${spec.subnet} is not usable for containers (0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, multicast and reserved addresses are not)`,
    );
  }
  const explicit = spec.gateway !== undefined && spec.dns !== undefined && spec.range !== undefined;
  if (prefix < 1 || prefix > (explicit ? 30 : 25)) {
    throw new InvalidArgumentError(
      explicit ? '--subnet prefix length must be 1-30' : '--subnet prefix length must be 1-25 (a smaller subnet needs --gateway, --dns and --range)',
    );
  }
  const gateway = spec.gateway !== undefined ? parseAddressIn('gateway', spec.gateway, network, prefix) : network + 2;
  const dns = spec.dns !== undefined ? parseAddressIn('dns', spec.dns, network, prefix) : network + 3;
  let rangeFirst = network + 100;
  let rangeLast = broadcastOf(network, prefix) - 1;
  if (spec.range !== undefined) {
    const parts = spec.range.split('-');
    if (parts.length !== 2) throw new InvalidArgumentError(`--range "${spec.range}" must be FIRST-LAST, like 10.0.2.100-10.0.2.200`);
    rangeFirst = parseAddressIn('range', parts[0], network, prefix);
    rangeLast = parseAddressIn('range', parts[1], network, prefix);
    if (rangeFirst > rangeLast) throw new InvalidArgumentError(`--range ${spec.range}: the first address is after the last`);
  }
  // The range must leave at least one address for a container.
  let free = 0;
  for (let ip = rangeFirst; ip <= rangeLast && free === 0; ip++) if (ip !== gateway && ip !== dns) free++;
  if (free === 0) throw new InvalidArgumentError(`--range ${ipv4ToString(rangeFirst)}-${ipv4ToString(rangeLast)} leaves no address for containers (only the gateway and DNS addresses are in it)`);
  const mtu = spec.mtu ?? 1500;
  // DHCP needs 576-byte datagrams (RFC 2131): a network below that could not configure clients.
  if (!Number.isInteger(mtu) || mtu < 576 || mtu > 65521) throw new InvalidArgumentError(`--mtu must be between 576 and 65521, not ${mtu}`);
  const leaseTime = spec.leaseTime ?? DEFAULT_LEASE_TIME_SEC;
  if (!Number.isInteger(leaseTime) || leaseTime < 60 || leaseTime > 2 ** 31 - 1) throw new InvalidArgumentError('--lease-time must be at least 60 seconds');
  for (const d of spec.dnsSearch ?? []) checkDomain(d);
  const dnsUpstream = spec.dnsUpstream ? spec.dnsUpstream.map((u) => parseUpstream(u)) : null;
  const broadcast = broadcastOf(network, prefix);
  for (const o of others) {
    if (o.name === spec.name) throw new InvalidArgumentError(`a network named ${spec.name} already exists`);
    const ob = broadcastOf(o.network, o.prefix);
    if (network <= ob && o.network <= broadcast) {
      throw new InvalidArgumentError(`--subnet ${spec.subnet} overlaps network ${o.name} (${ipv4ToString(o.network)}/${o.prefix})`);
    }
  }
  return {
    name: spec.name,
    network,
    prefix,
    gateway,
    dns,
    rangeFirst,
    rangeLast,
    mtu,
    icc: spec.icc ?? true,
    dnsSearch: spec.dnsSearch ?? null,
    dnsUpstream,
    disableDns: spec.disableDns ?? false,
    leaseTime,
    disableHostLoopback: spec.disableHostLoopback ?? false,
  };
}

/** Parses an IPv4 address given for a network member (e.g. `--ip`), allowing `/PREFIX` when it matches. */
export function parseMemberAddress(text: string, config: NetworkConfig): number {
  const slash = text.indexOf('/');
  if (slash >= 0 && Number(text.slice(slash + 1)) !== config.prefix) {
    throw new InvalidArgumentError(`--ip ${text}: network ${config.name} is /${config.prefix}`);
  }
  return parseIpv4(slash >= 0 ? text.slice(0, slash) : text);
}
