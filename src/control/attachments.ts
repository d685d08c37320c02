/**
 * Attachments: a container's TAP, opened (or created) inside its namespaces, made persistent,
 * plugged into its network's switch, watched, and recorded in the state file.
 *
 * Because the TAP is persistent, the container keeps its interface, addresses and routes while
 * the daemon is down; on start every recorded container whose network namespace is still the
 * same one (dev + inode) is re-attached, and the others are dropped.
 *
 * A container's end is an event: a pidfd for `--pid`, and for `--netns PATH` a check every second
 * that the path still names the same namespace (the TAP fd keeps the namespace alive, so nothing
 * else would ever tell). Detaching, or the container's end, clears the persistent flag and closes
 * the fd, so the device goes away with the namespace and no fd is left behind.
 */
import { closeSync, existsSync } from 'node:fs';
import type { Logger } from 'pino';
import { ConflictError, errnoError, InvalidArgumentError, NotFoundError, UsernetError } from '../errors.js';
import { snapshotCounters } from '../link/counters.js';
import { PortKind, type Port } from '../link/port.js';
import { TapPort } from '../link/tap-port.js';
import { native, type TapOpenOptions, type WatchHandle } from '../native/addon.js';
import { ipv4ToString, parseIpv4 } from '../packet/ip-address.js';
import { macFromBytes, macToBytes, macToString, parseMac } from '../packet/mac.js';
import { HOLD_ATTACHMENT } from '../gateway/address-pool.js';
import { DEFAULT_NETWORK, GATEWAY_PORT_NAME, type Network } from '../gateway/network.js';
import type { Nat } from '../nat/nat.js';
import { formatMapping, type PortMapping } from '../nat/publish-spec.js';
import { CaptureSession } from './capture.js';
import type { Networks } from './networks.js';
import type { AttachResult, PortInfo } from './protocol.js';
import type { PublishedPorts } from './published.js';
import type { StateRecorder } from './records.js';
import { explainTapError, namespaceIdentity, netnsPathOf, processStartTime, sameIdentity, statError } from './namespaces.js';
import type { AttachmentRecord, DaemonState } from './state.js';

/** At most one internal-error log line per port per this many ms. */
const INTERNAL_ERROR_LOG_INTERVAL = 10_000;

export class Attachment {
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

/** An attach request, its parameters checked (see api-methods.ts): what to attach, where, how. */
export interface AttachRequest {
  net: Network;
  pid?: number;
  netnsPath?: string;
  usernsPath?: string;
  ifname: string;
  name?: string;
  mac?: number;
  mtu: number;
  configure: boolean;
  offload?: boolean;
  /** The address asked for, as given (for messages) and parsed. */
  ipText?: string;
  wantedIp?: number;
  /** false: the attachment holds no address (the container configures itself, or asks DHCP). */
  holdsAddress: boolean;
  /** The process the attachment lasts as long as (a usernet-slirp4netns joined here). */
  owner?: { pid: number; start: number };
  /** Ports to publish, parsed. */
  mappings: PortMapping[];
}

export interface AttachmentsOptions {
  log: Logger;
  nat: Nat;
  networks: Networks;
  published: PublishedPorts;
  records: StateRecorder;
  /** Use virtio-net headers with offloads unless an attachment says otherwise. */
  offloads: boolean;
  /** TAPs are not made persistent and nothing is recorded (the slirp4netns front end). */
  ephemeral: boolean;
  /** How often `--netns PATH` attachments are checked. */
  netnsCheckIntervalMs: number;
}

export class Attachments {
  private readonly byName = new Map<string, Attachment>();
  private readonly log: Logger;
  private readonly nat: Nat;
  private readonly networks: Networks;
  private readonly published: PublishedPorts;
  private readonly records: StateRecorder;
  private netnsTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** Called once a container's port has been removed because the container went away. */
  onContainerGone: ((name: string, why: string) => void) | null = null;

  constructor(private readonly config: AttachmentsOptions) {
    this.log = config.log;
    this.nat = config.nat;
    this.networks = config.networks;
    this.published = config.published;
    this.records = config.records;
  }

  get size(): number {
    return this.byName.size;
  }

  /** How many recorded attachments are down (their TAP could not be opened). */
  get down(): number {
    return [...this.byName.values()].filter((a) => !a.port).length;
  }

