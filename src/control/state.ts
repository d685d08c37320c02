/**
 * The state file: what must survive a daemon restart or crash. Written atomically (temp file,
 * fsync, rename, fsync of the directory), so a crash leaves either the old or the new file,
 * never half of one. A file that cannot be read is kept aside (state.json.corrupt-<time>), never
 * silently overwritten.
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
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

export interface LoadResult {
  state: DaemonState;
  /** Set when a bad file was moved aside. */
  movedAside?: string;
  problem?: string;
}

export class StateFile {
  readonly path: string;

  constructor(readonly dir: string) {
    this.path = join(dir, 'state.json');
  }

  load(): LoadResult {
    if (!existsSync(this.path)) return { state: emptyState() };
    let problem: string;
    try {
      const parsed: unknown = JSON.parse(readFileSync(this.path, 'utf8'));
      const state = validateState(parsed);
      return { state };
    } catch (err) {
      problem = err instanceof Error ? err.message : String(err);
    }
    const aside = `${this.path}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    renameSync(this.path, aside);
    return { state: emptyState(), movedAside: aside, problem };
  }

  save(state: DaemonState): void {
    const tmp = `${this.path}.tmp-${process.pid}`;
    const data = `${JSON.stringify(state, null, 2)}\n`;
    try {
      const fd = openSync(tmp, 'w', 0o600);
      try {
        writeSync(fd, data);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, this.path);
    } catch (err) {
      rmSync(tmp, { force: true });
      throw err;
    }
    const dfd = openSync(this.dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  }
}

function validateState(value: unknown): DaemonState {
  if (typeof value !== 'object' || value === null) throw new UsernetError('ERR_STATE', 'state file is not a JSON object');
  const v = value as Record<string, unknown>;
  if (v.version !== STATE_VERSION && v.version !== 1) throw new UsernetError('ERR_STATE', `state file version ${String(v.version)} is not ${STATE_VERSION}`);
  if (!Array.isArray(v.attachments)) throw new UsernetError('ERR_STATE', 'state file has no attachments list');
  if (v.version === 1) {
    // Version 1 had no networks: its attachments were on the (only) switch, addresses as CIDR.
    for (const a of v.attachments as Array<Record<string, unknown>>) {
      if (a && typeof a === 'object') {
        if (typeof a.ip === 'string') a.ip = a.ip.split('/')[0];
        delete a.gateway;
      }
    }
    v.version = STATE_VERSION;
    v.networks = [];
    v.leases = [];
  }
  if (!Array.isArray(v.networks)) throw new UsernetError('ERR_STATE', 'state file has no networks list');
  if (!Array.isArray(v.leases)) throw new UsernetError('ERR_STATE', 'state file has no leases list');
  for (const n of v.networks as unknown[]) {
    const r = n as Record<string, unknown>;
    if (typeof r !== 'object' || r === null || typeof r.name !== 'string' || typeof r.subnet !== 'string') {
      throw new UsernetError('ERR_STATE', 'state file has a malformed network');
    }
  }
  for (const l of v.leases as unknown[]) {
    const r = l as Record<string, unknown>;
    if (typeof r !== 'object' || r === null || typeof r.network !== 'string' || typeof r.mac !== 'string' || typeof r.ip !== 'string' || typeof r.expiresAt !== 'number') {
      throw new UsernetError('ERR_STATE', 'state file has a malformed lease');
    }
  }
  for (const a of v.attachments as unknown[]) {
    const r = a as Record<string, unknown>;
    if (typeof r !== 'object' || r === null || typeof r.name !== 'string' || typeof r.ifname !== 'string') {
      throw new UsernetError('ERR_STATE', 'state file has a malformed attachment');
    }
    if (typeof r.pid !== 'number' && typeof r.netnsPath !== 'string') throw new UsernetError('ERR_STATE', `attachment ${r.name} names no container`);
    if (typeof r.mtu !== 'number' || typeof r.mac !== 'string' || typeof r.configure !== 'boolean') {
      throw new UsernetError('ERR_STATE', `attachment ${r.name} has a malformed mtu, mac or configure field`);
    }
    const ns = r.netns as Record<string, unknown> | undefined;
    if (!ns || typeof ns.dev !== 'string' || typeof ns.ino !== 'string') throw new UsernetError('ERR_STATE', `attachment ${r.name} has no namespace identity`);
    const owner = r.owner as Record<string, unknown> | undefined;
    if (owner !== undefined && (typeof owner !== 'object' || owner === null || typeof owner.pid !== 'number' || typeof owner.start !== 'number')) {
      throw new UsernetError('ERR_STATE', `attachment ${r.name} has a malformed owner`);
    }
    if (r.ports !== undefined) {
      if (!Array.isArray(r.ports)) throw new UsernetError('ERR_STATE', `attachment ${r.name} has a malformed ports list`);
      for (const m of r.ports as Array<Record<string, unknown>>) {
        const port = (v: unknown): boolean => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535;
        if (typeof m !== 'object' || m === null || (m.proto !== 'tcp' && m.proto !== 'udp') || typeof m.hostIp !== 'string' || !port(m.hostPort) || !port(m.containerPort)) {
          throw new UsernetError('ERR_STATE', `attachment ${r.name} has a malformed published port`);
        }
      }
    }
  }
  return v as unknown as DaemonState;
}
