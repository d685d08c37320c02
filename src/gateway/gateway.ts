/**
 * The virtual gateway of a network: a port on the switch that behaves like a host.
 *
 * It owns the network's gateway and DNS addresses with one fixed MAC (52:55 + the gateway
 * address), installed as a static switch entry, so no container can take it. For frames that
 * reach it (broadcasts, and anything sent to its MAC) it:
 *
 *   ARP    answers requests for its addresses (never for others), learns containers' addresses
 *          into its neighbour table, and resolves a container's MAC when it has to send first
 *   ICMP   answers echo requests to its addresses; sends the errors a host or router owes:
 *          port unreachable (UDP to a port nothing serves), protocol unreachable, network
 *          unreachable (no route beyond the subnet yet), each quoting the offending datagram
 *   DHCP   UDP to port 67: the network's DhcpServer
 *   DNS    UDP to the DNS address, port 53: the network's DnsForwarder (answers fragmented if
 *          larger than the link MTU)
 *   TCP    to its addresses: reset (nothing listens there yet)
 *   frags  IPv4 fragments to its own addresses are dropped and counted — but TCP/UDP ones to
 *          the gateway address, which the NAT reassembles on their way to the host's loopback
 *          (fragments beyond the subnet go to the NAT like any datagram)
 *   IPv6   dropped and counted; no router advertisements
 *
 * Frames come in through the Port interface (the switch "transmits" to the gateway), are
 * handled synchronously, and answers go back through switch.input(). An answer made while the
 * switch is forwarding (an ARP reply, the NAT's ACK) is copied once into the switch's egress
 * queue and leaves at its drain point, after the batch; one made from a timer or a host socket
 * is forwarded at once, from the gateway's (or the NAT's) own buffer, without a copy. Errors it
 * emits are rate limited (100 per second, like a host's icmp_ratelimit) so a flood cannot make
 * it a reflector.
 */
import type { Logger } from 'pino';
import { LRUCache } from 'lru-cache';
import { Frame } from '../link/frame.js';
import { FAST_PATH_ECHOES, FAST_PATH_IP_ID, FAST_PATH_OPEN, Port, PortKind } from '../link/port.js';
import type { GatewayEchoTarget } from '../link/tap-port.js';
import { RX_BYTES, RX_FRAMES } from '../link/counters.js';
import type { Switch } from '../switch/switch.js';
import { EgressPlace } from '../switch/egress-queue.js';
import { ARP_OP_REPLY, ARP_OP_REQUEST, ArpView, writeArp } from '../packet/arp.js';
import { buildIcmpError, buildIcmpFrame, buildTcpControlFrame, buildUdpFrame, fragmentIpv4Frame, type FragmentSink, type Ipv4Endpoints } from '../packet/build.js';
import { DHCP_CLIENT_PORT, DHCP_SERVER_PORT } from '../packet/dhcp.js';
import { ETH_HLEN, ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, EthernetView, writeEthernetHeader } from '../packet/ethernet.js';
import {
  ICMP_DEST_UNREACH,
  ICMP_ECHO_REPLY,
  ICMP_ECHO_REQUEST,
  ICMP_UNREACH_NET,
  ICMP_UNREACH_PORT,
  ICMP_UNREACH_PROTOCOL,
  IcmpView,
} from '../packet/icmp.js';
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPV4_MIN_HLEN, Ipv4View } from '../packet/ipv4.js';
import { BROADCAST_MAC, readMac } from '../packet/mac.js';
import { ParseStatus } from '../packet/status.js';
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, TcpView } from '../packet/tcp.js';
import { UDP_HLEN, UdpView } from '../packet/udp.js';
import { VNET_F_NEEDS_CSUM, VNET_GSO_NONE, VNET_HDR_LEN, VnetHeader, writeVnetHeader } from '../packet/virtio-net.js';
import { DNS_PORT } from '../packet/dns.js';
import type { DhcpServer } from './dhcp-server.js';
import type { DnsForwarder } from './dns-forwarder.js';
import { systemClock, type Clock, type Timer } from '../platform/clock.js';
import type { Random } from '../platform/random.js';


const LIMITED_BROADCAST = 0xffffffff;
/** ICMP errors (and resets) per second, and burst. */
const ERROR_RATE = 100;
/** Neighbour entries kept (LRU beyond), and how long one stays valid without news. */
const NEIGHBOUR_MAX = 4096;
const NEIGHBOUR_TTL_MS = 300_000;
/** ARP resolution: tries, interval, frames queued per address. */
const ARP_TRIES = 3;
const ARP_INTERVAL_MS = 1000;
const ARP_QUEUE = 16;
const OUT_SIZE = 65536 + 256;
/** 65535 - 20 (IPv4 header) - 8 (UDP header). */
const IPV4_MAX_UDP_PAYLOAD = 65507;

