/**
 * The DHCP server of a network (RFC 2131, options of RFC 2132 and 3397). Sans-I/O: it is given
 * a client message and writes the reply (if any) into a buffer, with where to send it; the
 * gateway does the UDP/IP/Ethernet around it.
 *
 * Addresses come from the network's AddressPool, shared with attachments: a container attached
 * with an address gets that address over DHCP too (its MAC holds it); any other client MAC gets
 * the next free address of the range, as a lease. Offers are held for a minute; a lease is bound
 * by REQUEST/ACK and lasts the lease time; RELEASE frees it, DECLINE puts the address aside.
 * The server is authoritative for its subnet: a client asking for an address that is not its own
 * (INIT-REBOOT with a stale address, another subnet) gets a NAK at once, so it starts over
 * instead of waiting for a timeout. Bound leases are reported through onLeasesChanged, so the
 * daemon can keep them in its state file and hand the same address to the same MAC after a
 * restart.
 */
import {
  BOOTREQUEST,
  DHCP_FLAG_BROADCAST,
  DHCPACK,
  DHCPDECLINE,
  DHCPDISCOVER,
  DHCPINFORM,
  DHCPNAK,
  DHCPOFFER,
  DHCPRELEASE,
  DHCPREQUEST,
  DhcpMessage,
  writeDhcpReply,
  type DhcpReplyFields,
} from '../packet/dhcp.js';
import { BROADCAST_MAC } from '../packet/mac.js';
import { prefixToMask } from '../packet/ip-address.js';
import { ParseStatus } from '../packet/status.js';
import { HOLD_ATTACHMENT, HOLD_LEASE, type AddressPool, type Holding } from './address-pool.js';
import { systemClock, type Clock } from '../platform/clock.js';

export const DEFAULT_LEASE_TIME_SEC = 3600;
/** How long an offered address is kept for the client that was offered it. */
const OFFER_HOLD_MS = 60_000;
/** How long a declined address is set aside. */
const DECLINE_HOLD_MS = 10 * 60_000;
const LIMITED_BROADCAST = 0xffffffff;

export interface DhcpServerConfig {
  /** The gateway address: server identifier (54) and router (3). */
  serverIp: number;
  prefix: number;
  router: number;
  /** DNS servers (6); empty when DNS is disabled. */
  dnsServers: number[];
  /** Search list (119); its first entry is also the domain name (15). */
  searchList: string[];
  mtu: number;
  leaseTimeSec: number;
}

export interface DhcpStats {
  discover: number;
  request: number;
  decline: number;
  release: number;
  inform: number;
  offer: number;
  ack: number;
  nak: number;
  /** Well-formed but not for us (another server chosen, relayed, not Ethernet, no address left). */
  ignored: number;
  /** Not a valid DHCP request at all. */
  malformed: number;
  /** Replies sent without the search list because it did not fit the client's maximum size. */
  trimmed: number;
}

export class DhcpServer {
  readonly stats: DhcpStats = { discover: 0, request: 0, decline: 0, release: 0, inform: 0, offer: 0, ack: 0, nak: 0, ignored: 0, malformed: 0, trimmed: 0 };
  /** After handle() returned a reply: where to send it. */
  replyIp = 0;
  replyMac = 0;
  /** Called when bound leases change (bind, renew to a new address, release, decline). */
  onLeasesChanged: (() => void) | null = null;
  private readonly msg = new DhcpMessage();

  constructor(
    public config: DhcpServerConfig,
    private readonly pool: AddressPool,
    /** Its wall time (epoch ms) dates leases, which outlive the process. Default the system clock. */
    private readonly clock: Clock = systemClock,
  ) {}

