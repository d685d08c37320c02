/**
 * A whole usernet network in one process, for tests that drive it frame by frame: networks
 * (switch + gateway with DHCP and DNS), the NAT with its conntrack table, published ports, and
 * an in-memory "outside" of hosts on documentation addresses — the daemon's own data path, with
 * none of its I/O. One VirtualClock and one SeededRandom drive every timer and every choice, so
 * a run is the same every time for a seed: the same frames, the same bytes, the same pcap.
 *
 *   const lab = new Lab({ seed: 1 });
 *   const net = lab.addNetwork();                       // 10.0.2.0/24, gateway .2, DNS .3
 *   const c1 = net.addHost('c1');                       // a scripted container on a memory port
 *   lab.world.host('203.0.113.10').serveHttp(80, () => 'hello');
 *   await lab.run(c1.dhcp());
 *   const page = await lab.run(c1.httpGet('203.0.113.10', 80, '/'));
 *
 * A Lab can also use the system's clock and real host sockets (`host: 'system'`), and take TAP
 * ports (`net.attach(new TapPort(...))`): only then is the native addon loaded.
 */
import pino, { type Logger } from 'pino';
import { validateNetworkSpec } from '../control/network-spec.js';
import { DEFAULT_NETWORK, DEFAULT_SUBNET, Network, type NetworkSpec } from '../gateway/network.js';
import { parseUpstream, type Upstream } from '../gateway/upstream.js';
import { MemoryPort, type MemoryPortOptions } from '../link/memory-port.js';
import { PortKind, type Port } from '../link/port.js';
import { TapPort } from '../link/tap-port.js';
import { native } from '../native/addon.js';
import { HOLD_ATTACHMENT } from '../gateway/address-pool.js';
import { toJson, type ConntrackEntryJson } from '../nat/conntrack-format.js';
import type { ConntrackTimeouts } from '../nat/conntrack.js';
import { Nat } from '../nat/nat.js';
import { publishSpecMappings, type PortMapping } from '../nat/publish-spec.js';
import type { PublishedPort } from '../nat/publish.js';
import type { UdpFiltering } from '../nat/udp-nat.js';
import { MemoryOutside, type MemoryOutsideOptions } from '../outside/memory-outside.js';
import { type Clock, systemClock, VirtualClock } from '../platform/clock.js';
import { type HostStack, systemHostStack } from '../platform/host-stack.js';
import { type Random, SeededRandom, systemRandom } from '../platform/random.js';
import { ipv4ToString, parseIpv4, tryParseIpv4 } from '../packet/ip-address.js';
import { macFromBytes, macToString } from '../packet/mac.js';
import { InvalidArgumentError, UsernetError } from '../errors.js';
import type { FdbEntrySnapshot } from '../switch/fdb.js';
import { FrameProbe, replayCapture, type ProbeOptions, type ReplayOptions } from './probe.js';
import { Recorder, type RecorderOptions } from './recorder.js';
import { ScriptedHost, type ScriptedHostOptions } from './scripted-host.js';

/**
 * Labs not closed yet. A process that exits with one still holding timers most likely awaited a
 * lab's promise without lab.run(): nothing moves a virtual clock but the test, so the promise
 * never settled and Node ended the process silently (exit 13, or node:test's "Promise
 * resolution is still pending"). Say so.
 */
const openLabs = new Set<WeakRef<Lab>>();
process.on('beforeExit', () => {
  for (const ref of openLabs) {
    const lab = ref.deref();
    if (lab && !lab.isClosed && lab.clock instanceof VirtualClock && lab.clock.pending > 0) {
      process.emitWarning(
        `a usernet Lab is still open with ${lab.clock.pending} timers pending on its virtual clock: was a promise of the lab (dhcp(), ping(), connect(), httpGet(), publish(), replay()) awaited without lab.run()? Nothing moves a virtual clock but lab.run() and lab.advance().`,
        { code: 'USERNET_LAB_PENDING' },
      );
      return;
    }
  }
});