/** The gateway's MAC for a gateway address: 52:55 + its four bytes (as slirp4netns does). */
export function gatewayMac(gatewayIp: number): number {
  return 0x5255_0000_0000 + (gatewayIp >>> 0);
}

/** Takes the IPv4 the gateway does not answer itself (the NAT). */
export interface IpRouter {
  /**
   * An IPv4 datagram from a container (`ip` is bound to it, header checksum checked): beyond the
   * subnet, or TCP/UDP to the gateway's own addresses — or a fragment of one of those. Returns false to let the gateway answer
   * as a host without a route would (network unreachable, reset, port unreachable).
   */
  route(gw: GatewayPort, buf: Uint8Array, dv: DataView, ip: Ipv4View, ethSrc: number, vnet: VnetHeader | null): boolean;
}

export interface GatewayOptions {
  /** Port name on the switch. */
  name: string;
  ip: number;
  dnsIp: number;
  subnet: number;
  prefix: number;
  /** The network's MTU: datagrams the gateway sends are fragmented to fit it. */
  mtu: number;
  dhcp: DhcpServer | null;
  dns: DnsForwarder | null;
  log: Logger;
  /** Neighbour ages, the error rate limit and ARP retry timers. Default the system clock. */
  clock?: Clock;
  /** The port's loss draws (`lossRate`). Default the system's source. */
  random?: Random;
}

export interface GatewayStats {
  arp_requests: number;
  arp_replies_sent: number;
  arp_ignored: number;
  arp_malformed: number;
  icmp_echo_replies: number;
  /** Of icmp_echo_replies, those answered in the TAP reader without JS (tap-port.ts). */
  readonly icmp_echo_replies_in_reader: number;
  icmp_errors_sent: number;
  tcp_resets_sent: number;
  errors_rate_limited: number;
  ipv4_malformed: number;
  fragments_dropped: number;
  ipv6_dropped: number;
  other_dropped: number;
  no_route: number;
  dns_queries: number;
  dns_malformed: number;
  dns_disabled: number;
  dhcp_messages: number;
  neighbours_resolved: number;
  neighbour_failures: number;
}

function newGatewayStats(fastPath: Float64Array): GatewayStats {
  // Echo replies counted in JS plus those answered natively (FAST_PATH_ECHOES): an accessor, so
  // `stats.icmp_echo_replies++`, spreading and JSON all see the sum.
  let repliedHere = 0;
  return {
    arp_requests: 0,
    arp_replies_sent: 0,
    arp_ignored: 0,
    arp_malformed: 0,
    get icmp_echo_replies(): number {
      return repliedHere + fastPath[FAST_PATH_ECHOES];
    },
    set icmp_echo_replies(value: number) {
      repliedHere = value - fastPath[FAST_PATH_ECHOES];
    },
    get icmp_echo_replies_in_reader(): number {
      return fastPath[FAST_PATH_ECHOES];
    },
    icmp_errors_sent: 0,
    tcp_resets_sent: 0,
    errors_rate_limited: 0,
    ipv4_malformed: 0,
    fragments_dropped: 0,
    ipv6_dropped: 0,
    other_dropped: 0,
    no_route: 0,
    dns_queries: 0,
    dns_malformed: 0,
    dns_disabled: 0,
    dhcp_messages: 0,
    neighbours_resolved: 0,
    neighbour_failures: 0,
  };
}

class NeighbourEntry {
  constructor(
    public mac: number,
    public updatedAt: number,
  ) {}
}

class PendingResolution {
  frames: Buffer[] = [];
  tries = 0;
  timer: Timer | null = null;
}

