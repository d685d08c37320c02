/**
 * The connection-tracking table of the userspace MASQUERADE NAT.
 *
 * Theory of operation
 * -------------------
 * Every flow a container opens to the outside (through a host socket) is one entry with two
 * tuples, as in Linux conntrack:
 *
 *  - the **original** tuple, the container's side: src = container IP:port, dst = remote IP:port;
 *  - the **reply** tuple, what replies look like on the host side: src = remote IP:port,
 *    dst = the host address used and the external (mapped) port. Until the NAT knows the mapping
 *    (a host socket still connecting) the reply dst is 0.0.0.0:0, "pending", and the entry cannot
 *    be found from the reply side; `setReply()` fills it in.
 *
 * A published port's flow (DNAT, `inbound`) is the other way round, as the kernel shows a DNAT'ed
 * connection: the original tuple is the host-side client → the host address and published port,
 * the reply tuple the container's side, src = container IP:port, dst = the address and port the
 * container sees the client as (the client itself, or the gateway for a client it could not
 * route back to). The container's packets find it with findReply(); its client side comes in on a
 * host socket that already knows its flow, so its original tuple is not indexed at all.
 *
 * For ICMP queries the "ports" are those of Linux's ICMP tuple: in the original tuple sport is
 * the echo identifier and dport the request type (8); in the reply tuple sport is the reply type
 * (0) and dport the mapped identifier. So an echo request is `findOriginal(ICMP, c, id, r, 8)`
 * and its reply `findReply(ICMP, r, 0, host, mappedId)`.
 *
 * Lookups (per packet) allocate nothing and build no strings: each direction is a chained hash
 * table over all protocols, bucket heads in an array and the chain links inside the entries
 * (`nextOrig`, `nextReply`, like the kernel's hlists). The hash mixes the five numbers with
 * Math.imul and a per-table random seed (a container choosing its ports cannot aim at one
 * chain), and the table doubles when it holds more entries than buckets, so chains stay ~1 long.
 * A one-entry cache per direction answers a run of packets of the same flow without hashing.
 * Measured on Node 20 (100 000 entries in random order / 1000 entries): this table about
 * 350 / 40 ns per lookup, two-level Maps keyed by ip * 65536 + port 510–570 / 70–110 ns (such
 * keys are not small integers, so a get() may box a heap number), a Map with string keys
 * 1600 / 800–1350 ns; a lookup plus touch() of the cached flow 25–30 ns. The table allocates
 * nothing per packet; what V8 may still box is a non-Smi number (an address >= 64.0.0.0, a
 * fractional clock reading) passed to a call it did not inline.
 *
 * Addresses are uint32 (`>>> 0`) everywhere, as in src/packet; lookups do not normalise them.
 *
 * Timeouts follow the NAT RFCs, not Linux's shorter defaults (all configurable, in ms):
 *  - UDP 300 s (RFC 4787 REQ-5: >= 2 min, 5 min recommended), refreshed by outbound packets
 *    only (REQ-6): replies alone cannot keep a mapping alive;
 *  - ICMP queries 60 s (RFC 5508 REQ-2), refreshed by outbound packets only;
 *  - TCP ESTABLISHED 7440 s (RFC 5382 REQ-5: >= 2 h 4 min), the transitory states 240 s (4 min),
 *    CLOSE 10 s; TCP is refreshed by packets in either direction and by every state change.
 * Below the RFC minimums (UDP 120 s, ICMP 60 s, ESTABLISHED 7440 s) the constructor refuses,
 * unless `allowShortTimeouts` is set (tests of the daemon that cannot inject a clock).
 *
 * Expiry is O(expired): every timeout class (each TCP state, UDP, ICMP) has one fixed duration,
 * so an entry's expiry is "last refresh + that duration", and a per-class doubly linked list in
 * refresh order (a refresh moves the entry to the tail) is also in expiry order. `expire()` pops
 * each list's head while it is due and stops at the first live one. This needs a clock that does
 * not go backwards (the system clock's, or a test's virtual clock). An entry stays in effect until
 * `expire()` removes it — its owner's socket is open until then, so lookups still find it and an
 * outbound packet revives it — which keeps lookups free of clock reads; run `expire()` every
 * second or so (or at `nextExpiry()`), and a mapping lives at most that much past its timer.
 * `list()` and the formatted output hide entries that are due, like `conntrack -L`.
 *
 * Limits: `maxEntries` for the table and `maxPerContainer` per container key. When a limit is
 * reached, expired entries are reaped first, then the oldest TIME_WAIT entry (of the table, or of
 * that container) is evicted; only when there is none is the new flow refused, with a typed
 * result rather than an exception. A new flow on the original tuple of an entry in TIME_WAIT or
 * CLOSE (a new SYN reusing the ports) replaces that entry.
 *
 * Removal — by timeout, eviction, replacement, remove(), removeWhere(), removeContainer() or
 * flush() — calls `onRemove(entry, reason)` exactly once per entry, after the entry has left
 * every index and every count: the hook sees a consistent table and may remove (or add) other
 * entries. An exception from the hook propagates to the caller; the entry is already gone.
 */
import { InvalidArgumentError } from '../errors.js';
import { systemClock } from '../platform/clock.js';
import { systemRandom } from '../platform/random.js';
import { RemovalReason } from './reasons.js';

export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;

/** Packet directions for touch(): container → outside, and replies. */
export const DIR_ORIGINAL = 0;
export const DIR_REPLY = 1;

