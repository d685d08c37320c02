/**
 * UDP through the NAT (RFC 4787):
 *
 *  - Endpoint-independent mapping: one host socket per container address:port, used for every
 *    destination, bound to the container's own port when it is free (a rootless daemon cannot
 *    bind ports below 1024: those get another port — the one deviation from REQ-3a).
 *  - Address-dependent filtering by default: a datagram reaches the container only from an
 *    address it has sent to through that mapping; `endpoint-independent` lets anyone in.
 *  - Hairpinning (REQ-9): a container that sends to a mapping's external endpoint (the host's
 *    address and the mapping's port) reaches it through the host kernel, which delivers the
 *    datagram from the sending mapping's socket to the receiving one: the receiver sees the
 *    sender's external address and port (REQ-9a), as an outside peer would. Filtering keeps the
 *    outside out, not the containers behind the same NAT: a datagram whose source port is one of
 *    our mappings, whose container has sent to exactly this external endpoint, passes the
 *    address-dependent filter (no host process can send from that port: our socket holds it).
 *    The check runs only for datagrams the filter would drop, so it costs nothing otherwise.
 *  - Each (container endpoint, remote endpoint) pair is a conntrack entry, refreshed by outbound
 *    traffic only; the mapping's socket lives as long as it has entries.
 *  - ICMP errors the host receives about our datagrams (IP_RECVERR, read by the native reader)
 *    are sent to the container as ICMP errors quoting the datagram *as the container sent it*.
 *
 * Sockets are the host stack's NAT datagram sockets (on the real host, the addon's: batched reads,
 * no allocation per datagram, the error queue; Node's dgram module has none of the three).
 */
import type { Logger } from 'pino';
import type { GatewayPort } from '../gateway/gateway.js';
import { checksum } from '../packet/checksum.js';
import { IPPROTO_UDP } from '../packet/ipv4.js';
import { SO_EE_ORIGIN_ICMP } from '../native/addon.js';
import { systemClock, type Clock } from '../platform/clock.js';
import { systemHostStack, type HostStack, type NatDatagramError, type NatDatagramReceiver, type NatDatagramSocket } from '../platform/host-stack.js';
import { Conntrack, PROTO_UDP, isRefusal, type ConntrackEntry } from './conntrack.js';

const QUOTE_MAX = 64;

export type UdpFiltering = 'address-dependent' | 'endpoint-independent';

export interface UdpNatStats {
  mappings: number;
  datagramsOut: number;
  datagramsIn: number;
  filtered: number;
  icmpErrorsTranslated: number;
  sendErrors: number;
  limitRefusals: number;
  socketFailures: number;
  portsNotPreserved: number;
  /** Datagrams from another of our mappings (hairpinned) let through the address-dependent filter. */
  hairpinned: number;
}

/** How the NAT reaches host-side addresses and shows them to the container. */
export interface UdpView {
  /** The address the container sees for a host-side source (127.0.0.1 shows as the gateway). */
  toContainerView(hostAddr: number): number;
}

class UdpMapping implements NatDatagramReceiver {
  socket: NatDatagramSocket | null = null;
  externalPort = 0;
  entries = 0;
  /** Remote addresses the container has sent to (address-dependent filtering). */
  readonly remotes = new Set<number>();
  constructor(
    readonly gw: GatewayPort,
    readonly containerMac: number,
    readonly containerIp: number,
    readonly containerPort: number,
    readonly container: string,
    readonly view: UdpView,
    private readonly nat: UdpNat,
  ) {}
  datagram(data: Uint8Array, off: number, len: number, src: number, sport: number): void {
    this.nat.datagramIn(this, data, off, len, src, sport);
  }
  error(err: NatDatagramError): void {
    this.nat.errorIn(this, err);
  }
  failed(): void {
    this.nat.mappingFailed(this);
  }
}

export class UdpNat {
  readonly stats: UdpNatStats = {
    mappings: 0,
    datagramsOut: 0,
    datagramsIn: 0,
    filtered: 0,
    icmpErrorsTranslated: 0,
    sendErrors: 0,
    limitRefusals: 0,
    socketFailures: 0,
    portsNotPreserved: 0,
    hairpinned: 0,
  };
  private readonly mappings = new Map<number, UdpMapping>();
  /** Mappings by external port (every mapping binds the same address, so ports are unique). */
  private readonly byExternalPort = new Map<number, UdpMapping>();
  private readonly quote = Buffer.alloc(20 + 8 + QUOTE_MAX);
  private readonly quoteDv = new DataView(this.quote.buffer, this.quote.byteOffset, this.quote.length);
  private lastFailureLog = -Infinity;