export interface LabOptions {
  /** Seeds the random source (default 1). Ignored when `random` is given. */
  seed?: number | string;
  /** Default: a VirtualClock (time moves only by advance() and run()). */
  clock?: Clock;
  /** Default: a SeededRandom from `seed`. */
  random?: Random;
  /**
   * The NAT's host side: 'memory' (default) an in-memory outside on the lab's clock; 'system'
   * real host sockets (loads the native addon); or any HostStack.
   */
  host?: 'memory' | 'system' | HostStack;
  /** Logs (default: silent). */
  log?: Logger;
  /** NAT settings, as the daemon's flags set them. */
  nat?: {
    udpFiltering?: UdpFiltering;
    maxEntries?: number;
    maxPerContainer?: number;
    timeoutsMs?: Partial<ConntrackTimeouts>;
    outboundAddress?: string;
  };
  /** Where the gateways forward DNS, `IP[:PORT]` (default: nowhere, every query gets SERVFAIL). */
  dnsUpstreams?: string[];
  /** The in-memory outside's behaviour (with `host: 'memory'`): latency, unreachables, the host's address. */
  outside?: Omit<MemoryOutsideOptions, 'clock' | 'random'>;
  /** The switch's FDB ageing time (default 300 s) and size (default 8192). */
  ageingTimeMs?: number;
  fdbMaxEntries?: number;
}

export interface LeaseSnapshot {
  network: string;
  mac: string;
  ip: string;
  /** 'lease' (DHCP) or 'attachment' (an address held for a port). */
  kind: string;
  /** True once the client confirmed it (REQUEST/ACK). */
  bound: boolean;
  /** Wall-clock ms (the lab's clock) when it expires; Infinity for attachments. */
  expiresAt: number;
}

/** A network inside a Lab. */
export class LabNetwork {
  constructor(
    readonly lab: Lab,
    /** The network itself: its switch (`sw`), gateway port, DHCP server and DNS forwarder. */
    readonly network: Network,
  ) {}

  get name(): string {
    return this.network.name;
  }

  /** A memory port plugged into this network's switch (frames in with inject(), out at onFrame). */
  addPort(name: string, options: Omit<MemoryPortOptions, 'name'> = {}): MemoryPort {
    this.lab.checkOpen('addPort');
    this.checkName(name);
    const port = new MemoryPort({ name, mtu: this.network.config.mtu, ...options }).plug(this.network.sw);
    this.lab.portAdded(port);
    return port;
  }

  /** A scripted container (ARP, DHCP, ping, UDP, TCP, HTTP GET) on a new memory port. */
  addHost(name: string, options: Omit<ScriptedHostOptions, 'clock' | 'random'> = {}): ScriptedHost {
    const port = this.addPort(name, { record: false, ...(options.mtu !== undefined ? { mtu: options.mtu } : {}) });
    return new ScriptedHost(port, { clock: this.lab.clock, random: this.lab.random, ...options });
  }

