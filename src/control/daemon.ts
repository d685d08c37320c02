/**
 * The usernet daemon: one per user. This file is the composition root: it builds the pieces,
 * wires them together, and starts and stops them in order.
 *
 *   networks.ts     the networks (switch + gateway + DHCP + DNS), their NAT wiring, create/rm/ls
 *   attachments.ts  containers' TAP ports: attach, detach, re-attach, watching a container's end
 *   namespaces.ts   a container's identity (namespace dev+inode, process start) and TAP-open errors
 *   published.ts    published ports: publish, unpublish, list, restore
 *   api-methods.ts  the API's method table and each method's parameter checks
 *   records.ts      the state as recorded (snapshot, commit), over persistence.ts's StateStore
 *   api-server.ts   the control socket; protocol.ts the wire format and result types
 */
import type { Logger } from 'pino';
import { DEFAULT_SUBNET, DEFAULT_NETWORK, type Network } from '../gateway/network.js';
import { Nat } from '../nat/nat.js';
import { checkOutboundAddress } from '../nat/outbound-address.js';
import type { UdpFiltering } from '../nat/udp-nat.js';
import type { PublishedPort } from '../nat/publish.js';
import type { PortMapping } from '../nat/publish-spec.js';
import { ApiMethods } from './api-methods.js';
import { ApiServer, type Handler } from './api-server.js';
import { Attachments } from './attachments.js';
import { DnsDefaults, Networks } from './networks.js';
import { StateStore } from './persistence.js';
import { PublishedPorts } from './published.js';
import { StateRecorder } from './records.js';
import { VERSION, type AttachResult, type FdbEntryInfo, type PortInfo, type PublishedPortInfo } from './protocol.js';
import { formatUpstream } from './resolv.js';
import { emptyState } from './state.js';

export { namespaceIdentity, processStartTime } from './namespaces.js';
/** The wire types live in protocol.ts; re-exported for code that embedded the daemon before. */
export type { AttachResult, FdbEntryInfo, PortInfo, PublishedPortInfo } from './protocol.js';

export { VERSION } from './protocol.js';

export interface DaemonConfig {
  socketPath: string;
  stateDir: string;
  /** MAC ageing time. Default 300 s. */
  ageingTimeMs?: number;
  /** MAC table cap. Default 8192. */
  fdbMaxEntries?: number;
  /** Inter-container communication on the default network. Default true. */
  icc?: boolean;
  /** MTU of the default network. Default 1500. */
  defaultMtu?: number;
  /** Upstream resolvers IP[:PORT] for every network that names none; default: the host's. */
  dnsUpstream?: string[];
  /** Search domains for every network that names none; default: the host's. */
  dnsSearch?: string[];
  /** No DNS forwarder on the default network. */
  disableDns?: boolean;
  /** Where the host's resolvers are read from. Default /etc/resolv.conf. */
  resolvConfPath?: string;
  /** Time a forwarded DNS query may take before SERVFAIL. Default 3000 ms. */
  dnsTimeoutMs?: number;
  /** DHCP lease time on the default network (seconds). Default 3600. */
  leaseTime?: number;
  /** The default network's gateway address does not lead to the host's loopback. */
  disableHostLoopback?: boolean;
  /** Local address for the NAT's host sockets. */
  outboundAddr?: string;
  /** UDP filtering of the NAT. Default address-dependent. */
  udpFiltering?: UdpFiltering;
  /** Conntrack limits. Defaults 65536 and 8192. */
  conntrackMax?: number;
  conntrackMaxPerContainer?: number;
  /** Use virtio-net headers with checksum/TSO offloads when the kernel has them. Default true. */
  offloads?: boolean;
  /** How often `--netns PATH` attachments are checked. Default 1000 ms. */
  netnsCheckIntervalMs?: number;
  /**
   * A daemon that lives and dies with its process (the slirp4netns front end): no state file, no
   * pid file, no control socket unless `socketPath` is given, and TAPs it creates are not made
   * persistent, so they vanish with the process even when it is killed.
   */
  ephemeral?: boolean;
  /** The default network's subnet and DHCP range (default 10.0.2.0/24, range from .100). */
  defaultSubnet?: string;
  defaultRange?: string;
}

export class Daemon {
  readonly config: Required<DaemonConfig>;
  readonly nat: Nat;
  private readonly networkSet: Networks;
  private readonly attachments: Attachments;
  private readonly published: PublishedPorts;
  private readonly records: StateRecorder;
  private readonly dns: DnsDefaults;
  private readonly store: StateStore;
  private readonly api: ApiMethods;
  private server: ApiServer | null = null;
  private readonly startedAt = Date.now();
  private stopped = false;
  /** Requests wait for this: the daemon has re-attached its containers and re-opened their ports. */
  private ready: Promise<void> = Promise.resolve();

