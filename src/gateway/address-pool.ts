/**
 * The address book of one network: who holds which IPv4 address.
 *
 * One book serves both ways a container gets an address, so they never collide: attachments
 * (`usernet attach`, an address for the container's MAC, held until detach) and DHCP leases (for
 * any client MAC, held until they expire or are released). A MAC holds at most one address. The
 * network, broadcast, gateway and DNS addresses are never handed out. New addresses come from the
 * range, lowest first; an address whose lease has expired is only reused once the range has no
 * never-used or released address left, so a client that comes back late usually finds its
 * address still free.
 */
import { ipv4ToString } from '../packet/ip-address.js';

export const HOLD_ATTACHMENT = 'attachment';
export const HOLD_LEASE = 'lease';
export type HoldKind = typeof HOLD_ATTACHMENT | typeof HOLD_LEASE;

export class Holding {
  constructor(
    readonly ip: number,
    readonly mac: number,
    public kind: HoldKind,
    /** Epoch ms when a lease expires (Infinity for attachments). */
    public expiresAt: number,
    /** True once a DHCP client confirmed it (REQUEST/ACK); offers are only held briefly. */
    public bound: boolean,
  ) {}
}

export class AddressPool {
  readonly network: number;
  readonly broadcast: number;
  private readonly byIp = new Map<number, Holding>();
  private readonly byMac = new Map<number, Holding>();
  /** Addresses a client declined (in use by someone we do not know): skipped until this time. */
  private readonly declined = new Map<number, number>();

  constructor(
    readonly subnet: number,
    readonly prefix: number,
    readonly first: number,
    readonly last: number,
    /** The network's own addresses (gateway, DNS): never handed out. */
    private readonly own: readonly number[],
  ) {
    const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
    this.network = (subnet & mask) >>> 0;
    this.broadcast = (this.network | (~mask >>> 0)) >>> 0;
  }

  /** In the subnet at all. */
  contains(ip: number): boolean {
    return ip >= this.network && ip <= this.broadcast;
  }

  /** An address a host may have: in the subnet, not network, broadcast, gateway or DNS. */
  usable(ip: number): boolean {
    if (!this.contains(ip) || ip === this.network || ip === this.broadcast) return false;
    return !this.own.includes(ip);
  }

  holding(ip: number): Holding | undefined {
    return this.byIp.get(ip);
  }

  holdingOf(mac: number): Holding | undefined {
    return this.byMac.get(mac);
  }

  /** Why `ip` cannot be given to `mac` right now, or '' when it can. */
  whyNot(ip: number, mac: number, now: number): string {
    if (!this.contains(ip)) return `${ipv4ToString(ip)} is outside the subnet ${ipv4ToString(this.network)}/${this.prefix}`;
    if (ip === this.network) return `${ipv4ToString(ip)} is the network address`;
    if (ip === this.broadcast) return `${ipv4ToString(ip)} is the broadcast address`;
    if (this.own.includes(ip)) return `${ipv4ToString(ip)} is the network's own (gateway or DNS) address`;
    const h = this.byIp.get(ip);
    if (h && h.mac !== mac && (h.kind === HOLD_ATTACHMENT || h.expiresAt > now)) return `${ipv4ToString(ip)} is already in use`;
    const declined = this.declined.get(ip);
    if (declined !== undefined && declined > now) return `${ipv4ToString(ip)} was reported in use by a DHCP client (declined)`;
    return '';
  }

  /**
   * Gives `ip` to `mac` (replacing what the MAC held, and an expired lease of another MAC on
   * that address). The caller checks whyNot() first.
   */
  hold(ip: number, mac: number, kind: HoldKind, expiresAt: number, bound: boolean): Holding {
    const mine = this.byMac.get(mac);
    if (mine && mine.ip !== ip) this.drop(mine);
    const other = this.byIp.get(ip);
    if (other && other.mac !== mac) this.drop(other);
    const h = new Holding(ip, mac, kind, expiresAt, bound);
    this.byIp.set(ip, h);
    this.byMac.set(mac, h);
    this.declined.delete(ip);
    return h;
  }

  /** The next address of the range free for `mac`, or -1 when the range is full. */
  next(mac: number, now: number): number {
    let expired = -1;
    for (let ip = this.first; ip <= this.last; ip++) {
      if (!this.usable(ip)) continue;
      const d = this.declined.get(ip);
      if (d !== undefined && d > now) continue;
      const h = this.byIp.get(ip);
      if (!h || h.mac === mac) return ip;
      if (expired < 0 && h.kind === HOLD_LEASE && h.expiresAt <= now) expired = ip;
    }
    return expired;
  }

  /** Frees whatever `mac` holds (of the given kind, if given). Returns the address or -1. */
  release(mac: number, kind?: HoldKind): number {
    const h = this.byMac.get(mac);
    if (!h || (kind !== undefined && h.kind !== kind)) return -1;
    this.drop(h);
    return h.ip;
  }

  /** Marks `ip` unusable for a while (a client found it taken: DHCPDECLINE). */
  decline(ip: number, until: number): void {
    const h = this.byIp.get(ip);
    if (h && h.kind === HOLD_LEASE) this.drop(h);
    this.declined.set(ip, until);
  }

  /** Every holding (for the state file and listings). */
  holdings(): Holding[] {
    return [...this.byIp.values()];
  }

  private drop(h: Holding): void {
    if (this.byIp.get(h.ip) === h) this.byIp.delete(h.ip);
    if (this.byMac.get(h.mac) === h) this.byMac.delete(h.mac);
  }
}
