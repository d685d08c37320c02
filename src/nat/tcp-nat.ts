/**
 * TCP through the NAT: each container connection is a TcpFlow (the container-facing endpoint)
 * joined to a host `net.Socket` (the real TCP, done by the host kernel), with a conntrack entry.
 *
 *   container SYN ──▶ conntrack entry (SYN_SENT) + net.connect(destination)
 *        host 'connect' ──▶ SYN-ACK to the container      'error' ──▶ RST / ICMP unreachable
 *   container data ──▶ socket.write()          socket 'data' ──▶ GSO segments to the container
 *   FIN / RST either way ──▶ end() / resetAndDestroy()  or  FIN / RST to the container
 *
 * A reset never overtakes data, in either direction, as through the kernel. A host socket is
 * reset (resetWhenSent) only once Node's write queue is empty and the kernel's send queue has
 * been acknowledged by the peer (SIOCOUTQ, polled every few ms through the addon), bounded by
 * RESET_DRAIN_MS; a reset socket's kernel would otherwise discard what the peer has not yet
 * received. Towards the container, TcpFlow sends the host's reset after the data queued before it.
 *
 * Segments to the container are built as one frame each, up to 64 KiB, with a virtio-net header
 * (GSO TCPv4, gso_size = the container's MSS, partial checksum): the container's TAP takes them
 * whole, and for a port without offloads the switch segments them in software.
 */
import { constants as os } from 'node:os';
import type { Logger } from 'pino';
import type { GatewayPort } from '../gateway/gateway.js';
import { checksum, finish, pseudoHeaderSumV4, sum16 } from '../packet/checksum.js';
import { ETH_HLEN, ETH_P_IPV4, writeEthernetHeader } from '../packet/ethernet.js';
import { ICMP_DEST_UNREACH, ICMP_UNREACH_ADMIN_PROHIBITED, ICMP_UNREACH_HOST, ICMP_UNREACH_NET } from '../packet/icmp.js';
import { IPPROTO_TCP, IPV4_FLAG_DF, IPV4_MIN_HLEN } from '../packet/ipv4.js';
import { ipv4ToString } from '../packet/ip-address.js';
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, TcpOptions, TcpView } from '../packet/tcp.js';
import { VNET_F_NEEDS_CSUM, VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_HDR_LEN, writeVnetHeader } from '../packet/virtio-net.js';
import { ParseStatus } from '../packet/status.js';
import {
  Conntrack,
  DIR_ORIGINAL,
  DIR_REPLY,
  PROTO_TCP,
  isRefusal,
  TCP_CLOSE,
  TCP_CLOSE_WAIT,
  TCP_ESTABLISHED,
  TCP_FIN_WAIT,
  TCP_LAST_ACK,
  TCP_SYN_RECV,
  TCP_SYN_SENT,
  TCP_TIME_WAIT,
  type ConntrackEntry,
} from './conntrack.js';
import { CHUNK_SIZE, sharedChunkPool } from './chunk-pool.js';
import { IsnGenerator } from './isn.js';
import { RemovalReason, TCP_CLOSE_CONNECT_FAILED_PREFIX, TCP_CLOSE_HOST_SOCKET_PREFIX, TcpCloseReason } from './reasons.js';
import { errnoName } from '../native/addon.js';
import { systemClock, type Clock, type Timer } from '../platform/clock.js';
import { systemHostStack, type HostStack, type HostTcpSocket } from '../platform/host-stack.js';
import { systemRandom, type Random } from '../platform/random.js';
import { FLOW_CLOSED, FLOW_CONNECTING, FLOW_ESTABLISHED, FLOW_TIME_WAIT, MAX_SEGMENT_PAYLOAD, RESET_DRAIN_MS, TcpFlow, type TcpFlowHost, type TcpFlowWire } from './tcp-flow.js';

/**
 * Where every outbound flow's host socket reads land, after room for the headers of the segment
 * that may carry them to the container: [virtio-net | Ethernet | IPv4 | TCP (20) | payload].
 * A read is copied into the flow's send queue (kept until the container acknowledges it); when it
 * leaves at once as one segment — the flow had nothing unsent and the container's window takes it
 * all, the common case of a download — the segment is built around it here, so its payload is not
 * copied a second time (see segment()). Each read is used up before the next one lands.
 */
const READ_HEADROOM = VNET_HDR_LEN + ETH_HLEN + IPV4_MIN_HLEN + 20;
const READ_FRAME = Buffer.allocUnsafeSlow(READ_HEADROOM + CHUNK_SIZE);
const READ_FRAME_DV = new DataView(READ_FRAME.buffer, READ_FRAME.byteOffset, READ_FRAME.length);

/**
 * How much one read of a flow's host socket may take: whole segments of the container's MSS
 * that fit one GSO frame. A read of 64 KiB at MSS 65480 (MTU 65520) would leave as a full
 * segment and a 56-byte one, two frames and two receives in the container for every read.
 */
export function readSizeForMss(mss: number): number {
  const most = Math.min(CHUNK_SIZE, MAX_SEGMENT_PAYLOAD);
  if (!(mss > 0) || mss >= most) return most;
  return Math.floor(most / mss) * mss;
}

/** A flow's view of READ_FRAME's payload room: where its host socket reads land. */
function readBufferForMss(mss: number): Buffer {
  return READ_FRAME.subarray(READ_HEADROOM, READ_HEADROOM + readSizeForMss(mss));
}

/**
 * Resets `s` (SO_LINGER 0, then close: RST). While its end() is still shutting down libuv refuses
 * that (EINVAL, and the socket would stay open), so it is closed instead: the kernel sends what
 * it still holds and a FIN, or a RST if received data is left unread.
 */
function hardReset(s: HostTcpSocket): void {
  if (s.writableEnded && !s.writableFinished) s.destroy();
  else s.resetAndDestroy();
}

/** A published-port socket reads through onread after a read this big, or this many reads. */
const ADOPT_READ_BYTES = 32 * 1024;
const ADOPT_AFTER_READS = 64;