// TCP conntrack states, numbered as Linux's enum tcp_conntrack (and conntrack-tools' names).
export const TCP_NONE = 0; // not TCP
export const TCP_SYN_SENT = 1;
export const TCP_SYN_RECV = 2;
export const TCP_ESTABLISHED = 3;
export const TCP_FIN_WAIT = 4;
export const TCP_CLOSE_WAIT = 5;
export const TCP_LAST_ACK = 6;
export const TCP_TIME_WAIT = 7;
export const TCP_CLOSE = 8;

export const TCP_STATE_NAMES: readonly string[] = [
  'NONE',
  'SYN_SENT',
  'SYN_RECV',
  'ESTABLISHED',
  'FIN_WAIT',
  'CLOSE_WAIT',
  'LAST_ACK',
  'TIME_WAIT',
  'CLOSE',
];

/** The TCP state number of a conntrack state name (`ESTABLISHED`), or -1. */
export function tcpStateFromName(name: string): number {
  const i = TCP_STATE_NAMES.indexOf(name);
  return i > 0 ? i : -1;
}

/** conntrack-tools' protocol names. */
export function protoName(proto: number): string {
  return proto === PROTO_TCP ? 'tcp' : proto === PROTO_UDP ? 'udp' : proto === PROTO_ICMP ? 'icmp' : 'unknown';
}

/** The protocol number of `tcp`, `udp`, `icmp` (or a decimal number), or -1. */
export function protoFromName(name: string): number {
  switch (name.toLowerCase()) {
    case 'tcp':
      return PROTO_TCP;
    case 'udp':
      return PROTO_UDP;
    case 'icmp':
      return PROTO_ICMP;
    default:
      return /^\d{1,3}$/.test(name) && Number(name) <= 255 ? Number(name) : -1;
  }
}

/** The reply type of an ICMP query type (echo 8 → 0, timestamp 13 → 14, ...), or -1. */
export function icmpReplyType(type: number): number {
  switch (type) {
    case 8:
      return 0;
    case 13:
      return 14;
    case 15:
      return 16;
    case 17:
      return 18;
    default:
      return -1;
  }
}

/** Reasons the table itself gives to onRemove (callers of remove() pass their own). */
export const REASON_TIMEOUT = RemovalReason.Timeout;
export const REASON_EVICTED = RemovalReason.Evicted;
export const REASON_REPLACED = RemovalReason.Replaced;
export const REASON_FLUSH = RemovalReason.Flush;
export const REASON_CONTAINER_GONE = RemovalReason.ContainerGone;
export const REASON_REMOVED = RemovalReason.Removed;

/** Timeouts in milliseconds. */
export interface ConntrackTimeouts {
  tcpSynSent: number;
  tcpSynRecv: number;
  tcpEstablished: number;
  tcpFinWait: number;
  tcpCloseWait: number;
  tcpLastAck: number;
  tcpTimeWait: number;
  tcpClose: number;
  udp: number;
  icmp: number;
}

/** RFC 5382 REQ-5 transitory minimum (4 min): the default of every opening/closing state. */
export const TCP_TRANSITORY_TIMEOUT_MS = 240_000;

export const DEFAULT_CONNTRACK_TIMEOUTS: Readonly<ConntrackTimeouts> = Object.freeze({
  tcpSynSent: TCP_TRANSITORY_TIMEOUT_MS,
  tcpSynRecv: TCP_TRANSITORY_TIMEOUT_MS,
  tcpEstablished: 7_440_000, // 2 h 4 min, RFC 5382 REQ-5
  tcpFinWait: TCP_TRANSITORY_TIMEOUT_MS,
  tcpCloseWait: TCP_TRANSITORY_TIMEOUT_MS,
  tcpLastAck: TCP_TRANSITORY_TIMEOUT_MS,
  tcpTimeWait: TCP_TRANSITORY_TIMEOUT_MS,
  tcpClose: 10_000, // after a RST, as Linux
  udp: 300_000, // 5 min, RFC 4787 REQ-5c
  icmp: 60_000, // RFC 5508 REQ-2
});

/** The RFC minimums, enforced unless `allowShortTimeouts`. */
export const MIN_UDP_TIMEOUT_MS = 120_000; // RFC 4787 REQ-5
export const MIN_ICMP_TIMEOUT_MS = 60_000; // RFC 5508 REQ-2
export const MIN_TCP_ESTABLISHED_TIMEOUT_MS = 7_440_000; // RFC 5382 REQ-5

export const DEFAULT_CONNTRACK_MAX_ENTRIES = 65536;
export const DEFAULT_CONNTRACK_MAX_PER_CONTAINER = 8192;

/** A UDP flow with replies becomes ASSURED on a packet more than 2 s after it began (Linux). */
export const UDP_STREAM_MS = 2000;

export interface ConntrackOptions {
  maxEntries?: number;
  maxPerContainer?: number;
  /** Overrides, in ms. `tcpTransitory` sets every opening/closing state except CLOSE at once. */
  timeoutsMs?: Partial<ConntrackTimeouts> & { tcpTransitory?: number };
  /** Accept timeouts below the RFC minimums (tests only). */
  allowShortTimeouts?: boolean;
  /** Milliseconds, never going backwards. Default the system clock's. */
  clock?: () => number;
  /** Called once for every entry removed, after it left the table. */
  onRemove?: (entry: ConntrackEntry, reason: string) => void;
  /** Hash seed (default random); only the chain layout depends on it, never behaviour. */
  hashSeed?: number;
}

