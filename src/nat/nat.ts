/**
 * The outbound NAT (MASQUERADE): the router behind every network's gateway.
 *
 * The gateway hands it what it does not answer itself — IPv4 beyond the subnet, and TCP/UDP to
 * the gateway's own addresses — and the NAT carries it through host sockets:
 *
 *   destination          carried to                          unless
 *   gateway address  ──▶ the host's loopback (127.0.0.1)     --disable-host-loopback: net unreachable
 *   DNS address, TCP 53 ─▶ the first upstream resolver       (DNS over TCP)
 *   anywhere else    ──▶ itself, from the host's address (or --outbound-addr)
 *
 * Never translated, dropped and counted: 0.0.0.0/8, 127.0.0.0/8 (but through the gateway
 * address), 169.254.0.0/16, multicast and reserved (224.0.0.0/3), broadcast, and the subnets of
 * usernet's own networks (networks are isolated). IP fragments are reassembled first
 * (ipv4-reassembly.ts: bounded, timed out, counted) and the whole datagram is routed as if it had
 * come in one piece — host sockets take whole datagrams. Frames that carry no checksum-offload
 * flag (reassembled ones never do) have their TCP/UDP checksum verified.
 *
 * One conntrack table serves all networks (so `usernet conntrack -L` lists everything); its
 * entries own the flows, and removing an entry (timeout, flush, container gone) ends its flow.
 */
import type { Logger } from 'pino';
import type { GatewayPort, IpRouter } from '../gateway/gateway.js';
import type { NetworkConfig } from '../gateway/network.js';
import type { Upstream } from '../gateway/upstream.js';
import { pseudoHeaderSumV4, sum16 } from '../packet/checksum.js';
import { ICMP_DEST_UNREACH, ICMP_UNREACH_ADMIN_PROHIBITED, ICMP_UNREACH_NET, ICMP_UNREACH_PROTOCOL } from '../packet/icmp.js';
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, Ipv4View } from '../packet/ipv4.js';
import { ipv4ToString, parseIpv4, prefixToMask } from '../packet/ip-address.js';
import { UdpView as UdpHeaderView } from '../packet/udp.js';
import { ParseStatus } from '../packet/status.js';
import { VNET_F_DATA_VALID, VNET_F_NEEDS_CSUM, type VnetHeader } from '../packet/virtio-net.js';
import { Conntrack, PROTO_ICMP, PROTO_TCP, PROTO_UDP, type ConntrackEntry, type ConntrackTimeouts } from './conntrack.js';
import { IcmpNat } from './icmp-nat.js';
import { Ipv4Reassembler, REASM_COMPLETE, type ReassemblyOptions, type ReassemblyStats } from './ipv4-reassembly.js';
import { Publisher } from './publish.js';
import { TcpNat, type TcpTarget, type TcpTargetSource } from './tcp-nat.js';
import { UdpNat, type UdpFiltering, type UdpView } from './udp-nat.js';
import { RemovalReason } from './reasons.js';
import { systemClock, type Clock, type Timer } from '../platform/clock.js';
import { systemHostStack, type HostStack } from '../platform/host-stack.js';
import { systemRandom, type Random } from '../platform/random.js';

const LOOPBACK = 0x7f000001;
const EXPIRE_INTERVAL_MS = 1000;
/** The fragment offset and MF bits of the IPv4 flags word: either set means a fragment. */
const FRAGMENT_BITS = 0x3fff;

export interface NatOptions {
  log: Logger;
  /** Local address for host sockets (--outbound-addr). */
  outboundAddress?: string;
  udpFiltering?: UdpFiltering;
  maxEntries?: number;
  maxPerContainer?: number;
  timeoutsMs?: Partial<ConntrackTimeouts>;
  /** Limits and timeout of IPv4 reassembly (defaults: 1 MiB, 64 datagrams, 30 s). */
  reassembly?: ReassemblyOptions;
  /**
   * Every timer and reading of time (default the system clock). The older form, a function giving
   * monotonic milliseconds, is still accepted: it is read for "now" while timers stay the system's.
   */
  clock?: Clock | (() => number);
  /** Every random choice: ISN secret, hash seeds, identifiers, ports (default the system's). */
  random?: Random;
  /** The host side: sockets to the outside (default the real host's; a MemoryOutside in tests). */
  host?: HostStack;
}