export class GatewayPort extends Port implements FragmentSink {
  readonly mac: number;
  readonly ip: number;
  readonly dnsIp: number;
  /** Counters; icmp_echo_replies includes the echoes the TAP readers answered natively. */
  readonly stats: GatewayStats = newGatewayStats(this.fastPath);
  dhcp: DhcpServer | null;
  dns: DnsForwarder | null;
  private sw: Switch | null = null;
  private readonly options: GatewayOptions;
  private readonly clock: Clock;
  private readonly mask: number;
  private readonly neighbours = new LRUCache<number, NeighbourEntry>({ max: NEIGHBOUR_MAX });
  private readonly pending = new Map<number, PendingResolution>();
  private tokens = ERROR_RATE;
  private tokensAt = 0;
  private closed = false;
  // Parsing (reused per frame) and building (one output frame at a time).
  private readonly eth = new EthernetView();
  private readonly arp = new ArpView();
  private readonly ip4 = new Ipv4View();
  private readonly icmp = new IcmpView();
  private readonly udp = new UdpView();
  private readonly tcp = new TcpView();
  private readonly out = Buffer.allocUnsafeSlow(OUT_SIZE);
  private readonly outDv = new DataView(this.out.buffer, this.out.byteOffset, OUT_SIZE);
  private readonly big = Buffer.allocUnsafeSlow(OUT_SIZE);
  /** sendUdp()'s endpoints, filled per datagram (not an object per datagram). */
  private readonly udpEndpoints: Ipv4Endpoints = { dstMac: 0, srcMac: 0, srcIp: 0, dstIp: 0, id: 0, dontFragment: false };
  private readonly bigDv = new DataView(this.big.buffer, this.big.byteOffset, OUT_SIZE);
  private readonly dhcpOut = Buffer.allocUnsafeSlow(1500);
  private readonly frame = new Frame();
  private inBuf: Uint8Array | null = null;
  private readonly inVnet = new VnetHeader();
  private hasVnet = false;
  /** Where IPv4 the gateway does not answer itself goes: the NAT. */
  router: IpRouter | null = null;
  private inDv: DataView<ArrayBufferLike> = new DataView(new ArrayBuffer(0));
  private readonly place = new EgressPlace();
  private emitBuf: Uint8Array | null = null;
  private emitDv: DataView = new DataView(new ArrayBuffer(0));

  constructor(options: GatewayOptions) {
    super({ name: options.name, kind: PortKind.GATEWAY, mtu: 65521, offloads: true, ...(options.random ? { random: options.random } : {}) });
    this.options = options;
    this.mac = gatewayMac(options.ip);
    this.ip = options.ip >>> 0;
    this.dnsIp = options.dnsIp >>> 0;
    this.dhcp = options.dhcp;
    this.dns = options.dns;
    this.clock = options.clock ?? systemClock;
    this.mask = options.prefix === 0 ? 0 : (0xffffffff << (32 - options.prefix)) >>> 0;
    this.fastPath[FAST_PATH_IP_ID] = 1;
  }

  /** Plugs into the switch with its MAC as a static entry (frames claiming it are dropped). */
  plug(sw: Switch): this {
    sw.addPort(this);
    sw.fdb.addStatic(this.mac, this);
    this.sw = sw;
    return this;
  }

  close(): void {
    this.closed = true;
    this.fastPath[FAST_PATH_OPEN] = 0;
    for (const p of this.pending.values()) this.clock.clear(p.timer);
    this.pending.clear();
    if (this.sw) {
      this.sw.fdb.removeStatic(this.mac);
      this.sw.removePort(this);
    }
    this.sw = null;
  }

  /** The neighbour table: container address → MAC (for listings); stale entries are left out. */
  neighbourTable(): Array<{ ip: number; mac: number; age: number }> {
    const now = this.clock.now();
    return [...this.neighbours.entries()].filter(([, e]) => now - e.updatedAt < NEIGHBOUR_TTL_MS).map(([ip, e]) => ({ ip, mac: e.mac, age: now - e.updatedAt }));
  }

  /** The MAC of `ip` if known and heard from in the last 5 minutes (then ARP asks again). */
  neighbourMac(ip: number): number {
    const e = this.neighbours.get(ip);
    if (!e) return -1;
    if (this.clock.now() - e.updatedAt >= NEIGHBOUR_TTL_MS) {
      this.neighbours.delete(ip);
      return -1;
    }
    return e.mac;
  }

  /** Forgets a neighbour (its container went away). */
  forgetNeighbour(ip: number): void {
    this.neighbours.delete(ip);
  }

  // ------------------------------------------------------------------------------------------
  // Frames from the switch
  // ------------------------------------------------------------------------------------------

  protected writeLink(buf: Uint8Array, off: number, len: number): number {
    // With offloads the switch hands us the virtio-net header first: the NAT needs it (GSO
    // super-frames, partial checksums).
    if (buf !== this.inBuf) {
      this.inBuf = buf;
      this.inDv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    }
    if (this.inVnet.read(this.inDv, off, len - VNET_HDR_LEN) !== ParseStatus.OK) {
      this.stats.other_dropped++;
      return len;
    }
    this.hasVnet = true;
    this.receive(buf, off + VNET_HDR_LEN, len - VNET_HDR_LEN);
    return len;
  }

