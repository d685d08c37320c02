/**
 * The state file's format: what must survive a daemon restart or crash, and how a file is read
 * back. Pure: text in, a state and a list of problems out (the file I/O is `persistence.ts`).
 *
 * Reading follows one rule: never throw away what cannot be understood. A file that is not
 * JSON, not a usernet state, or written by a newer usernet (a downgrade) is a `StateFileError`
 * — the daemon stops and touches nothing, because starting empty would orphan every
 * container's persistent TAP and overwrite the only record of them. Inside a good file, one
 * malformed entry (a lease, an attachment, a network, a published port) is skipped and named,
 * and the rest is kept: losing one entry is better than losing all of them.
 */
import { UsernetError } from '../errors.js';
import type { NetworkSpec } from '../gateway/network.js';
import type { PortMapping } from '../nat/publish-spec.js';

/** 2: networks and DHCP leases. A version 1 file (attachments only) is read and upgraded. */
export const STATE_VERSION = 2;

export interface NamespaceIdentity {
  /** st_dev and st_ino of the network namespace, as decimal strings (they are 64-bit). */
  dev: string;
  ino: string;
}

export interface AttachmentRecord {
  name: string;
  /** The network it is on (absent in version 1: the default network). */
  network?: string;
  /** The container: a holder process, or a network namespace path (with its user namespace). */
  pid?: number;
  netnsPath?: string;
  usernsPath?: string;
  netns: NamespaceIdentity;
  ifname: string;
  mac: string;
  mtu: number;
  /** Applied when the TAP has to be created again. */
  configure: boolean;
  /** The container's address on its network (A.B.C.D). */
  ip?: string;
  /** False when the TAP existed before the attachment: detach then leaves it in place. */
  ownsDevice?: boolean;
  /**
   * The process the attachment belongs to (a usernet-slirp4netns joined to this daemon): when it
   * ends, the attachment goes, with its published ports. Its start time (clock ticks since boot,
   * /proc/PID/stat field 22) tells it from a later process with a reused PID.
   */
  owner?: { pid: number; start: number };
  /** Virtio-net offloads for this TAP; absent: the daemon's setting. */
  offload?: boolean;
  /** Published ports (host ports as bound: a request for any port records the one it got). */
  ports?: PortMapping[];
  attachedAt: string;
}

export interface LeaseRecord {
  network: string;
  mac: string;
  ip: string;
  /** Epoch ms. */
  expiresAt: number;
}

export interface DaemonState {
  version: number;
  /** User-created networks (the default network comes from the daemon's flags). */
  networks: NetworkSpec[];
  attachments: AttachmentRecord[];
  leases: LeaseRecord[];
}

export function emptyState(): DaemonState {
  return { version: STATE_VERSION, networks: [], attachments: [], leases: [] };
}

/** A state file the daemon must not start from (it would lose what the file records). */
export class StateFileError extends UsernetError {
  constructor(code: 'ERR_STATE_CORRUPT' | 'ERR_STATE_NEWER' | 'ERR_STATE_UNREADABLE', message: string) {
    super(code, message);
    this.name = 'StateFileError';
  }
}

export interface ParsedState {
  state: DaemonState;
  /** One line per entry that was skipped, saying which and why. */
  skipped: string[];
}

type Obj = Record<string, unknown>;

const isObject = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isPort = (v: unknown): boolean => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535;
const isOptional = (v: unknown, type: 'string' | 'number' | 'boolean'): boolean => v === undefined || typeof v === type;

/**
 * Parses a state file's text. Throws `StateFileError` for a file that cannot be used as a whole
 * (not JSON, not a state object, a version this usernet does not read); skips malformed entries.
 */