/** What add() takes. Addresses are uint32, ports 0–65535. */
export interface ConntrackAddParams {
  proto: number;
  origSrc: number;
  origSport: number;
  origDst: number;
  origDport: number;
  /** Default origDst. */
  replySrc?: number;
  /** Default origDport (ICMP: the reply type of origDport). */
  replySport?: number;
  /** The host address and mapped port; default 0 and 0: pending until setReply(). */
  replyDst?: number;
  replyDport?: number;
  container: string;
  owner?: unknown;
  /** TCP only; default SYN_SENT. */
  state?: number;
  /**
   * A DNAT entry (a published port): the original tuple is the host-side client → the host
   * address and published port, the reply tuple the container's side (container → the address
   * it sees the client as). Packets from the container find it with findReply(); the client's
   * side arrives on a host socket that already knows its flow, so the original tuple is not
   * indexed (and two IPv6 clients shown as 0.0.0.0 cannot collide on it).
   */
  inbound?: boolean;
  /** Text for an original address that is not IPv4 (an IPv6 client or listener), shown instead. */
  origSrcText?: string;
  origDstText?: string;
}

export type ConntrackRefusalReason = 'table-full' | 'container-full' | 'exists' | 'reply-taken';

/** add() refused: no entry was created. */
export interface ConntrackRefusal {
  readonly refused: ConntrackRefusalReason;
}

export const REFUSED_TABLE_FULL: ConntrackRefusal = Object.freeze({ refused: 'table-full' });
export const REFUSED_CONTAINER_FULL: ConntrackRefusal = Object.freeze({ refused: 'container-full' });
/** The original tuple belongs to a live entry (not TIME_WAIT/CLOSE). */
export const REFUSED_EXISTS: ConntrackRefusal = Object.freeze({ refused: 'exists' });
/** The reply tuple (remote + mapped port) belongs to another live entry. */
export const REFUSED_REPLY_TAKEN: ConntrackRefusal = Object.freeze({ refused: 'reply-taken' });

export function isRefusal(r: ConntrackEntry | ConntrackRefusal): r is ConntrackRefusal {
  return !(r instanceof ConntrackEntry);
}

export interface ConntrackFilter {
  proto?: number;
  /** Original source / destination address (uint32), as `conntrack -L --src A --dst B`. */
  src?: number;
  dst?: number;
  sport?: number;
  dport?: number;
  container?: string;
}

export interface ConntrackStats {
  /** Entries in the table now. */
  entries: number;
  /** Of which DNAT entries (published ports): while 0, the NAT skips their lookup. */
  inbound: number;
  inserted: number;
  /** Removals by reason (the reason up to its first ':', at most 64 distinct, then 'other'). */
  removed: Record<string, number>;
  refusedTableFull: number;
  refusedContainerFull: number;
  refusedExists: number;
  /** TIME_WAIT entries evicted to make room. */
  evictedTimeWait: number;
}

/** Per-container key: its entry count and its TIME_WAIT entries, oldest first. */
class ContainerSlot {
  count = 0;
  twHead: ConntrackEntry | null = null;
  twTail: ConntrackEntry | null = null;
  constructor(readonly key: string) {}
}

// Timeout classes: TCP states 1..8 are their own class; then UDP and ICMP.
const CLASS_UDP = 9;
const CLASS_ICMP = 10;
const CLASS_COUNT = 11;

const MAX_REASON_KEYS = 64;
const INITIAL_BUCKETS = 256;

export class ConntrackEntry {
  readonly id: number;
  readonly proto: number;
  readonly origSrc: number;
  readonly origSport: number;
  readonly origDst: number;
  readonly origDport: number;
  /** Reply tuple; change it with Conntrack.setReply(). */
  replySrc: number;
  replySport: number;
  replyDst: number;
  replyDport: number;
  /** TCP_* state (TCP_NONE for UDP and ICMP); change it with Conntrack.setState(). */
  state: number;
  seenReply = false;
  assured = false;
  origPackets = 0;
  origBytes = 0;
  replyPackets = 0;
  replyBytes = 0;
  /** Clock times (ms). */
  readonly createdAt: number;
  lastOutbound: number;
  lastSeen: number;
  /** When the entry times out (clock ms) unless refreshed. */
  expiresAt = 0;
  /** The NAT's flow object. */
  owner: unknown;
  /** Per-container limit key, e.g. "default/10.0.2.100". */
  readonly container: string;
  /** False once removed. */
  live = true;
  /** A DNAT entry (published port): see ConntrackAddParams.inbound. */
  readonly inbound: boolean;
  /** IPv6 original addresses, as text (origSrc/origDst are then 0). */
  readonly origSrcText: string | undefined;
  readonly origDstText: string | undefined;

  // Owned by the table (intrusive links); never written outside conntrack.ts.
  /** @internal */ hashOrig = 0;
  /** @internal */ hashReply = 0;
  /** @internal */ nextOrig: ConntrackEntry | null = null;
  /** @internal */ nextReply: ConntrackEntry | null = null;
  /** @internal */ replyIndexed = false;
  /** @internal */ origIndexed = false;
  /** @internal */ timeoutClass = 0;
  /** @internal */ tPrev: ConntrackEntry | null = null;
  /** @internal */ tNext: ConntrackEntry | null = null;
  /** @internal */ twPrev: ConntrackEntry | null = null;
  /** @internal */ twNext: ConntrackEntry | null = null;
  /** @internal */ slot: ContainerSlot | null = null;

