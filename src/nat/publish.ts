/**
 * Published ports (DNAT): host ports that lead to container ports, as `docker run -p` does with
 * its DNAT rules — but through host sockets, rootless, and showing the container the client's
 * real address.
 *
 *   TCP  a net.Server listens on HOST_IP:HOST_PORT. Each accepted client becomes a flow that the
 *        NAT opens towards the container itself (TcpNat.acceptInbound): a SYN *from the client's
 *        address and port*, so the container's getpeername() is the real client; then the same
 *        endpoint, backpressure and offloads as outbound NAT.
 *   UDP  a native datagram socket (IP_PKTINFO: it knows which host address each datagram was
 *        sent to, and answers from it) or, for an IPv6 host address, a node:dgram socket. One
 *        flow per client endpoint; the container's replies go back to that client.
 *
 * Who the container sees. The client's own IPv4 address and port, when the container can route
 * back to it through the gateway. A client it could not answer — one on the host's loopback
 * (127.0.0.1 means the container itself there), an IPv6 client, or an address inside a usernet
 * network — is shown as the network's gateway address instead, with a port of its own. Hairpin
 * needs nothing special: a container that connects to the host's address and published port
 * goes out through the NAT's host socket, that socket is the listener's client, and the target
 * container sees the host's external address as the source (RFC 4787 REQ-9).
 *
 * Conntrack. Every published flow is a DNAT entry (inbound): original = client → the host address
 * and port it connected to, reply = container address:port → the address and port the container
 * sees, as `conntrack -L` shows a kernel DNAT. The container's packets find their flow through
 * the reply tuple (Nat.route looks it up before anything else).
 *
 * Lifecycle. publish() is all or nothing: every listener of a request opens, or none stays open
 * and the error names the port that failed. unpublish() closes the listeners and resets their
 * open flows (clients and container both get a RST). restore() (a daemon restart) opens what it
 * can and keeps retrying the rest every few seconds, listing them as down meanwhile.
 */
import { readFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import type { Logger } from 'pino';
import { ConflictError, SystemError, UsernetError } from '../errors.js';
import type { GatewayPort } from '../gateway/gateway.js';
import { ipv4ToString, tryParseIpv4 } from '../packet/ip-address.js';
import { systemClock, type Clock, type Timer } from '../platform/clock.js';
import {
  systemHostStack,
  type HostDatagramSocket,
  type HostRemoteInfo,
  type HostStack,
  type HostTcpServer,
  type HostTcpSocket,
  type NatDatagramReceiver,
  type NatDatagramSocket,
} from '../platform/host-stack.js';
import { systemRandom, type Random } from '../platform/random.js';
import { RemovalReason } from './reasons.js';
import { Conntrack, DIR_ORIGINAL, DIR_REPLY, PROTO_TCP, PROTO_UDP, isRefusal, type ConntrackEntry } from './conntrack.js';
import { formatHostAddress, formatMapping, mappingsClash, type PortMapping } from './publish-spec.js';
import type { TcpNat, TcpNatFlow } from './tcp-nat.js';

/** A listener that could not be opened again after a restart is retried this often. */
export const RETRY_INTERVAL_MS = 5000;
/** Ports tried for a client shown as the gateway before its flow is refused. */
const SHOWN_PORT_TRIES = 64;
const EPHEMERAL_FIRST = 32768;
const EPHEMERAL_COUNT = 61000 - 32768;

/** The container a mapping leads to. */
export interface PublishTarget {
  /** The attachment's name (messages, listings). */
  name: string;
  network: string;
  gw: GatewayPort;
  containerIp: number;
  /** Conntrack's per-container key ("network/ip"): the container's flows go with it. */
  container: string;
}

export interface PublishedPortStats {
  /** TCP connections accepted / UDP client flows started. */
  flows: number;
  /** Flows refused: conntrack full, or no address to show the client as. */
  refused: number;
  datagramsIn: number;
  datagramsOut: number;
  sendErrors: number;
}

/** One published port: a mapping, its target, and its listener (or why it has none). */
export class PublishedPort {
  server: HostTcpServer | null = null;
  /** An IPv4 UDP port's socket (IP_PKTINFO: it answers from the address each client wrote to). */
  udp4: NatDatagramSocket | null = null;
  udp6: HostDatagramSocket | null = null;
  /** Listening, or down with `error` (a restart that could not bind it yet). */
  listening = false;
  error: string | null = null;
  closed = false;
  retryTimer: Timer | null = null;
  /** UDP client flows by client endpoint: addr * 65536 + port (IPv4), "addr|port" (IPv6). */
  readonly udpFlows = new Map<number | string, InboundUdpFlow>();
  readonly stats: PublishedPortStats = { flows: 0, refused: 0, datagramsIn: 0, datagramsOut: 0, sendErrors: 0 };
  constructor(
    /** hostPort is the real port once listening (a request for 0 gets one). */
    public mapping: PortMapping,
    readonly target: PublishTarget,
  ) {}

  get family(): 4 | 6 {
    return this.mapping.hostIp.includes(':') ? 6 : 4;
  }

  /** What JSON.stringify shows: the mapping, where it leads, its state and counters (not its sockets). */
  toJSON(): { mapping: PortMapping; target: { name: string; network: string; container: string }; listening: boolean; error: string | null; stats: PublishedPortStats } {
    const t = this.target;
    return { mapping: this.mapping, target: { name: t.name, network: t.network, container: t.container }, listening: this.listening, error: this.error, stats: this.stats };
  }
}

/** A UDP client of a published port. */
export class InboundUdpFlow {
  entry: ConntrackEntry | null = null;
  constructor(
    readonly port: PublishedPort,
    readonly key: number | string,
    /** IPv4 client (0 for IPv6) and the host address it wrote to (0: unknown). */
    readonly clientAddr: number,
    readonly clientText: string | null,
    readonly clientPort: number,
    readonly localAddr: number,
    readonly shownIp: number,
    readonly shownPort: number,
  ) {}
}

export interface PublisherStats {
  listeners: number;
  tcpAccepted: number;
  udpFlows: number;
  refused: number;
  shownAsGateway: number;
  acceptErrors: number;
}

export class Publisher {
  readonly stats: PublisherStats = { listeners: 0, tcpAccepted: 0, udpFlows: 0, refused: 0, shownAsGateway: 0, acceptErrors: 0 };
  private readonly ports = new Set<PublishedPort>();
  private lastRefusalLog = -Infinity;
  private lastAcceptErrorLog = -Infinity;

  constructor(
    private readonly ct: Conntrack,
    private readonly tcp: TcpNat,
    private readonly log: Logger,
    /** Whether the container can be shown (and route back to) this IPv4 client address. */
    private readonly showable: (addr: number) => boolean,
    private readonly clock: Clock = systemClock,
    private readonly random: Random = systemRandom,
    private readonly host: HostStack = systemHostStack,
  ) {}

  /** Every published port, listening or down. */
  list(): PublishedPort[] {
    return [...this.ports];
  }

  /** The published ports leading to an attachment. */
  portsOf(name: string): PublishedPort[] {
    return [...this.ports].filter((p) => p.target.name === name);
  }

  /** A published port (of anyone) that `m` would clash with, or undefined. */
  clashWith(m: PortMapping): PublishedPort | undefined {
    for (const p of this.ports) if (mappingsClash(p.mapping, m)) return p;
    return undefined;
  }

  /**
   * Opens a listener for every mapping, or none: on the first failure those already open are
   * closed and the error (naming the port and the cause) is thrown.
   */
  async publish(target: PublishTarget, mappings: PortMapping[]): Promise<PublishedPort[]> {
    for (let i = 0; i < mappings.length; i++) {
      const m = mappings[i] as PortMapping;
      const other = this.clashWith(m);
      if (other) {
        throw new ConflictError(
          `cannot publish ${formatMapping(m)}: ${formatHostAddress(other.mapping)}/${other.mapping.proto} is already published to ${other.target.name} port ${other.mapping.containerPort}`,
          'ERR_PORT_PUBLISHED',
        );
      }
      for (let j = 0; j < i; j++) {
        if (mappingsClash(mappings[j] as PortMapping, m)) throw new ConflictError(`cannot publish ${formatMapping(m)} twice in one request`, 'ERR_PORT_PUBLISHED');
      }
    }
    const opened: PublishedPort[] = [];
    try {
      for (const m of mappings) {
        const p = new PublishedPort({ ...m }, target);
        if (m.hostPortEnd === undefined) await this.listen(p);
        else await this.listenInRange(p, m, mappings);
        this.ports.add(p);
        opened.push(p);
      }
    } catch (err) {
      await Promise.all(opened.map((p) => this.unpublish(p, RemovalReason.PublishFailed)));
      throw err;
    }
    for (const p of opened) this.log.info({ port: target.name, mapping: formatMapping(p.mapping), container: `${ipv4ToString(target.containerIp)}:${p.mapping.containerPort}` }, 'port published');
    return opened;
  }

  /**
   * One free port of the mapping's host range (Docker's `-p 8099-8100:80`): the ports are tried
   * in order, skipping those published already (by anyone, or by another mapping of this
   * request) and those the host refuses as in use or privileged; the first that binds is kept.
   */
  private async listenInRange(p: PublishedPort, m: PortMapping, request: readonly PortMapping[]): Promise<void> {
    const end = m.hostPortEnd as number;
    let refused: Error | null = null;
    for (let port = m.hostPort; port <= end; port++) {
      const candidate: PortMapping = { proto: m.proto, hostIp: m.hostIp, hostPort: port, containerPort: m.containerPort };
      if (this.clashWith(candidate) || request.some((r) => r !== m && mappingsClash(r, candidate))) continue;
      p.mapping = candidate;
      try {
        await this.listen(p);
        return;
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code !== 'EADDRINUSE' && code !== 'EACCES' && code !== 'EPERM') throw err;
        refused = err as Error;
      }
    }
    p.mapping = { ...m };
    const why = refused ? ` (${(refused as { code?: string }).code})` : '';
    throw new SystemError('EADDRINUSE', 98, 'listen', `cannot publish ${formatMapping(m)}: no port of ${m.hostPort}-${end} is free on ${m.hostIp}/${m.proto}${why}`);
  }

  /**
   * Re-opens recorded mappings after a restart: what cannot be bound now is kept, listed as down
   * with its error, and retried every RETRY_INTERVAL_MS until it binds or is removed.
   */
  async restore(target: PublishTarget, mappings: PortMapping[]): Promise<PublishedPort[]> {
    const out: PublishedPort[] = [];
    for (const m of mappings) {
      const p = new PublishedPort({ ...m }, target);
      this.ports.add(p);
      out.push(p);
      try {
        await this.listen(p);
        this.log.info({ port: target.name, mapping: formatMapping(p.mapping) }, 'published port restored');
      } catch (err) {
        this.down(p, err as Error);
      }
    }
    return out;
  }

  private down(p: PublishedPort, err: Error): void {
    p.error = err.message;
    this.log.error({ port: p.target.name, mapping: formatMapping(p.mapping), err: err.message }, `published port cannot listen: retrying every ${RETRY_INTERVAL_MS / 1000} s`);
    const retry = (): void => {
      p.retryTimer = null;
      if (p.closed) return;
      this.listen(p).then(
        () => {
          p.error = null;
          this.log.info({ port: p.target.name, mapping: formatMapping(p.mapping) }, 'published port listening again');
        },
        (e: Error) => {
          p.error = e.message;
          if (!p.closed) p.retryTimer = this.clock.setTimeout(retry, RETRY_INTERVAL_MS);
        },
      );
    };
    p.retryTimer = this.clock.setTimeout(retry, RETRY_INTERVAL_MS);
  }

  /** Closes a published port's listener and resets its open flows. Resolves once the port is free. */
  async unpublish(p: PublishedPort, reason: string = RemovalReason.Unpublished): Promise<void> {
    if (p.closed) return;
    p.closed = true;
    this.ports.delete(p);
    this.clock.clear(p.retryTimer);
    p.retryTimer = null;
    const flows = this.ct.removeWhere((e) => e.inbound && flowPort(e) === p, reason);
    const closing: Array<Promise<void>> = [];
    if (p.server) {
      const s = p.server;
      p.server = null;
      // The listening socket is closed now; the callback waits for accepted sockets, all reset above.
      closing.push(new Promise<void>((resolve) => s.close(() => resolve())));
    }
    if (p.udp4) {
      const u = p.udp4;
      p.udp4 = null;
      closing.push(new Promise<void>((resolve) => u.close(resolve)));
    }
    if (p.udp6) {
      const s = p.udp6;
      p.udp6 = null;
      closing.push(new Promise<void>((resolve) => s.close(() => resolve())));
    }
    if (p.listening) this.stats.listeners--;
    p.listening = false;
    await Promise.all(closing);
    if (reason !== RemovalReason.PublishFailed) this.log.info({ port: p.target.name, mapping: formatMapping(p.mapping), flows, reason }, 'port unpublished');
  }

  /** Closes every published port of an attachment (it detached, or its container ended). */
  async removeTarget(name: string, reason: string): Promise<void> {
    await Promise.all(this.portsOf(name).map((p) => this.unpublish(p, reason)));
  }

  async close(): Promise<void> {
    await Promise.all([...this.ports].map((p) => this.unpublish(p, RemovalReason.DaemonStopping)));
  }

  // ------------------------------------------------------------------------------------------
  // Listeners
  // ------------------------------------------------------------------------------------------

  private async listen(p: PublishedPort): Promise<void> {
    const m = p.mapping;
    if (m.proto === 'tcp') await this.listenTcp(p);
    else if (p.family === 4) this.listenUdp4(p);
    else await this.listenUdp6(p);
    p.listening = true;
    this.stats.listeners++;
  }

  private listenTcp(p: PublishedPort): Promise<void> {
    const m = p.mapping;
    // Paused until the container has answered: nothing is read from a client before that.
    const server = this.host.createTcpServer({ pauseOnConnect: true, allowHalfOpen: true, noDelay: true });
    return new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        server.close();
        reject(listenError(m, err));
      };
      server.once('error', onError);
      server.listen({ host: m.hostIp, port: m.hostPort, exclusive: true, ...(m.hostIp === '::' ? { ipv6Only: true } : {}) }, () => {
        server.off('error', onError);
        if (p.closed) {
          server.close();
          reject(new UsernetError('ERR_PORT_UNPUBLISHED', `${formatMapping(m)} was unpublished while opening`));
          return;
        }
        const addr = server.address();
        if (addr && typeof addr === 'object') p.mapping = { ...m, hostPort: addr.port };
        server.on('error', (err: NodeJS.ErrnoException) => this.acceptError(p, err));
        server.on('connection', (socket: HostTcpSocket) => this.accepted(p, socket));
        p.server = server;
        resolve();
      });
    });
  }

  private listenUdp4(p: PublishedPort): void {
    const m = p.mapping;
    let opened: NatDatagramSocket;
    const receiver: NatDatagramReceiver = {
      datagram: (data, off, len, src, sport, dst) => this.udp4Datagram(p, data, off, len, src, sport, dst),
      failed: (errno) => this.udp4Failed(p, errno),
    };
    try {
      opened = this.host.openNatDatagram({ kind: 'udp', bindAddress: tryParseIpv4(m.hostIp), bindPort: m.hostPort, recvErr: false, pktinfo: true }, receiver);
    } catch (err) {
      throw listenError(m, err as NodeJS.ErrnoException);
    }
    p.udp4 = opened;
    p.mapping = { ...m, hostPort: opened.port };
  }

  private listenUdp6(p: PublishedPort): Promise<void> {
    const m = p.mapping;
    const s = this.host.createDatagramSocket({ type: 'udp6', ipv6Only: true });
    return new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        s.close();
        reject(listenError(m, err));
      };
      s.once('error', onError);
      s.bind({ address: m.hostIp, port: m.hostPort, exclusive: true }, () => {
        s.off('error', onError);
        p.mapping = { ...m, hostPort: s.address().port };
        s.on('error', (err: NodeJS.ErrnoException) => this.acceptError(p, err));
        s.on('message', (msg: Buffer, rinfo: HostRemoteInfo) => this.udp6Message(p, msg, rinfo));
        s.unref();
        p.udp6 = s;
        resolve();
      });
    });
  }

  private acceptError(p: PublishedPort, err: NodeJS.ErrnoException): void {
    this.stats.acceptErrors++;
    const now = this.clock.now();
    if (now - this.lastAcceptErrorLog < 10_000) return;
    this.lastAcceptErrorLog = now;
    this.log.error({ mapping: formatMapping(p.mapping), err: err.message }, 'error on a published port (it keeps listening; logged at most every 10 s)');
  }

  // ------------------------------------------------------------------------------------------
  // Who the container sees
  // ------------------------------------------------------------------------------------------

  /**
   * The address and port the container is shown for a client: the client itself if it can be
   * routed back to and the tuple is free, else the gateway with a free port. Null when none is
   * free (the flow is refused).
   */
  private chooseShown(proto: number, t: PublishTarget, cPort: number, client: number, clientPort: number): [number, number] | null {
    if (client > 0 && this.showable(client) && this.tupleFree(proto, t, cPort, client, clientPort)) return [client, clientPort];
    this.stats.shownAsGateway++;
    const gw = t.gw.ip;
    if (clientPort >= 1024 && this.tupleFree(proto, t, cPort, gw, clientPort)) return [gw, clientPort];
    for (let i = 0; i < SHOWN_PORT_TRIES; i++) {
      const port = EPHEMERAL_FIRST + this.random.below(EPHEMERAL_COUNT);
      if (this.tupleFree(proto, t, cPort, gw, port)) return [gw, port];
    }
    return null;
  }

  /** No live flow of the container uses (container:cPort ↔ ip:port), in either direction. */
  private tupleFree(proto: number, t: PublishTarget, cPort: number, ip: number, port: number): boolean {
    const now = this.ct.now();
    const r = this.ct.findReply(proto, t.containerIp, cPort, ip, port);
    if (r !== undefined && r.expiresAt > now) return false;
    const o = this.ct.findOriginal(proto, t.containerIp, cPort, ip, port);
    return o === undefined || o.expiresAt <= now;
  }

  private refused(p: PublishedPort, why: string): void {
    p.stats.refused++;
    this.stats.refused++;
    const now = this.clock.now();
    if (now - this.lastRefusalLog < 10_000) return;
    this.lastRefusalLog = now;
    this.log.warn({ mapping: formatMapping(p.mapping), why }, 'published-port flow refused (logged at most every 10 s)');
  }

  // ------------------------------------------------------------------------------------------
  // TCP
  // ------------------------------------------------------------------------------------------

  private accepted(p: PublishedPort, socket: HostTcpSocket): void {
    const ra = socket.remoteAddress;
    const rp = socket.remotePort;
    const la = socket.localAddress;
    const lp = socket.localPort;
    if (p.closed || ra === undefined || rp === undefined || la === undefined || lp === undefined) {
      socket.destroy();
      return;
    }
    this.stats.tcpAccepted++;
    p.stats.flows++;
    const t = p.target;
    const client = v4Of(ra);
    const local = v4Of(la);
    const shown = this.chooseShown(PROTO_TCP, t, p.mapping.containerPort, client, rp);
    if (shown === null) {
      this.refused(p, 'no free port to show the client as');
      socket.resetAndDestroy();
      return;
    }
    const ok = this.tcp.acceptInbound(
      socket,
      t.gw,
      t.containerIp,
      p.mapping.containerPort,
      shown[0],
      shown[1],
      t.container,
      {
        src: Math.max(client, 0),
        sport: rp,
        dst: Math.max(local, 0),
        dport: lp,
        ...(client < 0 ? { srcText: ra } : {}),
        ...(local < 0 ? { dstText: la } : {}),
      },
      p,
    );
    if (!ok) this.refused(p, 'conntrack full');
  }

  // ------------------------------------------------------------------------------------------
  // UDP
  // ------------------------------------------------------------------------------------------

  /** The published UDP port's socket failed for good (EBADF...): the port is down until re-published. */
  private udp4Failed(p: PublishedPort, errno: number): void {
    this.log.error({ mapping: formatMapping(p.mapping), errno }, 'published UDP port stopped reading');
    p.udp4 = null;
    if (p.listening) this.stats.listeners--;
    p.listening = false;
    p.error = `reading failed (errno ${-errno})`;
  }

  /** A datagram from client src:sport to the published port (sent to `dst`, 0 if unknown). */
  private udp4Datagram(p: PublishedPort, data: Uint8Array, off: number, len: number, src: number, sport: number, dst: number): void {
    const key = src * 65536 + sport;
    let f: InboundUdpFlow | null | undefined = p.udpFlows.get(key);
    if (f === undefined) {
      f = this.newUdpFlow(p, key, src, null, sport, dst !== 0 ? dst : tryParseIpv4(p.mapping.hostIp));
      if (f === null) return;
    }
    this.toContainer(p, f, data.subarray(off, off + len));
  }

  private udp6Message(p: PublishedPort, msg: Buffer, rinfo: HostRemoteInfo): void {
    if (p.closed) return;
    const key = `${rinfo.address}|${rinfo.port}`;
    let f: InboundUdpFlow | null | undefined = p.udpFlows.get(key);
    if (f === undefined) {
      const v4 = v4Of(rinfo.address);
      f = this.newUdpFlow(p, key, Math.max(v4, 0), v4 < 0 ? rinfo.address : null, rinfo.port, 0);
      if (f === null) return;
    }
    this.toContainer(p, f, msg);
  }

  private newUdpFlow(p: PublishedPort, key: number | string, client: number, clientText: string | null, clientPort: number, local: number): InboundUdpFlow | null {
    const t = p.target;
    const shown = this.chooseShown(PROTO_UDP, t, p.mapping.containerPort, clientText === null ? client : -1, clientPort);
    if (shown === null) {
      this.refused(p, 'no free port to show the client as');
      return null;
    }
    const f = new InboundUdpFlow(p, key, client, clientText, clientPort, local, shown[0], shown[1]);
    const added = this.ct.add({
      proto: PROTO_UDP,
      inbound: true,
      origSrc: client,
      origSport: clientPort,
      origDst: local,
      origDport: p.mapping.hostPort,
      ...(clientText !== null ? { origSrcText: clientText, origDstText: p.mapping.hostIp } : {}),
      replySrc: t.containerIp,
      replySport: p.mapping.containerPort,
      replyDst: shown[0],
      replyDport: shown[1],
      container: t.container,
      owner: f,
    });
    if (isRefusal(added)) {
      this.refused(p, `conntrack: ${added.refused}`);
      return null;
    }
    f.entry = added;
    p.udpFlows.set(key, f);
    p.stats.flows++;
    this.stats.udpFlows++;
    return f;
  }

  private toContainer(p: PublishedPort, f: InboundUdpFlow, payload: Uint8Array): void {
    const e = f.entry;
    if (e === null) return;
    this.ct.touch(e, DIR_ORIGINAL, payload.length);
    p.stats.datagramsIn++;
    const t = p.target;
    t.gw.sendUdp(t.gw.neighbourMac(t.containerIp), t.containerIp, f.shownIp, f.shownPort, p.mapping.containerPort, payload);
  }

  /** A datagram from the container on a published UDP flow (found by Nat.route): to its client. */
  udpFromContainer(e: ConntrackEntry, buf: Uint8Array, off: number, len: number): void {
    const f = e.owner as InboundUdpFlow | null;
    if (f === null) return;
    const p = f.port;
    this.ct.touch(e, DIR_REPLY, len);
    p.stats.datagramsOut++;
    if (p.udp4 !== null) {
      const r = p.udp4.sendTo(buf, off, len, f.clientAddr, f.clientPort, f.localAddr);
      if (r < 0) p.stats.sendErrors++;
    } else if (p.udp6 !== null) {
      p.udp6.send(Buffer.from(buf.subarray(off, off + len)), f.clientPort, f.clientText ?? ipv4ToString(f.clientAddr), (err) => {
        if (err) p.stats.sendErrors++;
      });
    } else {
      p.stats.sendErrors++;
    }
  }

  /** Conntrack removed a published UDP flow (timeout, flush, unpublish, container gone). */
  udpEntryRemoved(e: ConntrackEntry): void {
    const f = e.owner as InboundUdpFlow | null;
    if (f === null || f.entry !== e) return;
    f.entry = null;
    if (f.port.udpFlows.get(f.key) === f) f.port.udpFlows.delete(f.key);
  }
}