  constructor(
    config: DaemonConfig,
    private readonly log: Logger,
  ) {
    this.config = {
      ageingTimeMs: 300_000,
      fdbMaxEntries: 8192,
      icc: true,
      defaultMtu: 1500,
      offloads: true,
      netnsCheckIntervalMs: 1000,
      dnsUpstream: [],
      dnsSearch: [],
      disableDns: false,
      resolvConfPath: '/etc/resolv.conf',
      dnsTimeoutMs: 3000,
      leaseTime: 3600,
      disableHostLoopback: false,
      outboundAddr: '',
      udpFiltering: 'address-dependent',
      conntrackMax: 65536,
      conntrackMaxPerContainer: 8192,
      ephemeral: false,
      defaultSubnet: DEFAULT_SUBNET,
      defaultRange: '',
      ...config,
    };
    this.store = new StateStore(this.config.stateDir, this.log.child({ component: 'state' }));
    this.dns = new DnsDefaults(this.config.resolvConfPath, this.config.dnsUpstream, this.config.dnsSearch);
    this.nat = new Nat({
      log: this.log.child({ component: 'nat' }),
      ...(this.config.outboundAddr ? { outboundAddress: this.config.outboundAddr } : {}),
      udpFiltering: this.config.udpFiltering,
      maxEntries: this.config.conntrackMax,
      maxPerContainer: this.config.conntrackMaxPerContainer,
    });
    // The pieces refer to each other only through what they are given here; the record reads
    // the networks and attachments when a snapshot is taken, so it can be built before them.
    this.records = new StateRecorder(this.store, this.config.ephemeral, {
      networks: () => this.networkSet.specs(),
      leases: () => this.networkSet.leases(),
      attachments: () => this.attachments.allRecords(),
    });
    this.networkSet = new Networks({
      log: this.log,
      nat: this.nat,
      dns: this.dns,
      records: this.records,
      ports: { namesOn: (network) => this.attachments.namesOn(network), nameOf: (network, mac) => this.attachments.nameOf(network, mac) },
      ageingTimeMs: this.config.ageingTimeMs,
      fdbMaxEntries: this.config.fdbMaxEntries,
      dnsTimeoutMs: this.config.dnsTimeoutMs,
    });
    this.published = new PublishedPorts({
      log: this.log,
      nat: this.nat,
      networks: this.networkSet,
      records: this.records,
      attachment: (name) => this.attachments.get(name),
    });
    this.attachments = new Attachments({
      log: this.log,
      nat: this.nat,
      networks: this.networkSet,
      published: this.published,
      records: this.records,
      offloads: this.config.offloads,
      ephemeral: this.config.ephemeral,
      netnsCheckIntervalMs: this.config.netnsCheckIntervalMs,
    });
    this.api = new ApiMethods({
      log: this.log,
      nat: this.nat,
      networks: this.networkSet,
      attachments: this.attachments,
      published: this.published,
      ageingTimeMs: this.config.ageingTimeMs,
      fdbMaxEntries: this.config.fdbMaxEntries,
      status: () => this.status(),
      natStats: () => this.natStats(),
    });
    this.networkSet.add(
      {
        name: DEFAULT_NETWORK,
        subnet: this.config.defaultSubnet,
        ...(this.config.defaultRange ? { range: this.config.defaultRange } : {}),
        mtu: this.config.defaultMtu,
        icc: this.config.icc,
        disableDns: this.config.disableDns,
        leaseTime: this.config.leaseTime,
        disableHostLoopback: this.config.disableHostLoopback,
      },
      false,
    );
  }

  /** The networks, by name. */
  get networks(): ReadonlyMap<string, Network> {
    return this.networkSet.byName;
  }

  /** Called once a container's port has been removed because the container went away. */
  get onContainerGone(): ((name: string, why: string) => void) | null {
    return this.attachments.onContainerGone;
  }

  set onContainerGone(callback: ((name: string, why: string) => void) | null) {
    this.attachments.onContainerGone = callback;
  }

  /**
   * Stops checking `--netns PATH` attachments' paths (a sandboxed process no longer sees them);
   * such a container's end is then noticed only through its TAP or its owner.
   */
  stopNamespacePolling(): void {
    this.attachments.stopNamespacePolling();
  }

  /** The default network (10.0.2.0/24). */
  get defaultNetwork(): Network {
    return this.networkSet.defaultNetwork;
  }