  /** @internal */
  constructor(id: number, p: ConntrackAddParams, state: number, now: number) {
    this.id = id;
    this.proto = p.proto;
    this.origSrc = p.origSrc >>> 0;
    this.origSport = p.origSport;
    this.origDst = p.origDst >>> 0;
    this.origDport = p.origDport;
    this.replySrc = (p.replySrc ?? p.origDst) >>> 0;
    this.replySport = p.replySport ?? (p.proto === PROTO_ICMP ? Math.max(0, icmpReplyType(p.origDport)) : p.origDport);
    this.replyDst = (p.replyDst ?? 0) >>> 0;
    this.replyDport = p.replyDport ?? 0;
    this.state = state;
    this.createdAt = now;
    this.lastOutbound = now;
    this.lastSeen = now;
    this.owner = p.owner ?? null;
    this.container = p.container;
    this.inbound = p.inbound === true;
    this.origSrcText = p.origSrcText;
    this.origDstText = p.origDstText;
  }

  get stateName(): string {
    return TCP_STATE_NAMES[this.state] ?? 'NONE';
  }
}

function hashTuple(seed: number, proto: number, a: number, ap: number, b: number, bp: number): number {
  let h = Math.imul(seed ^ proto, 0x9e3779b1);
  h = Math.imul(h ^ a, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h ^ b, 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h ^ ((ap << 16) | bp), 0x27d4eb2f);
  h ^= h >>> 15;
  return h | 0;
}

function isReplaceable(e: ConntrackEntry): boolean {
  return e.proto === PROTO_TCP && (e.state === TCP_TIME_WAIT || e.state === TCP_CLOSE);
}

export class Conntrack {
  readonly maxEntries: number;
  readonly maxPerContainer: number;
  readonly timeouts: Readonly<ConntrackTimeouts>;
  onRemove: ((entry: ConntrackEntry, reason: string) => void) | null;
  readonly stats: ConntrackStats = {
    entries: 0,
    inbound: 0,
    inserted: 0,
    removed: Object.create(null) as Record<string, number>,
    refusedTableFull: 0,
    refusedContainerFull: 0,
    refusedExists: 0,
    evictedTimeWait: 0,
  };

  private readonly clock: () => number;
  private readonly seed: number;
  private readonly classTimeout = new Float64Array(CLASS_COUNT);
  private readonly classHead: (ConntrackEntry | null)[] = new Array<ConntrackEntry | null>(CLASS_COUNT).fill(null);
  private readonly classTail: (ConntrackEntry | null)[] = new Array<ConntrackEntry | null>(CLASS_COUNT).fill(null);
  private origBuckets: (ConntrackEntry | null)[] = new Array<ConntrackEntry | null>(INITIAL_BUCKETS).fill(null);
  private replyBuckets: (ConntrackEntry | null)[] = new Array<ConntrackEntry | null>(INITIAL_BUCKETS).fill(null);
  private bucketMask = INITIAL_BUCKETS - 1;
  /** Every entry, in insertion order (listing, removeWhere, flush, rehash). */
  private readonly entries = new Set<ConntrackEntry>();
  private readonly containers = new Map<string, ContainerSlot>();
  private lastOrig: ConntrackEntry | null = null;
  private lastReply: ConntrackEntry | null = null;
  private nextId = 1;
  private reasonKeys = 0;

  constructor(options: ConntrackOptions = {}) {
    this.maxEntries = options.maxEntries ?? DEFAULT_CONNTRACK_MAX_ENTRIES;
    this.maxPerContainer = options.maxPerContainer ?? DEFAULT_CONNTRACK_MAX_PER_CONTAINER;
    if (!Number.isInteger(this.maxEntries) || this.maxEntries < 1) throw new InvalidArgumentError(`conntrack maxEntries must be a positive integer, not ${this.maxEntries}`);
    if (!Number.isInteger(this.maxPerContainer) || this.maxPerContainer < 1) {
      throw new InvalidArgumentError(`conntrack maxPerContainer must be a positive integer, not ${this.maxPerContainer}`);
    }
    const o = options.timeoutsMs ?? {};
    const tr = o.tcpTransitory ?? TCP_TRANSITORY_TIMEOUT_MS;
    const d = DEFAULT_CONNTRACK_TIMEOUTS;
    const t: ConntrackTimeouts = {
      tcpSynSent: o.tcpSynSent ?? tr,
      tcpSynRecv: o.tcpSynRecv ?? tr,
      tcpEstablished: o.tcpEstablished ?? d.tcpEstablished,
      tcpFinWait: o.tcpFinWait ?? tr,
      tcpCloseWait: o.tcpCloseWait ?? tr,
      tcpLastAck: o.tcpLastAck ?? tr,
      tcpTimeWait: o.tcpTimeWait ?? tr,
      tcpClose: o.tcpClose ?? d.tcpClose,
      udp: o.udp ?? d.udp,
      icmp: o.icmp ?? d.icmp,
    };
    for (const [name, v] of Object.entries(t)) {
      if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new InvalidArgumentError(`conntrack timeout ${name} must be a positive number of ms, not ${v}`);
    }
    if (!options.allowShortTimeouts) {
      if (t.udp < MIN_UDP_TIMEOUT_MS) throw new InvalidArgumentError(`conntrack UDP timeout ${t.udp / 1000} s is below RFC 4787's 120 s minimum`);
      if (t.icmp < MIN_ICMP_TIMEOUT_MS) throw new InvalidArgumentError(`conntrack ICMP timeout ${t.icmp / 1000} s is below RFC 5508's 60 s minimum`);
      if (t.tcpEstablished < MIN_TCP_ESTABLISHED_TIMEOUT_MS) {
        throw new InvalidArgumentError(`conntrack TCP established timeout ${t.tcpEstablished / 1000} s is below RFC 5382's 7440 s (2 h 4 min) minimum`);
      }
    }
    this.timeouts = Object.freeze(t);
    const ct = this.classTimeout;
    ct[TCP_SYN_SENT] = t.tcpSynSent;
    ct[TCP_SYN_RECV] = t.tcpSynRecv;
    ct[TCP_ESTABLISHED] = t.tcpEstablished;
    ct[TCP_FIN_WAIT] = t.tcpFinWait;
    ct[TCP_CLOSE_WAIT] = t.tcpCloseWait;
    ct[TCP_LAST_ACK] = t.tcpLastAck;
    ct[TCP_TIME_WAIT] = t.tcpTimeWait;
    ct[TCP_CLOSE] = t.tcpClose;
    ct[CLASS_UDP] = t.udp;
    ct[CLASS_ICMP] = t.icmp;
    this.clock = options.clock ?? (() => systemClock.now());
    this.onRemove = options.onRemove ?? null;
    this.seed = (options.hashSeed ?? systemRandom.uint32()) | 0;
  }

