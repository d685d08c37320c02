/**
 * The command line of slirp4netns 1.2, parsed as its getopt_long does: short options clustered
 * (`-ce3`), values attached or separate (`-e3`, `-e 3`, `--mtu=1500`, `--mtu 1500`), long options
 * abbreviated to any unambiguous prefix (`--macaddr`), options after the operands (permutation),
 * and `--` ending the options. Pure: argv in, options or a SlirpArgsError out — the messages are
 * slirp4netns's where its clients or tests look for them.
 */
import { InvalidArgumentError } from '../errors.js';
import { parseIpv4, ipv4ToString } from '../packet/ip-address.js';

/** A slirp4netns command line that cannot be used (its message is slirp4netns's where clients look for it). */
export class SlirpArgsError extends InvalidArgumentError {
  constructor(message: string) {
    super(message, 'ERR_USAGE');
    this.name = 'SlirpArgsError';
  }
}

export const DEFAULT_CIDR = '10.0.2.0/24';
export const DEFAULT_SLIRP_MTU = 1500;
export const MAX_SLIRP_MTU = 65521;
/** The lowest MTU an IPv4 interface may have (RFC 791). */
export const MIN_SLIRP_MTU = 68;

export interface SlirpOptions {
  configure: boolean;
  exitFd: number; // -1: none
  readyFd: number; // -1: none
  mtu: number;
  /** -m/--mtu was given (joining a daemon's network, the network's MTU applies otherwise). */
  mtuGiven: boolean;
  /** Network address and prefix length. */
  network: number;
  prefix: number;
  cidr: string;
  disableHostLoopback: boolean;
  netnsType: 'pid' | 'path';
  /** The operand: a PID (netnsType pid) or a namespace path. */
  pid: number;
  netnsPath: string;
  usernsPath: string;
  tapname: string;
  apiSocket: string;
  /** IPv4 address or interface name, as given ('' = none). */
  outboundAddr: string;
  outboundAddr6: string;
  disableDns: boolean;
  /** The TAP's MAC (with --configure), as given ('' = the kernel's). */
  macAddress: string;
  enableIpv6: boolean;
  enableSandbox: boolean;
  enableSeccomp: boolean;
  /** usernet's own: join a running daemon's network instead of a private one. */
  joinNetwork: string;
  daemonSocket: string;
}

export type SlirpCommand = { action: 'help' } | { action: 'version' } | { action: 'run'; options: SlirpOptions; warnings: string[] };

interface OptionSpec {
  long: string;
  short?: string;
  arg: boolean;
  /** Kept out of --help (deprecated spellings). */
  hidden?: boolean;
}

const OPTIONS: readonly OptionSpec[] = [
  { long: 'configure', short: 'c', arg: false },
  { long: 'exit-fd', short: 'e', arg: true },
  { long: 'ready-fd', short: 'r', arg: true },
  { long: 'mtu', short: 'm', arg: true },
  { long: 'cidr', arg: true },
  { long: 'disable-host-loopback', arg: false },
  { long: 'no-host-loopback', arg: false, hidden: true },
  { long: 'netns-type', arg: true },
  { long: 'userns-path', arg: true },
  { long: 'api-socket', short: 'a', arg: true },
  { long: 'enable-ipv6', short: '6', arg: false },
  { long: 'enable-sandbox', arg: false },
  { long: 'create-sandbox', arg: false, hidden: true },
  { long: 'enable-seccomp', arg: false },
  { long: 'help', short: 'h', arg: false },
  { long: 'version', short: 'v', arg: false },
  { long: 'outbound-addr', arg: true },
  { long: 'outbound-addr6', arg: true },
  { long: 'disable-dns', arg: false },
  { long: 'macaddress', arg: true },
  { long: 'target-type', arg: true },
  { long: 'network', arg: true },
  { long: 'socket', arg: true },
];

/** Resolves a long option as getopt_long does: an exact name, else a unique prefix. */
function findLong(name: string): OptionSpec {
  const exact = OPTIONS.find((o) => o.long === name);
  if (exact) return exact;
  const matches = OPTIONS.filter((o) => o.long.startsWith(name));
  if (matches.length === 1) return matches[0] as OptionSpec;
  if (matches.length > 1) throw new SlirpArgsError(`option '--${name}' is ambiguous; possibilities: ${matches.map((o) => `'--${o.long}'`).join(' ')}`);
  throw new SlirpArgsError(`unrecognized option '--${name}'`);
}