  protected writeLink2(b1: Uint8Array, _o1: number, l1: number, b2: Uint8Array, o2: number, l2: number): number {
    this.hasVnet = false;
    this.receive(b2, o2, l2);
    return l1 + l2;
  }

  private receive(buf: Uint8Array, off: number, len: number): void {
    if (this.closed) return;
    // Frames mostly come from the same few slabs: keep their DataView instead of making one per frame.
    if (buf !== this.inBuf) {
      this.inBuf = buf;
      this.inDv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    }
    const dv = this.inDv;
    const eth = this.eth;
    if (eth.bind(buf, dv, off, len) !== ParseStatus.OK) {
      this.stats.other_dropped++;
      return;
    }
    const dstMac = eth.dst;
    // Unknown unicast flooded to everyone is not for us.
    if (dstMac !== this.mac && (buf[off] & 1) === 0) return;
    switch (eth.etherType) {
      case ETH_P_ARP:
        this.onArp(dv, eth.payloadOffset, eth.payloadLength, eth.src);
        return;
      case ETH_P_IPV4:
        this.onIpv4(buf, dv, eth.payloadOffset, eth.payloadLength, eth.src, dstMac);
        return;
      case ETH_P_IPV6:
        this.stats.ipv6_dropped++;
        return;
      default:
        this.stats.other_dropped++;
    }
  }

  private isOwn(ip: number): boolean {
    return ip === this.ip || ip === this.dnsIp;
  }

  private inSubnet(ip: number): boolean {
    return ((ip & this.mask) >>> 0) === ((this.ip & this.mask) >>> 0);
  }

  private learn(ip: number, mac: number): void {
    if (ip === 0 || !this.inSubnet(ip) || this.isOwn(ip) || (Math.floor(mac / 2 ** 40) & 1) === 1) return;
    const now = this.clock.now();
    const e = this.neighbours.get(ip);
    if (e) {
      e.mac = mac;
      e.updatedAt = now;
    } else {
      this.neighbours.set(ip, new NeighbourEntry(mac, now));
    }
    const p = this.pending.get(ip);
    if (p) this.flushPending(ip, p, mac);
  }

  private onArp(dv: DataView, off: number, len: number, ethSrc: number): void {
    const a = this.arp;
    if (a.bind(dv, off, len) !== ParseStatus.OK) {
      this.stats.arp_malformed++;
      return;
    }
    const op = a.operation;
    const senderIp = a.senderIp;
    const senderMac = a.senderMac;
    if (senderMac === ethSrc) this.learn(senderIp, senderMac);
    if (op === ARP_OP_REQUEST) {
      this.stats.arp_requests++;
      const target = a.targetIp;
      if (!this.isOwn(target) || senderIp === target) {
        this.stats.arp_ignored++; // not ours, or a gratuitous announcement
        return;
      }
      const o = this.out;
      const odv = this.outDv;
      const p = writeEthernetHeader(odv, 0, ethSrc, this.mac, ETH_P_ARP);
      const n = writeArp(odv, p, ARP_OP_REPLY, this.mac, target, senderMac, senderIp);
      this.stats.arp_replies_sent++;
      this.emit(o, 0, p + n);
    } else if (op !== ARP_OP_REPLY) {
      this.stats.arp_ignored++;
    }
  }