/** A Clock from NatOptions.clock: a function is "now" on top of the system clock's timers. */
function clockOf(c: Clock | (() => number) | undefined): Clock {
  if (c === undefined) return systemClock;
  if (typeof c !== 'function') return c;
  return {
    now: c,
    wallTime: systemClock.wallTime.bind(systemClock),
    setTimeout: systemClock.setTimeout.bind(systemClock),
    setInterval: systemClock.setInterval.bind(systemClock),
    clear: systemClock.clear.bind(systemClock),
  };
}

/** What the NAT needs to know about a network. */
/**
 * Kernel TCP states (include/net/tcp_states.h) of a connection that can still send or wait for
 * data: ESTABLISHED 1, SYN_SENT 2, FIN_WAIT1 4, FIN_WAIT2 5, CLOSE_WAIT 8, LAST_ACK 9, CLOSING 11.
 */
const ORPHAN_STATES = new Set([1, 2, 4, 5, 8, 9, 11]);

export interface NatNetwork {
  name: string;
  gateway: number;
  dns: number;
  network: number;
  prefix: number;
  /** Connections to the gateway address are refused (ENETUNREACH) instead of reaching 127.0.0.1. */
  disableHostLoopback: boolean;
  /** Resolvers for DNS over TCP to the DNS address. */
  dnsUpstreams: () => Upstream[];
  /** No DNS at the DNS address: TCP to its port 53 is dropped unanswered. */
  disableDns?: boolean;
}

/**
 * A network as the NAT keeps it: its configuration, and the per-network objects route() hands
 * to the protocol NATs, made once here so that routing a frame allocates nothing.
 */
interface RoutedNetwork extends NatNetwork {
  /** How a host address is shown to the network's containers (the host's loopback as the gateway). */
  readonly view: UdpView;
  /** Where a new TCP connection from this network goes on the host. */
  readonly tcpTargets: TcpTargetSource;
}

export interface NatStats {
  routed: number;
  special: number;
  /** IPv4 fragments from containers (handed to reassembly). */
  fragments: number;
  badChecksums: number;
  hostLoopbackRefused: number;
  /** TCP to the DNS address's port 53 on a network without DNS (dropped). */
  dnsDisabled: number;
  unsupportedProtocol: number;
  /** Reassembly's counters: datagrams put back together, and what was dropped, by reason. */
  reassembly: ReassemblyStats;
}

export class Nat implements IpRouter {
  readonly ct: Conntrack;
  readonly tcp: TcpNat;
  readonly udp: UdpNat;
  readonly icmp: IcmpNat;
  /** Published ports (DNAT). */
  readonly publisher: Publisher;
  /** IPv4 fragments from containers are put back together here before they are routed. */
  readonly reassembly: Ipv4Reassembler;
  readonly stats: NatStats;
  private readonly networks = new Map<GatewayPort, RoutedNetwork>();
  private readonly udpHeader = new UdpHeaderView();
  /** Bound to each reassembled datagram in turn. */
  private readonly reassembledIp = new Ipv4View();
  /** The NAT's clock, random source and host stack, shared by all its parts. */
  readonly clock: Clock;
  readonly random: Random;
  readonly host: HostStack;
  private readonly bindAddress: number;
  private readonly timer: Timer;
  private lastLoopbackLog = -Infinity;
  private lastLimitLog = -Infinity;

  constructor(private readonly options: NatOptions) {
    const clock = clockOf(options.clock);
    this.clock = clock;
    this.random = options.random ?? systemRandom;
    this.host = options.host ?? systemHostStack;
    this.ct = new Conntrack({
      ...(options.maxEntries !== undefined ? { maxEntries: options.maxEntries } : {}),
      ...(options.maxPerContainer !== undefined ? { maxPerContainer: options.maxPerContainer } : {}),
      ...(options.timeoutsMs ? { timeoutsMs: options.timeoutsMs } : {}),
      clock: () => clock.now(),
      hashSeed: this.random.uint32(),
      onRemove: (e, reason) => this.entryRemoved(e, reason),
    });
    this.reassembly = new Ipv4Reassembler(options.reassembly);
    this.stats = { routed: 0, special: 0, fragments: 0, badChecksums: 0, hostLoopbackRefused: 0, dnsDisabled: 0, unsupportedProtocol: 0, reassembly: this.reassembly.stats };
    this.bindAddress = options.outboundAddress ? parseIpv4(options.outboundAddress) : 0;
    this.tcp = new TcpNat(this.ct, options.log, clock, this.random, this.host);
    this.udp = new UdpNat(this.ct, options.log, options.udpFiltering ?? 'address-dependent', this.bindAddress, clock, this.host);
    this.icmp = new IcmpNat(this.ct, options.log, this.random, this.host);
    this.publisher = new Publisher(this.ct, this.tcp, options.log, (addr) => this.isShowable(addr), clock, this.random, this.host);
    this.timer = clock.setInterval(() => {
      this.ct.expire();
      this.reassembly.expire(clock.now());
    }, EXPIRE_INTERVAL_MS);
  }