function nonNegativeInt(text: string, what: string): number {
  if (!/^\d+$/.test(text) || Number(text) > 0x7fffffff) throw new SlirpArgsError(`${what} must be a non-negative integer`);
  return Number(text);
}

/** slirp4netns's --cidr rules, with its messages. */
export function parseSlirpCidr(text: string): { network: number; prefix: number } {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(text);
  let addr: number;
  let prefix: number;
  try {
    if (!m) throw new Error('bad');
    addr = parseIpv4(m[1] as string);
    prefix = Number(m[2]);
    if (prefix > 32) throw new Error('bad');
  } catch {
    throw new SlirpArgsError('invalid CIDR');
  }
  // The prefix first, as slirp4netns does (10.0.2.100/26 is a prefix error there).
  if (prefix < 1 || prefix > 25) throw new SlirpArgsError('prefix length needs to be 1-25');
  const mask = (0xffffffff << (32 - prefix)) >>> 0;
  const network = (addr & mask) >>> 0;
  if (network !== addr) {
    throw new SlirpArgsError(`CIDR needs to be a network address like ${ipv4ToString(network)}/${prefix}, not like ${text}`);
  }
  return { network, prefix };
}

/**
 * Parses argv (without the program name). Options are checked as they come, like slirp4netns;
 * -h and -v act at once, as there.
 */