  private onIpv4(buf: Uint8Array, dv: DataView, off: number, len: number, ethSrc: number, ethDst: number): void {
    const ip = this.ip4;
    if (ip.bind(dv, off, len) !== ParseStatus.OK || !ip.checksumValid()) {
      this.stats.ipv4_malformed++;
      return;
    }
    const src = ip.src;
    const dst = ip.dst;
    this.learn(src, ethSrc);
    const own = this.isOwn(dst);
    const broadcast = dst === LIMITED_BROADCAST || dst === ((this.ip | ~this.mask) >>> 0);
    if (!own && !broadcast) {
      if ((dst >>> 28) === 14 || ethDst !== this.mac || this.inSubnet(dst)) return; // multicast, or not routed through us
      // Beyond the subnet: the NAT's job.
      if (this.router !== null && this.router.route(this, buf, dv, ip, ethSrc, this.hasVnet ? this.inVnet : null)) return;
      this.stats.no_route++;
      this.icmpError(buf, dv, off, ip.totalLength, ethSrc, src, ICMP_DEST_UNREACH, ICMP_UNREACH_NET);
      return;
    }
    if (ip.fragmentOffset !== 0 || ip.moreFragments) {
      // TCP and UDP to the gateway address go to the host's loopback through the NAT, which
      // reassembles them (every fragment carries the protocol). Nothing the gateway serves
      // itself (DHCP, DNS, ping) needs fragmented requests.
      const proto = ip.protocol;
      if (dst === this.ip && !broadcast && (proto === IPPROTO_UDP || proto === IPPROTO_TCP) && this.router !== null && this.router.route(this, buf, dv, ip, ethSrc, null)) return;
      this.stats.fragments_dropped++;
      return;
    }
    const proto = ip.protocol;
    const l4 = ip.payloadOffset;
    const l4Len = ip.payloadLength;
    if (proto === IPPROTO_UDP) {
      const u = this.udp;
      if (u.bind(dv, l4, l4Len) !== ParseStatus.OK) {
        this.stats.ipv4_malformed++;
        return;
      }
      const dport = u.dstPort;
      if (dport === DHCP_SERVER_PORT && (broadcast || dst === this.ip)) {
        this.onDhcp(dv, u.payloadOffset, u.payloadLength);
        return;
      }
      if (broadcast) return;
      if (dport === DNS_PORT && dst === this.dnsIp) {
        if (this.dns) this.onDns(buf, u.payloadOffset, u.payloadLength, ethSrc, src, u.srcPort);
        else {
          this.stats.dns_disabled++;
          this.icmpError(buf, dv, off, ip.totalLength, ethSrc, src, ICMP_DEST_UNREACH, ICMP_UNREACH_PORT);
        }
        return;
      }
      // UDP to the gateway address: the host's loopback, through the NAT.
      if (dst === this.ip && this.router !== null && this.router.route(this, buf, dv, ip, ethSrc, this.hasVnet ? this.inVnet : null)) return;
      this.icmpError(buf, dv, off, ip.totalLength, ethSrc, src, ICMP_DEST_UNREACH, ICMP_UNREACH_PORT);
      return;
    }
    if (broadcast) return;
    if (proto === IPPROTO_ICMP) {
      const c = this.icmp;
      if (c.bind(dv, l4, l4Len) !== ParseStatus.OK) {
        this.stats.ipv4_malformed++;
        return;
      }
      if (c.type === ICMP_ECHO_REQUEST && c.code === 0) {
        const n = buildIcmpFrame(this.out, this.outDv, 0, this.endpoints(ethSrc, dst, src), ICMP_ECHO_REPLY, 0, dv.getUint32(l4 + 4), buf, l4 + 8, l4Len - 8);
        this.stats.icmp_echo_replies++;
        this.emit(this.out, 0, n);
      }
      return;
    }
    if (proto === IPPROTO_TCP) {
      // TCP to the gateway (the host's loopback) or to the DNS address's port 53 (DNS over TCP):
      // the NAT's TCP endpoint. Anything else is reset, as a host with nothing listening does.
      if (this.router !== null && this.router.route(this, buf, dv, ip, ethSrc, this.hasVnet ? this.inVnet : null)) return;
      this.tcpReset(dv, l4, l4Len, ethSrc, src, dst);
      return;
    }
    this.icmpError(buf, dv, off, ip.totalLength, ethSrc, src, ICMP_DEST_UNREACH, ICMP_UNREACH_PROTOCOL);
  }

  private onDhcp(dv: DataView, off: number, len: number): void {
    this.stats.dhcp_messages++;
    const dhcp = this.dhcp;
    if (!dhcp) return;
    const n = dhcp.handle(dv, off, len, this.dhcpOut);
    if (n === 0) return;
    const e: Ipv4Endpoints = { dstMac: dhcp.replyMac, srcMac: this.mac, srcIp: this.ip, dstIp: dhcp.replyIp, id: this.nextId(), dontFragment: false };
    const fl = buildUdpFrame(this.out, this.outDv, 0, e, DHCP_SERVER_PORT, DHCP_CLIENT_PORT, this.dhcpOut, 0, n);
    this.emit(this.out, 0, fl);
  }

  private onDns(buf: Uint8Array, off: number, len: number, clientMac: number, clientIp: number, clientPort: number): void {
    this.stats.dns_queries++;
    const dns = this.dns as DnsForwarder;
    const accepted = dns.query(buf.subarray(off, off + len), (answer: Buffer) => {
      if (this.closed) return;
      // Back to the MAC the query came from (not whatever the neighbour table has learned since:
      // another container claiming the address must not get this answer).
      this.sendUdp(clientMac, clientIp, this.dnsIp, DNS_PORT, clientPort, answer);
    });
    if (!accepted) this.stats.dns_malformed++;
  }