  constructor(
    private readonly ct: Conntrack,
    private readonly log: Logger,
    private readonly filtering: UdpFiltering,
    /** Local address for host sockets (--outbound-addr), 0 for any. */
    private readonly bindAddress: number,
    private readonly clock: Clock = systemClock,
    private readonly host: HostStack = systemHostStack,
  ) {}

  /**
   * A datagram from a container endpoint to `remoteIp` (as the container addressed it), carried
   * on the host to `hostDst` (e.g. 127.0.0.1 for the gateway address). Returns false when it
   * could not be sent (the caller counts it).
   */
  datagramFromContainer(
    gw: GatewayPort,
    containerMac: number,
    containerIp: number,
    containerPort: number,
    remoteIp: number,
    remotePort: number,
    hostDst: number,
    payload: Uint8Array,
    off: number,
    len: number,
    network: string,
    view: UdpView,
  ): boolean {
    const key = containerIp * 65536 + containerPort;
    let m: UdpMapping | null | undefined = this.mappings.get(key);
    if (!m) {
      m = this.openMapping(gw, containerMac, containerIp, containerPort, `${network}/${ipString(containerIp)}`, view);
      if (!m) return false;
    }
    let e = this.ct.findOriginal(PROTO_UDP, containerIp, containerPort, remoteIp, remotePort);
    if (!e) {
      const added = this.ct.add({
        proto: PROTO_UDP,
        origSrc: containerIp,
        origSport: containerPort,
        origDst: remoteIp,
        origDport: remotePort,
        replySrc: hostDst,
        replySport: remotePort,
        replyDst: this.bindAddress,
        replyDport: m.externalPort,
        container: m.container,
        owner: m,
      });
      if (isRefusal(added)) {
        this.stats.limitRefusals++;
        if (m.entries === 0) this.closeMapping(m);
        return false;
      }
      e = added;
      m.entries++;
    }
    m.remotes.add(hostDst);
    this.ct.touch(e, 0, len);
    this.stats.datagramsOut++;
    const r = m.socket !== null ? m.socket.sendTo(payload, off, len, hostDst, remotePort) : -9;
    if (r < 0) this.stats.sendErrors++;
    return true;
  }

  private openMapping(gw: GatewayPort, cMac: number, cIp: number, cPort: number, container: string, view: UdpView): UdpMapping | null {
    const m = new UdpMapping(gw, cMac, cIp, cPort, container, view, this);
    let opened: NatDatagramSocket;
    try {
      // Keep the container's port when the host lets us (RFC 4787 REQ-3: port preservation).
      opened = this.host.openNatDatagram({ kind: 'udp', bindAddress: this.bindAddress, bindPort: cPort }, m);
    } catch {
      try {
        opened = this.host.openNatDatagram({ kind: 'udp', bindAddress: this.bindAddress, bindPort: 0 }, m);
        this.stats.portsNotPreserved++;
      } catch (err) {
        this.stats.socketFailures++;
        const now = this.clock.now();
        if (now - this.lastFailureLog > 10_000) {
          this.lastFailureLog = now;
          this.log.error({ err: (err as Error).message }, 'cannot open a host UDP socket: datagrams dropped (logged at most every 10 s)');
        }
        return null;
      }
    }
    m.socket = opened;
    m.externalPort = opened.port;
    this.mappings.set(cIp * 65536 + cPort, m);
    this.byExternalPort.set(m.externalPort, m);
    this.stats.mappings++;
    return m;
  }

  /** The mapping's socket failed for good (EBADF...): it is gone. */
  mappingFailed(m: UdpMapping): void {
    m.socket = null;
    this.closeMapping(m);
  }