/** The published port a DNAT entry belongs to. */
function flowPort(e: ConntrackEntry): PublishedPort | null {
  const o = e.owner;
  if (o instanceof InboundUdpFlow) return o.port;
  const m = (o as TcpNatFlow | null)?.mapping;
  return m instanceof PublishedPort ? m : null;
}

/** An IPv4 address (or IPv4-mapped IPv6) as uint32; -1 for anything else. */
function v4Of(address: string): number {
  const a = address.startsWith('::ffff:') ? address.slice(7) : address;
  return isIPv4(a) ? tryParseIpv4(a) : -1;
}

/** A listen/bind failure as one line that names the port and what to do. */
function listenError(m: PortMapping, err: NodeJS.ErrnoException): Error {
  const what = `cannot publish ${formatMapping(m)}`;
  const code = err.code ?? 'EIO';
  const v6 = m.hostIp.includes(':');
  let text: string;
  switch (code) {
    case 'EADDRINUSE':
      text = `${formatHostAddress(m)}/${m.proto} is already in use on the host`;
      break;
    case 'EACCES':
    case 'EPERM':
      text = `no permission to bind ${formatHostAddress(m)}/${m.proto}: ports below ${unprivilegedPortStart()} (net.ipv4.ip_unprivileged_port_start) need CAP_NET_BIND_SERVICE`;
      break;
    case 'EADDRNOTAVAIL':
      text = `${m.hostIp} is not an address of this host (publish on ${v6 ? '::' : '0.0.0.0'} or on an address the host has)`;
      break;
    case 'EAFNOSUPPORT':
      text = `the host has no IPv6 for ${m.hostIp}`;
      break;
    case 'EINVAL':
      // The kernel's answer for an address no socket of this kind can bind: a link-local IPv6
      // address without a zone, a multicast or broadcast address.
      text = `${m.hostIp} cannot be bound by a listening ${m.proto.toUpperCase()} socket (a link-local, multicast or broadcast address?): publish on ${v6 ? '::' : '0.0.0.0'} or on a unicast address of the host`;
      break;
    default:
      text = err.message;
  }
  return new SystemError(code, typeof err.errno === 'number' ? Math.abs(err.errno) : 0, err.syscall ?? 'listen', `${what}: ${text} (${code})`);
}

function unprivilegedPortStart(): string {
  try {
    return readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8').trim() || '1024';
  } catch {
    return '1024';
  }
}