  /**
   * Sends a UDP datagram (from one of the gateway's addresses, or from a host-side peer the NAT
   * stands in for), fragmented to the network MTU. `dstMac` -1: not known yet, resolved by ARP
   * first (the datagram waits, see sendIpv4).
   */
  sendUdp(dstMac: number, dstIp: number, srcIp: number, srcPort: number, dstPort: number, payload: Uint8Array, off = 0, len = payload.length - off): void {
    // IPv4 total length is 16 bits: a larger answer (possible from an IPv6 upstream) cannot be sent.
    if (len > IPV4_MAX_UDP_PAYLOAD) {
      this.stats.other_dropped++;
      return;
    }
    const resolve = dstMac < 0;
    const e = this.udpEndpoints;
    e.dstMac = resolve ? 0 : dstMac;
    e.srcMac = this.mac;
    e.srcIp = srcIp;
    e.dstIp = dstIp;
    e.id = this.nextId();
    if (!resolve && IPV4_MIN_HLEN + UDP_HLEN + len <= this.options.mtu) {
      // One frame to a known neighbour: a partial checksum, finished by the container's kernel
      // (or by the switch for a port without offloads), so JS never sums the payload.
      const n = buildUdpFrame(this.big, this.bigDv, VNET_HDR_LEN, e, srcPort, dstPort, payload, off, len, true);
      writeVnetHeader(this.bigDv, 0, VNET_F_NEEDS_CSUM, VNET_GSO_NONE, 0, 0, ETH_HLEN + IPV4_MIN_HLEN, 6);
      this.emitVnet(this.big, this.bigDv, 0, n);
      return;
    }
    const n = buildUdpFrame(this.big, this.bigDv, 0, e, srcPort, dstPort, payload, off, len);
    const sink: FragmentSink = resolve ? { fragment: (buf, off, len) => this.sendIpv4(dstIp, buf.subarray(off), len) } : this;
    if (!fragmentIpv4Frame(this.big, 0, n, this.options.mtu, this.out, sink)) this.stats.other_dropped++;
  }

  /** FragmentSink: one datagram (or fragment) ready. */
  fragment(buf: Uint8Array, off: number, len: number): void {
    this.emit(buf, off, len);
  }

  private tcpReset(dv: DataView, off: number, len: number, ethSrc: number, src: number, dst: number): void {
    const t = this.tcp;
    if (t.bind(dv, off, len) !== ParseStatus.OK) {
      this.stats.ipv4_malformed++;
      return;
    }
    const flags = t.flags;
    if ((flags & TCP_RST) !== 0 || !this.takeToken()) return;
    // RFC 9293 3.10.7.1: echo the ACK as our sequence, or acknowledge what the segment occupied.
    let seq = 0;
    let ack = 0;
    let out = TCP_RST;
    if ((flags & TCP_ACK) !== 0) seq = t.ack;
    else {
      ack = (t.seq + t.payloadLength + ((flags & TCP_SYN) !== 0 ? 1 : 0) + ((flags & TCP_FIN) !== 0 ? 1 : 0)) >>> 0;
      out |= TCP_ACK;
    }
    const n = buildTcpControlFrame(this.out, this.outDv, 0, this.endpoints(ethSrc, dst, src), t.dstPort, t.srcPort, seq, ack, out, 0);
    this.stats.tcp_resets_sent++;
    this.emit(this.out, 0, n);
  }

  /**
   * Sends an ICMP error about the datagram at `off`, unless RFC 1122 3.2.2 forbids it: never about
   * an ICMP error, a non-first fragment, a datagram sent as a link-layer broadcast, or a datagram
   * from a non-unicast source.
   */
  private icmpError(buf: Uint8Array, dv: DataView, off: number, totalLength: number, ethSrc: number, src: number, type: number, code: number): void {
    const ip = this.ip4;
    if (src === 0 || (src >>> 28) >= 14 || !this.inSubnet(src) || ip.fragmentOffset !== 0) return;
    if (this.eth.dst !== this.mac) return; // sent as a link-layer broadcast or multicast
    if (ip.protocol === IPPROTO_ICMP) {
      const t = dv.getUint8(ip.payloadOffset);
      if (ip.payloadLength < 1 || !(t === 0 || t === 8 || t === 13 || t === 14 || t === 15 || t === 16 || t === 17 || t === 18)) return;
    }
    if (!this.takeToken()) return;
    // The error comes from the gateway address (the router), or from the address that was hit.
    const from = this.isOwn(ip.dst) ? ip.dst : this.ip;
    const n = buildIcmpError(this.out, this.outDv, 0, this.endpoints(ethSrc, from, src), type, code, 0, buf, off, totalLength);
    this.stats.icmp_errors_sent++;
    this.emit(this.out, 0, n);
  }