  /** Entries in the table (expired ones not yet reaped included). */
  get size(): number {
    return this.entries.size;
  }

  /** Entries of one container. */
  containerCount(container: string): number {
    return this.containers.get(container)?.count ?? 0;
  }

  /** The timeout (ms) an entry's class has now. */
  timeoutOf(e: ConntrackEntry): number {
    return this.classTimeout[e.timeoutClass];
  }

  // ------------------------------------------------------------------------------------------
  // Lookups (hot path: no allocation)
  // ------------------------------------------------------------------------------------------

  /** The entry whose original tuple is this (container side), or undefined. */
  findOriginal(proto: number, src: number, sport: number, dst: number, dport: number): ConntrackEntry | undefined {
    let e = this.lastOrig;
    if (e === null || e.origSrc !== src || e.origSport !== sport || e.origDst !== dst || e.origDport !== dport || e.proto !== proto) {
      e = this.origBuckets[hashTuple(this.seed, proto, src, sport, dst, dport) & this.bucketMask];
      while (e !== null && (e.origSrc !== src || e.origSport !== sport || e.origDst !== dst || e.origDport !== dport || e.proto !== proto)) e = e.nextOrig;
      if (e === null) return undefined;
      this.lastOrig = e;
    }
    return e;
  }

  /** The entry whose reply tuple is this (host side: remote → local address and mapped port). */
  findReply(proto: number, remote: number, rport: number, local: number, lport: number): ConntrackEntry | undefined {
    let e = this.lastReply;
    if (e === null || e.replySrc !== remote || e.replySport !== rport || e.replyDst !== local || e.replyDport !== lport || e.proto !== proto) {
      e = this.replyBuckets[hashTuple(this.seed, proto, remote, rport, local, lport) & this.bucketMask];
      while (e !== null && (e.replySrc !== remote || e.replySport !== rport || e.replyDst !== local || e.replyDport !== lport || e.proto !== proto)) e = e.nextReply;
      if (e === null) return undefined;
      this.lastReply = e;
    }
    return e;
  }

  // ------------------------------------------------------------------------------------------
  // Per-packet updates (hot path)
  // ------------------------------------------------------------------------------------------

  /**
   * Counts a packet of `bytes` in `direction` (DIR_ORIGINAL / DIR_REPLY). Original-direction
   * packets refresh every entry; replies refresh TCP and DNAT entries only (RFC 4787 REQ-6: a
   * container's outbound mapping is not kept alive by what comes back), and mark the reply seen.
   * `now` defaults to the table's clock (pass it when the caller has read the clock already).
   */
  touch(e: ConntrackEntry, direction: number, bytes: number, now: number = this.clock()): void {
    if (!e.live) return;
    e.lastSeen = now;
    if (direction === DIR_ORIGINAL) {
      e.origPackets++;
      e.origBytes += bytes;
      e.lastOutbound = now;
      e.expiresAt = now + this.classTimeout[e.timeoutClass];
      this.requeue(e);
    } else {
      e.replyPackets++;
      e.replyBytes += bytes;
      e.seenReply = true;
      if (e.proto === PROTO_TCP || e.inbound) {
        e.expiresAt = now + this.classTimeout[e.timeoutClass];
        this.requeue(e);
      }
    }
    if (!e.assured && e.seenReply && e.proto === PROTO_UDP && now - e.createdAt > UDP_STREAM_MS) e.assured = true;
  }

  /** A reply was seen (without counting a packet). */
  markReply(e: ConntrackEntry): void {
    if (!e.live) return;
    e.seenReply = true;
    if (!e.assured && e.proto === PROTO_UDP && this.clock() - e.createdAt > UDP_STREAM_MS) e.assured = true;
  }