export function parseSlirpArgs(argv: readonly string[]): SlirpCommand {
  const values = new Map<string, string>();
  const flags = new Set<string>();
  const warnings: string[] = [];
  const operands: string[] = [];

  const take = (spec: OptionSpec, value: string | undefined): SlirpCommand | null => {
    if (spec.long === 'help') return { action: 'help' };
    if (spec.long === 'version') return { action: 'version' };
    if (spec.arg) values.set(spec.long, value as string);
    else flags.add(spec.long);
    return null;
  };

  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--') {
      operands.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      const spec = findLong(name);
      let value: string | undefined;
      if (spec.arg) {
        if (eq >= 0) value = a.slice(eq + 1);
        else if (i + 1 < argv.length) value = argv[++i];
        else throw new SlirpArgsError(`option '--${spec.long}' requires an argument`);
      } else if (eq >= 0) {
        throw new SlirpArgsError(`option '--${spec.long}' doesn't allow an argument`);
      }
      const done = take(spec, value);
      if (done) return done;
      continue;
    }
    if (a.startsWith('-') && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const ch = a[j] as string;
        const spec = OPTIONS.find((o) => o.short === ch);
        if (!spec) throw new SlirpArgsError(`invalid option -- '${ch}'`);
        let value: string | undefined;
        if (spec.arg) {
          if (j + 1 < a.length) value = a.slice(j + 1);
          else if (i + 1 < argv.length) value = argv[++i];
          else throw new SlirpArgsError(`option requires an argument -- '${ch}'`);
          j = a.length;
        }
        const done = take(spec, value);
        if (done) return done;
      }
      continue;
    }
    operands.push(a);
  }

  const o: SlirpOptions = {
    configure: flags.has('configure'),
    exitFd: -1,
    readyFd: -1,
    mtu: DEFAULT_SLIRP_MTU,
    mtuGiven: false,
    network: 0,
    prefix: 24,
    cidr: DEFAULT_CIDR,
    disableHostLoopback: flags.has('disable-host-loopback') || flags.has('no-host-loopback'),
    netnsType: 'pid',
    pid: 0,
    netnsPath: '',
    usernsPath: values.get('userns-path') ?? '',
    tapname: 'tap0',
    apiSocket: values.get('api-socket') ?? '',
    outboundAddr: values.get('outbound-addr') ?? '',
    outboundAddr6: values.get('outbound-addr6') ?? '',
    disableDns: flags.has('disable-dns'),
    macAddress: values.get('macaddress') ?? '',
    enableIpv6: flags.has('enable-ipv6'),
    enableSandbox: flags.has('enable-sandbox') || flags.has('create-sandbox'),
    enableSeccomp: flags.has('enable-seccomp'),
    joinNetwork: values.get('network') ?? '',
    daemonSocket: values.get('socket') ?? '',
  };
  if (flags.has('no-host-loopback')) warnings.push('--no-host-loopback is deprecated, please use --disable-host-loopback instead');
  if (flags.has('create-sandbox')) warnings.push('--create-sandbox is deprecated, please use --enable-sandbox instead');

  const e = values.get('exit-fd');
  if (e !== undefined) o.exitFd = nonNegativeInt(e, 'exit-fd');
  const r = values.get('ready-fd');
  if (r !== undefined) o.readyFd = nonNegativeInt(r, 'ready-fd');
  const mtu = values.get('mtu');
  if (mtu !== undefined) {
    if (!/^\d+$/.test(mtu) || Number(mtu) < 1 || Number(mtu) > MAX_SLIRP_MTU) throw new SlirpArgsError(`MTU must be a positive integer (< ${MAX_SLIRP_MTU + 1})`);
    if (Number(mtu) < MIN_SLIRP_MTU) throw new SlirpArgsError(`MTU must be at least ${MIN_SLIRP_MTU} for IPv4`);
    o.mtu = Number(mtu);
    o.mtuGiven = true;
  }
  const cidr = values.get('cidr') ?? DEFAULT_CIDR;
  const c = parseSlirpCidr(cidr);
  o.network = c.network;
  o.prefix = c.prefix;
  o.cidr = cidr;
  if (o.macAddress && !o.configure) throw new SlirpArgsError('--macaddress cannot be specified when --configure or -c is not specified');
  if (o.macAddress && !/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(o.macAddress)) throw new SlirpArgsError(`--macaddress ${o.macAddress}: not a MAC address like 0e:d4:18:d9:38:fb`);
  const targetType = values.get('target-type') ?? 'netns';
  if (targetType === 'bess') throw new SlirpArgsError('--target-type=bess is not supported by usernet (only netns)');
  if (targetType !== 'netns') throw new SlirpArgsError('--target-type must be either "netns" or "bess"');
  const netnsType = values.get('netns-type') ?? 'pid';
  if (netnsType === 'tapfd') throw new SlirpArgsError('--netns-type=tapfd is not supported by usernet (use pid or path)');
  if (netnsType !== 'pid' && netnsType !== 'path') throw new SlirpArgsError('--netns-type must be pid or path');
  o.netnsType = netnsType;
  if (o.joinNetwork && !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(o.joinNetwork)) throw new SlirpArgsError(`--network ${o.joinNetwork}: not a network name`);
  if (o.daemonSocket && !o.joinNetwork) throw new SlirpArgsError('--socket goes with --network NAME');
  if (o.joinNetwork) {
    // The daemon's network has its own addresses, DNS and loopback policy.
    for (const [flag, given] of [['--cidr', values.has('cidr')], ['--disable-host-loopback', o.disableHostLoopback], ['--disable-dns', o.disableDns], ['--outbound-addr', o.outboundAddr !== '']] as const) {
      if (given) throw new SlirpArgsError(`${flag} does not go with --network: it is a setting of the daemon's network (usernet network create, usernet daemon)`);
    }
  }

  if (operands.length < 1) throw new SlirpArgsError('missing PID or PATH (see --help)');
  if (operands.length > 2) throw new SlirpArgsError('too many arguments');
  const target = operands[0] as string;
  if (o.netnsType === 'pid') {
    if (!/^\d+$/.test(target) || Number(target) <= 0 || Number(target) > 0x3fffffff) throw new SlirpArgsError('PID must be a positive integer');
    o.pid = Number(target);
  } else {
    if (target === '') throw new SlirpArgsError('existing path expected when --netns-type=path');
    o.netnsPath = target;
  }
  if (operands.length === 2) {
    const tap = operands[1] as string;
    if (!/^[A-Za-z0-9_.-]{1,15}$/.test(tap)) throw new SlirpArgsError(`TAPNAME ${tap}: must be 1-15 letters, digits, "_", "." or "-"`);
    o.tapname = tap;
  }
  return { action: 'run', options: o, warnings };
}

/** The addresses slirp4netns derives from its CIDR. */
export function slirpAddresses(network: number, prefix: number): { gateway: number; dns: number; guest: number; dhcpFirst: number; broadcast: number } {
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return {
    gateway: (network + 2) >>> 0,
    dns: (network + 3) >>> 0,
    guest: (network + 100) >>> 0,
    dhcpFirst: (network + 15) >>> 0,
    broadcast: (network | (~mask >>> 0)) >>> 0,
  };
}

export const SLIRP_HELP_FLAGS = OPTIONS.filter((o) => !o.hidden).map((o) => o.long);