  /**
   * Takes the state directory, listens on the control socket, then re-attaches the recorded
   * containers that are still alive. A daemon that cannot start leaves nothing behind: no pid
   * file, no TAP opened (it fails before re-attaching).
   */
  async start(): Promise<void> {
    // First, so that a bad --outbound-addr leaves nothing behind (no pid file, no socket).
    if (this.config.outboundAddr) await checkOutboundAddress(this.config.outboundAddr);
    if (!this.config.ephemeral) this.store.lock();
    try {
      // A state file that cannot be used stops the start here, before anything is opened.
      const state = this.config.ephemeral ? emptyState() : this.store.load();
      if (this.config.socketPath) {
        this.server = new ApiServer(this.config.socketPath, this.handlers(), this.log);
        await this.server.listen();
      }
      // No request is served before re-attaching is done: handlers wait for `ready`.
      let markReady!: () => void;
      this.ready = new Promise<void>((resolve) => (markReady = resolve));
      try {
        this.networkSet.restore(state);
        this.attachments.reattachAll(state);
        this.networkSet.restoreLeases(state);
        await this.published.restore(this.attachments.values());
        this.attachments.resetOrphanFlows();
      } finally {
        markReady();
      }
    } catch (err) {
      await this.server?.close();
      this.server = null;
      if (!this.config.ephemeral) this.store.unlock();
      throw err;
    }
    this.attachments.startNamespacePolling();
    for (const w of this.warnings()) this.log.warn(w);
    const published = this.nat.publisher.list();
    this.log.info(
      {
        socket: this.config.socketPath,
        stateDir: this.config.stateDir,
        networks: this.networkSet.byName.size,
        attachments: this.attachments.size,
        down: this.attachments.down,
        published: published.length,
        publishedDown: published.filter((p) => !p.listening).length,
      },
      'listening',
    );
  }

  /**
   * Stops serving and closes every TAP fd, leaving the TAPs persistent: the containers keep their
   * interfaces, and the next daemon re-attaches them.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.records.stop();
    this.attachments.beginStop();
    await this.server?.close();
    // Listeners close and their clients are reset; the mappings stay recorded for the next start.
    await this.nat.publisher.close();
    await this.attachments.closeAll();
    this.records.flush();
    this.nat.close();
    await this.networkSet.close();
    if (!this.config.ephemeral) this.store.unlock();
    this.log.info('stopped');
  }

  /** The API's methods, each waiting until the daemon is ready (re-attached) before it runs. */
  private handlers(): Record<string, Handler> {
    const gated: Record<string, Handler> = {};
    for (const [name, h] of Object.entries(this.api.handlers())) {
      gated[name] = async (p) => {
        await this.ready;
        return h(p);
      };
    }
    return gated;
  }

  /**
   * What is wrong with the daemon's setup that would otherwise show only as failures: today,
   * networks whose DNS forwarder has no upstream (every query is answered SERVFAIL).
   */
  warnings(): string[] {
    return this.networkSet.warnings();
  }

  status(): Record<string, unknown> {
    return {
      version: VERSION,
      pid: process.pid,
      socket: this.config.socketPath,
      stateDir: this.config.stateDir,
      uptime: Math.round((Date.now() - this.startedAt) / 1000),
      attachments: this.attachments.size,
      networks: [...this.networkSet.byName.keys()],
      icc: this.defaultNetwork.config.icc,
      ageingTime: this.config.ageingTimeMs / 1000,
      dnsUpstream: this.dns.upstreams().map(formatUpstream),
      warnings: this.warnings(),
      ...this.natStats(),
    };
  }

  natStats(): Record<string, unknown> {
    return {
      nat: this.nat.stats,
      tcp: this.nat.tcp.stats,
      udp: this.nat.udp.stats,
      icmp: { ...this.nat.icmp.stats, mode: this.nat.icmp.mode },
      conntrack: this.nat.ct.stats,
      published: this.nat.publisher.stats,
    };
  }

  // The daemon's operations for a program that embeds it (the slirp4netns front end does):
  // the same calls the API methods make.

  /** Attaches a container (API params as in `usernet attach`). */
  attach(p: Record<string, unknown>): Promise<AttachResult> {
    return this.api.attach(p);
  }

  /**
   * Detaches a port: a TAP usernet created stops being persistent and disappears from the
   * container; one that was there before is left there. Resolves once the fd is closed.
   */
  detach(name: string): Promise<void> {
    return this.attachments.detach(name);
  }

  listPorts(): PortInfo[] {
    return this.attachments.listPorts();
  }

  fdb(network?: string): FdbEntryInfo[] {
    return this.networkSet.fdb(network);
  }

  /** Publishes ports to an attachment (all or nothing) and records them. */
  publish(name: string, specs: readonly string[]): Promise<PublishedPort[]> {
    return this.published.publish(name, specs);
  }

  /** Removes published ports of an attachment (those the specs name, or all with `null`). */
  unpublish(name: string, specs: readonly string[] | null): Promise<string[]> {
    return this.published.unpublish(name, specs);
  }

  /** Publishes to any address of an attachment's network (slirp4netns's add_hostfwd); not recorded. */
  publishToAddress(name: string, containerIp: number, mappings: PortMapping[]): Promise<PublishedPort[]> {
    return this.published.publishToAddress(name, containerIp, mappings);
  }

  listPublished(name?: string): PublishedPortInfo[] {
    return this.published.list(name);
  }
}