  /**
   * Moves a TCP entry to `state` and restarts its timer with that state's timeout. Reaching
   * ESTABLISHED makes it ASSURED; SYN_RECV and later (but CLOSE) imply a reply was seen.
   * False for a removed entry, a non-TCP entry or an unknown state.
   */
  setState(e: ConntrackEntry, state: number): boolean {
    if (!e.live || e.proto !== PROTO_TCP || !(state >= TCP_SYN_SENT && state <= TCP_CLOSE) || !Number.isInteger(state)) return false;
    const now = this.clock();
    const wasTimeWait = e.state === TCP_TIME_WAIT;
    this.classUnlink(e);
    if (wasTimeWait) this.twUnlink(e);
    e.state = state;
    e.timeoutClass = state;
    e.expiresAt = now + this.classTimeout[state];
    this.classAppend(e);
    if (state === TCP_TIME_WAIT) this.twAppend(e);
    if (state === TCP_ESTABLISHED) e.assured = true;
    if (state >= TCP_SYN_RECV && state <= TCP_TIME_WAIT) e.seenReply = true;
    return true;
  }

  /**
   * Sets the reply destination (host address, mapped port) once known, and indexes the entry
   * for findReply(). An entry holding that reply tuple in TIME_WAIT/CLOSE or expired is replaced;
   * a live one makes this return false (nothing changes).
   */
  setReply(e: ConntrackEntry, dst: number, dport: number): boolean {
    if (!e.live) return false;
    dst >>>= 0;
    if (e.replyIndexed && e.replyDst === dst && e.replyDport === dport) return true;
    const pending = dst === 0 && dport === 0;
    if (!pending) {
      const other = this.lookupReply(e.proto, e.replySrc, e.replySport, dst, dport);
      if (other !== null && other !== e) {
        if (!isReplaceable(other) && other.expiresAt > this.clock()) return false;
        this.removeEntry(other, other.expiresAt > this.clock() ? REASON_REPLACED : REASON_TIMEOUT);
        if (!e.live) return false; // the hook removed it
      }
    }
    if (e.replyIndexed) this.replyUnlink(e);
    e.replyDst = dst;
    e.replyDport = dport;
    if (!pending) this.replyLink(e);
    return true;
  }

  // ------------------------------------------------------------------------------------------
  // Adding and removing (per flow)
  // ------------------------------------------------------------------------------------------

  /**
   * Creates an entry, or says why not. A live entry with the same original tuple refuses
   * ('exists') unless it is in TIME_WAIT or CLOSE, which it replaces; at a limit, expired
   * entries and then the oldest TIME_WAIT entries go first.
   */
  add(p: ConntrackAddParams): ConntrackEntry | ConntrackRefusal {
    const proto = p.proto;
    const state = proto === PROTO_TCP ? (p.state ?? TCP_SYN_SENT) : TCP_NONE;
    if (proto === PROTO_TCP && !(state >= TCP_SYN_SENT && state <= TCP_CLOSE)) throw new InvalidArgumentError(`conntrack: invalid TCP state ${state}`);
    let now = this.clock();
    // The original tuple: replace a finished TCP connection (a new SYN on its ports) or a corpse.
    const same = p.inbound ? null : this.lookupOrig(proto, p.origSrc >>> 0, p.origSport, p.origDst >>> 0, p.origDport);
    if (same !== null) {
      if (same.expiresAt <= now) this.removeEntry(same, REASON_TIMEOUT);
      else if (isReplaceable(same)) this.removeEntry(same, REASON_REPLACED);
      else {
        this.stats.refusedExists++;
        return REFUSED_EXISTS;
      }
    }
    const replyDst = (p.replyDst ?? 0) >>> 0;
    const replyDport = p.replyDport ?? 0;
    if (replyDst !== 0 || replyDport !== 0) {
      const replySport = p.replySport ?? (proto === PROTO_ICMP ? Math.max(0, icmpReplyType(p.origDport)) : p.origDport);
      const taken = this.lookupReply(proto, (p.replySrc ?? p.origDst) >>> 0, replySport, replyDst, replyDport);
      if (taken !== null) {
        if (taken.expiresAt <= now) this.removeEntry(taken, REASON_TIMEOUT);
        else if (isReplaceable(taken)) this.removeEntry(taken, REASON_REPLACED);
        else {
          this.stats.refusedExists++;
          return REFUSED_REPLY_TAKEN;
        }
      }
    }
    // Per-container limit, then the table's.
    if (this.containerCount(p.container) >= this.maxPerContainer) {
      this.expire();
      while (this.containerCount(p.container) >= this.maxPerContainer) {
        const victim = this.containers.get(p.container)?.twHead ?? null;
        if (victim === null) {
          this.stats.refusedContainerFull++;
          return REFUSED_CONTAINER_FULL;
        }
        this.stats.evictedTimeWait++;
        this.removeEntry(victim, REASON_EVICTED);
      }
    }
    if (this.entries.size >= this.maxEntries) {
      this.expire();
      while (this.entries.size >= this.maxEntries) {
        const victim = this.classHead[TCP_TIME_WAIT];
        if (victim === null) {
          this.stats.refusedTableFull++;
          return REFUSED_TABLE_FULL;
        }
        this.stats.evictedTimeWait++;
        this.removeEntry(victim, REASON_EVICTED);
      }
    }
    now = this.clock();
    const e = new ConntrackEntry(this.nextId++, p, state, now);
    e.timeoutClass = proto === PROTO_TCP ? state : proto === PROTO_ICMP ? CLASS_ICMP : CLASS_UDP;
    e.expiresAt = now + this.classTimeout[e.timeoutClass];
    if (state >= TCP_SYN_RECV && state <= TCP_TIME_WAIT) e.seenReply = true;
    if (state === TCP_ESTABLISHED) e.assured = true;
    let slot = this.containers.get(e.container);
    if (slot === undefined) {
      slot = new ContainerSlot(e.container);
      this.containers.set(e.container, slot);
    }
    slot.count++;
    e.slot = slot;
    if (this.entries.size >= this.origBuckets.length) this.grow();
    this.entries.add(e);
    if (!e.inbound) this.origLink(e);
    if (e.replyDst !== 0 || e.replyDport !== 0) this.replyLink(e);
    this.classAppend(e);
    if (state === TCP_TIME_WAIT) this.twAppend(e);
    this.stats.inserted++;
    this.stats.entries = this.entries.size;
    if (e.inbound) this.stats.inbound++;
    return e;
  }