  private takeToken(): boolean {
    const now = this.clock.now();
    this.tokens = Math.min(ERROR_RATE, this.tokens + ((now - this.tokensAt) * ERROR_RATE) / 1000);
    this.tokensAt = now;
    if (this.tokens < 1) {
      this.stats.errors_rate_limited++;
      return false;
    }
    this.tokens -= 1;
    return true;
  }

  private endpoints(dstMac: number, srcIp: number, dstIp: number): Ipv4Endpoints {
    return { dstMac, srcMac: this.mac, srcIp, dstIp, id: this.nextId() };
  }

  /** The IPv4 identification of the next datagram; shared with native echo replies. */
  private nextId(): number {
    const id = (this.fastPath[FAST_PATH_IP_ID] + 1) & 0xffff;
    this.fastPath[FAST_PATH_IP_ID] = id;
    return id;
  }

  /**
   * What native code needs to answer echo requests to this gateway on its own (the TAP reader:
   * TapPort.answerGatewayEcho), with the arrays it counts into.
   */
  get echoTarget(): GatewayEchoTarget {
    return { mac: this.mac, ip: this.ip, dnsIp: this.dnsIp, fastPath: this.fastPath, counters: this.counters, learnNeighbour: (ip, mac) => this.learn(ip, mac) };
  }

  // ------------------------------------------------------------------------------------------
  // Sending
  // ------------------------------------------------------------------------------------------

  /**
   * Puts a frame into the switch whose virtio-net header is at `vnetOff` and Ethernet header
   * right after it (the NAT's GSO frames with partial checksums: the switch completes or
   * segments them for ports without offloads).
   */
  emitVnet(buf: Buffer, dv: DataView, vnetOff: number, frameLen: number): void {
    const sw = this.sw;
    if (!sw) return;
    const f = this.frame;
    f.buf = buf;
    f.dv = dv;
    f.vnetOff = vnetOff;
    f.off = vnetOff + VNET_HDR_LEN;
    f.len = frameLen;
    if (f.vnet.read(dv, vnetOff, frameLen) !== ParseStatus.OK) {
      this.stats.other_dropped++;
      return;
    }
    sw.input(this, f);
  }

  /**
   * Where to build the next frame for `emitVnet` (virtio-net header at `place.off`, up to
   * `maxUnit` bytes with it): while the switch is forwarding, room at the end of its egress queue,
   * so the frame is queued without a copy; otherwise the gateway's own scratch buffer (the frame
   * is forwarded at once, uncopied). Lent until the frame is sent; the NAT may build its segments
   * here instead of in its own buffer to save the queue's copy.
   */
  outputPlace(maxUnit: number): EgressPlace {
    const p = this.place;
    if (this.sw !== null && this.sw.reserveEgress(maxUnit, p)) return p;
    p.buf = this.big;
    p.dv = this.bigDv;
    p.off = 0;
    return p;
  }

  /**
   * True while the switch is forwarding: a frame emitted now is queued (copied into the egress
   * queue) rather than forwarded from where it was built. The NAT builds in place only when not.
   */
  get switchForwarding(): boolean {
    return this.sw !== null && this.sw.forwarding;
  }

  /** Puts a frame (Ethernet header first, no virtio-net header) into the switch. */
  emitFrame(buf: Uint8Array, off: number, len: number): void {
    this.emit(buf, off, len);
  }

  /**
   * Sends an ICMP error to a container about a datagram it sent — `quoted` holds that
   * datagram's IP header and start (the NAT rebuilds it for errors learnt from host sockets).
   * Rate limited like the gateway's own errors; `from` is the address the error comes from.
   */
  sendIcmpError(dstMac: number, dstIp: number, from: number, type: number, code: number, restOfHeader: number, quoted: Uint8Array, qLen: number): void {
    if (!this.takeToken()) return;
    const n = buildIcmpError(this.out, this.outDv, 0, this.endpoints(dstMac, from, dstIp), type, code, restOfHeader, quoted, 0, qLen);
    this.stats.icmp_errors_sent++;
    this.emit(this.out, 0, n);
  }