  /**
   * Handles the DHCP message (UDP payload) of `len` bytes at `off`. Returns the length of the
   * reply written into `out` at 0 (replyIp/replyMac say where it goes), or 0 for no reply.
   */
  handle(dv: DataView, off: number, len: number, out: Uint8Array): number {
    const m = this.msg;
    if (m.bind(dv, off, len) !== ParseStatus.OK || m.op !== BOOTREQUEST) {
      this.stats.malformed++;
      return 0;
    }
    // Relayed requests and non-Ethernet hardware are outside what this server does.
    if (m.giaddr !== 0 || m.chaddr < 0) {
      this.stats.ignored++;
      return 0;
    }
    switch (m.messageType) {
      case DHCPDISCOVER:
        this.stats.discover++;
        return this.discover(m, out);
      case DHCPREQUEST:
        this.stats.request++;
        return this.request(m, out);
      case DHCPDECLINE:
        this.stats.decline++;
        this.decline(m);
        return 0;
      case DHCPRELEASE:
        this.stats.release++;
        this.release(m);
        return 0;
      case DHCPINFORM:
        this.stats.inform++;
        return this.inform(m, out);
      default:
        this.stats.malformed++;
        return 0;
    }
  }

  /** The address for a client, offered or to be bound: its own, the one it asks for, or the next free. */
  private choose(m: DhcpMessage, now: number): number {
    const mine = this.pool.holdingOf(m.chaddr);
    if (mine && this.pool.usable(mine.ip)) return mine.ip;
    const req = m.requestedIp;
    if (req >= 0 && req >= this.pool.first && req <= this.pool.last && this.pool.whyNot(req, m.chaddr, now) === '') return req;
    return this.pool.next(m.chaddr, now);
  }

  private discover(m: DhcpMessage, out: Uint8Array): number {
    const now = this.clock.wallTime();
    const ip = this.choose(m, now);
    if (ip < 0) {
      this.stats.ignored++; // the range is full: stay silent, as RFC 2131 allows
      return 0;
    }
    const h = this.pool.holdingOf(m.chaddr);
    if (!h || h.kind !== HOLD_ATTACHMENT || h.ip !== ip) {
      // Keep an existing bound lease's expiry; a new offer is held only briefly. An offer to a
      // client whose lease ran out is held at least as long, or the next client would take it.
      const bound = h !== undefined && h.ip === ip && h.bound;
      this.pool.hold(ip, m.chaddr, HOLD_LEASE, bound ? Math.max((h as Holding).expiresAt, now + OFFER_HOLD_MS) : now + OFFER_HOLD_MS, bound);
    }
    this.stats.offer++;
    return this.reply(m, out, DHCPOFFER, ip, true);
  }

  private request(m: DhcpMessage, out: Uint8Array): number {
    const now = this.clock.wallTime();
    const mine = this.pool.holdingOf(m.chaddr);
    if (m.serverId >= 0) {
      // SELECTING: the client answers an offer — ours or another server's.
      if (m.serverId !== this.config.serverIp) {
        if (mine && mine.kind === HOLD_LEASE && !mine.bound) this.pool.release(m.chaddr, HOLD_LEASE);
        this.stats.ignored++;
        return 0;
      }
      if (!mine || m.requestedIp !== mine.ip) return this.nak(m, out);
      return this.bind(m, out, mine.ip, now);
    }
    const wanted = m.requestedIp >= 0 ? m.requestedIp : m.ciaddr;
    if (wanted === 0 || wanted < 0) {
      this.stats.ignored++;
      return 0;
    }
    // INIT-REBOOT (requested address) or RENEWING/REBINDING (ciaddr): confirm or refuse.
    if (mine) return mine.ip === wanted ? this.bind(m, out, wanted, now) : this.nak(m, out);
    if (wanted >= this.pool.first && wanted <= this.pool.last && this.pool.whyNot(wanted, m.chaddr, now) === '') return this.bind(m, out, wanted, now);
    return this.nak(m, out);
  }

  private bind(m: DhcpMessage, out: Uint8Array, ip: number, now: number): number {
    const mine = this.pool.holdingOf(m.chaddr);
    if (!mine || mine.kind !== HOLD_ATTACHMENT) {
      // Every bind is reported, renewals too: the state file keeps each lease's current expiry
      // (the daemon coalesces the writes).
      this.pool.hold(ip, m.chaddr, HOLD_LEASE, now + this.config.leaseTimeSec * 1000, true);
      this.onLeasesChanged?.();
    }
    this.stats.ack++;
    return this.reply(m, out, DHCPACK, ip, true);
  }