  /**
   * Removes a TIME_WAIT (or CLOSE) entry on this original tuple, so a new connection can reuse
   * it. True when one was removed.
   */
  replaceTimeWait(proto: number, src: number, sport: number, dst: number, dport: number): boolean {
    const e = this.lookupOrig(proto, src >>> 0, sport, dst >>> 0, dport);
    if (e === null || !isReplaceable(e)) return false;
    this.removeEntry(e, REASON_REPLACED);
    return true;
  }

  /** Removes an entry (calling onRemove once); false if it was already gone. */
  remove(e: ConntrackEntry, reason: string = REASON_REMOVED): boolean {
    if (!e.live) return false;
    this.removeEntry(e, reason);
    return true;
  }

  /** Removes every entry past its timeout; returns how many. O(expired). */
  expire(): number {
    const now = this.clock();
    let n = 0;
    for (let c = 1; c < CLASS_COUNT; c++) {
      let e = this.classHead[c];
      while (e !== null && e.expiresAt <= now) {
        this.removeEntry(e, REASON_TIMEOUT);
        n++;
        e = this.classHead[c];
      }
    }
    return n;
  }

  /** The earliest expiry (clock ms) of any entry, or Infinity: when expire() has work next. */
  nextExpiry(): number {
    let t = Infinity;
    for (let c = 1; c < CLASS_COUNT; c++) {
      const e = this.classHead[c];
      if (e !== null && e.expiresAt < t) t = e.expiresAt;
    }
    return t;
  }

  /** Removes the entries (present at the call) that `predicate` selects; returns how many. */
  removeWhere(predicate: (e: ConntrackEntry) => boolean, reason: string = REASON_REMOVED): number {
    let n = 0;
    for (const e of Array.from(this.entries)) {
      if (e.live && predicate(e)) {
        this.removeEntry(e, reason);
        n++;
      }
    }
    return n;
  }

  /** Removes every entry of a container (it was detached). */
  removeContainer(container: string, reason: string = REASON_CONTAINER_GONE): number {
    if (!this.containers.has(container)) return 0;
    return this.removeWhere((e) => e.container === container, reason);
  }

  /** Removes everything; returns how many. */
  flush(reason: string = REASON_FLUSH): number {
    return this.removeWhere(() => true, reason);
  }

  // ------------------------------------------------------------------------------------------
  // Inspection
  // ------------------------------------------------------------------------------------------

  /** Whole seconds before `e` times out (what conntrack -L prints); 0 when due. */
  remaining(e: ConntrackEntry): number {
    return remainingSeconds(e, this.clock());
  }

  /** Live entries in insertion order, filtered on the original tuple like `conntrack -L`. */
  list(filter: ConntrackFilter = {}): ConntrackEntry[] {
    const now = this.clock();
    const out: ConntrackEntry[] = [];
    for (const e of this.entries) {
      if (e.expiresAt <= now) continue;
      if (filter.proto !== undefined && e.proto !== filter.proto) continue;
      if (filter.src !== undefined && e.origSrc !== filter.src >>> 0) continue;
      if (filter.dst !== undefined && e.origDst !== filter.dst >>> 0) continue;
      if (filter.sport !== undefined && e.origSport !== filter.sport) continue;
      if (filter.dport !== undefined && e.origDport !== filter.dport) continue;
      if (filter.container !== undefined && e.container !== filter.container) continue;
      out.push(e);
    }
    return out;
  }

  /** The clock the table uses (ms). */
  now(): number {
    return this.clock();
  }

  // ------------------------------------------------------------------------------------------
  // Internals
  // ------------------------------------------------------------------------------------------

  private lookupOrig(proto: number, src: number, sport: number, dst: number, dport: number): ConntrackEntry | null {
    let e = this.origBuckets[hashTuple(this.seed, proto, src, sport, dst, dport) & this.bucketMask];
    while (e !== null && (e.origSrc !== src || e.origSport !== sport || e.origDst !== dst || e.origDport !== dport || e.proto !== proto)) e = e.nextOrig;
    return e;
  }

  private lookupReply(proto: number, remote: number, rport: number, local: number, lport: number): ConntrackEntry | null {
    let e = this.replyBuckets[hashTuple(this.seed, proto, remote, rport, local, lport) & this.bucketMask];
    while (e !== null && (e.replySrc !== remote || e.replySport !== rport || e.replyDst !== local || e.replyDport !== lport || e.proto !== proto)) e = e.nextReply;
    return e;
  }