/** How long a host connect may take before the container gets "host unreachable". */
export const CONNECT_TIMEOUT_MS = 30_000;
const TIMER_INTERVAL_MS = 50;
/** How often a host socket waiting to be reset is asked whether its peer has everything. */
const RESET_POLL_MS = 5;
/** Host connects that fail (other than a refusal) are logged at warn at most this often. */
export const CONNECT_FAILURE_LOG_MS = 10_000;
/** A finished flow's socket still writing gives up after this long without progress. */
const LINGER_IDLE_MS = 60_000;
const OUT_SIZE = 65536 + 256;
/** The MSS we advertise: the gateway port takes frames up to 64 KiB. */
const OUR_MSS = 65495 - 40;

const STATE_BY_NAME: Record<string, number> = {
  SYN_SENT: TCP_SYN_SENT,
  SYN_RECV: TCP_SYN_RECV,
  ESTABLISHED: TCP_ESTABLISHED,
  FIN_WAIT: TCP_FIN_WAIT,
  CLOSE_WAIT: TCP_CLOSE_WAIT,
  LAST_ACK: TCP_LAST_ACK,
  TIME_WAIT: TCP_TIME_WAIT,
  CLOSE: TCP_CLOSE,
};

const EMPTY = Buffer.alloc(0);

/** A published port's conntrack original tuple: the host-side client → the host's address and port. */
export interface InboundOriginal {
  src: number;
  sport: number;
  dst: number;
  dport: number;
  /** IPv6 addresses as text (src/dst then 0). */
  srcText?: string;
  dstText?: string;
}

/** Where a container's connection goes on the host, and how it looks to the container. */
export interface TcpTarget {
  /** Host-side destination. */
  host: string;
  port: number;
  /** Local address for the host socket (--outbound-addr), or undefined. */
  localAddress?: string;
}

export interface TcpNatStats {
  syns: number;
  connected: number;
  refused: number;
  unreachable: number;
  timeouts: number;
  resetsToContainer: number;
  resetsToHost: number;
  /** Host sockets reset at RESET_DRAIN_MS with bytes their peer had not acknowledged. */
  resetDrainTimeoutsToHost: number;
  /** Resets sent to a container at RESET_DRAIN_MS with host data it had not acknowledged. */
  resetDrainTimeoutsToContainer: number;
  limitRefusals: number;
  fdExhausted: number;
  unknownFlowResets: number;
  /** Connections a container still held after a daemon restart, probed so that they reset. */
  orphansProbed: number;
  badSegments: number;
  /** Published ports: connections accepted on the host, answered by the container, refused by it, unanswered. */
  inboundAccepted: number;
  inboundEstablished: number;
  inboundRefused: number;
  inboundUnanswered: number;
  /** Data segments to containers built around the host read they carry (payload not copied out of the send queue). */
  segmentsBuiltInReadFrame: number;
  /** Published-port connections switched to reading with onread (after a big read or many; the rest read with 'data' events). */
  inboundReadWithOnread: number;
}

/** One NAT'ed TCP connection. */
export class TcpNatFlow implements TcpFlowHost {
  socket: HostTcpSocket | null = null;
  flow!: TcpFlow;
  entry: ConntrackEntry | null = null;
  connectTimer: Timer | null = null;
  ipId = 0;
  /** The published mapping an inbound flow came through (null: an outbound flow). */
  mapping: unknown = null;
  /** Where an outbound flow's host socket connects (for the log line of a failed connect). */
  target: TcpTarget | null = null;
  /** Where its host socket's reads land (READ_FRAME, sized for the container's MSS once known). */
  readBuffer = readBufferForMss(-1);
  /** A published-port flow: reads that came as 'data' events, and whether onread was tried. */
  dataReads = 0;
  adoptTried = false;
  constructor(
    /** Resets this flow's host socket once its peer has what was written to it. */
    readonly resetter: HostResetter,
    readonly gw: GatewayPort,
    /** -1 until known (a published port's first SYN goes out through the gateway's ARP). */
    public containerMac: number,
    readonly containerIp: number,
    readonly containerPort: number,
    /** The destination as the container sees it (replies come from there). */
    readonly remoteIp: number,
    readonly remotePort: number,
    /** The container's SYN, quoted in ICMP errors about it (IP header + 8 bytes). */
    readonly synQuote: Buffer,
  ) {}

  write(data: Uint8Array, off: number, len: number): boolean {
    const s = this.socket;
    if (!s) return false;
    // Straight from the lent buffer into the kernel when nothing is queued in Node before us
    // (same bytes, same order, one copy less); whatever the kernel does not take right now goes
    // the ordinary way. Any error other than EAGAIN is left for Node's write to report.
    if (s.writableLength === 0 && !s.destroyed) {
      const n = this.resetter.host.tcpWriteDirect(s, data, off, len);
      if (n === len) return true;
      if (n > 0) {
        off += n;
        len -= n;
      }
    }
    let ok = true;
    // Copied into pooled chunks, each given back when its write has reached the kernel.
    while (len > 0) {
      const chunk = sharedChunkPool.take();
      const n = Math.min(len, CHUNK_SIZE);
      chunk.set(data.subarray(off, off + n), 0);
      ok = s.write(chunk.subarray(0, n), () => sharedChunkPool.give(chunk));
      off += n;
      len -= n;
    }
    return ok;
  }
  end(): void {
    this.socket?.end();
  }
  /** Resets the host socket once its peer has acknowledged every byte written to it. */
  reset(): void {
    const s = this.socket;
    this.socket = null;
    if (s && !s.destroyed) this.resetter.resetWhenSent(s);
  }
  /** Resets the host socket now, discarding what it still holds (the daemon is stopping). */
  resetNow(): void {
    const s = this.socket;
    this.socket = null;
    if (s && !s.destroyed) hardReset(s);
  }
  pause(): void {
    this.socket?.pause();
  }
  resume(): void {
    this.socket?.resume();
  }
  get writableLength(): number {
    return this.socket ? this.socket.writableLength : 0;
  }
}