  get(name: string): Attachment | undefined {
    return this.byName.get(name);
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  values(): IterableIterator<Attachment> {
    return this.byName.values();
  }

  /** Every attachment's record, for the state file. */
  allRecords(): AttachmentRecord[] {
    return [...this.byName.values()].map((a) => a.record);
  }

  /** The names of the ports attached to a network. */
  namesOn(network: string): string[] {
    return [...this.byName.values()].filter((a) => a.record.network === network).map((a) => a.record.name);
  }

  /** The port on a network whose recorded MAC is `mac`, or null. */
  nameOf(network: string, mac: number): string | null {
    return [...this.byName.values()].find((a) => a.record.network === network && parseMac(a.record.mac) === mac)?.record.name ?? null;
  }

  /** Starts checking `--netns PATH` attachments' paths (every netnsCheckIntervalMs). */
  startNamespacePolling(): void {
    this.netnsTimer = setInterval(() => this.checkNamespaces(), this.config.netnsCheckIntervalMs);
    this.netnsTimer.unref();
  }

  /**
   * Stops checking `--netns PATH` attachments' paths (a sandboxed process no longer sees them);
   * such a container's end is then noticed only through its TAP or its owner.
   */
  stopNamespacePolling(): void {
    if (this.netnsTimer) clearInterval(this.netnsTimer);
    this.netnsTimer = null;
  }

  /** The daemon is stopping: a container's end is no longer acted on, and nothing is polled. */
  beginStop(): void {
    this.stopped = true;
    if (this.netnsTimer) clearInterval(this.netnsTimer);
  }

  /** Closes every TAP fd without clearing persistence: the next daemon re-attaches them. */
  async closeAll(): Promise<void> {
    await Promise.all([...this.byName.values()].map((a) => this.release(a, false)));
  }

  /** Attaches a container (parameters checked by the API method). */
  async attach(req: AttachRequest): Promise<AttachResult> {
    const { net, pid, netnsPath, usernsPath, ifname, mac, mtu, configure, offload, ipText, wantedIp, holdsAddress, owner, mappings } = req;
    let name = req.name;
    // Port specs are checked before anything is opened.
    this.published.checkFree(mappings);

    // The container must exist now, and be a network namespace.
    let nsPath: string;
    if (pid !== undefined) {
      if (!existsSync(`/proc/${pid}`)) throw new NotFoundError(`no process with PID ${pid}`, 'ERR_NO_SUCH_PROCESS');
      nsPath = `/proc/${pid}/ns/net`;
    } else {
      nsPath = netnsPath as string;
      const code = statError(nsPath);
      if (code === 'EACCES' || code === 'EPERM') {
        throw errnoError('EACCES', 'stat', `permission denied on ${nsPath}: the namespace belongs to another user`);
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
        throw errnoError('EACCES', 'stat', `permission denied on the network namespace of ${what}: the container belongs to another user`);
      }
      throw new NotFoundError(`cannot read the network namespace of ${what}`, 'ERR_NO_SUCH_NAMESPACE');
    }
    if (sameIdentity(namespaceIdentity('/proc/self/ns/net'), identity)) {
      throw new InvalidArgumentError('that is the daemon\'s own network namespace, not a container\'s');
    }

    if (name === GATEWAY_PORT_NAME) throw new ConflictError(`the port name ${name} is reserved for each network's gateway port: choose another --name`, 'ERR_NAME_RESERVED');
    if (name !== undefined && this.byName.has(name)) throw new ConflictError(`a port named ${name} already exists`, 'ERR_NAME_IN_USE');
    for (const a of this.byName.values()) {
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
      if (ip < 0) throw new ConflictError(`network ${net.name} has no free address left in its range`, 'ERR_NO_FREE_ADDRESS');
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
        const holder = [...this.byName.values()].find((x) => x.record.network === net.name && x.record.ip === ipv4ToString(found));
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
    this.byName.set(name, a);
    if (owner) this.watchOwner(a);
    if (mappings.length > 0) {
      try {
        const opened = await this.published.open(a, mappings);
        record.ports = opened.map((x) => ({ ...x.mapping }));
      } catch (err) {
        // Nothing half-applied: the attachment goes again.
        this.byName.delete(name);
        if (ip >= 0) net.pool.release(chosenMac, HOLD_ATTACHMENT);
        await this.release(a, record.ownsDevice);
        throw err;
      }
    }
    try {
      this.records.commit(this.records.snapshot());
    } catch (err) {
      // Nothing half-applied: without a record the attachment would be lost on restart.
      this.byName.delete(name);
      await this.published.removeAll(name, 'attach failed');
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
    const a = this.byName.get(name);
    if (!a && name === GATEWAY_PORT_NAME) throw new ConflictError('gateway is the network\'s own port (ARP, ping, DHCP, DNS and the NAT): it cannot be detached', 'ERR_GATEWAY_PORT');
    if (!a) throw new NotFoundError(`no port named ${name} (see usernet ports)`, 'ERR_NO_SUCH_PORT');
    // Recorded first: if the write fails, the port stays attached, listed and recorded.
    this.records.commit(this.records.snapshot({ drop: name }));
    this.byName.delete(name);
    this.releaseAddress(a);
    await this.published.removeAll(name, 'detached');
    await this.release(a, a.record.ownsDevice !== false);
    this.log.info({ port: name }, 'detached');
  }

  listPorts(): PortInfo[] {
    const out: PortInfo[] = [];
    for (const net of this.networks.byName.values()) {
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
    for (const a of this.byName.values()) {
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


  /**
   * A port that is up, by name: an attachment's, or — for `gateway` — the gateway port of
   * `network` (default: the default network). `network` with another name must be its network.
   */
  livePort(name: string, network: string | undefined): Port {
    if (name === GATEWAY_PORT_NAME) return this.networks.get(network ?? DEFAULT_NETWORK).gateway;
    const a = this.byName.get(name);
    if (!a) throw new NotFoundError(`no port named ${name} (see usernet ports)`, 'ERR_NO_SUCH_PORT');
    if (network !== undefined && (a.record.network ?? DEFAULT_NETWORK) !== network) {
      throw new NotFoundError(`port ${name} is on network ${a.record.network ?? DEFAULT_NETWORK}, not ${network}`, 'ERR_NO_SUCH_PORT');
    }
    if (!a.port) throw new UsernetError('ERR_PORT_DOWN', `port ${name} is down: ${a.error ?? 'not attached'}`);
    return a.port;
  }

  private freeName(): string {
    for (let i = 1; ; i++) if (!this.byName.has(`c${i}`)) return `c${i}`;
  }

  /**
   * Opens the TAP for an attachment and plugs it in. On re-attach the existing (persistent)
   * interface is only attached; if it has disappeared it is created and configured again.
   * Returns whether the interface existed.
   */
  private open(a: Attachment, reattach: boolean): boolean {
    const r = a.record;
    const net = this.networks.get(r.network ?? DEFAULT_NETWORK);
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
      // Pings to the gateway are answered in the reader, without waking JS (tap-port.ts).
      port.answerGatewayEcho(net.gateway.echoTarget);
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
  resetOrphanFlows(): void {
    if (this.config.ephemeral) return;
    for (const a of this.byName.values()) {
      const r = a.record;
      const net = this.networks.byName.get(r.network ?? DEFAULT_NETWORK);
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
    const net = this.networks.byName.get(a.record.network ?? DEFAULT_NETWORK);
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
    const a = this.byName.get(name);
    if (!a || this.stopped) return;
    this.byName.delete(name);
    this.releaseAddress(a);
    this.records.trySave();
    await this.published.removeAll(name, 'container gone');
    await this.release(a, a.record.ownsDevice !== false);
    this.log.info({ port: name, reason: why }, 'container gone: port removed');
    this.onContainerGone?.(name, why);
  }

  private checkNamespaces(): void {
    for (const a of [...this.byName.values()]) {
      const r = a.record;
      if (r.netnsPath === undefined) continue;
      if (!sameIdentity(namespaceIdentity(r.netnsPath), r.netns)) {
        void this.containerGone(r.name, `${r.netnsPath} no longer names the attached network namespace`);
      }
    }
  }

  reattachAll(state: DaemonState): void {
    let dropped = 0;
    for (const record of state.attachments) {
      if (this.byName.has(record.name)) continue;
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
      const net = this.networks.byName.get(record.network);
      if (!net) {
        a.error = `its network ${record.network} does not exist`;
        this.byName.set(record.name, a);
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
      this.byName.set(record.name, a);
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
    if (dropped) this.records.commit(this.records.snapshot());
  }
}