  /** Puts a frame (Ethernet header first, no virtio-net header) into the switch. */
  private emit(buf: Uint8Array, off: number, len: number): void {
    const sw = this.sw;
    if (!sw) return;
    const f = this.frame;
    f.buf = buf as Buffer;
    f.dv = buf === this.out ? this.outDv : buf === this.big ? this.bigDv : this.viewOf(buf);
    f.off = off;
    f.len = len;
    f.vnetOff = -1;
    f.vnet.clear();
    sw.input(this, f);
  }

  /** A DataView of a caller's buffer, kept while the same buffer comes back (one per buffer, not per frame). */
  private viewOf(buf: Uint8Array): DataView {
    if (buf !== this.emitBuf) {
      this.emitBuf = buf;
      this.emitDv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    }
    return this.emitDv;
  }

  /**
   * Announces the gateway's addresses out of `port` (gratuitous ARP), so a container that comes
   * up — or comes back after a restart — has the gateway's MAC without asking.
   */
  announce(port: Port): void {
    for (const addr of this.ip === this.dnsIp ? [this.ip] : [this.ip, this.dnsIp]) {
      const p = writeEthernetHeader(this.outDv, 0, BROADCAST_MAC, this.mac, ETH_P_ARP);
      const n = writeArp(this.outDv, p, ARP_OP_REQUEST, this.mac, addr, 0, addr);
      const f = this.frame;
      f.buf = this.out;
      f.dv = this.outDv;
      f.off = 0;
      f.len = p + n;
      f.vnetOff = -1;
      f.vnet.clear();
      // Straight out of one port, not through the switch: count it where a switched frame of
      // ours would be counted (the gateway port's ingress), so the counters still add up.
      this.counters[RX_FRAMES]++;
      this.counters[RX_BYTES] += f.len;
      port.transmit(f);
    }
  }

  /**
   * Sends an IPv4 frame (Ethernet header first; its destination MAC is written into it here —
   * the frame is the caller's scratch, lent for the call) to `ip` on the subnet: at once if its
   * MAC is known, else, copied, after ARP resolves it. Up to 16 frames wait per address; ARP is
   * tried 3 times a second apart, then they are dropped and counted.
   */
  sendIpv4(ip: number, frame: Uint8Array, len: number): void {
    const mac = this.neighbourMac(ip);
    if (mac >= 0) {
      writeEthernetHeaderDst(frame, mac);
      this.emit(frame, 0, len);
      return;
    }
    let p = this.pending.get(ip);
    if (!p) {
      p = new PendingResolution();
      this.pending.set(ip, p);
      this.arpRequest(ip, p);
    }
    if (p.frames.length < ARP_QUEUE) p.frames.push(Buffer.from(frame.subarray(0, len)));
    else this.stats.neighbour_failures++;
  }

  private arpRequest(ip: number, p: PendingResolution): void {
    if (this.closed) return;
    if (p.tries >= ARP_TRIES) {
      this.stats.neighbour_failures += p.frames.length;
      this.pending.delete(ip);
      return;
    }
    p.tries++;
    const h = writeEthernetHeader(this.outDv, 0, BROADCAST_MAC, this.mac, ETH_P_ARP);
    const n = writeArp(this.outDv, h, ARP_OP_REQUEST, this.mac, this.ip, 0, ip);
    this.emit(this.out, 0, h + n);
    p.timer = this.clock.setTimeout(() => this.arpRequest(ip, p), ARP_INTERVAL_MS);
  }

  private flushPending(ip: number, p: PendingResolution, mac: number): void {
    this.clock.clear(p.timer);
    this.pending.delete(ip);
    this.stats.neighbours_resolved++;
    for (const f of p.frames) {
      writeEthernetHeaderDst(f, mac);
      this.emit(f, 0, f.length);
    }
  }
}

function writeEthernetHeaderDst(frame: Uint8Array, mac: number): void {
  const hi = Math.floor(mac / 0x1_0000_0000);
  const lo = mac >>> 0;
  frame[0] = hi >>> 8;
  frame[1] = hi & 255;
  frame[2] = lo >>> 24;
  frame[3] = (lo >>> 16) & 255;
  frame[4] = (lo >>> 8) & 255;
  frame[5] = lo & 255;
}

/** Reads the destination MAC of a frame (for tests and tools). */
export function frameDstMac(frame: Uint8Array): number {
  return readMac(new DataView(frame.buffer, frame.byteOffset, frame.byteLength), 0);
}
