/**
 * ICMP echo through the NAT (RFC 5508): a container's ping to the outside is sent from the host,
 * and the reply comes back to the right container with the container's own identifier.
 *
 * Two ways to send ICMP from a user process, tried in this order on first use:
 *  - an ICMP "ping" socket (SOCK_DGRAM/IPPROTO_ICMP), allowed when the daemon's group is in
 *    net.ipv4.ping_group_range: one socket per container (address, identifier); the kernel gives
 *    it its own identifier and routes the replies to it, so two containers pinging the same host
 *    with the same identifier both get their replies;
 *  - a raw ICMP socket (CAP_NET_RAW: a daemon running as root): one socket for everything, with
 *    an identifier usernet picks per container (address, identifier), replies demultiplexed by it.
 * When neither is possible, one log line says how to allow it, and echo requests are counted.
 */
import type { Logger } from 'pino';
import type { GatewayPort } from '../gateway/gateway.js';
import { buildIcmpFrame } from '../packet/build.js';
import { checksum } from '../packet/checksum.js';
import { ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST } from '../packet/icmp.js';
import { systemHostStack, type HostStack, type NatDatagramReceiver, type NatDatagramSocket } from '../platform/host-stack.js';
import { systemRandom, type Random } from '../platform/random.js';
import { Conntrack, PROTO_ICMP, isRefusal, type ConntrackEntry } from './conntrack.js';

const OUT_SIZE = 65536 + 64;

/** The receiver of the probe socket that decides the mode (it never reads). */
const IGNORE: NatDatagramReceiver = { datagram: () => {} };

export interface IcmpNatStats {
  echoOut: number;
  echoIn: number;
  unavailable: number;
  limitRefusals: number;
  sendErrors: number;
}

/** One container (address, identifier) pinging out. */
class EchoMapping implements NatDatagramReceiver {
  /** Its ping socket (null in raw mode, where one socket serves all). */
  socket: NatDatagramSocket | null = null;
  /** The identifier on the host side. */
  externalId = 0;
  entries = 0;
  constructor(
    readonly gw: GatewayPort,
    readonly containerMac: number,
    readonly containerIp: number,
    readonly containerId: number,
    readonly container: string,
    readonly toView: (hostAddr: number) => number,
    private readonly nat: IcmpNat,
  ) {}
  /** A reply on its ping socket: an ICMP message without the IP header, our identifier. */
  datagram(data: Uint8Array, off: number, len: number, src: number): void {
    this.nat.deliver(this, data, off, len, src);
  }
}

export class IcmpNat {
  readonly stats: IcmpNatStats = { echoOut: 0, echoIn: 0, unavailable: 0, limitRefusals: 0, sendErrors: 0 };
  /** 'unknown' until the first ping decides; then what works. */
  mode: 'unknown' | 'ping' | 'raw' | 'none' = 'unknown';
  private readonly byContainer = new Map<number, EchoMapping>(); // (ip * 65536 + id)
  private readonly byExternalId = new Map<number, EchoMapping>(); // raw mode
  private raw: NatDatagramSocket | null = null;
  private nextRawId: number;
  /** Every ICMP packet of the host, IP header first: keeps the echo replies with our identifiers. */
  private readonly rawReceiver: NatDatagramReceiver = {
    datagram: (data, off, len, src) => {
      const ihl = (data[off] & 15) * 4;
      if (len < ihl + 8 || data[off + ihl] !== ICMP_ECHO_REPLY) return;
      const id = (data[off + ihl + 4] << 8) | data[off + ihl + 5];
      const m = this.byExternalId.get(id);
      if (m) this.deliver(m, data, off + ihl, len - ihl, src);
    },
  };
  private readonly out = Buffer.allocUnsafeSlow(OUT_SIZE);
  private readonly outDv = new DataView(this.out.buffer, this.out.byteOffset, OUT_SIZE);
  private readonly msg = Buffer.allocUnsafeSlow(OUT_SIZE);
  private readonly msgDv = new DataView(this.msg.buffer, this.msg.byteOffset, OUT_SIZE);

  constructor(
    private readonly ct: Conntrack,
    private readonly log: Logger,
    random: Random = systemRandom,
    private readonly host: HostStack = systemHostStack,
  ) {
    this.nextRawId = 1 + random.below(60000);
  }

