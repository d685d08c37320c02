/**
 * The daemon's networks: each a switch with its gateway, DHCP server and DNS forwarder, wired
 * into the NAT. The default network always exists (its settings are daemon flags); user
 * networks are created and removed through the API and recorded in the state file. A network
 * from the state file that no longer validates is kept (reported, never silently dropped).
 */
import type { Logger } from 'pino';
import { ConflictError, NotFoundError } from '../errors.js';
import { HOLD_ATTACHMENT, HOLD_LEASE } from '../gateway/address-pool.js';
import { DEFAULT_NETWORK, Network, type NetworkSpec } from '../gateway/network.js';
import type { Nat } from '../nat/nat.js';
import { ipv4ToString, parseIpv4 } from '../packet/ip-address.js';
import { macToString, parseMac } from '../packet/mac.js';
import { CaptureSession } from './capture.js';
import { validateNetworkSpec } from './network-spec.js';
import type { FdbEntryInfo } from './protocol.js';
import type { StateRecorder } from './records.js';
import { ResolvConf, parseUpstream, type Upstream } from './resolv.js';
import type { DaemonState, LeaseRecord } from './state.js';

/** The DNS settings every network falls back to: the daemon's flags, else the host's resolv.conf. */
export class DnsDefaults {
  readonly resolvConf: ResolvConf;
  /** `--dns-upstream`, parsed; null: the host's resolvers. */
  readonly daemonUpstreams: Upstream[] | null;

  constructor(
    readonly resolvConfPath: string,
    dnsUpstream: readonly string[],
    private readonly dnsSearch: readonly string[],
  ) {
    this.resolvConf = new ResolvConf(resolvConfPath);
    this.daemonUpstreams = dnsUpstream.length ? dnsUpstream.map((u) => parseUpstream(u)) : null;
  }

  upstreams(): Upstream[] {
    return this.daemonUpstreams ?? this.resolvConf.nameservers();
  }

  search(): string[] {
    return this.dnsSearch.length ? [...this.dnsSearch] : this.resolvConf.search();
  }
}

/** What the networks need to know of the attachments (to refuse removing a network in use, to name an address's port). */
export interface AttachedPorts {
  /** The names of the ports attached to a network. */
  namesOn(network: string): string[];
  /** The port on a network whose recorded MAC is `mac`, or null. */
  nameOf(network: string, mac: number): string | null;
}

export interface NetworksOptions {
  log: Logger;
  nat: Nat;
  dns: DnsDefaults;
  records: StateRecorder;
  ports: AttachedPorts;
  ageingTimeMs: number;
  fdbMaxEntries: number;
  dnsTimeoutMs: number;
}

export class Networks {
  readonly byName = new Map<string, Network>();
  /** Network specs from the state file that no longer validate: kept, reported, never dropped. */
  readonly invalid: NetworkSpec[] = [];
  private readonly log: Logger;
  private readonly nat: Nat;
  private readonly dns: DnsDefaults;
  private readonly records: StateRecorder;

  constructor(private readonly o: NetworksOptions) {
    this.log = o.log;
    this.nat = o.nat;
    this.dns = o.dns;
    this.records = o.records;
  }

  /** The default network (10.0.2.0/24). */
  get defaultNetwork(): Network {
    return this.byName.get(DEFAULT_NETWORK) as Network;
  }

  /** A network by name; ERR_NO_SUCH_NETWORK if there is none. */
  get(name: string): Network {
    const n = this.byName.get(name);
    if (!n) throw new NotFoundError(`no network named ${name} (see usernet network ls)`, 'ERR_NO_SUCH_NETWORK');
    return n;
  }

  /** Builds a network from its spec (checked against the others unless `check` is false) and wires it into the NAT. */
  add(spec: NetworkSpec, check = true): Network {
    const others = check ? [...this.byName.values()].map((n) => n.config) : [];
    const config = validateNetworkSpec(spec, others);
    const net = new Network(config, spec, {
      log: this.log,
      ageingTimeMs: this.o.ageingTimeMs,
      fdbMaxEntries: this.o.fdbMaxEntries,
      upstreams: () => this.dns.upstreams(),
      search: () => this.dns.search(),
      dnsTimeoutMs: this.o.dnsTimeoutMs,
    });
    net.dhcp.onLeasesChanged = () => this.records.scheduleLeaseSave();
    this.nat.addNetworkOf(net, (): Upstream[] => config.dnsUpstream ?? this.dns.upstreams());
    this.byName.set(spec.name, net);
    return net;
  }

  /** `network.create`: judged (and refused) before anything is recorded; recorded before anything is built. */
  create(spec: NetworkSpec): Record<string, unknown> {
    if (spec.name === DEFAULT_NETWORK) throw new ConflictError('the default network always exists (its settings are daemon flags)', 'ERR_NETWORK_EXISTS');
    if (this.byName.has(spec.name) || this.invalid.some((n) => n.name === spec.name)) {
      throw new ConflictError(`a network named ${spec.name} already exists`, 'ERR_NETWORK_EXISTS');
    }
    validateNetworkSpec(spec, [...this.byName.values()].map((n) => n.config));
    const state = this.records.snapshot();
    state.networks.push(spec);
    this.records.commit(state);
    let net: Network;
    try {
      net = this.add(spec);
    } catch (err) {
      this.records.trySave();
      throw err;
    }
    this.log.info({ network: spec.name, subnet: spec.subnet }, 'network created');
    return net.describe();
  }