  private nak(m: DhcpMessage, out: Uint8Array): number {
    this.stats.nak++;
    const len = writeDhcpReply(out, 0, {
      messageType: DHCPNAK,
      xid: m.xid,
      flags: m.flags,
      ciaddr: 0,
      yiaddr: 0,
      siaddr: 0,
      giaddr: 0,
      chaddr: m.chaddr,
      serverId: this.config.serverIp,
      message: 'address not valid for this client on this network',
    });
    // RFC 2131 4.1: a NAK is broadcast.
    this.replyIp = LIMITED_BROADCAST;
    this.replyMac = BROADCAST_MAC;
    return len;
  }

  private decline(m: DhcpMessage): void {
    if (m.serverId !== this.config.serverIp || m.requestedIp < 0) return;
    const mine = this.pool.holdingOf(m.chaddr);
    // Only the address this client was given: another client's lease (or a free address) is not its to decline.
    if (!mine || mine.ip !== m.requestedIp) return;
    if (mine.kind === HOLD_ATTACHMENT) return; // an attachment's address is the user's call
    this.pool.decline(m.requestedIp, this.clock.wallTime() + DECLINE_HOLD_MS);
    this.onLeasesChanged?.();
  }

  private release(m: DhcpMessage): void {
    const mine = this.pool.holdingOf(m.chaddr);
    if (mine && mine.kind === HOLD_LEASE && mine.ip === m.ciaddr) {
      this.pool.release(m.chaddr, HOLD_LEASE);
      this.onLeasesChanged?.();
    }
  }

  private inform(m: DhcpMessage, out: Uint8Array): number {
    if (m.ciaddr === 0) {
      this.stats.ignored++;
      return 0;
    }
    this.stats.ack++;
    return this.reply(m, out, DHCPACK, 0, false);
  }

  private reply(m: DhcpMessage, out: Uint8Array, type: number, yiaddr: number, withLease: boolean): number {
    const c = this.config;
    const lease = c.leaseTimeSec;
    const mask = prefixToMask(c.prefix);
    const fields: DhcpReplyFields = {
      messageType: type,
      xid: m.xid,
      flags: m.flags,
      ciaddr: m.ciaddr,
      yiaddr,
      siaddr: 0,
      giaddr: 0,
      chaddr: m.chaddr,
      serverId: c.serverIp,
      subnetMask: mask,
      router: c.router,
      broadcast: (c.serverIp & mask) | (~mask >>> 0),
      mtu: c.mtu,
      ...(c.dnsServers.length ? { dnsServers: c.dnsServers } : {}),
      ...(c.searchList.length ? { domainName: c.searchList[0], searchList: c.searchList } : {}),
      ...(withLease ? { leaseTime: lease, renewalTime: Math.floor(lease / 2), rebindingTime: Math.floor((lease * 7) / 8) } : {}),
    };
    fields.broadcast = fields.broadcast! >>> 0;
    // The client takes messages up to its option 57 (at least 576 bytes, RFC 2132 9.10, counting
    // IP and UDP headers): busybox udhcpc drops anything longer. A long search list goes first,
    // then the domain name: an address without them beats no address.
    const limit = Math.max(576, m.maxMessageSize) - 28;
    let len = 0;
    try {
      len = writeDhcpReply(out, 0, fields);
    } catch {
      len = Infinity; // a name DHCP cannot carry (the host's search line is not validated)
    }
    if (len > limit && fields.searchList) {
      fields.searchList = undefined;
      this.stats.trimmed++;
      try {
        len = writeDhcpReply(out, 0, fields);
      } catch {
        len = Infinity;
      }
    }
    if (len > limit && fields.domainName) {
      fields.domainName = undefined;
      len = writeDhcpReply(out, 0, fields);
    }
    // RFC 2131 4.1: unicast to ciaddr when the client has one; broadcast when it asks to;
    // otherwise unicast to the new address at the client's MAC (we know it: no ARP needed).
    if (m.ciaddr !== 0) {
      this.replyIp = m.ciaddr;
      this.replyMac = m.chaddr;
    } else if ((m.flags & DHCP_FLAG_BROADCAST) !== 0 || yiaddr === 0) {
      this.replyIp = LIMITED_BROADCAST;
      this.replyMac = BROADCAST_MAC;
    } else {
      this.replyIp = yiaddr;
      this.replyMac = m.chaddr;
    }
    return len;
  }
}
