/**
 * A network: a switch, a subnet, an address book and a gateway (with its DHCP server and DNS
 * forwarder). Networks are isolated from each other as Docker's are: each has its own switch, and
 * nothing crosses between them.
 *
 * Defaults follow slirp4netns: 10.0.2.0/24, gateway .2, DNS .3, containers from .100 upward.
 * A custom network gets the same layout relative to its subnet (gateway = network + 2, DNS =
 * network + 3, range = network + 100 to the last address before broadcast), which is why its
 * prefix must be 1-25 unless --gateway, --dns and --range are all given.
 */
import type { Logger } from 'pino';
import { systemClock, type Clock } from '../platform/clock.js';
import { systemHostStack, type HostStack } from '../platform/host-stack.js';
import { systemRandom, type Random } from '../platform/random.js';
import { ipv4ToString } from '../packet/ip-address.js';
import { macToString } from '../packet/mac.js';
import { Switch } from '../switch/switch.js';
import type { Upstream } from './upstream.js';
import { AddressPool } from './address-pool.js';
import { DhcpServer, type DhcpServerConfig } from './dhcp-server.js';
import { DnsForwarder } from './dns-forwarder.js';
import { GatewayPort } from './gateway.js';

export const DEFAULT_NETWORK = 'default';
export const DEFAULT_SUBNET = '10.0.2.0/24';
/** Every network's gateway port is called this; no attachment may take the name. */
export const GATEWAY_PORT_NAME = 'gateway';

/** A network as the user gives it (CLI flags, API, state file). */
export interface NetworkSpec {
  name: string;
  subnet: string;
  gateway?: string;
  dns?: string;
  /** FIRST-LAST */
  range?: string;
  mtu?: number;
  icc?: boolean;
  /** Search domains for DHCP and resolv.conf; absent: the daemon's (by default the host's). */
  dnsSearch?: string[];
  /** Upstream resolvers IP[:PORT]; absent: the daemon's (by default the host's resolv.conf). */
  dnsUpstream?: string[];
  disableDns?: boolean;
  /** DHCP lease time in seconds. */
  leaseTime?: number;
  /** The gateway address does not lead to the host's loopback. */
  disableHostLoopback?: boolean;
}

/** A validated network, in numbers. */
export interface NetworkConfig {
  name: string;
  network: number;
  prefix: number;
  gateway: number;
  dns: number;
  rangeFirst: number;
  rangeLast: number;
  mtu: number;
  icc: boolean;
  dnsSearch: string[] | null;
  dnsUpstream: Upstream[] | null;
  disableDns: boolean;
  leaseTime: number;
  disableHostLoopback: boolean;
}

export interface NetworkDeps {
  log: Logger;
  ageingTimeMs: number;
  fdbMaxEntries: number;
  /** The daemon's upstream resolvers (its --dns-upstream, or the host's resolv.conf). */
  upstreams: () => Upstream[];
  /** The daemon's search list (its --dns-search, or the host's). */
  search: () => string[];
  dnsTimeoutMs?: number;
  dnsMaxInFlight?: number;
  /**
   * The one clock of the network's switch, gateway, DHCP server and DNS forwarder. Default the
   * system clock (the daemon); a test gives a VirtualClock.
   */
  clock?: Clock;
  /** The one source of chance (DNS IDs, loss draws). Default the system's; a test gives a SeededRandom. */
  random?: Random;
  /** The host side of the DNS forwarder's upstream sockets. Default the host's own sockets. */
  host?: HostStack;
}

export class Network {
  readonly sw: Switch;
  readonly gateway: GatewayPort;
  readonly pool: AddressPool;
  readonly dhcp: DhcpServer;
  readonly dns: DnsForwarder | null;

  constructor(
    readonly config: NetworkConfig,
    /** The spec it was made from (for the state file and listings). */
    readonly spec: NetworkSpec,
    deps: NetworkDeps,
  ) {
    const c = config;
    const clock = deps.clock ?? systemClock;
    const random = deps.random ?? systemRandom;
    const host = deps.host ?? systemHostStack;
    this.sw = new Switch({ ageingTimeMs: deps.ageingTimeMs, maxEntries: deps.fdbMaxEntries, icc: c.icc, clock });
    this.pool = new AddressPool(c.network, c.prefix, c.rangeFirst, c.rangeLast, [c.gateway, c.dns]);
    const search = (): string[] => c.dnsSearch ?? deps.search();
    const dhcpConfig: DhcpServerConfig = {
      serverIp: c.gateway,
      prefix: c.prefix,
      router: c.gateway,
      dnsServers: c.disableDns ? [] : [c.dns],
      get searchList(): string[] {
        return search();
      },
      mtu: c.mtu,
      leaseTimeSec: c.leaseTime,
    };
    this.dhcp = new DhcpServer(dhcpConfig, this.pool, clock);
    this.dns = c.disableDns
      ? null
      : new DnsForwarder({
          upstreams: () => c.dnsUpstream ?? deps.upstreams(),
          log: deps.log.child({ network: c.name }),
          clock,
          random,
          host,
          ...(deps.dnsTimeoutMs !== undefined ? { timeoutMs: deps.dnsTimeoutMs } : {}),
          ...(deps.dnsMaxInFlight !== undefined ? { maxInFlight: deps.dnsMaxInFlight } : {}),
        });
    this.gateway = new GatewayPort({
      name: GATEWAY_PORT_NAME,
      ip: c.gateway,
      dnsIp: c.dns,
      subnet: c.network,
      prefix: c.prefix,
      mtu: c.mtu,
      dhcp: this.dhcp,
      dns: this.dns,
      log: deps.log,
      clock,
      random,
    }).plug(this.sw);
    this.sw.startAgeing();
  }

  get name(): string {
    return this.config.name;
  }

  /** The search list in effect. */
  searchList(): string[] {
    return this.dhcp.config.searchList;
  }

  async close(): Promise<void> {
    this.sw.stopAgeing();
    this.gateway.close();
    await this.dns?.close();
  }

  describe(): Record<string, unknown> {
    const c = this.config;
    return {
      name: c.name,
      subnet: `${ipv4ToString(c.network)}/${c.prefix}`,
      gateway: ipv4ToString(c.gateway),
      dns: c.disableDns ? null : ipv4ToString(c.dns),
      range: `${ipv4ToString(c.rangeFirst)}-${ipv4ToString(c.rangeLast)}`,
      mtu: c.mtu,
      icc: c.icc,
      dnsSearch: this.searchList(),
      dnsUpstream: c.dnsUpstream ? c.dnsUpstream.map((u) => (u.family === 6 ? `[${u.address}]:${u.port}` : `${u.address}:${u.port}`)) : 'daemon',
      leaseTime: c.leaseTime,
      hostLoopback: !c.disableHostLoopback,
      ports: this.sw.ports.filter((p) => p !== this.gateway).length,
      gatewayMac: macToString(this.gateway.mac),
      stats: { gateway: this.gateway.stats, dhcp: this.dhcp.stats, dns: this.dns?.stats ?? null },
    };
  }
}