  /** Routes a network's traffic through the NAT. */
  addNetwork(gw: GatewayPort, net: NatNetwork): void {
    const routed: RoutedNetwork = {
      ...net,
      view: { toContainerView: (hostAddr) => (hostAddr === LOOPBACK || (hostAddr >>> 24 === 127 && !net.disableHostLoopback) ? net.gateway : hostAddr) },
      tcpTargets: { tcpTarget: (dst, hostDst, dv, tcpOff) => this.tcpTarget(routed, dst, hostDst, dv, tcpOff) },
    };
    this.networks.set(gw, routed);
    gw.router = this;
  }

  /**
   * Routes a network (gateway/network.ts) through the NAT as its configuration says; TCP to its
   * DNS address goes to the first of `dnsUpstreams()`. What the daemon and a Lab both do.
   */
  addNetworkOf(network: { readonly config: NetworkConfig; readonly gateway: GatewayPort }, dnsUpstreams: () => Upstream[]): void {
    const c = network.config;
    this.addNetwork(network.gateway, {
      name: c.name,
      gateway: c.gateway,
      dns: c.dns,
      network: c.network,
      prefix: c.prefix,
      disableHostLoopback: c.disableHostLoopback,
      disableDns: c.disableDns,
      dnsUpstreams,
    });
  }

  removeNetwork(gw: GatewayPort): void {
    const net = this.networks.get(gw);
    if (!net) return;
    this.networks.delete(gw);
    if (gw.router === this) gw.router = null;
    this.ct.removeWhere((e) => e.container.startsWith(`${net.name}/`), RemovalReason.NetworkRemoved);
  }

  /** Ends every flow of a container (it detached or ended). */
  removeContainer(network: string, ip: number): number {
    return this.ct.removeContainer(`${network}/${ipv4ToString(ip)}`);
  }

  /**
   * After a daemon restart: the TCP connections a container still holds (its socket table, as
   * the daemon read it) that went through the NAT — to an address beyond the network, or to the
   * gateway or DNS address — have no flow any more; each gets reset (`TcpNat.resetOrphan`).
   * Connections between containers of the network are the switch's, not ours, and are left
   * alone, as are TIME_WAIT and closed sockets. Returns how many were probed.
   */
  resetOrphans(gw: GatewayPort, containerMac: number, containerIp: number, sockets: ReadonlyArray<{ state: number; src: number; sport: number; dst: number; dport: number }>): number {
    const net = this.networks.get(gw);
    if (!net) return 0;
    const mask = prefixToMask(net.prefix);
    let n = 0;
    for (const s of sockets) {
      if (s.src !== containerIp || !ORPHAN_STATES.has(s.state)) continue;
      const throughNat = ((s.dst & mask) >>> 0) !== net.network || s.dst === net.gateway || s.dst === net.dns;
      if (!throughNat || this.ct.findOriginal(PROTO_TCP, s.src, s.sport, s.dst, s.dport) || this.ct.findReply(PROTO_TCP, s.src, s.sport, s.dst, s.dport)) continue;
      this.tcp.resetOrphan(gw, containerMac, s.src, s.sport, s.dst, s.dport);
      n++;
    }
    return n;
  }

  /** Ends every flow. */
  flush(): number {
    return this.ct.flush();
  }

  private entryRemoved(e: ConntrackEntry, reason: string): void {
    if (e.proto === PROTO_TCP) this.tcp.entryRemoved(e, reason);
    else if (e.proto === PROTO_UDP) {
      if (e.inbound) this.publisher.udpEntryRemoved(e);
      else this.udp.entryRemoved(e);
    }
    else if (e.proto === PROTO_ICMP) this.icmp.entryRemoved(e);
  }

  /** Not a destination the NAT translates: martians, multicast, our own subnets. */
  private isSpecial(dst: number): boolean {
    const a = dst >>> 24;
    if (a === 0 || a === 127 || a >= 224 || (dst & 0xffff0000) >>> 0 === 0xa9fe0000) return true;
    for (const n of this.networks.values()) {
      if (((dst & prefixToMask(n.prefix)) >>> 0) === n.network) return true;
    }
    return false;
  }