/** Where new TCP connections of a network go on the host (the NAT's routing, per network). */
export interface TcpTargetSource {
  /**
   * The host end for a connection to `remoteIp` (as the container addressed it), `hostDst` as the
   * NAT translated it; `dv`/`tcpOff`: the SYN's TCP header. Null: refused (reset).
   */
  tcpTarget(remoteIp: number, hostDst: number, dv: DataView, tcpOff: number): TcpTarget | null;
}

/** Where a TcpNatFlow's host socket goes to be reset (TcpNat). */
export interface HostResetter {
  /** The host stack the flow's socket belongs to (for its direct writes). */
  readonly host: HostStack;
  resetWhenSent(socket: HostTcpSocket): void;
}

export class TcpNat implements TcpFlowWire, HostResetter {
  readonly stats: TcpNatStats = {
    syns: 0,
    connected: 0,
    refused: 0,
    unreachable: 0,
    timeouts: 0,
    resetsToContainer: 0,
    resetsToHost: 0,
    resetDrainTimeoutsToHost: 0,
    resetDrainTimeoutsToContainer: 0,
    limitRefusals: 0,
    fdExhausted: 0,
    unknownFlowResets: 0,
    orphansProbed: 0,
    badSegments: 0,
    inboundAccepted: 0,
    inboundEstablished: 0,
    inboundRefused: 0,
    inboundUnanswered: 0,
    segmentsBuiltInReadFrame: 0,
    inboundReadWithOnread: 0,
  };
  private readonly tcp = new TcpView();
  private readonly opts = new TcpOptions();
  private readonly out = Buffer.allocUnsafeSlow(OUT_SIZE);
  private readonly outDv = new DataView(this.out.buffer, this.out.byteOffset, OUT_SIZE);
  private readonly flows = new Set<TcpNatFlow>();
  /**
   * The read just landed in READ_FRAME while hostRead() hands it to its flow: the flow, and where
   * the bytes sit in its send queue (offset from the first unacknowledged byte, length). A
   * segment of exactly those bytes is built around them (segment()). Null outside hostRead().
   */
  private readFrameFlow: TcpFlow | null = null;
  private readFrameOffset = 0;
  private readFrameLength = 0;
  /** Sockets of finished flows still writing the container's last bytes. */
  private readonly lingering = new Set<HostTcpSocket>();
  /** Host sockets to be reset once their peer has acknowledged what they hold, with their deadlines. */
  private readonly resetting = new Map<HostTcpSocket, number>();
  private resetTimer: Timer | null = null;
  /** RFC 6528 ISNs on the NAT's clock (see isn.ts: why not random), keyed by the NAT's random source. */
  private readonly isn: IsnGenerator;
  private timer: Timer | null = null;
  private lastFdLog = -Infinity;
  private lastConnectFailureLog = -Infinity;
  private connectFailuresNotLogged = 0;

  constructor(
    private readonly ct: Conntrack,
    private readonly log: Logger,
    private readonly clock: Clock = systemClock,
    private readonly random: Random = systemRandom,
    readonly host: HostStack = systemHostStack,
  ) {
    this.isn = new IsnGenerator({ clockMs: () => clock.now(), random });
  }

  /**
   * A TCP segment from a container to `remoteIp:remotePort` (as the container addressed it),
   * carried on the host to `target` (null: no such route; the segment is answered with a reset).
   * `seg` covers the TCP header and payload inside `buf`.
   */
  segmentFromContainer(
    gw: GatewayPort,
    buf: Uint8Array,
    dv: DataView,
    ipOff: number,
    tcpOff: number,
    tcpLen: number,
    containerMac: number,
    containerIp: number,
    remoteIp: number,
    hostDst: number,
    targets: TcpTargetSource,
    network: string,
  ): void {
    const t = this.tcp;
    if (t.bind(dv, tcpOff, tcpLen) !== ParseStatus.OK) {
      this.stats.badSegments++;
      return;
    }
    const flags = t.flags;
    // Nonsense flag combinations are dropped before they touch any state.
    if ((flags & (TCP_SYN | TCP_FIN)) === (TCP_SYN | TCP_FIN) || (flags & (TCP_SYN | TCP_RST)) === (TCP_SYN | TCP_RST) || (flags & 0x3f) === 0) {
      this.stats.badSegments++;
      return;
    }
    const sport = t.srcPort;
    const dport = t.dstPort;
    const now = this.clock.now();
    let entry = this.ct.findOriginal(PROTO_TCP, containerIp, sport, remoteIp, dport);
    let nf = entry ? (entry.owner as TcpNatFlow | null) : null;
    if (entry && nf && nf.flow.state === FLOW_TIME_WAIT && (flags & TCP_SYN) !== 0 && (flags & TCP_ACK) === 0) {
      // A new connection on the tuple of one in TIME_WAIT replaces it.
      this.ct.remove(entry, RemovalReason.Replaced);
      entry = undefined;
      nf = null;
    }
    if (!entry || !nf) {
      if ((flags & TCP_SYN) === 0 || (flags & TCP_ACK) !== 0) {
        // Not the start of a connection and no flow (a daemon restart, say): reset at once.
        if ((flags & TCP_RST) === 0) {
          this.stats.unknownFlowResets++;
          const len = t.payloadLength + ((flags & TCP_FIN) !== 0 ? 1 : 0);
          if ((flags & TCP_ACK) !== 0) this.sendRawRst(gw, containerMac, remoteIp, containerIp, dport, sport, t.ack, 0, TCP_RST);
          else this.sendRawRst(gw, containerMac, remoteIp, containerIp, dport, sport, 0, (t.seq + len) >>> 0, TCP_RST | TCP_ACK);
        }
        return;
      }
      this.newConnection(gw, buf, dv, ipOff, containerMac, containerIp, sport, remoteIp, dport, targets.tcpTarget(remoteIp, hostDst, dv, tcpOff), `${network}/${ipv4ToString(containerIp)}`, now);
      return;
    }
    this.ct.touch(entry, DIR_ORIGINAL, tcpLen);
    nf.flow.segment(flags, t.seq, t.ack, t.window, buf, t.payloadOffset, t.payloadLength, now);
  }