export function parseState(text: string): ParsedState {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new StateFileError('ERR_STATE_CORRUPT', text.trim() === '' ? 'it is empty' : `it is not JSON (${(err as Error).message})`);
  }
  if (!isObject(value)) throw new StateFileError('ERR_STATE_CORRUPT', 'it is not a JSON object');
  const version = value.version;
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1) {
    throw new StateFileError('ERR_STATE_CORRUPT', `its version ${JSON.stringify(version) ?? 'is missing'}${version === undefined ? '' : ' is not a usernet state version'}`);
  }
  if (version > STATE_VERSION) {
    throw new StateFileError('ERR_STATE_NEWER', `it was written by a newer usernet (state version ${version}; this one reads up to ${STATE_VERSION})`);
  }
  const list = (key: string, requiredFrom: number): unknown[] => {
    const v = value[key];
    if (v === undefined && version < requiredFrom) return [];
    if (!Array.isArray(v)) throw new StateFileError('ERR_STATE_CORRUPT', `its "${key}" is not a list`);
    return v;
  };
  const rawAttachments = list('attachments', 1);
  const rawNetworks = list('networks', 2);
  const rawLeases = list('leases', 2);

  const skipped: string[] = [];
  const state = emptyState();
  rawNetworks.forEach((n, i) => {
    const why = networkProblem(n);
    if (why) skipped.push(`network #${i + 1}${nameOf(n)}: ${why}`);
    else state.networks.push(n as unknown as NetworkSpec);
  });
  rawLeases.forEach((l, i) => {
    const why = leaseProblem(l);
    if (why) skipped.push(`lease #${i + 1}: ${why}`);
    else state.leases.push(l as unknown as LeaseRecord);
  });
  const names = new Set<string>();
  rawAttachments.forEach((a, i) => {
    if (version === 1 && isObject(a)) upgradeV1Attachment(a);
    const why = attachmentProblem(a) ?? (names.has((a as Obj).name as string) ? 'a second attachment of that name' : null);
    if (why) {
      skipped.push(`attachment #${i + 1}${nameOf(a)}: ${why}`);
      return;
    }
    const r = a as Obj;
    names.add(r.name as string);
    // A bad published port is dropped on its own; the attachment (and its TAP) stays.
    if (Array.isArray(r.ports)) {
      const good = r.ports.filter((m, j) => {
        const bad = mappingProblem(m);
        if (bad) skipped.push(`published port #${j + 1} of attachment ${String(r.name)}: ${bad}`);
        return !bad;
      });
      if (good.length) r.ports = good;
      else delete r.ports;
    }
    state.attachments.push(r as unknown as AttachmentRecord);
  });
  return { state, skipped };
}

function nameOf(v: unknown): string {
  return isObject(v) && typeof v.name === 'string' ? ` (${v.name})` : '';
}

/** Version 1 had no networks: attachments were on the (only) switch, addresses as CIDR. */
function upgradeV1Attachment(a: Obj): void {
  if (typeof a.ip === 'string') a.ip = a.ip.split('/')[0];
  delete a.gateway;
}

function networkProblem(n: unknown): string | null {
  if (!isObject(n)) return 'not an object';
  if (typeof n.name !== 'string' || n.name === '') return 'no name';
  if (typeof n.subnet !== 'string') return 'no subnet';
  for (const k of ['gateway', 'dns', 'range'] as const) if (!isOptional(n[k], 'string')) return `a malformed ${k}`;
  for (const k of ['mtu', 'leaseTime'] as const) if (!isOptional(n[k], 'number')) return `a malformed ${k}`;
  for (const k of ['icc', 'disableDns', 'disableHostLoopback'] as const) if (!isOptional(n[k], 'boolean')) return `a malformed ${k}`;
  for (const k of ['dnsSearch', 'dnsUpstream'] as const) {
    const v = n[k];
    if (v !== undefined && !(Array.isArray(v) && v.every((x) => typeof x === 'string'))) return `a malformed ${k}`;
  }
  return null;
}

function leaseProblem(l: unknown): string | null {
  if (!isObject(l)) return 'not an object';
  if (typeof l.network !== 'string') return 'no network';
  if (typeof l.mac !== 'string') return 'no MAC';
  if (typeof l.ip !== 'string') return 'no address';
  if (typeof l.expiresAt !== 'number' || !Number.isFinite(l.expiresAt)) return 'no expiry time';
  return null;
}

function attachmentProblem(a: unknown): string | null {
  if (!isObject(a)) return 'not an object';
  if (typeof a.name !== 'string' || a.name === '') return 'no name';
  if (typeof a.ifname !== 'string' || a.ifname === '') return 'no interface name';
  if (typeof a.pid !== 'number' && typeof a.netnsPath !== 'string') return 'names no container';
  if (typeof a.mtu !== 'number' || typeof a.mac !== 'string' || typeof a.configure !== 'boolean') return 'a malformed mtu, mac or configure field';
  const ns = a.netns;
  if (!isObject(ns) || typeof ns.dev !== 'string' || typeof ns.ino !== 'string') return 'no namespace identity';
  const owner = a.owner;
  if (owner !== undefined && (!isObject(owner) || typeof owner.pid !== 'number' || typeof owner.start !== 'number')) return 'a malformed owner';
  for (const k of ['network', 'usernsPath', 'ip'] as const) if (!isOptional(a[k], 'string')) return `a malformed ${k}`;
  for (const k of ['ownsDevice', 'offload'] as const) if (!isOptional(a[k], 'boolean')) return `a malformed ${k}`;
  if (a.ports !== undefined && !Array.isArray(a.ports)) return 'a malformed ports list';
  return null;
}

function mappingProblem(m: unknown): string | null {
  if (!isObject(m)) return 'not an object';
  if (m.proto !== 'tcp' && m.proto !== 'udp') return 'no protocol';
  if (typeof m.hostIp !== 'string') return 'no host address';
  if (!isPort(m.hostPort) || !isPort(m.containerPort)) return 'a port out of range';
  return null;
}