  /**
   * Whether a published port's client at `addr` can be shown to a container as itself: the
   * container must be able to answer it through its gateway (not loopback, not martian, not an
   * address inside a usernet network).
   */
  isShowable(addr: number): boolean {
    return !this.isSpecial(addr) && addr !== 0xffffffff;
  }

  route(gw: GatewayPort, buf: Uint8Array, dv: DataView, ip: Ipv4View, ethSrc: number, vnet: VnetHeader | null): boolean {
    const net = this.networks.get(gw);
    if (!net) return false;
    // One read of the flags word decides it for every datagram that is not a fragment.
    if ((ip.flagsFragment & FRAGMENT_BITS) !== 0) return this.fragment(gw, buf, ip, ethSrc);
    const dst = ip.dst;
    const src = ip.src;
    const proto = ip.protocol;
    // A published port's flow: the container answers a client (or the gateway standing in for
    // one). Looked up first, since the client may be shown as the gateway address itself.
    if (this.ct.stats.inbound > 0 && (proto === IPPROTO_TCP || proto === IPPROTO_UDP) && ip.payloadLength >= 4) {
      const l4 = ip.payloadOffset;
      const e = this.ct.findReply(proto, src, dv.getUint16(l4), dst, dv.getUint16(l4 + 2));
      if (e !== undefined && e.inbound) {
        if (!this.checksumOk(dv, proto, src, dst, l4, ip.payloadLength, vnet)) {
          this.stats.badChecksums++;
          return true;
        }
        this.stats.routed++;
        if (proto === IPPROTO_TCP) this.tcp.segmentForInbound(e, buf, dv, l4, ip.payloadLength, ethSrc);
        else {
          const u = this.udpHeader;
          if (u.bind(dv, l4, ip.payloadLength) === ParseStatus.OK) this.publisher.udpFromContainer(e, buf, u.payloadOffset, u.payloadLength);
        }
        return true;
      }
    }
    let hostDst = dst;
    if (dst === net.gateway) {
      if (proto === IPPROTO_ICMP) return false; // the gateway answers ping itself
      if (net.disableHostLoopback) {
        this.stats.hostLoopbackRefused++;
        const now = this.clock.now();
        if (now - this.lastLoopbackLog > 10_000) {
          this.lastLoopbackLog = now;
          this.options.log.info({ network: net.name, from: ipv4ToString(src) }, 'connection to the host loopback refused (--disable-host-loopback; logged at most every 10 s)');
        }
        gw.sendIcmpError(ethSrc, src, net.gateway, ICMP_DEST_UNREACH, ICMP_UNREACH_NET, 0, buf.subarray(ip.off), Math.min(ip.headerLength + 8, ip.totalLength));
        return true;
      }
      hostDst = LOOPBACK;
    } else if (dst === net.dns) {
      // DNS over TCP to the first upstream; anything else the gateway answers.
      if (proto !== IPPROTO_TCP || ip.payloadLength < 4 || dv.getUint16(ip.payloadOffset + 2) !== 53) return false;
      if (net.disableDns) {
        // No DNS here: the connection goes unanswered and times out, as with slirp4netns
        // --disable-dns (whose clients and tests expect exactly that).
        this.stats.dnsDisabled++;
        return true;
      }
    } else if (this.isSpecial(dst) || dst === 0xffffffff) {
      this.stats.special++;
      return true;
    }
    const l4 = ip.payloadOffset;
    const l4Len = ip.payloadLength;
    if (!this.checksumOk(dv, proto, src, dst, l4, l4Len, vnet)) {
      this.stats.badChecksums++;
      return true;
    }
    this.stats.routed++;
    if (proto === IPPROTO_TCP) {
      this.tcp.segmentFromContainer(gw, buf, dv, ip.off, l4, l4Len, ethSrc, src, dst, hostDst, net.tcpTargets, net.name);
      return true;
    }
    if (proto === IPPROTO_UDP) {
      const u = this.udpHeader;
      if (u.bind(dv, l4, l4Len) !== ParseStatus.OK) return true;
      const refusals = this.udp.stats.limitRefusals;
      this.udp.datagramFromContainer(gw, ethSrc, src, u.srcPort, dst, u.dstPort, hostDst, buf, u.payloadOffset, u.payloadLength, net.name, net.view);
      if (this.udp.stats.limitRefusals !== refusals) this.refuse(gw, net, buf, ip, ethSrc);
      return true;
    }
    if (proto === IPPROTO_ICMP) {
      const refusals = this.icmp.stats.limitRefusals;
      this.icmp.echoFromContainer(gw, ethSrc, src, dst, hostDst, buf, dv, l4, l4Len, net.name, net.view.toContainerView);
      if (this.icmp.stats.limitRefusals !== refusals) this.refuse(gw, net, buf, ip, ethSrc);
      return true;
    }
    this.stats.unsupportedProtocol++;
    gw.sendIcmpError(ethSrc, src, net.gateway, ICMP_DEST_UNREACH, ICMP_UNREACH_PROTOCOL, 0, buf.subarray(ip.off), Math.min(ip.headerLength + 8, ip.totalLength));
    return true;
  }