  private newConnection(
    gw: GatewayPort,
    buf: Uint8Array,
    dv: DataView,
    ipOff: number,
    cMac: number,
    cIp: number,
    cPort: number,
    rIp: number,
    rPort: number,
    target: TcpTarget | null,
    container: string,
    now: number,
  ): void {
    const t = this.tcp;
    this.stats.syns++;
    const ihl = (buf[ipOff] & 15) * 4;
    const quote = Buffer.from(buf.subarray(ipOff, ipOff + Math.min(ihl + 8, dv.getUint16(ipOff + 2))));
    if (target === null) {
      this.stats.refused++;
      this.sendRawRst(gw, cMac, rIp, cIp, rPort, cPort, 0, (t.seq + 1) >>> 0, TCP_RST | TCP_ACK);
      return;
    }
    t.readOptions(this.opts);
    const nf = new TcpNatFlow(this, gw, cMac, cIp, cPort, rIp, rPort, quote);
    const added = this.ct.add({
      proto: PROTO_TCP,
      origSrc: cIp,
      origSport: cPort,
      origDst: rIp,
      origDport: rPort,
      replySrc: ipToNumber(target.host) || rIp,
      replySport: target.port,
      replyDst: 0,
      replyDport: 0,
      container,
      owner: nf,
      state: TCP_SYN_SENT,
    });
    if (!('id' in added)) {
      this.stats.limitRefusals++;
      this.log.warn({ container, reason: added.refused }, 'conntrack full: new TCP connection refused (reset)');
      this.sendRawRst(gw, cMac, rIp, cIp, rPort, cPort, 0, (t.seq + 1) >>> 0, TCP_RST | TCP_ACK);
      return;
    }
    nf.entry = added;
    nf.target = target;
    nf.flow = new TcpFlow(nf, this, { seq: t.seq, window: t.window, mss: this.opts.mss, wscale: this.opts.windowScale }, this.isn.next(rIp, rPort, cIp, cPort), now);
    this.flows.add(nf);
    this.ensureTimer();
    let socket: HostTcpSocket;
    try {
      socket = this.host.createTcpConnection({
        host: target.host,
        port: target.port,
        allowHalfOpen: true,
        noDelay: true,
        // Reads land in one buffer for all flows (READ_FRAME), copied into the flow's send queue.
        onread: { buffer: (nf.readBuffer = readBufferForMss(nf.flow.mss)), callback: (n, buf) => this.hostRead(nf, DIR_REPLY, buf, n) },
        ...(target.localAddress ? { localAddress: target.localAddress } : {}),
      });
    } catch (err) {
      this.connectFailed(nf, err as NodeJS.ErrnoException);
      return;
    }
    nf.socket = socket;
    nf.connectTimer = this.clock.setTimeout(() => {
      nf.connectTimer = null;
      this.stats.timeouts++;
      this.connectFailed(nf, Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' }));
    }, CONNECT_TIMEOUT_MS);
    socket.once('connect', () => {
      this.clock.clear(nf.connectTimer);
      nf.connectTimer = null;
      this.stats.connected++;
      if (nf.entry) this.ct.setReply(nf.entry, ipToNumber(socket.localAddress), socket.localPort ?? 0);
      nf.flow.hostConnected(this.clock.now());
    });
    this.wireSocket(nf, socket, DIR_REPLY);
  }

  /**
   * A published port's connection: `socket` was accepted on the host; the flow towards the
   * container starts with our SYN from `shownIp:shownPort` (the client as the container sees
   * it). `original` is the conntrack original tuple (client → host address and port). False
   * when conntrack refuses the flow (the client is reset).
   */
  acceptInbound(
    socket: HostTcpSocket,
    gw: GatewayPort,
    containerIp: number,
    containerPort: number,
    shownIp: number,
    shownPort: number,
    container: string,
    original: InboundOriginal,
    mapping: unknown,
  ): boolean {
    this.stats.inboundAccepted++;
    const nf = new TcpNatFlow(this, gw, gw.neighbourMac(containerIp), containerIp, containerPort, shownIp, shownPort, EMPTY);
    nf.mapping = mapping;
    const added = this.ct.add({
      proto: PROTO_TCP,
      inbound: true,
      origSrc: original.src,
      origSport: original.sport,
      origDst: original.dst,
      origDport: original.dport,
      ...(original.srcText !== undefined ? { origSrcText: original.srcText } : {}),
      ...(original.dstText !== undefined ? { origDstText: original.dstText } : {}),
      replySrc: containerIp,
      replySport: containerPort,
      replyDst: shownIp,
      replyDport: shownPort,
      container,
      owner: nf,
      state: TCP_SYN_SENT,
    });
    if (isRefusal(added)) {
      this.stats.limitRefusals++;
      this.log.warn({ container, reason: added.refused }, 'conntrack full: published-port connection refused (client reset)');
      socket.resetAndDestroy();
      return false;
    }
    nf.entry = added;
    nf.socket = socket;
    // A server hands out sockets without onread: reads come as 'data' Buffers (a fresh one per
    // read) until the connection shows it is more than a request or two — a big read, or many —
    // and then the socket is re-wrapped to read like an outbound one (adoptWithOnread). Not at
    // once: a new net.Socket costs ~40 µs, a fifth of a short connection's whole cost here.
    socket.on('data', (data: Buffer) => {
      if (nf.socket !== socket) return;
      this.hostRead(nf, DIR_ORIGINAL, data, data.length);
      if ((data.length >= ADOPT_READ_BYTES || ++nf.dataReads >= ADOPT_AFTER_READS) && !nf.adoptTried && nf.socket === socket) this.adoptWithOnread(nf, socket);
    });
    this.wireSocket(nf, socket, DIR_ORIGINAL);
    this.flows.add(nf);
    this.ensureTimer();
    // Last: the SYN goes out from here, and may be answered synchronously by a MemoryPort.
    nf.flow = TcpFlow.activeOpen(nf, this, this.isn.next(shownIp, shownPort, containerIp, containerPort), this.clock.now());
    return true;
  }

  /**
   * A published-port flow's socket, reading with 'data' events, replaced by one reading through
   * onread into READ_FRAME (HostStack.tcpAdoptWithOnread), in the same paused or flowing state.
   * Once per flow; when it cannot be done (bytes buffered, a write in progress, EMFILE) the flow
   * goes on with 'data' events. The old socket's listeners stay, and ignore it from now on.
   */
  private adoptWithOnread(nf: TcpNatFlow, socket: HostTcpSocket): void {
    nf.adoptTried = true;
    const adopted = this.host.tcpAdoptWithOnread(socket, { buffer: () => nf.readBuffer, callback: (n, buf) => this.hostRead(nf, DIR_ORIGINAL, buf, n) });
    if (adopted === null) return;
    this.stats.inboundReadWithOnread++;
    if (adopted === socket) return; // (the same object, now reading through onread: MemoryOutside)
    nf.socket = adopted;
    this.wireSocket(nf, adopted, DIR_ORIGINAL);
  }

  /** `n` bytes read from a flow's host socket into `buf` (lent: copied into the flow's queue). */
  private hostRead(nf: TcpNatFlow, hostDir: number, buf: Uint8Array, n: number): boolean {
    if (nf.entry) {
      this.ct.touch(nf.entry, hostDir, n);
      if (hostDir === DIR_REPLY) this.ct.markReply(nf.entry);
    }
    const flow = nf.flow;
    if (buf.buffer === READ_FRAME.buffer && buf.byteOffset === READ_FRAME.byteOffset + READ_HEADROOM) {
      this.readFrameFlow = flow;
      this.readFrameOffset = flow.queued;
      this.readFrameLength = n;
    }
    try {
      flow.hostData(buf, 0, n, this.clock.now());
    } finally {
      this.readFrameFlow = null;
    }
    return true; // (the flow pauses the socket itself when its queue is full)
  }

  /** The host socket's events, for both directions of flow. `hostDir`: its packets' conntrack direction. */
  private wireSocket(nf: TcpNatFlow, socket: HostTcpSocket, hostDir: number): void {
    // A socket replaced by adoptWithOnread() has no say any more (its close is not the flow's).
    const replaced = (): boolean => nf.socket !== socket && nf.socket !== null;
    socket.on('end', () => {
      if (replaced()) return;
      // libuv ends the stream when POLLHUP follows a short read, without reading the error: a
      // reset that arrives with the peer's last bytes looks like a FIN here. The kernel knows
      // (SO_ERROR); the container must get the reset, not an end of stream.
      const pending = this.host.tcpPendingError(socket);
      if (pending <= 0) {
        nf.flow.hostEnd(this.clock.now());
        return;
      }
      // EPIPE: the reset came after the peer's FIN, which the container gets first.
      if (pending === os.errno.EPIPE) nf.flow.hostEnd(this.clock.now());
      if (nf.socket === socket) nf.socket = null;
      socket.destroy();
      nf.flow.hostReset(this.clock.now(), `${TCP_CLOSE_HOST_SOCKET_PREFIX}${errnoName(-pending)}`);
    });
    socket.on('drain', () => {
      if (!replaced()) nf.flow.hostDrain(this.clock.now());
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (replaced()) return;
      if (nf.flow.state === FLOW_CONNECTING) this.connectFailed(nf, err);
      else {
        // (The RST this sends is counted in resetsToContainer by segment().)
        nf.socket = null;
        nf.flow.hostReset(this.clock.now(), `${TCP_CLOSE_HOST_SOCKET_PREFIX}${err.code ?? err.message}`);
      }
    });
    socket.on('close', () => {
      if (replaced()) return;
      if (nf.socket === socket) nf.socket = null;
      // A socket that closed without an error after both sides finished is a normal end; one
      // that closed otherwise (destroyed under us) resets the container's side.
      if (nf.flow.state !== FLOW_CLOSED && nf.flow.state !== FLOW_TIME_WAIT && !(nf.flow.hostEnded && nf.flow.containerFin)) {
        nf.flow.hostReset(this.clock.now(), TcpCloseReason.HostSocketClosed);
      }
    });
  }

  /**
   * A segment from the container on a published port's flow (found by the NAT through the
   * entry's reply tuple). `ethSrc` is where the container is now.
   */
  segmentForInbound(e: ConntrackEntry, buf: Uint8Array, dv: DataView, tcpOff: number, tcpLen: number, ethSrc: number): void {
    const nf = e.owner as TcpNatFlow | null;
    const t = this.tcp;
    if (!nf || t.bind(dv, tcpOff, tcpLen) !== ParseStatus.OK) {
      this.stats.badSegments++;
      return;
    }
    nf.containerMac = ethSrc;
    const flags = t.flags;
    if ((flags & TCP_SYN) !== 0) {
      t.readOptions(this.opts);
      nf.flow.peerSyn(this.opts.mss, this.opts.windowScale);
    }
    this.ct.touch(e, DIR_REPLY, tcpLen);
    nf.flow.segment(flags, t.seq, t.ack, t.window, buf, t.payloadOffset, t.payloadLength, this.clock.now());
  }

  /** The host connect failed: RST for a refusal, ICMP unreachable for no route or a timeout. */
  private connectFailed(nf: TcpNatFlow, err: NodeJS.ErrnoException): void {
    this.clock.clear(nf.connectTimer);
    nf.connectTimer = null;
    const s = nf.socket;
    nf.socket = null;
    if (s && !s.destroyed) s.destroy();
    if (nf.flow.state !== FLOW_CONNECTING) return;
    const code = err.code ?? '';
    const gw = nf.gw;
    if (code === 'EMFILE' || code === 'ENFILE') {
      this.stats.fdExhausted++;
      const now = this.clock.now();
      if (now - this.lastFdLog > 10_000) {
        this.lastFdLog = now;
        this.log.error('out of file descriptors: new connections are refused (administratively prohibited) until some close');
      }
      gw.sendIcmpError(nf.containerMac, nf.containerIp, gw.ip, ICMP_DEST_UNREACH, ICMP_UNREACH_ADMIN_PROHIBITED, 0, nf.synQuote, nf.synQuote.length);
    } else if (code === 'ECONNREFUSED') {
      this.stats.refused++;
      this.sendRawRst(gw, nf.containerMac, nf.remoteIp, nf.containerIp, nf.remotePort, nf.containerPort, 0, (nf.flow.irs + 1) >>> 0, TCP_RST | TCP_ACK);
    } else {
      this.stats.unreachable++;
      const net = code === 'ENETUNREACH' || code === 'EINVAL' || code === 'EADDRNOTAVAIL';
      gw.sendIcmpError(nf.containerMac, nf.containerIp, gw.ip, ICMP_DEST_UNREACH, net ? ICMP_UNREACH_NET : ICMP_UNREACH_HOST, 0, nf.synQuote, nf.synQuote.length);
      this.logConnectFailure(nf, code || err.message, net ? 'network unreachable' : 'host unreachable');
    }
    nf.flow.close(`${TCP_CLOSE_CONNECT_FAILED_PREFIX}${code || err.message}`);
  }

  /**
   * A host connect failed for a reason of the host's (a refusal is the remote's answer, passed
   * on as the RST it is): one warn line at most every CONNECT_FAILURE_LOG_MS, with how many
   * failures came since the last line — never a line per connection, whatever the load.
   */
  private logConnectFailure(nf: TcpNatFlow, code: string, answer: string): void {
    const now = this.clock.now();
    if (now - this.lastConnectFailureLog < CONNECT_FAILURE_LOG_MS) {
      this.connectFailuresNotLogged++;
      return;
    }
    this.lastConnectFailureLog = now;
    const notLogged = this.connectFailuresNotLogged;
    this.connectFailuresNotLogged = 0;
    const t = nf.target;
    this.log.warn(
      {
        code,
        container: `${ipv4ToString(nf.containerIp)}:${nf.containerPort}`,
        destination: t ? `${t.host}:${t.port}` : `${ipv4ToString(nf.remoteIp)}:${nf.remotePort}`,
        ...(t?.localAddress ? { outboundAddr: t.localAddress } : {}),
        notLogged,
      },
      `a TCP connect from the host failed (${code}): the container got ICMP ${answer}; one line per ${CONNECT_FAILURE_LOG_MS / 1000} s at most, notLogged counts the failures since the last one`,
    );
  }

  // ------------------------------------------------------------------------------------------
  // TcpFlowWire: frames towards the container
  // ------------------------------------------------------------------------------------------

  segment(flow: TcpFlow, flags: number, seq: number, ack: number, window: number, payloadOffset: number, payloadLength: number, synOptions: boolean): void {
    const nf = flow.host as TcpNatFlow;
    if ((flags & TCP_RST) !== 0) this.stats.resetsToContainer++;
    const optLen = synOptions ? (flow.rcvWscale > 0 ? 8 : 4) : 0;
    const tcpHl = 20 + optLen;
    const total = IPV4_MIN_HLEN + tcpHl + payloadLength;
    // Built where it leaves from: while the switch is forwarding (an ACK, or data the container's
    // window let out, in answer to its segment), in room at the end of the switch's egress queue,
    // so the payload is copied once, from the send queue, and never again; otherwise in the
    // gateway's buffer, forwarded at once. A SYN to a container not heard from yet goes through
    // ARP (sendIpv4), from our own buffer.
    let o: Buffer;
    let dv: DataView;
    let base: number;
    // The payload is the host read that just landed in READ_FRAME, whole (its queue offset and
    // length), and the frame leaves at once (the switch is idle): the headers go in front of it
    // there instead of copying it out of the send queue. Once only: what the container may
    // answer meanwhile moves the queue's offsets.
    const inReadFrame = flow === this.readFrameFlow && payloadOffset === this.readFrameOffset && payloadLength === this.readFrameLength &&
      payloadLength !== 0 && tcpHl === 20 && nf.containerMac >= 0 && !nf.gw.switchForwarding;
    if (inReadFrame) {
      this.readFrameFlow = null;
      this.stats.segmentsBuiltInReadFrame++;
      o = READ_FRAME;
      dv = READ_FRAME_DV;
      base = 0;
    } else if (nf.containerMac >= 0) {
      const place = nf.gw.outputPlace(VNET_HDR_LEN + ETH_HLEN + total);
      o = place.buf;
      dv = place.dv;
      base = place.off;
    } else {
      o = this.out;
      dv = this.outDv;
      base = 0;
    }
    const eth = base + VNET_HDR_LEN;
    const ip = eth + ETH_HLEN;
    const tcp = ip + IPV4_MIN_HLEN;
    const gso = payloadLength > flow.mss;
    writeVnetHeader(dv, base, VNET_F_NEEDS_CSUM, gso ? VNET_GSO_TCPV4 : VNET_GSO_NONE, ETH_HLEN + IPV4_MIN_HLEN + tcpHl, gso ? flow.mss : 0, ETH_HLEN + IPV4_MIN_HLEN, 16);
    writeEthernetHeader(dv, eth, nf.containerMac < 0 ? 0 : nf.containerMac, nf.gw.mac, ETH_P_IPV4);
    dv.setUint8(ip, 0x45);
    dv.setUint8(ip + 1, 0);
    dv.setUint16(ip + 2, total);
    nf.ipId = (nf.ipId + 1) & 0xffff;
    dv.setUint16(ip + 4, nf.ipId);
    dv.setUint16(ip + 6, IPV4_FLAG_DF);
    dv.setUint8(ip + 8, 64);
    dv.setUint8(ip + 9, IPPROTO_TCP);
    dv.setUint16(ip + 10, 0);
    dv.setUint32(ip + 12, nf.remoteIp);
    dv.setUint32(ip + 16, nf.containerIp);
    dv.setUint16(ip + 10, checksum(dv, ip, IPV4_MIN_HLEN));
    dv.setUint16(tcp, nf.remotePort);
    dv.setUint16(tcp + 2, nf.containerPort);
    dv.setUint32(tcp + 4, seq >>> 0);
    dv.setUint32(tcp + 8, (flags & TCP_ACK) !== 0 ? ack >>> 0 : 0);
    dv.setUint8(tcp + 12, (tcpHl / 4) << 4);
    dv.setUint8(tcp + 13, flags);
    dv.setUint16(tcp + 14, window);
    dv.setUint16(tcp + 18, 0);
    if (synOptions) {
      dv.setUint8(tcp + 20, 2);
      dv.setUint8(tcp + 21, 4);
      dv.setUint16(tcp + 22, OUR_MSS);
      if (flow.rcvWscale > 0) {
        dv.setUint8(tcp + 24, 1); // NOP
        dv.setUint8(tcp + 25, 3);
        dv.setUint8(tcp + 26, 3);
        dv.setUint8(tcp + 27, flow.rcvWscale);
      }
    }
    if (payloadLength > 0 && !inReadFrame) flow.copyPayload(payloadOffset, payloadLength, o, tcp + tcpHl);
    if (nf.containerMac < 0) {
      // A published port's SYN to a container not heard from yet: a plain frame with a full
      // checksum, sent once the gateway's ARP has found the container (or dropped and counted).
      dv.setUint16(tcp + 16, 0);
      dv.setUint16(tcp + 16, finish(sum16(dv, tcp, tcpHl + payloadLength, pseudoHeaderSumV4(nf.remoteIp, nf.containerIp, IPPROTO_TCP, tcpHl + payloadLength))));
      nf.gw.sendIpv4(nf.containerIp, o.subarray(eth), ETH_HLEN + total);
      return;
    }
    // Partial checksum: the pseudo-header sum; the receiving kernel (or the switch) finishes it.
    dv.setUint16(tcp + 16, pseudoHeaderSumV4(nf.remoteIp, nf.containerIp, IPPROTO_TCP, tcpHl + payloadLength));
    nf.gw.emitVnet(o, dv, base, ETH_HLEN + total);
  }

  stateChanged(flow: TcpFlow): void {
    const nf = flow.host as TcpNatFlow;
    const e = nf.entry;
    if (flow.active && e !== null && e.state === TCP_SYN_SENT) {
      if (flow.state === FLOW_ESTABLISHED) {
        this.stats.inboundEstablished++;
        nf.readBuffer = readBufferForMss(flow.mss);
      } else if (flow.closeReason === TcpCloseReason.RefusedByContainer) this.stats.inboundRefused++;
      else if (flow.closeReason === TcpCloseReason.ContainerDidNotAnswer) this.stats.inboundUnanswered++;
    }
    if (flow.state === FLOW_CLOSED) {
      if (flow.resetDrainTimedOut) this.stats.resetDrainTimeoutsToContainer++;
      this.flows.delete(nf);
      nf.reset();
      if (e) {
        nf.entry = null;
        this.ct.remove(e, flow.closeReason || TcpCloseReason.Closed);
      }
      return;
    }
    if (flow.state === FLOW_TIME_WAIT) {
      // Nothing left to carry: the socket goes, the entry stays (no socket) until it times out.
      // Bytes the container sent (and saw acknowledged) may still be queued in the socket behind
      // a slow peer: destroying it now would drop them, so it first writes them and its FIN.
      this.flows.delete(nf);
      const s = nf.socket;
      nf.socket = null;
      if (s && !s.destroyed) this.retire(s);
    }
    if (e) this.ct.setState(e, STATE_BY_NAME[flow.conntrackState()] ?? TCP_ESTABLISHED);
  }

  /** Conntrack removed the entry (timeout, flush, container gone): end the flow both ways. */
  entryRemoved(e: ConntrackEntry, reason: string): void {
    const nf = e.owner as TcpNatFlow | null;
    if (!nf || nf.entry !== e) return;
    nf.entry = null;
    this.flows.delete(nf);
    this.clock.clear(nf.connectTimer);
    nf.connectTimer = null;
    if (nf.flow && nf.flow.state !== FLOW_CLOSED && nf.flow.state !== FLOW_TIME_WAIT) {
      // The peer on the host side sees a reset (after what the container sent it); the container
      // too, at once (the entry is gone, and with it the timer a delayed reset would need),
      // unless it is gone.
      nf.reset();
      if (reason !== RemovalReason.ContainerGone) nf.flow.abort(this.clock.now(), reason);
      else nf.flow.close(reason);
    } else {
      nf.reset();
    }
  }

  /** A reset built from scratch (no flow): refused connections, unknown flows. */
  /**
   * A connection the container still holds, whose host side died with an earlier daemon (found
   * by the daemon in the container's socket table after a restart). Left alone, an idle one would
   * hang until its keepalive, if it has one. A RST must carry the container's exact receive
   * sequence number, which we do not know — so the container is made to say it: two bare ACKs
   * with sequence numbers 2^31 apart (at most one can fall in its window) make it answer with an
   * ACK carrying its SND.NXT and RCV.NXT (RFC 793, 5961), and the unknown-flow path above answers
   * that with a RST at exactly RCV.NXT, which the container accepts. The application sees
   * ECONNRESET, as it would had the NAT's host socket been reset. A connection still in SYN_SENT
   * answers the bad ACK with a RST of its own and then retries its SYN: a new flow.
   */
  resetOrphan(gw: GatewayPort, cMac: number, containerIp: number, containerPort: number, remoteIp: number, remotePort: number): void {
    this.stats.orphansProbed++;
    const seq = this.random.uint32();
    const ack = this.random.uint32();
    this.sendRawRst(gw, cMac, remoteIp, containerIp, remotePort, containerPort, seq, ack, TCP_ACK);
    this.sendRawRst(gw, cMac, remoteIp, containerIp, remotePort, containerPort, (seq + 2 ** 31) >>> 0, ack, TCP_ACK);
  }

  private sendRawRst(gw: GatewayPort, cMac: number, srcIp: number, dstIp: number, sport: number, dport: number, seq: number, ack: number, flags: number): void {
    const dv = this.outDv;
    const eth = VNET_HDR_LEN;
    const ip = eth + ETH_HLEN;
    const tcp = ip + IPV4_MIN_HLEN;
    writeVnetHeader(dv, 0, VNET_F_NEEDS_CSUM, VNET_GSO_NONE, ETH_HLEN + 40, 0, ETH_HLEN + IPV4_MIN_HLEN, 16);
    writeEthernetHeader(dv, eth, cMac, gw.mac, ETH_P_IPV4);
    dv.setUint8(ip, 0x45);
    dv.setUint8(ip + 1, 0);
    dv.setUint16(ip + 2, 40);
    dv.setUint16(ip + 4, 0);
    dv.setUint16(ip + 6, IPV4_FLAG_DF);
    dv.setUint8(ip + 8, 64);
    dv.setUint8(ip + 9, IPPROTO_TCP);
    dv.setUint16(ip + 10, 0);
    dv.setUint32(ip + 12, srcIp);
    dv.setUint32(ip + 16, dstIp);
    dv.setUint16(ip + 10, checksum(dv, ip, IPV4_MIN_HLEN));
    dv.setUint16(tcp, sport);
    dv.setUint16(tcp + 2, dport);
    dv.setUint32(tcp + 4, seq >>> 0);
    dv.setUint32(tcp + 8, ack >>> 0);
    dv.setUint8(tcp + 12, 5 << 4);
    dv.setUint8(tcp + 13, flags);
    dv.setUint16(tcp + 14, 0);
    dv.setUint16(tcp + 18, 0);
    dv.setUint16(tcp + 16, pseudoHeaderSumV4(srcIp, dstIp, IPPROTO_TCP, 20));
    this.stats.resetsToContainer++;
    gw.emitVnet(this.out, dv, 0, ETH_HLEN + 40);
  }

  /**
   * Resets `s` once the peer has acknowledged everything written to it: Node's write queue is
   * empty and the kernel's send queue (SIOCOUTQ) too. A reset makes the kernel discard that
   * queue, while through the kernel the peer would have read those bytes before the reset. At
   * RESET_DRAIN_MS (a peer that does not read) it is reset anyway, and counted. The socket keeps
   * reading meanwhile (its data goes nowhere), so a reset or close from the peer is noticed.
   */
  resetWhenSent(s: HostTcpSocket): void {
    this.stats.resetsToHost++;
    if (this.allAcknowledged(s)) {
      hardReset(s);
      return;
    }
    s.resume();
    this.resetting.set(s, this.clock.now() + RESET_DRAIN_MS);
    s.once('close', () => this.resetting.delete(s));
    if (!this.resetTimer) this.resetTimer = this.clock.setInterval(() => this.pollResets(), RESET_POLL_MS);
  }

  /** Whether the peer has every byte written to `s` (or there is no way left to know). */
  private allAcknowledged(s: HostTcpSocket): boolean {
    // An end() still in progress (the container's FIN behind queued data) counts as unsent: the
    // FIN goes with the data, and libuv refuses SO_LINGER 0 while a shutdown is pending.
    if (s.writableLength !== 0 || (s.writableEnded && !s.writableFinished)) return false;
    // Unknown (the handle is closing, the ioctl failed): nothing more can be delivered.
    return this.host.tcpUnacknowledged(s) <= 0;
  }

  private pollResets(): void {
    const now = this.clock.now();
    for (const [s, deadline] of this.resetting) {
      if (s.destroyed) {
        this.resetting.delete(s);
        continue;
      }
      const done = this.allAcknowledged(s);
      if (!done && now < deadline) continue;
      if (!done) this.stats.resetDrainTimeoutsToHost++;
      this.resetting.delete(s);
      hardReset(s);
    }
    if (this.resetting.size === 0 && this.resetTimer) {
      this.clock.clear(this.resetTimer);
      this.resetTimer = null;
    }
  }

  /** Closes a finished flow's socket once it has written what is queued (bounded by LINGER_IDLE_MS). */
  private retire(s: HostTcpSocket): void {
    if (s.writableLength === 0) {
      s.destroy();
      return;
    }
    this.lingering.add(s);
    s.once('finish', () => s.destroy());
    s.once('close', () => this.lingering.delete(s));
    s.setTimeout(LINGER_IDLE_MS, () => s.destroy());
  }

  private ensureTimer(): void {
    if (this.timer) return;
    this.timer = this.clock.setInterval(() => this.tick(), TIMER_INTERVAL_MS);
  }

  private tick(): void {
    if (this.flows.size === 0) {
      this.clock.clear(this.timer);
      this.timer = null;
      return;
    }
    const now = this.clock.now();
    for (const nf of this.flows) {
      const f = nf.flow;
      if ((f.rtoAt !== 0 && now >= f.rtoAt) || (f.persistAt !== 0 && now >= f.persistAt) || (f.resetAt !== 0 && now >= f.resetAt)) f.tick(now);
    }
  }

  /** Number of live flows (with a socket or connecting). */
  get active(): number {
    return this.flows.size;
  }

  close(): void {
    this.clock.clear(this.timer);
    this.timer = null;
    for (const nf of [...this.flows]) nf.resetNow();
    this.flows.clear();
    for (const s of [...this.lingering]) s.destroy();
    this.lingering.clear();
    this.clock.clear(this.resetTimer);
    this.resetTimer = null;
    for (const s of [...this.resetting.keys()]) if (!s.destroyed) hardReset(s);
    this.resetting.clear();
  }
}

/** A host socket's local address (IPv4, or IPv4-mapped IPv6) as uint32; 0 if unknown. */
export function ipToNumber(address: string | undefined): number {
  if (!address) return 0;
  const a = address.startsWith('::ffff:') ? address.slice(7) : address;
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(a);
  return m ? ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) >>> 0 : 0;
}

export { ipv4ToString };