  /**
   * Opens a TAP in a namespace (by process or path; rootless works as for the daemon) as a port
   * of this network, configured with an address from the network and a default route via its
   * gateway unless `configure` is false. Loads the native addon (a clear error if it is not built).
   * The TAP is not persistent: it goes when the port is closed.
   */
  attachTap(options: { name: string; pid?: number; netnsPath?: string; ifname?: string; address?: string; configure?: boolean; offloads?: boolean }): TapPort {
    this.checkName(options.name);
    if ((options.pid === undefined) === (options.netnsPath === undefined)) throw new UsernetError('ERR_INVALID_ARGUMENT', 'attachTap: give pid or netnsPath (one of them)');
    const c = this.network.config;
    const configure = options.configure ?? true;
    const ip = options.address !== undefined ? parseIpv4(options.address.split('/')[0]) : configure ? this.network.pool.next(0, this.lab.clock.wallTime()) : 0;
    if (ip < 0) throw new UsernetError('ERR_INVALID_ARGUMENT', `network ${this.name} has no free address left`);
    const opened = native().tapOpen({
      ifname: options.ifname ?? 'eth0',
      ...(options.pid !== undefined ? { pid: options.pid } : { netnsPath: options.netnsPath as string }),
      vnetHdr: options.offloads ?? true,
      offload: options.offloads ?? true,
      persist: 0,
      mtu: c.mtu,
      ...(configure ? { address: ip, prefix: c.prefix, gateway: c.gateway, linkUp: true, loUp: true } : {}),
    });
    const port = new TapPort({ name: options.name, kind: PortKind.CONTAINER, fd: opened.fd, vnetHdrLen: opened.vnetHdrLen, mtu: opened.mtu, ifname: opened.ifname });
    if (ip) this.network.pool.hold(ip, macFromBytes(opened.mac), HOLD_ATTACHMENT, Infinity, true);
    port.plug(this.network.sw);
    port.answerGatewayEcho(this.network.gateway.echoTarget);
    this.lab.portAdded(port);
    return port;
  }

  /** Plugs any port in (a TapPort, a port of your own). */
  attach(port: Port): Port {
    this.checkName(port.name);
    this.network.sw.addPort(port);
    this.lab.portAdded(port);
    return port;
  }

  /** Unplugs a port and closes it. */
  async detach(port: Port): Promise<void> {
    await port.close();
    if (this.network.sw.ports.includes(port)) this.network.sw.removePort(port);
  }

  /** The switch's forwarding table, as `bridge fdb show` would list it. */
  fdb(): FdbEntrySnapshot[] {
    return this.network.sw.fdb.snapshot(this.lab.clock.now());
  }

  /** Addresses held: DHCP leases and attachments' addresses. */
  leases(): LeaseSnapshot[] {
    return this.network.pool.holdings().map((h) => ({ network: this.name, mac: macToString(h.mac), ip: ipv4ToString(h.ip), kind: h.kind, bound: h.bound, expiresAt: h.expiresAt }));
  }

  /** Publishes container ports on the host side, Docker's `-p` syntax ("8080:80", "127.0.0.1:5353:53/udp"). */
  async publish(container: string | ScriptedHost, spec: string): Promise<PublishedPort[]> {
    this.lab.checkOpen('publish');
    const ip = typeof container === 'string' ? container : container.address;
    if (!ip) throw new InvalidArgumentError(`publish ${spec}: ${typeof container === 'string' ? 'no address given' : `${container.name} has no address yet (dhcp() first, or give it one)`}`);
    if (tryParseIpv4(ip) < 0) throw new InvalidArgumentError(`publish ${spec}: "${ip}" is not an IPv4 address (give the container's address or its ScriptedHost)`);
    const containerIp = parseIpv4(ip);
    const mappings: PortMapping[] = publishSpecMappings(spec);
    return this.lab.nat.publisher.publish({ name: typeof container === 'string' ? ip : container.name, network: this.name, gw: this.network.gateway, containerIp, container: `${this.name}/${ip}` }, mappings);
  }

  private checkName(name: string): void {
    if (this.network.sw.ports.some((p) => p.name === name)) throw new UsernetError('ERR_NAME_IN_USE', `network ${this.name} already has a port named ${name}`);
  }
}

export class Lab {
  readonly clock: Clock;
  readonly random: Random;
  readonly host: HostStack;
  /** The in-memory outside (null with real host sockets). */
  readonly outside: MemoryOutside | null;
  readonly nat: Nat;
  readonly log: Logger;
  private readonly networks = new Map<string, LabNetwork>();
  private readonly recorders = new Set<Recorder>();
  private readonly recordingAll = new Set<Recorder>();
  private readonly probes = new Set<FrameProbe>();
  private readonly upstreams: Upstream[];
  private readonly options: LabOptions;
  private closed = false;
  /** How the beforeExit check finds this lab without keeping it alive. */
  private readonly ref = new WeakRef(this);