  /**
   * A fragment: kept until its datagram is whole, which is then routed like any datagram (no
   * virtio-net header: the sender's kernel completed the checksum before fragmenting, and it is
   * verified over the whole datagram). Fragments are never answered by the gateway.
   */
  private fragment(gw: GatewayPort, buf: Uint8Array, ip: Ipv4View, ethSrc: number): boolean {
    this.stats.fragments++;
    const r = this.reassembly;
    if (r.input(buf, ip, this.clock.now()) !== REASM_COMPLETE) return true;
    const whole = this.reassembledIp;
    if (whole.bind(r.outDv, r.outOff, r.outLen) === ParseStatus.OK) this.route(gw, r.outBuf, r.outDv, whole, ethSrc, null);
    return true;
  }

  /**
   * A TCP or UDP frame with neither a partial checksum nor a "validated" mark has a full one:
   * check it. (Other protocols have no pseudo-header checksum: they get protocol unreachable.)
   */
  private checksumOk(dv: DataView, proto: number, src: number, dst: number, l4: number, l4Len: number, vnet: VnetHeader | null): boolean {
    if ((proto !== IPPROTO_TCP && proto !== IPPROTO_UDP) || (vnet !== null && (vnet.flags & (VNET_F_NEEDS_CSUM | VNET_F_DATA_VALID)) !== 0)) return true;
    // UDP without a checksum is allowed over IPv4.
    if (proto === IPPROTO_UDP && l4Len >= 8 && dv.getUint16(l4 + 6) === 0) return true;
    return sum16(dv, l4, l4Len, pseudoHeaderSumV4(src, dst, proto, l4Len)) === 0xffff;
  }

  /** The conntrack table (or the container's share) is full: administratively prohibited, logged. */
  private refuse(gw: GatewayPort, net: NatNetwork, buf: Uint8Array, ip: Ipv4View, ethSrc: number): void {
    const now = this.clock.now();
    if (now - this.lastLimitLog > 10_000) {
      this.lastLimitLog = now;
      this.options.log.warn({ network: net.name, from: ipv4ToString(ip.src) }, 'conntrack full: new UDP/ICMP flows refused (administratively prohibited; logged at most every 10 s)');
    }
    gw.sendIcmpError(ethSrc, ip.src, net.gateway, ICMP_DEST_UNREACH, ICMP_UNREACH_ADMIN_PROHIBITED, 0, buf.subarray(ip.off), Math.min(ip.headerLength + 8, ip.totalLength));
  }

  /** Where a new TCP connection goes on the host (null: refused with a reset). */
  private tcpTarget(net: RoutedNetwork, dst: number, hostDst: number, dv: DataView, tcpOff: number): TcpTarget | null {
    const local = this.options.outboundAddress;
    if (dst === net.dns) {
      const up = net.dnsUpstreams()[0];
      if (!up) return null;
      return { host: up.address, port: up.port };
    }
    const port = dv.getUint16(tcpOff + 2);
    // --outbound-addr applies to the host's loopback too (10.0.2.2): Linux delivers a connection
    // from any local address to 127.0.0.1, and the server then sees that address, as with slirp4netns.
    return { host: ipv4ToString(hostDst), port, ...(local ? { localAddress: local } : {}) };
  }

  close(): void {
    this.clock.clear(this.timer);
    this.reassembly.clear();
    void this.publisher.close();
    this.ct.flush(RemovalReason.DaemonStopping);
    this.tcp.close();
    this.udp.close();
    this.icmp.close();
  }
}