  /** `network.rm`: refused while ports are attached; recorded first, then torn down. */
  async remove(name: string): Promise<void> {
    if (name === DEFAULT_NETWORK) throw new ConflictError('the default network cannot be removed', 'ERR_NETWORK_IN_USE');
    const invalid = this.invalid.findIndex((n) => n.name === name);
    if (invalid >= 0 && !this.byName.has(name)) {
      const state = this.records.snapshot();
      state.networks = state.networks.filter((n) => n.name !== name);
      this.records.commit(state);
      this.invalid.splice(invalid, 1);
      this.log.info({ network: name }, 'invalid network removed from the state file');
      return;
    }
    const net = this.get(name);
    const users = this.o.ports.namesOn(name);
    if (users.length) {
      throw new ConflictError(`network ${name} still has ${users.length} attached port${users.length > 1 ? 's' : ''} (${users.join(', ')}): detach ${users.length > 1 ? 'them' : 'it'} first`, 'ERR_NETWORK_IN_USE');
    }
    const state = this.records.snapshot();
    state.networks = state.networks.filter((n) => n.name !== name);
    // Recorded first: a failed write leaves the network in place, in memory and in the file.
    this.records.commit(state);
    this.byName.delete(name);
    for (const tap of net.gateway.taps) if (tap instanceof CaptureSession) tap.end();
    this.nat.removeNetwork(net.gateway);
    await net.close();
    this.log.info({ network: name }, 'network removed');
  }

  /** `network.ls`. */
  list(): { networks: Record<string, unknown>[]; invalid: NetworkSpec[] } {
    return { networks: [...this.byName.values()].map((n) => n.describe()), invalid: this.invalid };
  }

  /** `network.inspect`: the network, its addresses (leases and attachments) and the gateway's neighbours. */
  inspect(name: string): Record<string, unknown> {
    const net = this.get(name);
    const now = Date.now();
    return {
      ...net.describe(),
      addresses: net.pool.holdings().map((h) => ({
        ip: ipv4ToString(h.ip),
        mac: macToString(h.mac),
        kind: h.kind,
        ...(h.kind === HOLD_LEASE ? { bound: h.bound, expiresIn: Math.max(0, Math.round((h.expiresAt - now) / 1000)) } : {}),
        ...(h.kind === HOLD_ATTACHMENT ? { port: this.o.ports.nameOf(name, h.mac) } : {}),
      })),
      neighbours: net.gateway.neighbourTable().map((e) => ({ ip: ipv4ToString(e.ip), mac: macToString(e.mac), age: Math.round(e.age / 100) / 10 })),
    };
  }

  /** `fdb`: the MAC tables, of one network or all. */
  fdb(network?: string): FdbEntryInfo[] {
    const out: FdbEntryInfo[] = [];
    for (const net of this.byName.values()) {
      if (network !== undefined && net.name !== network) continue;
      for (const e of net.sw.fdb.snapshot(performance.now())) out.push({ ...e, network: net.name });
    }
    return out;
  }

  /** The user networks' specs for the state file: valid and invalid ones (never the default network). */
  specs(): NetworkSpec[] {
    return [...[...this.byName.values()].filter((n) => n.name !== DEFAULT_NETWORK).map((n) => n.spec), ...this.invalid];
  }

  /** The bound DHCP leases of every network, for the state file. */
  leases(): LeaseRecord[] {
    const leases: LeaseRecord[] = [];
    for (const net of this.byName.values()) {
      for (const h of net.pool.holdings()) {
        if (h.kind === HOLD_LEASE && h.bound) leases.push({ network: net.name, mac: macToString(h.mac), ip: ipv4ToString(h.ip), expiresAt: h.expiresAt });
      }
    }
    return leases;
  }

  /** On start: the user networks of the state file (one that no longer validates is kept as invalid). */
  restore(state: DaemonState): void {
    for (const spec of state.networks ?? []) {
      try {
        this.add(spec);
      } catch (err) {
        this.invalid.push(spec);
        this.log.error({ network: spec.name, err: (err as Error).message }, 'network from the state file is not valid: kept in the state file, not created');
      }
    }
  }

  /** Leases from the state file go back into their pools (unless expired or now taken). */
  restoreLeases(state: DaemonState): void {
    const now = Date.now();
    for (const l of state.leases ?? []) {
      const net = this.byName.get(l.network);
      if (!net || l.expiresAt <= now) continue;
      let ip: number;
      let mac: number;
      try {
        ip = parseIpv4(l.ip);
        mac = parseMac(l.mac);
      } catch {
        continue;
      }
      if (net.pool.whyNot(ip, mac, now) !== '' || net.pool.holdingOf(mac)) continue;
      net.pool.hold(ip, mac, HOLD_LEASE, l.expiresAt, true);
    }
  }

  /**
   * What is wrong with the setup that would otherwise show only as failures: today, networks
   * whose DNS forwarder has no upstream (every query is answered SERVFAIL).
   */
  warnings(): string[] {
    const out: string[] = [];
    for (const net of this.byName.values()) {
      const c = net.config;
      if (c.disableDns) continue;
      const upstreams = c.dnsUpstream ?? this.dns.upstreams();
      if (upstreams.length > 0) continue;
      const why = this.dns.resolvConf.problem() ?? `${this.dns.resolvConfPath} names no nameserver`;
      out.push(`network ${net.name}: no DNS upstream (${why}): every query to ${ipv4ToString(c.dns)} is answered SERVFAIL; give --dns-upstream IP`);
    }
    return out;
  }

  async close(): Promise<void> {
    await Promise.all([...this.byName.values()].map((n) => n.close()));
  }
}