  get isClosed(): boolean {
    return this.closed;
  }

  constructor(options: LabOptions = {}) {
    this.options = options;
    const memory = options.host === undefined || options.host === 'memory';
    this.clock = options.clock ?? (options.host === 'system' ? systemClock : new VirtualClock());
    this.random = options.random ?? (options.seed === undefined && options.host === 'system' ? systemRandom : new SeededRandom(options.seed ?? 1));
    this.log = options.log ?? pino({ level: 'silent' });
    if (memory) {
      this.outside = new MemoryOutside({ ...options.outside, clock: this.clock, random: this.random });
      this.host = this.outside;
    } else {
      this.host = options.host === 'system' ? systemHostStack : (options.host as HostStack);
      this.outside = this.host instanceof MemoryOutside ? this.host : null;
    }
    this.upstreams = (options.dnsUpstreams ?? []).map((u) => parseUpstream(u));
    openLabs.add(this.ref);
    const n = options.nat ?? {};
    this.nat = new Nat({
      log: this.log,
      clock: this.clock,
      random: this.random,
      host: this.host,
      ...(n.udpFiltering ? { udpFiltering: n.udpFiltering } : {}),
      ...(n.maxEntries !== undefined ? { maxEntries: n.maxEntries } : {}),
      ...(n.maxPerContainer !== undefined ? { maxPerContainer: n.maxPerContainer } : {}),
      ...(n.timeoutsMs ? { timeoutsMs: n.timeoutsMs } : {}),
      ...(n.outboundAddress ? { outboundAddress: n.outboundAddress } : {}),
    });
  }

  /** The in-memory outside; throws if this lab uses real host sockets. */
  get world(): MemoryOutside {
    if (!this.outside) throw new InvalidArgumentError('this lab has no in-memory outside (it was made with host: \'system\' or a HostStack of its own)');
    return this.outside;
  }

  /** Adds a network (default: "default", 10.0.2.0/24, as slirp4netns and the daemon). */
  addNetwork(spec: Partial<NetworkSpec> = {}): LabNetwork {
    this.checkOpen('addNetwork');
    const full: NetworkSpec = { name: spec.name ?? (this.networks.size === 0 ? DEFAULT_NETWORK : `net${this.networks.size}`), subnet: spec.subnet ?? DEFAULT_SUBNET, ...spec } as NetworkSpec;
    const config = validateNetworkSpec(full, [...this.networks.values()].map((n) => n.network.config));
    const net = new Network(config, full, {
      log: this.log,
      ageingTimeMs: this.options.ageingTimeMs ?? 300_000,
      fdbMaxEntries: this.options.fdbMaxEntries ?? 8192,
      upstreams: () => this.upstreams,
      search: () => [],
      clock: this.clock,
      random: this.random,
      host: this.host,
    });
    this.nat.addNetworkOf(net, () => config.dnsUpstream ?? this.upstreams);
    const ln = new LabNetwork(this, net);
    this.networks.set(config.name, ln);
    return ln;
  }

  /** A network by name. */
  network(name = DEFAULT_NETWORK): LabNetwork {
    const n = this.networks.get(name);
    if (!n) throw new UsernetError('ERR_NO_SUCH_NETWORK', `the lab has no network named ${name}`);
    return n;
  }

  /** The conntrack table, as `usernet conntrack -L --json` prints it. */
  conntrack(): ConntrackEntryJson[] {
    const now = this.clock.now();
    return this.nat.ct.list().map((e) => toJson(e, now));
  }

