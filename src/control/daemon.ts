/**
 * The usernet daemon: one per user. It owns the networks (each a switch with its gateway, DHCP
 * server and DNS forwarder), the containers' TAP ports, the control API and the state file.
 *
 * Attachments are state. Attaching a container opens (or creates) a TAP inside its namespaces,
 * makes it persistent, plugs it into the switch, starts watching the container's life and records
 * all of it in the state file. Because the TAP is persistent, the container keeps its interface,
 * addresses and routes while the daemon is down; on start the daemon re-attaches every recorded
 * container whose network namespace is still the same one (dev + inode), and drops the others.
 *
 * A container's end is an event: a pidfd for `--pid`, and for `--netns PATH` a check every second
 * that the path still names the same namespace (the TAP fd keeps the namespace alive, so nothing
 * else would ever tell). Detaching, or the container's end, clears the persistent flag and closes
 * the fd, so the device goes away with the namespace and no fd is left behind.
 */
import { closeSync, existsSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { ConflictError, InvalidArgumentError, NotFoundError, SystemError, UsernetError } from '../errors.js';
import { snapshotCounters, type PortCountersSnapshot } from '../link/counters.js';
import { PortKind, type Port } from '../link/port.js';
import { TapPort } from '../link/tap-port.js';
import { native, type TapOpenOptions, type WatchHandle } from '../native/addon.js';
import { ipv4ToString, parseIpv4 } from '../packet/ip-address.js';
import { macFromBytes, macToBytes, macToString, parseMac } from '../packet/mac.js';
import type { FdbEntrySnapshot } from '../switch/fdb.js';
import { HOLD_ATTACHMENT, HOLD_LEASE } from '../gateway/address-pool.js';
import { DEFAULT_NETWORK, DEFAULT_SUBNET, GATEWAY_PORT_NAME, Network, type NetworkSpec } from '../gateway/network.js';
import { parseMemberAddress, validateNetworkSpec } from './network-spec.js';
import { Nat } from '../nat/nat.js';
import { checkOutboundAddress } from '../nat/outbound-address.js';
import type { UdpFiltering } from '../nat/udp-nat.js';
import { protoFromName, type ConntrackFilter } from '../nat/conntrack.js';
import { formatConntrackLine, toJson as conntrackJson } from '../nat/conntrack-format.js';
import type { PublishedPort, PublishTarget } from '../nat/publish.js';
import { formatMapping, parsePublishSpec, expandPublishSpec, specSelects, type PortMapping } from '../nat/publish-spec.js';
import { ApiServer, StreamingResult } from './api-server.js';
import { CaptureSession } from './capture.js';
import { ResolvConf, formatUpstream, parseUpstream, type Upstream } from './resolv.js';
import { StateStore } from './persistence.js';
import { STATE_VERSION, emptyState, type AttachmentRecord, type DaemonState, type LeaseRecord, type NamespaceIdentity } from './state.js';
import { IFNAME_PATTERN, NAME_PATTERN, onlyKeys, optBool, optInt, optString, optStringList, reqString } from './validate.js';

export const VERSION = '0.1.0';

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

export interface PortInfo {
  name: string;
  network: string;
  kind: string;
  ifname: string;
  /** The port's IPv4 address on its network (the gateway's own for the gateway port), or null. */
  ip: string | null;
  container: string;
  mac: string;
  mtu: number;
  offloads: boolean;
  state: 'up' | 'down';
  error?: string;
  counters: PortCountersSnapshot | null;
}

export interface AttachResult {
  name: string;
  network: string;
  ifname: string;
  mac: string;
  mtu: number;
  /** The container's address and prefix, its gateway and DNS server, the search list. */
  ip: string | null;
  prefix: number;
  gateway: string;
  dns: string | null;
  dnsSearch: string[];
  offloads: boolean;
  existed: boolean;
  /** Published ports, as HOST_IP:HOST_PORT:CONTAINER_PORT/PROTO (host ports resolved). */
  ports: string[];
}

/** One published port, as `usernet publish --list` shows it. */
export interface PublishedPortInfo {
  /** The attachment (container port name). */
  name: string;
  network: string;
  proto: 'tcp' | 'udp';
  hostIp: string;
  hostPort: number;
  containerIp: string;
  containerPort: number;
  spec: string;
  state: 'listening' | 'down';
  error?: string;
  /** Connections / client flows so far, and those refused. */
  flows: number;
  refused: number;
}

export interface FdbEntryInfo extends FdbEntrySnapshot {
  network: string;
}

const MIN_MTU = 68;
const MAX_MTU = 65521;
/** At most one internal-error log line per port per this many ms. */
const INTERNAL_ERROR_LOG_INTERVAL = 10_000;
const NETWORK_PARAMS = ['name', 'subnet', 'gateway', 'dns', 'range', 'mtu', 'icc', 'dnsSearch', 'dnsUpstream', 'disableDns', 'leaseTime', 'disableHostLoopback'] as const;

class Attachment {
  port: TapPort | null = null;
  watch: WatchHandle | null = null;
  ownerWatch: WatchHandle | null = null;
  /** The IPv4 address the interface had when opened (0: none). */
  foundAddress = 0;
  error: string | null = null;
  lastInternalLog = 0;
  constructor(public record: AttachmentRecord) {}

  get container(): string {
    return this.record.pid !== undefined ? `pid ${this.record.pid}` : `netns ${this.record.netnsPath}`;
  }
}

/** The network namespace identity behind a path, or null if the path does not resolve. */
export function namespaceIdentity(path: string): NamespaceIdentity | null {
  try {
    const st = statSync(path, { bigint: true });
    return { dev: st.dev.toString(), ino: st.ino.toString() };
  } catch {
    return null;
  }
}

function netnsPathOf(r: AttachmentRecord): string {
  return r.pid !== undefined ? `/proc/${r.pid}/ns/net` : (r.netnsPath as string);
}

function sameIdentity(a: NamespaceIdentity | null, b: NamespaceIdentity): boolean {
  return a !== null && a.dev === b.dev && a.ino === b.ino;
}

export class Daemon {
  readonly config: Required<DaemonConfig>;
  readonly nat: Nat;
  readonly networks = new Map<string, Network>();
  private readonly attachments = new Map<string, Attachment>();
  /** Network specs from the state file that no longer validate: kept, reported, never dropped. */
  private invalidNetworks: NetworkSpec[] = [];
  private readonly resolvConf: ResolvConf;
  private readonly daemonUpstreams: Upstream[] | null;
  private readonly store: StateStore;
  private server: ApiServer | null = null;
  private netnsTimer: NodeJS.Timeout | null = null;
  private readonly startedAt = Date.now();
  private stopped = false;
  /** Called once a container's port has been removed because the container went away. */
  onContainerGone: ((name: string, why: string) => void) | null = null;
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
    this.resolvConf = new ResolvConf(this.config.resolvConfPath);
    this.daemonUpstreams = this.config.dnsUpstream.length ? this.config.dnsUpstream.map((u) => parseUpstream(u)) : null;
    this.nat = new Nat({
      log: this.log.child({ component: 'nat' }),
      ...(this.config.outboundAddr ? { outboundAddress: this.config.outboundAddr } : {}),
      udpFiltering: this.config.udpFiltering,
      maxEntries: this.config.conntrackMax,
      maxPerContainer: this.config.conntrackMaxPerContainer,
    });
    this.addNetwork(
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

  /**
   * Stops checking `--netns PATH` attachments' paths (a sandboxed process no longer sees them);
   * such a container's end is then noticed only through its TAP or its owner.
   */
  stopNamespacePolling(): void {
    if (this.netnsTimer) clearInterval(this.netnsTimer);
    this.netnsTimer = null;
  }

  /** The default network (10.0.2.0/24). */
  get defaultNetwork(): Network {
    return this.networks.get(DEFAULT_NETWORK) as Network;
  }

  private addNetwork(spec: NetworkSpec, check = true): Network {
    const others = check ? [...this.networks.values()].map((n) => n.config) : [];
    const config = validateNetworkSpec(spec, others);
    const net = new Network(config, spec, {
      log: this.log,
      ageingTimeMs: this.config.ageingTimeMs,
      fdbMaxEntries: this.config.fdbMaxEntries,
      upstreams: () => this.daemonUpstreams ?? this.resolvConf.nameservers(),
      search: () => (this.config.dnsSearch.length ? this.config.dnsSearch : this.resolvConf.search()),
      dnsTimeoutMs: this.config.dnsTimeoutMs,
    });
    net.dhcp.onLeasesChanged = () => this.scheduleLeaseSave();
    const upstreams = (): Upstream[] => config.dnsUpstream ?? this.daemonUpstreams ?? this.resolvConf.nameservers();
    this.nat.addNetwork(net.gateway, {
      name: spec.name,
      gateway: config.gateway,
      dns: config.dns,
      network: config.network,
      prefix: config.prefix,
      disableHostLoopback: config.disableHostLoopback,
      disableDns: config.disableDns,
      dnsUpstreams: upstreams,
    });
    this.networks.set(spec.name, net);
    return net;
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
        this.restoreNetworks(state);
        this.reattachAll(state);
        this.restoreLeases(state);
        await this.restorePublished();
        this.resetOrphanFlows();
      } finally {
        markReady();
      }
    } catch (err) {
      await this.server?.close();
      this.server = null;
      if (!this.config.ephemeral) this.store.unlock();
      throw err;
    }
    this.netnsTimer = setInterval(() => this.checkNamespaces(), this.config.netnsCheckIntervalMs);
    this.netnsTimer.unref();
    for (const w of this.warnings()) this.log.warn(w);
    const down = [...this.attachments.values()].filter((a) => !a.port).length;
    const published = this.nat.publisher.list();
    this.log.info(
      {
        socket: this.config.socketPath,
        stateDir: this.config.stateDir,
        networks: this.networks.size,
        attachments: this.attachments.size,
        down,
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
    if (this.netnsTimer) clearInterval(this.netnsTimer);
    await this.server?.close();
    // Listeners close and their clients are reset; the mappings stay recorded for the next start.
    await this.nat.publisher.close();
    await Promise.all([...this.attachments.values()].map((a) => this.release(a, false)));
    if (!this.config.ephemeral) this.store.flush();
    this.nat.close();
    await Promise.all([...this.networks.values()].map((n) => n.close()));
    if (!this.config.ephemeral) this.store.unlock();
    this.log.info('stopped');
  }

  // ------------------------------------------------------------------------------------------
  // API
  // ------------------------------------------------------------------------------------------

  private handlers(): Record<string, (p: Record<string, unknown>) => unknown> {
    const handlers = this.methods();
    const gated: Record<string, (p: Record<string, unknown>) => unknown> = {};
    for (const [name, h] of Object.entries(handlers)) {
      gated[name] = async (p) => {
        await this.ready;
        return h(p);
      };
    }
    return gated;
  }

  private methods(): Record<string, (p: Record<string, unknown>) => unknown> {
    return {
      status: (p) => {
        onlyKeys(p, [], 'status');
        return this.status();
      },
      attach: (p) => this.attach(p),
      detach: async (p) => {
        onlyKeys(p, ['name'], 'detach');
        await this.detach(reqString(p, 'name'));
        return {};
      },
      ports: (p) => {
        onlyKeys(p, [], 'ports');
        return { ports: this.listPorts() };
      },
      'ports.set': (p) => {
        onlyKeys(p, ['name', 'network', 'txLoss'], 'ports.set');
        const name = reqString(p, 'name');
        const loss = p.txLoss;
        if (typeof loss !== 'number' || !(loss >= 0 && loss <= 1)) throw new InvalidArgumentError('"txLoss" must be a number from 0 to 1');
        const port = this.livePort(name, optString(p, 'network'));
        port.lossRate = loss;
        this.log.warn({ port: name, network: optString(p, 'network'), txLoss: loss }, 'loss injected on a port (a testing knob)');
        return { name, txLoss: loss };
      },
      fdb: (p) => {
        onlyKeys(p, ['network'], 'fdb');
        const network = optString(p, 'network');
        if (network !== undefined) this.network(network);
        return { entries: this.fdb(network), ageingTime: this.config.ageingTimeMs / 1000, maxEntries: this.config.fdbMaxEntries };
      },
      capture: (p) => this.capture(p),
      'conntrack.list': (p) => {
        onlyKeys(p, ['proto', 'src', 'dst'], 'conntrack.list');
        return this.conntrackList(p);
      },
      'conntrack.flush': (p) => {
        onlyKeys(p, [], 'conntrack.flush');
        const flushed = this.nat.flush();
        this.log.info({ flushed }, 'conntrack flushed');
        return { flushed };
      },
      'network.create': (p) => this.createNetwork(p),
      'network.ls': (p) => {
        onlyKeys(p, [], 'network.ls');
        return { networks: [...this.networks.values()].map((n) => n.describe()), invalid: this.invalidNetworks };
      },
      'network.inspect': (p) => {
        onlyKeys(p, ['name'], 'network.inspect');
        return this.inspectNetwork(reqString(p, 'name'));
      },
      'network.rm': async (p) => {
        onlyKeys(p, ['name'], 'network.rm');
        await this.removeNetwork(reqString(p, 'name'));
        return {};
      },
      publish: async (p) => {
        onlyKeys(p, ['name', 'specs'], 'publish');
        const name = reqString(p, 'name');
        const specs = optStringList(p, 'specs');
        if (!specs || specs.length === 0) throw new InvalidArgumentError('"specs" must list at least one port spec');
        return { name, ports: (await this.publish(name, specs)).map(publishedInfo) };
      },
      unpublish: async (p) => {
        onlyKeys(p, ['name', 'specs', 'all'], 'unpublish');
        const name = reqString(p, 'name');
        const specs = optStringList(p, 'specs') ?? [];
        const all = optBool(p, 'all') ?? false;
        if (all === (specs.length > 0)) throw new InvalidArgumentError('unpublish needs either "specs" or "all": true');
        return { name, removed: await this.unpublish(name, all ? null : specs) };
      },
      'publish.list': (p) => {
        onlyKeys(p, ['name'], 'publish.list');
        const name = optString(p, 'name');
        if (name !== undefined && !this.attachments.has(name)) throw new NotFoundError(`no port named ${name}`, 'ERR_NO_SUCH_PORT');
        return { ports: this.listPublished(name), stats: this.nat.publisher.stats };
      },
    };
  }

  // ------------------------------------------------------------------------------------------
  // Published ports
  // ------------------------------------------------------------------------------------------

  /** The specs parsed and expanded, every error before anything opens. */
  private parseSpecs(specs: readonly string[]): PortMapping[] {
    const out: PortMapping[] = [];
    for (const spec of specs) out.push(...expandPublishSpec(parsePublishSpec(spec)));
    return out;
  }

  private publishTarget(a: Attachment): PublishTarget {
    const r = a.record;
    const net = this.network(r.network ?? DEFAULT_NETWORK);
    if (!r.ip) throw new UsernetError('ERR_NO_ADDRESS', `port ${r.name} has no address on network ${net.name}: nothing to publish to`);
    return { name: r.name, network: net.name, gw: net.gateway, containerIp: parseIpv4(r.ip), container: `${net.name}/${r.ip}` };
  }

  /**
   * Publishes to any address of an attachment's network, not only the attachment's own (what
   * slirp4netns's add_hostfwd allows with guest_addr); not recorded in the state file. The
   * listeners go with the attachment.
   */
  async publishToAddress(name: string, containerIp: number, mappings: PortMapping[]): Promise<PublishedPort[]> {
    const a = this.attachments.get(name);
    if (!a) throw new NotFoundError(`no port named ${name}`, 'ERR_NO_SUCH_PORT');
    const net = this.network(a.record.network ?? DEFAULT_NETWORK);
    const ip = ipv4ToString(containerIp);
    return this.nat.publisher.publish({ name, network: net.name, gw: net.gateway, containerIp, container: `${net.name}/${ip}` }, mappings);
  }

  /** Publishes ports to an attachment (all or nothing) and records them. */
  async publish(name: string, specs: readonly string[]): Promise<PublishedPort[]> {
    const a = this.attachments.get(name);
    if (!a) throw new NotFoundError(`no port named ${name} (see usernet ports)`, 'ERR_NO_SUCH_PORT');
    const mappings = this.parseSpecs(specs);
    const opened = await this.nat.publisher.publish(this.publishTarget(a), mappings);
    if (!this.attachments.has(name) || this.attachments.get(name) !== a) {
      // Detached while the listeners were opening.
      await Promise.all(opened.map((p) => this.nat.publisher.unpublish(p, 'container gone')));
      throw new NotFoundError(`port ${name} was detached meanwhile`, 'ERR_NO_SUCH_PORT');
    }
    const ports = [...(a.record.ports ?? []), ...opened.map((p) => ({ ...p.mapping }))];
    try {
      this.commit(this.snapshot({ replace: { ...a.record, ports } }));
    } catch (err) {
      await Promise.all(opened.map((p) => this.nat.publisher.unpublish(p, 'publish failed')));
      throw err;
    }
    a.record.ports = ports;
    return opened;
  }

  /**
   * Removes published ports of an attachment: those the specs name (all of them must exist; a
   * spec without a host port matches any) or all (`null`). Returns them as specs.
   */
  async unpublish(name: string, specs: readonly string[] | null): Promise<string[]> {
    const a = this.attachments.get(name);
    if (!a) throw new NotFoundError(`no port named ${name} (see usernet ports)`, 'ERR_NO_SUCH_PORT');
    const live = this.nat.publisher.portsOf(name);
    let chosen: PublishedPort[];
    if (specs === null) chosen = live;
    else {
      chosen = [];
      for (const m of this.parseSpecs(specs)) {
        // Without a host port, every mapping of that container port (and host address) matches.
        const found = live.filter((x) => !chosen.includes(x) && specSelects(m, x.mapping));
        if (found.length === 0) {
          // Name what is there for that container port: usually another host address.
          const near = live.filter((x) => x.mapping.proto === m.proto && x.mapping.containerPort === m.containerPort).map((x) => formatMapping(x.mapping));
          throw new NotFoundError(
            `${name} has no published port ${formatMapping(m).replace(/:0:/, '::')}${near.length ? `; it has ${near.join(', ')} (give the host address as published)` : ''} (see usernet publish --list ${name})`,
            'ERR_NOT_PUBLISHED',
          );
        }
        // A spec without a host port, or with a host range, selects every mapping it matches.
        chosen.push(...(m.hostPort === 0 || m.hostPortEnd !== undefined ? found : found.slice(0, 1)));
      }
    }
    const removed = chosen.map((p) => formatMapping(p.mapping));
    const kept = (a.record.ports ?? []).filter((m) => !removed.includes(formatMapping(m)));
    const record: AttachmentRecord = { ...a.record, ports: kept };
    if (kept.length === 0) delete record.ports;
    // Recorded first: if that fails, the ports stay published and recorded as they were.
    this.commit(this.snapshot({ replace: record }));
    a.record = record;
    await Promise.all(chosen.map((p) => this.nat.publisher.unpublish(p, 'unpublished')));
    return removed;
  }

  listPublished(name?: string): PublishedPortInfo[] {
    return this.nat.publisher
      .list()
      .filter((p) => name === undefined || p.target.name === name)
      .map(publishedInfo);
  }

  /** After a restart: every recorded mapping listens again (or is retried until it can). */
  private async restorePublished(): Promise<void> {
    for (const a of this.attachments.values()) {
      const ports = a.record.ports;
      if (!ports || ports.length === 0) continue;
      let target: PublishTarget;
      try {
        target = this.publishTarget(a);
      } catch (err) {
        this.log.error({ port: a.record.name, err: (err as Error).message }, 'published ports not restored');
        continue;
      }
      await this.nat.publisher.restore(target, ports);
    }
  }

  private conntrackList(p: Record<string, unknown>): Record<string, unknown> {
    const proto = optString(p, 'proto');
    const filter: ConntrackFilter = {};
    if (proto !== undefined) {
      const n = protoFromName(proto);
      if (n < 0) throw new InvalidArgumentError(`"proto" must be tcp, udp or icmp, not "${proto}"`);
      filter.proto = n;
    }
    const src = optString(p, 'src');
    const dst = optString(p, 'dst');
    if (src !== undefined) filter.src = parseIpv4(src);
    if (dst !== undefined) filter.dst = parseIpv4(dst);
    const now = this.nat.ct.now();
    const entries = this.nat.ct.list(filter);
    return { entries: entries.map((e) => conntrackJson(e, now)), lines: entries.map((e) => formatConntrackLine(e, now)), count: this.nat.ct.size, stats: this.natStats() };
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

  private network(name: string): Network {
    const n = this.networks.get(name);
    if (!n) throw new NotFoundError(`no network named ${name} (see usernet network ls)`, 'ERR_NO_SUCH_NETWORK');
    return n;
  }

  // ------------------------------------------------------------------------------------------
  // Networks
  // ------------------------------------------------------------------------------------------

  private createNetwork(p: Record<string, unknown>): Record<string, unknown> {
    onlyKeys(p, NETWORK_PARAMS, 'network.create');
    const spec: NetworkSpec = {
      name: reqString(p, 'name'),
      subnet: reqString(p, 'subnet'),
    };
    const gateway = optString(p, 'gateway');
    const dns = optString(p, 'dns');
    const range = optString(p, 'range');
    const mtu = optInt(p, 'mtu', MIN_MTU, MAX_MTU);
    const icc = optBool(p, 'icc');
    const dnsSearch = optStringList(p, 'dnsSearch');
    const dnsUpstream = optStringList(p, 'dnsUpstream');
    const disableDns = optBool(p, 'disableDns');
    const leaseTime = optInt(p, 'leaseTime', 60, 2 ** 31 - 1);
    const disableHostLoopback = optBool(p, 'disableHostLoopback');
    if (disableHostLoopback !== undefined) spec.disableHostLoopback = disableHostLoopback;
    if (gateway !== undefined) spec.gateway = gateway;
    if (dns !== undefined) spec.dns = dns;
    if (range !== undefined) spec.range = range;
    if (mtu !== undefined) spec.mtu = mtu;
    if (icc !== undefined) spec.icc = icc;
    if (dnsSearch !== undefined) spec.dnsSearch = dnsSearch;
    if (dnsUpstream !== undefined) spec.dnsUpstream = dnsUpstream;
    if (disableDns !== undefined) spec.disableDns = disableDns;
    if (leaseTime !== undefined) spec.leaseTime = leaseTime;
    if (spec.name === DEFAULT_NETWORK) throw new ConflictError('the default network always exists (its settings are daemon flags)', 'ERR_NETWORK_EXISTS');
    if (this.networks.has(spec.name) || this.invalidNetworks.some((n) => n.name === spec.name)) {
      throw new ConflictError(`a network named ${spec.name} already exists`, 'ERR_NETWORK_EXISTS');
    }
    // Judged (and refused) before anything is recorded; recorded before anything is built.
    validateNetworkSpec(spec, [...this.networks.values()].map((n) => n.config));
    const state = this.snapshot();
    state.networks.push(spec);
    this.commit(state);
    let net: Network;
    try {
      net = this.addNetwork(spec);
    } catch (err) {
      this.trySaveState();
      throw err;
    }
    this.log.info({ network: spec.name, subnet: spec.subnet }, 'network created');
    return net.describe();
  }

  private async removeNetwork(name: string): Promise<void> {
    if (name === DEFAULT_NETWORK) throw new ConflictError('the default network cannot be removed', 'ERR_NETWORK_IN_USE');
    const invalid = this.invalidNetworks.findIndex((n) => n.name === name);
    if (invalid >= 0 && !this.networks.has(name)) {
      const state = this.snapshot();
      state.networks = state.networks.filter((n) => n.name !== name);
      this.commit(state);
      this.invalidNetworks.splice(invalid, 1);
      this.log.info({ network: name }, 'invalid network removed from the state file');
      return;
    }
    const net = this.network(name);
    const users = [...this.attachments.values()].filter((a) => a.record.network === name).map((a) => a.record.name);
    if (users.length) {
      throw new ConflictError(`network ${name} still has ${users.length} attached port${users.length > 1 ? 's' : ''} (${users.join(', ')}): detach ${users.length > 1 ? 'them' : 'it'} first`, 'ERR_NETWORK_IN_USE');
    }
    const state = this.snapshot();
    state.networks = state.networks.filter((n) => n.name !== name);
    // Recorded first: a failed write leaves the network in place, in memory and in the file.
    this.commit(state);
    this.networks.delete(name);
    for (const tap of net.gateway.taps) if (tap instanceof CaptureSession) tap.end();
    this.nat.removeNetwork(net.gateway);
    await net.close();
    this.log.info({ network: name }, 'network removed');
  }

  private inspectNetwork(name: string): Record<string, unknown> {
    const net = this.network(name);
    const now = Date.now();
    return {
      ...net.describe(),
      addresses: net.pool.holdings().map((h) => ({
        ip: ipv4ToString(h.ip),
        mac: macToString(h.mac),
        kind: h.kind,
        ...(h.kind === HOLD_LEASE ? { bound: h.bound, expiresIn: Math.max(0, Math.round((h.expiresAt - now) / 1000)) } : {}),
        ...(h.kind === HOLD_ATTACHMENT ? { port: [...this.attachments.values()].find((a) => a.record.network === name && parseMac(a.record.mac) === h.mac)?.record.name ?? null } : {}),
      })),
      neighbours: net.gateway.neighbourTable().map((e) => ({ ip: ipv4ToString(e.ip), mac: macToString(e.mac), age: Math.round(e.age / 100) / 10 })),
    };
  }

  private restoreNetworks(state: DaemonState): void {
    for (const spec of state.networks ?? []) {
      try {
        this.addNetwork(spec);
      } catch (err) {
        this.invalidNetworks.push(spec);
        this.log.error({ network: spec.name, err: (err as Error).message }, 'network from the state file is not valid: kept in the state file, not created');
      }
    }
  }

  /** Leases from the state file go back into their pools (unless expired or now taken). */
  private restoreLeases(state: DaemonState): void {
    const now = Date.now();
    for (const l of state.leases ?? []) {
      const net = this.networks.get(l.network);
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

  private scheduleLeaseSave(): void {
    if (this.stopped || this.config.ephemeral) return;
    this.store.saveLater(() => this.snapshot());
  }

  /** Records a fact that happened anyway (a container ended): a failed write is logged. */
  private trySaveState(): void {
    if (!this.config.ephemeral) this.store.trySave(this.snapshot());
  }

  /**
   * What is wrong with the daemon's setup that would otherwise show only as failures: today,
   * networks whose DNS forwarder has no upstream (every query is answered SERVFAIL).
   */
  warnings(): string[] {
    const out: string[] = [];
    for (const net of this.networks.values()) {
      const c = net.config;
      if (c.disableDns) continue;
      const upstreams = c.dnsUpstream ?? this.daemonUpstreams ?? this.resolvConf.nameservers();
      if (upstreams.length > 0) continue;
      const why = this.resolvConf.problem() ?? `${this.config.resolvConfPath} names no nameserver`;
      out.push(`network ${net.name}: no DNS upstream (${why}): every query to ${ipv4ToString(c.dns)} is answered SERVFAIL; give --dns-upstream IP`);
    }
    return out;
  }

  status(): Record<string, unknown> {
    return {
      version: VERSION,
      pid: process.pid,
      socket: this.config.socketPath,
      stateDir: this.config.stateDir,
      uptime: Math.round((Date.now() - this.startedAt) / 1000),
      attachments: this.attachments.size,
      networks: [...this.networks.keys()],
      icc: this.defaultNetwork.config.icc,
      ageingTime: this.config.ageingTimeMs / 1000,
      dnsUpstream: (this.daemonUpstreams ?? this.resolvConf.nameservers()).map(formatUpstream),
      warnings: this.warnings(),
      ...this.natStats(),
    };
  }

  /** Attaches a container (API params as in `usernet attach`). */
  async attach(p: Record<string, unknown>): Promise<AttachResult> {
    onlyKeys(p, ['pid', 'netns', 'userns', 'network', 'name', 'ifname', 'mac', 'mtu', 'configure', 'ip', 'offload', 'publish', 'address', 'owner'], 'attach');
    const net = this.network(optString(p, 'network') ?? DEFAULT_NETWORK);
    const pid = optInt(p, 'pid', 1, 0x3fffffff);
    const netnsPath = optString(p, 'netns', { max: 4096 });
    const usernsPath = optString(p, 'userns', { max: 4096 });
    if ((pid === undefined) === (netnsPath === undefined)) throw new InvalidArgumentError('attach needs exactly one of --pid PID or --netns PATH');
    if (usernsPath !== undefined && netnsPath === undefined) throw new InvalidArgumentError('--userns goes with --netns');
    const ifname = optString(p, 'ifname', { pattern: IFNAME_PATTERN, what: 'must be 1-15 letters, digits, "_", "." or "-"' }) ?? 'eth0';
    let name = optString(p, 'name', { pattern: NAME_PATTERN, what: 'must be 1-64 letters, digits, "_", "." or "-", starting with a letter or digit' });
    const macText = optString(p, 'mac');
    const mac = macText === undefined ? undefined : parseMac(macText);
    if (mac !== undefined && (Math.floor(mac / 2 ** 40) & 1) === 1) throw new InvalidArgumentError(`--mac ${macText} is a multicast address`);
    if (mac === 0) throw new InvalidArgumentError('--mac must not be all zeros');
    const mtu = optInt(p, 'mtu', MIN_MTU, MAX_MTU) ?? net.config.mtu;
    const configure = optBool(p, 'configure') ?? false;
    const offload = optBool(p, 'offload');
    const ipText = optString(p, 'ip');
    const wantedIp = ipText === undefined ? undefined : parseMemberAddress(ipText, net.config);
    // address: false — the attachment holds no address: the container configures itself, or
    // asks DHCP, which then hands it one from the range like to any client.
    const holdsAddress = optBool(p, 'address') ?? true;
    // owner: the attachment lasts as long as that process (a usernet-slirp4netns joined here).
    const ownerPid = optInt(p, 'owner', 1, 0x3fffffff);
    let owner: { pid: number; start: number } | undefined;
    if (ownerPid !== undefined) {
      const start = processStartTime(ownerPid);
      if (start < 0) throw new NotFoundError(`no process with PID ${ownerPid} (the owner)`, 'ERR_NO_SUCH_PROCESS');
      owner = { pid: ownerPid, start };
    }
    if (!holdsAddress && (wantedIp !== undefined || configure)) throw new InvalidArgumentError('"address": false goes without --ip and --configure');
    // Port specs are checked before anything is opened.
    const mappings = this.parseSpecs(optStringList(p, 'publish') ?? []);
    for (const m of mappings) {
      const other = this.nat.publisher.clashWith(m);
      if (other) throw new ConflictError(`cannot publish ${formatMapping(m)}: it is already published to ${other.target.name} port ${other.mapping.containerPort}`, 'ERR_PORT_PUBLISHED');
    }

    // The container must exist now, and be a network namespace.
    let nsPath: string;
    if (pid !== undefined) {
      if (!existsSync(`/proc/${pid}`)) throw new NotFoundError(`no process with PID ${pid}`, 'ERR_NO_SUCH_PROCESS');
      nsPath = `/proc/${pid}/ns/net`;
    } else {
      nsPath = netnsPath as string;
      const code = statError(nsPath);
      if (code === 'EACCES' || code === 'EPERM') {
        throw new UsernetError('EACCES', `permission denied on ${nsPath}: the namespace belongs to another user`);
      }
      if (code !== '') throw new NotFoundError(`network namespace ${nsPath} does not exist`, 'ERR_NO_SUCH_NAMESPACE');
      const self = namespaceIdentity('/proc/self/ns/net');
      const st = namespaceIdentity(nsPath);
      if (!self || !st || st.dev !== self.dev) {
        throw new InvalidArgumentError(`${nsPath} is not a namespace file (expected something like /run/netns/NAME or /proc/PID/ns/net)`);
      }
    }
    const identity = namespaceIdentity(nsPath);
    if (!identity) {
      const what = pid !== undefined ? `PID ${pid}` : nsPath;
      const code = statError(nsPath);
      if (code === 'EACCES' || code === 'EPERM') {
        throw new UsernetError('EACCES', `permission denied on the network namespace of ${what}: the container belongs to another user`);
      }
      throw new NotFoundError(`cannot read the network namespace of ${what}`, 'ERR_NO_SUCH_NAMESPACE');
    }
    if (sameIdentity(namespaceIdentity('/proc/self/ns/net'), identity)) {
      throw new InvalidArgumentError('that is the daemon\'s own network namespace, not a container\'s');
    }

    if (name === GATEWAY_PORT_NAME) throw new ConflictError(`the port name ${name} is reserved for each network's gateway port: choose another --name`, 'ERR_NAME_RESERVED');
    if (name !== undefined && this.attachments.has(name)) throw new ConflictError(`a port named ${name} already exists`, 'ERR_NAME_IN_USE');
    for (const a of this.attachments.values()) {
      if (sameIdentity(a.record.netns, identity) && a.record.ifname === ifname) {
        throw new ConflictError(`${ifname} in that container is already attached as port ${a.record.name}`, 'ERR_ALREADY_ATTACHED');
      }
    }
    name ??= this.freeName();

    // The address: the one asked for, if it is free on this network, or the next of the range.
    const now = Date.now();
    let ip = -1;
    if (!holdsAddress) {
      // none
    } else if (wantedIp !== undefined) {
      const why = net.pool.whyNot(wantedIp, mac ?? -1, now);
      if (why !== '') throw new ConflictError(`--ip ${ipText}: ${why} on network ${net.name}`, 'ERR_ADDRESS_UNAVAILABLE');
      ip = wantedIp;
    } else {
      ip = net.pool.next(mac ?? -1, now);
      if (ip < 0) throw new ConflictError(`network ${net.name} has no free address left in its range`, 'ERR_NO_ADDRESS');
    }
    // Docker's convention: 02:42 + the four bytes of the address. Without an address and a
    // --mac, the interface keeps the MAC it has (or the kernel's random one): -1 until opened.
    const chosenMac = mac ?? (ip >= 0 ? 0x0242_0000_0000 + ip : -1);
    if (chosenMac === net.gateway.mac) throw new InvalidArgumentError(`--mac ${macToString(chosenMac)} is the gateway's MAC on network ${net.name}`);
    const other = net.pool.holdingOf(chosenMac);
    if (other && other.kind === HOLD_ATTACHMENT) throw new ConflictError(`MAC ${macToString(chosenMac)} is already attached on network ${net.name}`, 'ERR_MAC_IN_USE');
    if (other && ip >= 0 && other.ip !== ip && other.expiresAt > now) {
      throw new ConflictError(`MAC ${macToString(chosenMac)} holds a DHCP lease for ${ipv4ToString(other.ip)} on network ${net.name}: give --mac or --ip ${ipv4ToString(other.ip)}`, 'ERR_MAC_IN_USE');
    }
    const record: AttachmentRecord = {
      name,
      network: net.name,
      ...(pid !== undefined ? { pid } : { netnsPath }),
      ...(usernsPath !== undefined ? { usernsPath } : {}),
      netns: identity,
      ifname,
      mac: chosenMac >= 0 ? macToString(chosenMac) : '',
      mtu,
      configure,
      ...(ip >= 0 ? { ip: ipv4ToString(ip) } : {}),
      ...(offload !== undefined ? { offload } : {}),
      ...(owner ? { owner } : {}),
      attachedAt: new Date().toISOString(),
    };
    const a = new Attachment(record);
    if (ip >= 0) net.pool.hold(ip, chosenMac, HOLD_ATTACHMENT, Infinity, true);
    let existed: boolean;
    try {
      existed = this.open(a, false);
    } catch (err) {
      if (ip >= 0) net.pool.release(chosenMac, HOLD_ATTACHMENT);
      throw err;
    }
    // A TAP that was there before (persistent, made by someone else) is left as it was on detach.
    record.ownsDevice = !existed;
    if (ip < 0 && a.foundAddress !== 0) {
      // Not given an address, but the interface has one in this network (rootlesskit configures
      // it itself): it is the container's, if nobody else holds it.
      const found = a.foundAddress;
      const why = net.pool.contains(found) ? net.pool.whyNot(found, parseMac(record.mac), now) : '';
      if (why !== '') {
        await this.release(a, record.ownsDevice);
        const holder = [...this.attachments.values()].find((x) => x.record.network === net.name && x.record.ip === ipv4ToString(found));
        throw new ConflictError(
          `${ifname} in that container already has the address ${ipv4ToString(found)}, which is taken on network ${net.name}${holder ? ` by port ${holder.record.name}` : ` (${why})`}: configure another address, or let usernet choose one (-c)`,
          'ERR_ADDRESS_UNAVAILABLE',
        );
      }
      if (net.pool.contains(found)) {
        net.pool.hold(found, parseMac(record.mac), HOLD_ATTACHMENT, Infinity, true);
        record.ip = ipv4ToString(found);
        ip = found;
      }
    }
    this.attachments.set(name, a);
    if (owner) this.watchOwner(a);
    if (mappings.length > 0) {
      try {
        const opened = await this.nat.publisher.publish(this.publishTarget(a), mappings);
        record.ports = opened.map((x) => ({ ...x.mapping }));
      } catch (err) {
        // Nothing half-applied: the attachment goes again.
        this.attachments.delete(name);
        if (ip >= 0) net.pool.release(chosenMac, HOLD_ATTACHMENT);
        await this.release(a, record.ownsDevice);
        throw err;
      }
    }
    try {
      this.commit(this.snapshot());
    } catch (err) {
      // Nothing half-applied: without a record the attachment would be lost on restart.
      this.attachments.delete(name);
      await this.nat.publisher.removeTarget(name, 'attach failed');
      if (ip >= 0) net.pool.release(chosenMac, HOLD_ATTACHMENT);
      await this.release(a, record.ownsDevice);
      throw err;
    }
    this.log.info({ port: name, network: net.name, container: a.container, ifname, mac: record.mac, ip: record.ip, mtu: record.mtu, existed }, 'attached');
    const c = net.config;
    return {
      name,
      network: net.name,
      ifname,
      mac: record.mac,
      mtu: record.mtu,
      ip: record.ip ?? null,
      prefix: c.prefix,
      gateway: ipv4ToString(c.gateway),
      dns: c.disableDns ? null : ipv4ToString(c.dns),
      dnsSearch: net.searchList(),
      offloads: a.port?.offloads ?? false,
      existed,
      ports: (record.ports ?? []).map(formatMapping),
    };
  }

  /**
   * Detaches a port: a TAP usernet created stops being persistent and disappears from the
   * container; one that was there before is left there. Resolves once the fd is closed.
   */
  async detach(name: string): Promise<void> {
    const a = this.attachments.get(name);
    if (!a && name === GATEWAY_PORT_NAME) throw new ConflictError('gateway is the network\'s own port (ARP, ping, DHCP, DNS and the NAT): it cannot be detached', 'ERR_GATEWAY_PORT');
    if (!a) throw new NotFoundError(`no port named ${name} (see usernet ports)`, 'ERR_NO_SUCH_PORT');
    // Recorded first: if the write fails, the port stays attached, listed and recorded.
    this.commit(this.snapshot({ drop: name }));
    this.attachments.delete(name);
    this.releaseAddress(a);
    await this.nat.publisher.removeTarget(name, 'detached');
    await this.release(a, a.record.ownsDevice !== false);
    this.log.info({ port: name }, 'detached');
  }

  listPorts(): PortInfo[] {
    const out: PortInfo[] = [];
    for (const net of this.networks.values()) {
      const g = net.gateway;
      out.push({
        name: g.name,
        network: net.name,
        kind: PortKind.GATEWAY,
        ifname: '-',
        ip: ipv4ToString(net.config.gateway),
        container: net.config.disableDns ? '-' : `dns ${ipv4ToString(net.config.dns)}`,
        mac: macToString(g.mac),
        mtu: net.config.mtu,
        offloads: true,
        state: 'up',
        counters: snapshotCounters(g.counters),
      });
    }
    for (const a of this.attachments.values()) {
      const r = a.record;
      out.push({
        name: r.name,
        network: r.network ?? DEFAULT_NETWORK,
        kind: PortKind.CONTAINER,
        ifname: r.ifname,
        ip: r.ip ?? null,
        container: a.container,
        mac: r.mac,
        mtu: a.port?.mtu ?? r.mtu,
        offloads: a.port?.offloads ?? false,
        state: a.port ? 'up' : 'down',
        ...(a.error ? { error: a.error } : {}),
        counters: a.port ? snapshotCounters(a.port.counters) : null,
      });
    }
    return out;
  }

  fdb(network?: string): FdbEntryInfo[] {
    const out: FdbEntryInfo[] = [];
    for (const net of this.networks.values()) {
      if (network !== undefined && net.name !== network) continue;
      for (const e of net.sw.fdb.snapshot(performance.now())) out.push({ ...e, network: net.name });
    }
    return out;
  }

  /**
   * A port that is up, by name: an attachment's, or — for `gateway` — the gateway port of
   * `network` (default: the default network). `network` with another name must be its network.
   */
  private livePort(name: string, network: string | undefined): Port {
    if (name === GATEWAY_PORT_NAME) return this.network(network ?? DEFAULT_NETWORK).gateway;
    const a = this.attachments.get(name);
    if (!a) throw new NotFoundError(`no port named ${name} (see usernet ports)`, 'ERR_NO_SUCH_PORT');
    if (network !== undefined && (a.record.network ?? DEFAULT_NETWORK) !== network) {
      throw new NotFoundError(`port ${name} is on network ${a.record.network ?? DEFAULT_NETWORK}, not ${network}`, 'ERR_NO_SUCH_PORT');
    }
    if (!a.port) throw new UsernetError('ERR_PORT_DOWN', `port ${name} is down: ${a.error ?? 'not attached'}`);
    return a.port;
  }

  private capture(p: Record<string, unknown>): StreamingResult {
    onlyKeys(p, ['port', 'network', 'count'], 'capture');
    const name = reqString(p, 'port');
    const count = optInt(p, 'count', 0, 2 ** 31) ?? 0;
    const network = optString(p, 'network');
    const port = this.livePort(name, network);
    const where = network !== undefined ? { port: name, network } : { port: name };
    return new StreamingResult({ port: name, linktype: 'ethernet' }, (socket: Socket) => {
      const session = new CaptureSession(port, socket, count, (s) => {
        this.log.info({ ...where, frames: s.frames, dropped: s.dropped }, 'capture ended');
      });
      port.taps = [...port.taps, session];
      this.log.info({ ...where, count }, 'capture started');
    });
  }

  // ------------------------------------------------------------------------------------------
  // Attachments
  // ------------------------------------------------------------------------------------------

  private freeName(): string {
    for (let i = 1; ; i++) if (!this.attachments.has(`c${i}`)) return `c${i}`;
  }

  /**
   * Opens the TAP for an attachment and plugs it in. On re-attach the existing (persistent)
   * interface is only attached; if it has disappeared it is created and configured again.
   * Returns whether the interface existed.
   */
  private open(a: Attachment, reattach: boolean): boolean {
    const r = a.record;
    const net = this.network(r.network ?? DEFAULT_NETWORK);
    const base: TapOpenOptions = {
      ifname: r.ifname,
      ...(r.pid !== undefined ? { pid: r.pid } : { netnsPath: r.netnsPath }),
      ...(r.usernsPath !== undefined ? { usernsPath: r.usernsPath } : {}),
      vnetHdr: r.offload ?? this.config.offloads,
      offload: r.offload ?? this.config.offloads,
      // Persistent while attached, so that a restarted daemon finds it; an ephemeral daemon's
      // TAPs go with its process instead (and one that existed stays as it was).
      persist: this.config.ephemeral ? -1 : 1,
    };
    const full: TapOpenOptions = {
      ...base,
      create: true,
      mtu: r.mtu,
      ...(r.mac ? { mac: macToBytes(parseMac(r.mac)) } : {}),
      linkUp: r.configure,
      loUp: r.configure,
    };
    if (r.configure && r.ip) {
      full.address = parseIpv4(r.ip);
      full.prefix = net.config.prefix;
      full.gateway = net.config.gateway;
    }

    const addon = native();
    let result;
    try {
      if (reattach) {
        try {
          result = addon.tapOpen({ ...base, create: false });
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENODEV') throw err;
          result = addon.tapOpen(full);
        }
      } else {
        result = addon.tapOpen(full);
      }
    } catch (err) {
      throw explainTapError(err, r);
    }
    // The recorded MAC is the attachment's identity (it holds the address); a container that
    // changed its interface's MAC since is a different DHCP client, not a different attachment.
    if (!r.mac) r.mac = macToString(macFromBytes(result.mac));
    r.mtu = result.mtu;
    let port: TapPort | null = null;
    try {
      port = new TapPort(
        { name: r.name, kind: PortKind.CONTAINER, fd: result.fd, vnetHdrLen: result.vnetHdrLen, mtu: result.mtu, ifname: result.ifname },
        {
          onFatalError: (_p, message) => void this.containerGone(r.name, message),
          onInternalError: (p, err) => {
            const now = Date.now();
            if (now - a.lastInternalLog < INTERNAL_ERROR_LOG_INTERVAL) return;
            a.lastInternalLog = now;
            this.log.error({ port: p.name, err }, 'internal error while handling a frame (frame dropped; further errors counted, logged at most every 10 s)');
          },
        },
      );
      port.plug(net.sw);
    } catch (err) {
      // Nothing of a failed open stays: a TAP this call created stops being persistent (so it
      // goes with its fd), and the fd is closed.
      if (!result.existed) {
        try {
          addon.setPersist(result.fd, false);
        } catch {
          // the device is gone already
        }
      }
      if (port) void port.close();
      else addon.closeFd(result.fd);
      throw err;
    }
    a.port = port;
    a.error = null;
    // Tell the container who the gateway is (gratuitous ARP), in case it remembers an old one.
    net.gateway.announce(port);
    this.watch(a);
    a.foundAddress = result.address;
    return result.existed;
  }

  /**
   * After a restart: the TCP connections the containers made through the NAT (or were given
   * through a published port) lost their host side with the previous daemon. They are found in
   * each container's own socket table (sock_diag, in its namespaces) and reset at once, so no
   * application waits on a connection that can never move again.
   */
  private resetOrphanFlows(): void {
    if (this.config.ephemeral) return;
    for (const a of this.attachments.values()) {
      const r = a.record;
      const net = this.networks.get(r.network ?? DEFAULT_NETWORK);
      if (!a.port || !r.ip || !r.mac || !net) continue;
      let sockets;
      try {
        sockets = native().tcpSockets(r.pid !== undefined ? { pid: r.pid } : { netnsPath: r.netnsPath, ...(r.usernsPath !== undefined ? { usernsPath: r.usernsPath } : {}) });
      } catch (err) {
        this.log.warn({ port: r.name, err: (err as Error).message }, 'cannot read the container\'s connections: those the previous daemon carried are not reset');
        continue;
      }
      const n = this.nat.resetOrphans(net.gateway, parseMac(r.mac), parseIpv4(r.ip), sockets);
      if (n > 0) this.log.info({ port: r.name, connections: n }, 'connections the previous daemon carried: reset');
    }
  }

  /** A recorded attachment that will not be re-attached: a TAP usernet made stops being persistent. */
  private dropStaleDevice(r: AttachmentRecord): void {
    if (r.ownsDevice === false) return;
    try {
      const res = native().tapOpen({
        ifname: r.ifname,
        ...(r.pid !== undefined ? { pid: r.pid } : { netnsPath: r.netnsPath }),
        ...(r.usernsPath !== undefined ? { usernsPath: r.usernsPath } : {}),
        create: false,
        persist: 0,
      });
      closeSync(res.fd);
    } catch {
      // The namespace or the device is gone already.
    }
  }

  /** Watches the process an attachment belongs to: when it ends, the attachment goes. */
  private watchOwner(a: Attachment): void {
    const o = a.record.owner;
    if (!o || a.ownerWatch) return;
    const gone = (): void => void this.containerGone(a.record.name, `its owner, process ${o.pid}, exited`);
    try {
      a.ownerWatch = native().watchPid(o.pid, gone);
    } catch {
      queueMicrotask(gone);
    }
  }

  /** Watches a `--pid` container's process (also for an attachment that is down). */
  private watch(a: Attachment): void {
    const r = a.record;
    if (r.pid === undefined || a.watch) return;
    try {
      a.watch = native().watchPid(r.pid, () => void this.containerGone(r.name, `process ${r.pid} exited`));
    } catch {
      // The process ended between the open and the watch.
      queueMicrotask(() => void this.containerGone(r.name, `process ${r.pid} exited`));
    }
  }

  /** Gives the attachment's address back to its network. */
  private releaseAddress(a: Attachment): void {
    const net = this.networks.get(a.record.network ?? DEFAULT_NETWORK);
    // Its flows end first: host peers see a reset, sockets close, entries go.
    if (a.record.ip) this.nat.removeContainer(a.record.network ?? DEFAULT_NETWORK, parseIpv4(a.record.ip));
    if (net && a.record.mac) net.pool.release(parseMac(a.record.mac), HOLD_ATTACHMENT);
    if (net && a.record.ip) net.gateway.forgetNeighbour(parseIpv4(a.record.ip));
  }

  /**
   * Unplugs and closes an attachment's port; with clearPersist the TAP goes away with it.
   * Resolves once the fd is closed.
   */
  private async release(a: Attachment, clearPersist: boolean): Promise<void> {
    if (a.watch) {
      native().unwatch(a.watch);
      a.watch = null;
    }
    if (a.ownerWatch) {
      native().unwatch(a.ownerWatch);
      a.ownerWatch = null;
    }
    const port = a.port;
    if (!port) return;
    a.port = null;
    for (const tap of port.taps) if (tap instanceof CaptureSession) tap.end();
    if (clearPersist) {
      try {
        port.setPersist(false);
      } catch (err) {
        this.log.warn({ port: port.name, err: (err as Error).message }, 'could not clear the persistent flag');
      }
    }
    await port.close();
  }

  /** The container went away (or its TAP did): the port goes, and so does its record. */
  private async containerGone(name: string, why: string): Promise<void> {
    const a = this.attachments.get(name);
    if (!a || this.stopped) return;
    this.attachments.delete(name);
    this.releaseAddress(a);
    this.trySaveState();
    await this.nat.publisher.removeTarget(name, 'container gone');
    await this.release(a, a.record.ownsDevice !== false);
    this.log.info({ port: name, reason: why }, 'container gone: port removed');
    this.onContainerGone?.(name, why);
  }

  private checkNamespaces(): void {
    for (const a of [...this.attachments.values()]) {
      const r = a.record;
      if (r.netnsPath === undefined) continue;
      if (!sameIdentity(namespaceIdentity(r.netnsPath), r.netns)) {
        void this.containerGone(r.name, `${r.netnsPath} no longer names the attached network namespace`);
      }
    }
  }

  private reattachAll(state: DaemonState): void {
    let dropped = 0;
    for (const record of state.attachments) {
      if (this.attachments.has(record.name)) continue;
      if (!sameIdentity(namespaceIdentity(netnsPathOf(record)), record.netns)) {
        this.log.info({ port: record.name, container: record.pid !== undefined ? `pid ${record.pid}` : record.netnsPath }, 'container gone while the daemon was down: attachment dropped');
        dropped++;
        continue;
      }
      if (record.owner && processStartTime(record.owner.pid) !== record.owner.start) {
        // Its owner ended while the daemon was down. Its TAP (if ours) is persistent: clear it.
        this.log.info({ port: record.name, owner: record.owner.pid }, 'owner gone while the daemon was down: attachment dropped');
        this.dropStaleDevice(record);
        dropped++;
        continue;
      }
      record.network ??= DEFAULT_NETWORK;
      const a = new Attachment(record);
      const net = this.networks.get(record.network);
      if (!net) {
        a.error = `its network ${record.network} does not exist`;
        this.attachments.set(record.name, a);
        this.log.error({ port: record.name, network: record.network }, 're-attach failed: network missing; kept in the state file, shown as down');
        this.watch(a);
        continue;
      }
      // The address stays the attachment's while it is recorded, up or down.
      if (record.ip && record.mac) {
        try {
          const ip = parseIpv4(record.ip);
          if (net.pool.usable(ip)) net.pool.hold(ip, parseMac(record.mac), HOLD_ATTACHMENT, Infinity, true);
          else delete record.ip;
        } catch {
          delete record.ip;
        }
      }
      this.attachments.set(record.name, a);
      try {
        const existed = this.open(a, true);
        this.watchOwner(a);
        this.log.info({ port: record.name, container: a.container, existed }, 're-attached');
      } catch (err) {
        a.error = (err as Error).message;
        this.log.error({ port: record.name, err: a.error }, 're-attach failed: kept in the state file, shown as down');
        // Still watched: if the container ends, its record goes.
        this.watch(a);
      }
    }
    if (dropped) this.commit(this.snapshot());
  }

  /**
   * The state as it is, or as it would be after a change: without the attachment `drop`, or with
   * `replace` in place of the record of the same name. Records are shared, not copied: a change
   * goes into a new record, which the caller puts in place only once it is saved.
   */
  private snapshot(change: { drop?: string; replace?: AttachmentRecord } = {}): DaemonState {
    const leases: LeaseRecord[] = [];
    for (const net of this.networks.values()) {
      for (const h of net.pool.holdings()) {
        if (h.kind === HOLD_LEASE && h.bound) leases.push({ network: net.name, mac: macToString(h.mac), ip: ipv4ToString(h.ip), expiresAt: h.expiresAt });
      }
    }
    const attachments: AttachmentRecord[] = [];
    for (const a of this.attachments.values()) {
      if (a.record.name === change.drop) continue;
      attachments.push(change.replace && a.record.name === change.replace.name ? change.replace : a.record);
    }
    return {
      version: STATE_VERSION,
      networks: [...[...this.networks.values()].filter((n) => n.name !== DEFAULT_NETWORK).map((n) => n.spec), ...this.invalidNetworks],
      attachments,
      leases,
    };
  }

  /** Writes a state the caller is about to apply; throws ERR_STATE_WRITE (one line) if it cannot. */
  private commit(state: DaemonState): void {
    if (!this.config.ephemeral) this.store.save(state);
  }
}

/** A process's start time (clock ticks after boot, /proc/PID/stat field 22), or -1 if there is none. */
export function processStartTime(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const start = Number(fields[19]);
    return Number.isFinite(start) ? start : -1;
  } catch {
    return -1;
  }
}

function publishedInfo(p: PublishedPort): PublishedPortInfo {
  const m = p.mapping;
  return {
    name: p.target.name,
    network: p.target.network,
    proto: m.proto,
    hostIp: m.hostIp,
    hostPort: m.hostPort,
    containerIp: ipv4ToString(p.target.containerIp),
    containerPort: m.containerPort,
    spec: formatMapping(m),
    state: p.listening ? 'listening' : 'down',
    ...(p.error && !p.listening ? { error: p.error } : {}),
    flows: p.stats.flows,
    refused: p.stats.refused,
  };
}

/** The errno code of stat(path), or '' when it succeeds. */
function statError(path: string): string {
  try {
    statSync(path);
    return '';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? 'EIO';
  }
}

/** The type of a /proc/PID/ns/* link ("user", "net", ...), or '' for another kind of path. */
function namespaceKind(path: string): string {
  try {
    return /^(\w+):\[\d+\]$/.exec(readlinkSync(path))?.[1] ?? '';
  } catch {
    return '';
  }
}

/** Adds the likely cause and the fix to the addon's errno errors. */
function explainTapError(err: unknown, r: AttachmentRecord): Error {
  const e = err as NodeJS.ErrnoException;
  const what = r.pid !== undefined ? `the container of PID ${r.pid}` : `the namespace ${r.netnsPath}`;
  let hint = '';
  if (e.syscall === 'open(/dev/net/tun)' && (e.code === 'EACCES' || e.code === 'EPERM')) {
    hint = ' — /dev/net/tun is not open to this user; distributions ship it mode 0666: sudo chmod 0666 /dev/net/tun';
  } else if (e.syscall === 'open(/dev/net/tun)' && e.code === 'ENOENT') {
    hint = ' — the tun module is missing: sudo modprobe tun';
  } else if (e.syscall === 'setns(CLONE_NEWUSER)' && e.code === 'EPERM') {
    hint = ` — not allowed to enter the user namespace of ${what}: it must belong to the user running the daemon`;
  } else if (e.syscall === 'setns(CLONE_NEWNET)' && e.code === 'EINVAL' && r.netnsPath !== undefined) {
    // setns() refuses a namespace file of another type with EINVAL: say what was given instead.
    const kind = namespaceKind(r.netnsPath);
    const what = kind ? `a ${kind} namespace, not a network namespace` : 'not a network namespace';
    return new InvalidArgumentError(`${r.netnsPath} is ${what}: give /proc/PID/ns/net or a file made by ip netns (/run/netns/NAME)`, 'ERR_NOT_A_NETNS');
  } else if (e.syscall === 'setns(CLONE_NEWNET)' && e.code === 'EPERM') {
    hint = ` — not allowed to enter the network namespace of ${what}`;
  } else if (e.syscall === 'ioctl(TUNSETIFF)' && e.code === 'EBUSY') {
    hint = ` — ${r.ifname} in ${what} is already in use by another process (another usernet daemon?)`;
  } else if (e.syscall === 'ioctl(TUNSETIFF)' && e.code === 'EPERM') {
    hint = ` — no right to create or attach ${r.ifname} in ${what}`;
  } else if (e.code === 'ENOENT' && e.syscall?.startsWith('open(/proc')) {
    hint = ` — ${what} no longer exists`;
  }
  // The addon prefixes its own context ("tapOpen(pid N): "); say it in the user's terms.
  const detail = (e.message ?? String(err)).replace(/^tapOpen\([^)]*\): /, '');
  const message = `cannot open ${r.ifname} in ${what}: ${detail}${hint}`;
  if (typeof e.code === 'string' && typeof e.errno === 'number') return new SystemError(e.code, e.errno, e.syscall ?? '', message);
  if (typeof e.code === 'string') return new UsernetError(e.code, message);
  return err instanceof Error ? err : new Error(String(err));
}