  private removeEntry(e: ConntrackEntry, reason: string): void {
    if (!e.live) return;
    e.live = false;
    if (e.origIndexed) this.origUnlink(e);
    if (e.replyIndexed) this.replyUnlink(e);
    this.classUnlink(e);
    if (e.state === TCP_TIME_WAIT) this.twUnlink(e);
    this.entries.delete(e);
    const slot = e.slot;
    if (slot !== null) {
      slot.count--;
      if (slot.count === 0 && this.containers.get(slot.key) === slot) this.containers.delete(slot.key);
      e.slot = null;
    }
    if (this.lastOrig === e) this.lastOrig = null;
    if (this.lastReply === e) this.lastReply = null;
    const s = this.stats;
    s.entries = this.entries.size;
    if (e.inbound) s.inbound--;
    let key = reason;
    const colon = key.indexOf(':');
    if (colon >= 0) key = key.slice(0, colon);
    const count = s.removed[key];
    if (count !== undefined) s.removed[key] = count + 1;
    else if (this.reasonKeys < MAX_REASON_KEYS || key === 'other') {
      this.reasonKeys++;
      s.removed[key] = 1;
    } else s.removed.other = (s.removed.other ?? 0) + 1;
    const hook = this.onRemove;
    if (hook !== null) hook(e, reason);
  }

  /**
   * After a refresh (expiresAt = now + class timeout, the latest of its class): moves the entry
   * to the tail of its class list, and of its container's TIME_WAIT list. Takes no number, so
   * the per-packet call boxes nothing.
   */
  private requeue(e: ConntrackEntry): void {
    if (e.tNext !== null) {
      this.classUnlink(e);
      this.classAppend(e);
    }
    if (e.twNext !== null) {
      this.twUnlink(e);
      this.twAppend(e);
    }
  }

  private classAppend(e: ConntrackEntry): void {
    const c = e.timeoutClass;
    const tail = this.classTail[c];
    e.tPrev = tail;
    e.tNext = null;
    if (tail === null) this.classHead[c] = e;
    else tail.tNext = e;
    this.classTail[c] = e;
  }

  private classUnlink(e: ConntrackEntry): void {
    const c = e.timeoutClass;
    if (e.tPrev === null) this.classHead[c] = e.tNext;
    else e.tPrev.tNext = e.tNext;
    if (e.tNext === null) this.classTail[c] = e.tPrev;
    else e.tNext.tPrev = e.tPrev;
    e.tPrev = null;
    e.tNext = null;
  }

  private twAppend(e: ConntrackEntry): void {
    const slot = e.slot;
    if (slot === null) return;
    const tail = slot.twTail;
    e.twPrev = tail;
    e.twNext = null;
    if (tail === null) slot.twHead = e;
    else tail.twNext = e;
    slot.twTail = e;
  }

  private twUnlink(e: ConntrackEntry): void {
    const slot = e.slot;
    if (slot === null) return;
    if (e.twPrev === null) slot.twHead = e.twNext;
    else e.twPrev.twNext = e.twNext;
    if (e.twNext === null) slot.twTail = e.twPrev;
    else e.twNext.twPrev = e.twPrev;
    e.twPrev = null;
    e.twNext = null;
  }

  private origLink(e: ConntrackEntry): void {
    e.hashOrig = hashTuple(this.seed, e.proto, e.origSrc, e.origSport, e.origDst, e.origDport);
    const i = e.hashOrig & this.bucketMask;
    e.nextOrig = this.origBuckets[i];
    this.origBuckets[i] = e;
    e.origIndexed = true;
  }

  private origUnlink(e: ConntrackEntry): void {
    const i = e.hashOrig & this.bucketMask;
    let p = this.origBuckets[i];
    if (p === e) this.origBuckets[i] = e.nextOrig;
    else {
      while (p !== null && p.nextOrig !== e) p = p.nextOrig;
      if (p !== null) p.nextOrig = e.nextOrig;
    }
    e.nextOrig = null;
    e.origIndexed = false;
  }

  private replyLink(e: ConntrackEntry): void {
    e.hashReply = hashTuple(this.seed, e.proto, e.replySrc, e.replySport, e.replyDst, e.replyDport);
    const i = e.hashReply & this.bucketMask;
    e.nextReply = this.replyBuckets[i];
    this.replyBuckets[i] = e;
    e.replyIndexed = true;
  }

  private replyUnlink(e: ConntrackEntry): void {
    const i = e.hashReply & this.bucketMask;
    let p = this.replyBuckets[i];
    if (p === e) this.replyBuckets[i] = e.nextReply;
    else {
      while (p !== null && p.nextReply !== e) p = p.nextReply;
      if (p !== null) p.nextReply = e.nextReply;
    }
    e.nextReply = null;
    e.replyIndexed = false;
    if (this.lastReply === e) this.lastReply = null;
  }

  /** Doubles both bucket arrays and relinks every entry (amortised O(1) per add). */
  private grow(): void {
    const n = this.origBuckets.length * 2;
    this.origBuckets = new Array<ConntrackEntry | null>(n).fill(null);
    this.replyBuckets = new Array<ConntrackEntry | null>(n).fill(null);
    this.bucketMask = n - 1;
    for (const e of this.entries) {
      if (e.origIndexed) {
        const i = e.hashOrig & this.bucketMask;
        e.nextOrig = this.origBuckets[i];
        this.origBuckets[i] = e;
      }
      if (e.replyIndexed) {
        const j = e.hashReply & this.bucketMask;
        e.nextReply = this.replyBuckets[j];
        this.replyBuckets[j] = e;
      }
    }
  }
}

/** Whole seconds before `e` times out at clock time `now` (conntrack -L's timeout column). */
export function remainingSeconds(e: ConntrackEntry, now: number): number {
  const ms = e.expiresAt - now;
  return ms > 0 ? Math.floor(ms / 1000) : 0;
}