  /**
   * Records the given ports; by default every port of every network, gateways included, and
   * every port added later (pcapng interfaces are "NETWORK/PORT" once there are two networks).
   */
  record(options: RecorderOptions & { ports?: Port[] } = {}): Recorder {
    // Every port, both ways, would record each frame twice (where it came in, where it went out):
    // a recording of everything takes each frame once, at the port it came in by.
    const rec = new Recorder(this.clock, {
      interfaceName: (p) => (this.networks.size > 1 ? `${this.networkOf(p)}/${p.name}` : p.name),
      ...(options.ports ? {} : { direction: 'rx' as const }),
      ...options,
    });
    const ports = options.ports ?? [...this.networks.values()].flatMap((n) => n.network.sw.ports);
    for (const p of ports) rec.add(p);
    this.recorders.add(rec);
    if (!options.ports) this.recordingAll.add(rec);
    return rec;
  }

  /** @internal A port joined a network: recordings of everything take it too. */
  portAdded(port: Port): void {
    for (const r of this.recordingAll) if (!r.stopped) r.add(port);
  }

  /** Watches a port: expect(), expectNothing(), waitFor(). Default: frames going out to its container. */
  probe(port: Port, options: ProbeOptions = {}): FrameProbe {
    const p = new FrameProbe(port, this.clock, options);
    this.probes.add(p);
    return p;
  }

  /** Replays a pcap or pcapng file into a memory port. */
  replay(port: MemoryPort, capture: Buffer, options: ReplayOptions = {}): Promise<number> {
    return replayCapture(port, capture, this.clock, options);
  }

  /** Moves the virtual clock on by `ms`, firing what falls due. */
  advance(ms: number): void {
    this.checkOpen('advance');
    this.virtual('advance').advance(ms);
  }

  /**
   * Runs the virtual clock until `promise` settles, one timer at a time (letting promise
   * callbacks run in between), and returns its result. Throws if it is still pending after
   * `maxMs` of virtual time, or when nothing is left to happen.
   */
  async run<T>(promise: Promise<T>, options: { maxMs?: number } = {}): Promise<T> {
    const clock = this.virtual('run');
    if (!(promise instanceof Promise)) throw new InvalidArgumentError('Lab.run takes a promise (what a scripted host, publish or replay returns)');
    let settled = false;
    const watched = promise.finally(() => {
      settled = true;
    });
    const maxMs = options.maxMs ?? 60_000;
    const end = clock.now() + maxMs;
    while (!settled) {
      for (let i = 0; i < 8 && !settled; i++) await null;
      if (settled) break;
      if (clock.nextDue > end) {
        clock.advanceTo(end);
        for (let i = 0; i < 8 && !settled; i++) await null;
        if (settled) break;
        throw new UsernetError('ERR_LAB_TIMEOUT', `still waiting after ${maxMs} ms of virtual time (${clock.pending} timers pending)`);
      }
      clock.step();
    }
    return watched;
  }

  /**
   * Stops every network, the NAT, recorders and probes. On the virtual clock it runs the clock
   * while things close (an in-memory socket closes after its latency, as a real one does later).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    openLabs.delete(this.ref);
    for (const r of this.recorders) r.stop();
    for (const p of this.probes) p.stop();
    this.nat.close();
    const closing = (async () => {
      for (const n of this.networks.values()) {
        for (const p of [...n.network.sw.ports]) if (p !== n.network.gateway) await p.close();
        await n.network.close();
      }
    })();
    if (this.clock instanceof VirtualClock) await this.run(closing, { maxMs: 60_000 });
    else await closing;
  }

  /** @internal Throws if the lab was closed. */
  checkOpen(what: string): void {
    if (this.closed) throw new UsernetError('ERR_LAB_CLOSED', `Lab.${what}: this lab was closed`);
  }

  private networkOf(port: Port): string {
    for (const n of this.networks.values()) if (n.network.sw.ports.includes(port)) return n.name;
    return '?';
  }

  private virtual(what: string): VirtualClock {
    if (!(this.clock instanceof VirtualClock)) throw new UsernetError('ERR_VIRTUAL_CLOCK_NEEDED', `Lab.${what} needs the lab's VirtualClock; this lab runs on the system clock`);
    return this.clock;
  }
}