  /** A datagram for mapping `m` from `src:sport`, in `data[off, off+len)` (valid during the call). */
  datagramIn(m: UdpMapping, data: Uint8Array, off: number, len: number, src: number, sport: number): void {
    if (this.filtering === 'address-dependent' && !m.remotes.has(src)) {
      if (!this.isHairpin(m, src, sport)) {
        this.stats.filtered++;
        return;
      }
      this.stats.hairpinned++;
    }
    const viewSrc = m.view.toContainerView(src);
    let e = this.ct.findOriginal(PROTO_UDP, m.containerIp, m.containerPort, viewSrc, sport);
    if (!e) {
      // A new remote port (address-dependent) or a new remote (endpoint-independent).
      const added = this.ct.add({
        proto: PROTO_UDP,
        origSrc: m.containerIp,
        origSport: m.containerPort,
        origDst: viewSrc,
        origDport: sport,
        replySrc: src,
        replySport: sport,
        replyDst: this.bindAddress,
        replyDport: m.externalPort,
        container: m.container,
        owner: m,
      });
      if (isRefusal(added)) {
        this.stats.limitRefusals++;
        return;
      }
      e = added;
      m.entries++;
    }
    this.ct.touch(e, 1, len);
    this.stats.datagramsIn++;
    m.gw.sendUdp(m.containerMac, m.containerIp, viewSrc, sport, m.containerPort, data, off, len);
  }

  /**
   * Whether a datagram from `src:sport` to mapping `m` is one that another of our mappings sent
   * to m's external endpoint: `sport` is that mapping's external port and its container has a
   * flow to (src as it addressed it, m's external port).
   */
  private isHairpin(m: UdpMapping, src: number, sport: number): boolean {
    const peer = this.byExternalPort.get(sport);
    if (peer === undefined || peer.socket === null) return false;
    return this.ct.findOriginal(PROTO_UDP, peer.containerIp, peer.containerPort, peer.view.toContainerView(src), m.externalPort) !== undefined;
  }

  /** An ICMP error about one of our datagrams: the same error to the container, about its datagram. */
  errorIn(m: UdpMapping, err: NatDatagramError): void {
    if (err.origin !== SO_EE_ORIGIN_ICMP) return;
    const dst = err.dstAddr;
    const dport = err.dstPort;
    const viewDst = m.view.toContainerView(dst);
    const e = this.ct.findOriginal(PROTO_UDP, m.containerIp, m.containerPort, viewDst, dport);
    if (!e) return;
    const qOff = err.dataOffset;
    const qLen = Math.min(err.dataLength, QUOTE_MAX);
    // The datagram as the container sent it: its addresses and ports, not ours.
    const q = this.quoteDv;
    q.setUint8(0, 0x45);
    q.setUint8(1, 0);
    q.setUint16(2, 28 + err.dataLength);
    q.setUint32(4, 0);
    q.setUint8(8, 64);
    q.setUint8(9, IPPROTO_UDP);
    q.setUint16(10, 0);
    q.setUint32(12, m.containerIp);
    q.setUint32(16, viewDst);
    q.setUint16(10, checksum(q, 0, 20));
    q.setUint16(20, m.containerPort);
    q.setUint16(22, dport);
    q.setUint16(24, 8 + err.dataLength);
    q.setUint16(26, 0);
    if (qLen > 0) this.quote.set(err.data.subarray(qOff, qOff + qLen), 28);
    const offender = err.offender;
    const from = offender ? m.view.toContainerView(offender) : viewDst;
    this.stats.icmpErrorsTranslated++;
    m.gw.sendIcmpError(m.containerMac, m.containerIp, from, err.icmpType, err.icmpCode, err.info & 0xffff, this.quote, 28 + qLen);
  }

  /** Conntrack removed one of our entries. */
  entryRemoved(e: ConntrackEntry): void {
    const m = e.owner as UdpMapping | null;
    if (!m) return;
    m.entries--;
    if (m.entries <= 0) this.closeMapping(m);
  }

  private closeMapping(m: UdpMapping): void {
    const key = m.containerIp * 65536 + m.containerPort;
    if (this.mappings.get(key) === m) this.mappings.delete(key);
    if (this.byExternalPort.get(m.externalPort) === m) this.byExternalPort.delete(m.externalPort);
    const s = m.socket;
    m.socket = null;
    s?.close();
  }

  get active(): number {
    return this.mappings.size;
  }

  close(): void {
    for (const m of [...this.mappings.values()]) this.closeMapping(m);
  }
}

function ipString(ip: number): string {
  return `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
}