  /**
   * An echo request from a container to `remoteIp` (as addressed), sent on the host to `hostDst`.
   * `icmp[off, off+len)` is the ICMP message. Returns false when it cannot be sent.
   */
  echoFromContainer(
    gw: GatewayPort,
    containerMac: number,
    containerIp: number,
    remoteIp: number,
    hostDst: number,
    icmp: Uint8Array,
    dv: DataView,
    off: number,
    len: number,
    network: string,
    toView: (hostAddr: number) => number,
  ): boolean {
    if (len < 8 || icmp[off] !== ICMP_ECHO_REQUEST) return false;
    if (this.mode === 'unknown') this.decideMode();
    if (this.mode === 'none') {
      this.stats.unavailable++;
      return false;
    }
    const id = dv.getUint16(off + 4);
    const key = containerIp * 65536 + id;
    let m: EchoMapping | null | undefined = this.byContainer.get(key);
    if (!m) {
      m = this.openMapping(gw, containerMac, containerIp, id, `${network}/${containerIp >>> 24}.${(containerIp >>> 16) & 255}.${(containerIp >>> 8) & 255}.${containerIp & 255}`, toView);
      if (!m) return false;
    }
    let e = this.ct.findOriginal(PROTO_ICMP, containerIp, id, remoteIp, ICMP_ECHO_REQUEST);
    if (!e) {
      const added = this.ct.add({
        proto: PROTO_ICMP,
        origSrc: containerIp,
        origSport: id,
        origDst: remoteIp,
        origDport: ICMP_ECHO_REQUEST,
        replySrc: hostDst,
        replySport: ICMP_ECHO_REPLY,
        replyDst: 0,
        replyDport: m.externalId,
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
    this.ct.touch(e, 0, len);
    // The request as the host sends it: our identifier (the ping socket's kernel sets it anyway),
    // the container's sequence and payload.
    this.msg.set(icmp.subarray(off, off + len), 0);
    this.msgDv.setUint16(4, m.externalId);
    this.msgDv.setUint16(2, 0);
    this.msgDv.setUint16(2, checksum(this.msgDv, 0, len));
    const s = this.mode === 'raw' ? this.raw : m.socket;
    const r = s !== null ? s.sendTo(this.msg, 0, len, hostDst, 0) : -9;
    if (r < 0) this.stats.sendErrors++;
    this.stats.echoOut++;
    return true;
  }

  private decideMode(): void {
    try {
      const probe = this.host.openNatDatagram({ kind: 'icmp' }, IGNORE);
      probe.close();
      this.mode = 'ping';
      return;
    } catch {
      // not in ping_group_range
    }
    try {
      this.raw = this.host.openNatDatagram({ kind: 'icmp-raw' }, this.rawReceiver);
      this.mode = 'raw';
      return;
    } catch {
      // no CAP_NET_RAW
    }
    this.mode = 'none';
    this.log.warn(
      { gid: process.getgid?.() },
      'ping from containers to the outside is not possible: the daemon may open neither ICMP ping sockets nor raw sockets; allow its group with: sysctl -w net.ipv4.ping_group_range="0 2147483647"',
    );
  }

  private openMapping(gw: GatewayPort, cMac: number, cIp: number, id: number, container: string, toView: (a: number) => number): EchoMapping | null {
    const m = new EchoMapping(gw, cMac, cIp, id, container, toView, this);
    if (this.mode === 'raw') {
      // Identifiers unique among our raw-socket mappings.
      for (let i = 0; i < 65536 && this.byExternalId.has(this.nextRawId); i++) this.nextRawId = (this.nextRawId % 65535) + 1;
      m.externalId = this.nextRawId;
      this.nextRawId = (this.nextRawId % 65535) + 1;
      this.byExternalId.set(m.externalId, m);
    } else {
      try {
        const s = this.host.openNatDatagram({ kind: 'icmp' }, m);
        m.socket = s;
        m.externalId = s.port;
      } catch {
        this.stats.sendErrors++;
        return null;
      }
    }
    this.byContainer.set(cIp * 65536 + id, m);
    return m;
  }

  /** An echo reply for mapping `m` from `src`: ICMP message at data[off, off+len), valid during the call. */
  deliver(m: EchoMapping, data: Uint8Array, off: number, len: number, src: number): void {
    if (len < 8 || data[off] !== ICMP_ECHO_REPLY) return;
    const view = m.toView(src);
    const e = this.ct.findOriginal(PROTO_ICMP, m.containerIp, m.containerId, view, ICMP_ECHO_REQUEST);
    if (!e) return;
    this.ct.touch(e, 1, len);
    this.stats.echoIn++;
    const seq = (data[off + 6] << 8) | data[off + 7];
    const n = buildIcmpFrame(
      this.out,
      this.outDv,
      0,
      { dstMac: m.containerMac, srcMac: m.gw.mac, srcIp: view, dstIp: m.containerIp },
      ICMP_ECHO_REPLY,
      0,
      ((m.containerId << 16) | seq) >>> 0,
      data,
      off + 8,
      len - 8,
    );
    m.gw.emitFrame(this.out, 0, n);
  }

  entryRemoved(e: ConntrackEntry): void {
    const m = e.owner as EchoMapping | null;
    if (!m) return;
    m.entries--;
    if (m.entries <= 0) this.closeMapping(m);
  }

  private closeMapping(m: EchoMapping): void {
    const key = m.containerIp * 65536 + m.containerId;
    if (this.byContainer.get(key) === m) this.byContainer.delete(key);
    if (this.byExternalId.get(m.externalId) === m) this.byExternalId.delete(m.externalId);
    const s = m.socket;
    m.socket = null;
    s?.close();
  }

  close(): void {
    for (const m of [...this.byContainer.values()]) this.closeMapping(m);
    this.raw?.close();
    this.raw = null;
  }
}
