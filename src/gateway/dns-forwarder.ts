/**
 * The DNS forwarder behind the gateway's DNS address (10.0.2.3 by default), as in slirp4netns:
 * a container's query goes out through an ordinary host UDP socket to the host's resolvers, and
 * the answer comes back to the container as if 10.0.2.3 had given it.
 *
 *   container ─query id Q→ gateway ─→ DnsForwarder.query ─copy, id R→ socket per upstream ─→ upstream
 *   container ←answer id Q─ gateway ←── reply(answer) ←─ id R → Q, same question? ←─────────┘
 *
 * Sockets: one connected UDP socket per upstream, created on first use and bound by the kernel to
 * a random ephemeral port. Connected, so the kernel drops datagrams from anyone but the upstream,
 * and an ICMP port unreachable comes back as ECONNREFUSED from the socket's next receive (an
 * 'error' event) or send (the send callback), whichever comes first. When the
 * upstream list changes (resolv.conf edited), sockets of upstreams still listed are kept; those
 * of upstreams that are gone close once their last query is answered or has timed out.
 *
 * IDs: containers choose their IDs independently, so every query gets a fresh random 16-bit ID,
 * unique among the queries in flight on that socket (a Map from ID to query). An answer is
 * accepted only if its ID is in flight on the socket it came in on, it is a response, and its
 * question section is the query's (sameQuestion, case-insensitively: RFC 5452). Then its ID is
 * set back to the container's and it is relayed otherwise untouched — EDNS, TC, any size. An ID
 * not in flight counts as `late` (most often an answer to a query already answered or failed);
 * a response that fails the checks counts as `spoofed`.
 *
 * Failover: a query goes to the preferred upstream first (the first listed, until it fails), then
 * after tryTimeoutMs to the next one, round the list — resending to the same one if it is the
 * only one, which helps with a lost datagram — until timeoutMs, when the container gets SERVFAIL.
 * An answer from any upstream tried so far is accepted. An upstream that fails (a try timing out,
 * an ECONNREFUSED) stops being preferred, so later queries do not each wait tryTimeoutMs for a
 * dead first nameserver (like systemd-resolved's current server). ECONNREFUSED, or a socket
 * that cannot bind or connect, fails every query whose current try is on that upstream at once:
 * they move on, and a query for which every upstream has failed so gets SERVFAIL at once.
 *
 * Time: no timer per query. Every query has the same timeoutMs and tryTimeoutMs, so queries
 * ordered by start time are ordered by overall deadline, and queries ordered by their last send
 * are ordered by try deadline. Two insertion-ordered Sets keep those orders (a re-send moves the
 * query to the end), and one timer is armed for the earlier of the two heads. It only runs while
 * queries are in flight. Time, the timer and the IDs come from the injected Clock and Random, the
 * sockets from the injected HostStack (the system's by default: its timers and sockets are
 * unref'd, so the forwarder never keeps the process alive; a test's virtual clock and in-memory
 * stack make a run repeatable).
 *
 * Nothing is logged per query; `stats` counts. An upstream that fails is logged at most once a
 * minute per upstream.
 */
import type { Logger } from 'pino';
import { systemClock, type Clock, type Timer } from '../platform/clock.js';
import { systemHostStack, type HostDatagramSocket, type HostStack } from '../platform/host-stack.js';

/** The part of a HostStack the forwarder needs: datagram sockets to its upstreams. */
export type DatagramHost = Pick<HostStack, 'createDatagramSocket'>;
import { systemRandom, type Random } from '../platform/random.js';
import { formatUpstream, sameUpstreams, type Upstream } from './upstream.js';
import { InvalidArgumentError } from '../errors.js';
import { buildServfail, DNS_FLAG_QR, DNS_HLEN, sameQuestion, validateQuery } from '../packet/dns.js';
import { ParseStatus } from '../packet/status.js';

export interface DnsForwarderOptions {
  /** Where to send queries; called for each query (so a changing resolv.conf takes effect). */
  upstreams: () => Upstream[];
  /** Overall time a query may take before the container gets SERVFAIL. Default 3000 ms. */
  timeoutMs?: number;
  /** Per-upstream try before failing over to the next upstream. Default 1000 ms. */
  tryTimeoutMs?: number;
  /** Queries in flight at most; beyond: immediate SERVFAIL. Default 4096, at most 32768. */
  maxInFlight?: number;
  log: Logger;
  /** Deadlines, the one timer, log rate limits. Default the system clock. */
  clock?: Clock;
  /** Transaction IDs. Default the system's cryptographic source. */
  random?: Random;
  /** Where the upstream sockets come from (`createDatagramSocket`). Default the host's own sockets. */
  /** Only its datagram sockets are used. */
  host?: DatagramHost;
}

export interface DnsForwarderStats {
  /** Well-formed queries received (each gets exactly one reply). */
  queries: number;
  /** Upstream answers relayed. */
  answers: number;
  /** SERVFAILs sent, for any reason below (and at close). */
  servfail: number;
  /** Queries that reached timeoutMs without an answer. */
  timeouts: number;
  /** Queries refused because maxInFlight were in flight. */
  overload: number;
  /** Payloads that are not a well-formed query (query() returned false). */
  malformed: number;
  /** Queries that arrived while no upstream was configured. */
  noUpstream: number;
  /** Datagrams from an upstream with an in-flight ID that are not the answer to that query. */
  spoofed: number;
  /** Datagrams from an upstream whose ID is not in flight (after an answer, failover or timeout). */
  late: number;
  /** Queries waiting for an answer now. */
  inFlight: number;
}

export const DNS_DEFAULT_TIMEOUT_MS = 3000;
export const DNS_DEFAULT_TRY_TIMEOUT_MS = 1000;
export const DNS_DEFAULT_MAX_IN_FLIGHT = 4096;
/** Half the ID space, so finding a free random ID takes two draws on average at worst. */
export const DNS_MAX_IN_FLIGHT_LIMIT = 32768;
const FAILURE_LOG_INTERVAL_MS = 60_000;
const INTERNAL_ERROR_LOG_INTERVAL_MS = 10_000;

type Reply = (answer: Buffer) => void;

/** A query sent to one upstream: the ID it has there, and the bytes sent (with that ID). */
interface Registration {
  link: UpstreamLink;
  id: number;
  bytes: Buffer;
}

/** The socket to one upstream and the queries in flight on it. */
class UpstreamLink {
  socket: HostDatagramSocket | null = null;
  connected = false;
  /** Sends made while the socket was connecting. */
  readonly queued: Buffer[] = [];
  /** ID on this socket -> query. */
  readonly inflight = new Map<number, PendingQuery>();
  /** No longer listed: closes when inflight is empty. */
  retired = false;
  /** When it last failed hard (ECONNREFUSED, bind or connect error); clock time. */
  hardFailedAt = -Infinity;
  loggedAt = -Infinity;
  failuresSinceLog = 0;
  /** The send callback, one per link rather than a closure per datagram. */
  onSent: (err: Error | null) => void = () => {};

  constructor(
    readonly upstream: Upstream,
    readonly key: string,
  ) {}

  get label(): string {
    return formatUpstream(this.upstream);
  }
}

/** The upstreams of one version of the list, in order, and which one is tried first. */
interface UpstreamSet {
  upstreams: Upstream[];
  members: UpstreamLink[];
  preferred: number;
}

class PendingQuery {
  /** The query's bytes (a copy); the first registration sends this very buffer. */
  readonly bytes: Buffer;
  readonly regs: Registration[] = [];
  /** The upstream of the current try, and its index in `set.members`. */
  current: UpstreamLink | null = null;
  pos = -1;
  tryDeadline = Infinity;
  done = false;

  constructor(
    payload: Uint8Array,
    readonly originalId: number,
    readonly reply: Reply,
    readonly startedAt: number,
    readonly deadline: number,
    public set: UpstreamSet,
  ) {
    this.bytes = Buffer.from(payload);
  }
}

const EMPTY_SET: UpstreamSet = { upstreams: [], members: [], preferred: 0 };

export class DnsForwarder {
  readonly stats: DnsForwarderStats = {
    queries: 0,
    answers: 0,
    servfail: 0,
    timeouts: 0,
    overload: 0,
    malformed: 0,
    noUpstream: 0,
    spoofed: 0,
    late: 0,
    inFlight: 0,
  };

  private readonly upstreamsFn: () => Upstream[];
  private readonly timeoutMs: number;
  private readonly tryTimeoutMs: number;
  private readonly maxInFlight: number;
  private readonly log: Logger;

  private lastList: Upstream[] | null = null;
  private noUpstreamLoggedAt = -Infinity;
  private set: UpstreamSet = EMPTY_SET;
  /** Every link with a socket or queries: the current set's and retired ones still busy. */
  private readonly links = new Map<string, UpstreamLink>();
  /** In flight, by start time = by overall deadline. */
  private readonly byDeadline = new Set<PendingQuery>();
  /** In flight with a try deadline before the overall one, by last send = by try deadline. */
  private readonly byTryDeadline = new Set<PendingQuery>();
  private timer: Timer | null = null;
  private timerAt = Infinity;
  private readonly socketsClosing = new Set<Promise<void>>();
  private readonly clock: Clock;
  private readonly random: Random;
  private readonly host: DatagramHost;
  /** Inside query(): a reply must then wait for a microtask, never be called synchronously. */
  private inQuery = false;
  private closed = false;
  private internalErrorLoggedAt = -Infinity;

  constructor(options: DnsForwarderOptions) {
    const timeoutMs = options.timeoutMs ?? DNS_DEFAULT_TIMEOUT_MS;
    const tryTimeoutMs = options.tryTimeoutMs ?? DNS_DEFAULT_TRY_TIMEOUT_MS;
    const maxInFlight = options.maxInFlight ?? DNS_DEFAULT_MAX_IN_FLIGHT;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new InvalidArgumentError(`invalid DNS timeout ${timeoutMs} ms: must be a positive number`);
    if (!Number.isFinite(tryTimeoutMs) || tryTimeoutMs <= 0) throw new InvalidArgumentError(`invalid DNS try timeout ${tryTimeoutMs} ms: must be a positive number`);
    if (!Number.isInteger(maxInFlight) || maxInFlight < 1 || maxInFlight > DNS_MAX_IN_FLIGHT_LIMIT) {
      throw new InvalidArgumentError(`invalid DNS queries in flight ${maxInFlight}: must be an integer 1-${DNS_MAX_IN_FLIGHT_LIMIT}`);
    }
    this.upstreamsFn = options.upstreams;
    this.timeoutMs = timeoutMs;
    this.tryTimeoutMs = Math.min(tryTimeoutMs, timeoutMs);
    this.maxInFlight = maxInFlight;
    this.log = options.log;
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? systemRandom;
    this.host = options.host ?? systemHostStack;
  }

  /** Upstream sockets open now (diagnostics, tests). */
  get openSockets(): number {
    let n = 0;
    for (const link of this.links.values()) if (link.socket) n++;
    return n;
  }

  /**
   * Forwards one query (the container's UDP payload; it is lent, and copied). `reply` is called
   * exactly once, later — never before query() returns — with the answer to send back: the
   * upstream's answer untouched but for its ID, restored to the query's, or a SERVFAIL built from
   * the query (timeout, every upstream failing, no upstream, overload, close). Returns false,
   * and never calls `reply`, for a malformed query, which the caller counts.
   */
  query(payload: Uint8Array, reply: Reply): boolean {
    const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    if (validateQuery(dv, 0, payload.byteLength) !== ParseStatus.OK) {
      this.stats.malformed++;
      return false;
    }
    this.stats.queries++;
    if (this.closed) {
      this.servfailLater(payload, reply);
      return true;
    }
    if (this.stats.inFlight >= this.maxInFlight) {
      this.stats.overload++;
      this.servfailLater(payload, reply);
      return true;
    }
    const set = this.currentSet();
    if (set.members.length === 0) {
      this.stats.noUpstream++;
      const now = this.clock.now();
      if (now - this.noUpstreamLoggedAt >= FAILURE_LOG_INTERVAL_MS) {
        this.noUpstreamLoggedAt = now;
        this.log.warn({ queries: this.stats.noUpstream }, 'DNS query answered SERVFAIL: no upstream resolver (give --dns-upstream, or fix the host resolv.conf; logged at most once a minute)');
      }
      this.servfailLater(payload, reply);
      return true;
    }
    const now = this.clock.now();
    const q = new PendingQuery(payload, dv.getUint16(0), reply, now, now + this.timeoutMs, set);
    this.byDeadline.add(q);
    this.stats.inFlight++;
    q.pos = set.preferred - 1;
    this.inQuery = true;
    try {
      this.advance(q, now);
    } finally {
      this.inQuery = false;
    }
    // A new query's deadlines are the latest, so the timer needs arming only if there was none.
    if (this.timer === null) this.arm(now);
    return true;
  }

  /**
   * Answers every query in flight with SERVFAIL, closes every socket and stops the timer.
   * Queries after this get SERVFAIL.
   */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.stopTimer();
      for (const q of this.byDeadline) this.servfail(q);
      for (const link of [...this.links.values()]) this.closeLink(link);
      this.set = EMPTY_SET;
    }
    await Promise.all([...this.socketsClosing]);
  }

  // ---- upstream list ----

  /** The current upstream set, rebuilt when the list the caller gives changes. */
  private currentSet(): UpstreamSet {
    let list: Upstream[];
    try {
      list = this.upstreamsFn();
    } catch (err) {
      this.internalError(err, 'the upstreams callback threw (treated as no upstream)');
      list = [];
    }
    if (list !== this.lastList) {
      this.lastList = list;
      if (!sameUpstreams(list, this.set.upstreams)) this.rebuild(list);
    }
    return this.set;
  }

  private rebuild(list: Upstream[]): void {
    const members: UpstreamLink[] = [];
    const keep = new Set<UpstreamLink>();
    for (const u of list) {
      const key = `${u.family}|${u.address}|${u.port}`;
      let link = this.links.get(key);
      if (!link) {
        link = new UpstreamLink({ address: u.address, port: u.port, family: u.family }, key);
        this.links.set(key, link);
      }
      if (keep.has(link)) continue; // listed twice: once is enough
      link.retired = false;
      keep.add(link);
      members.push(link);
    }
    for (const link of [...this.links.values()]) {
      if (keep.has(link)) continue;
      link.retired = true;
      if (link.inflight.size === 0) this.closeLink(link);
    }
    this.set = { upstreams: list.map((u) => ({ address: u.address, port: u.port, family: u.family })), members, preferred: 0 };
  }

  // ---- queries ----

  /**
   * Sends `q` to the next upstream it has not seen fail hard, round the current list from its
   * current position; SERVFAIL if there is none. A query whose list was replaced meanwhile
   * continues in the new list, from its preferred upstream.
   */
  private advance(q: PendingQuery, now: number): void {
    const set = this.set;
    if (q.set !== set) {
      q.set = set;
      q.pos = set.preferred - 1;
    }
    const n = set.members.length;
    for (let k = 1; k <= n; k++) {
      const idx = (q.pos + k + n) % n;
      const link = set.members[idx];
      if (link.hardFailedAt >= q.startedAt) continue;
      q.pos = idx;
      this.sendTry(q, link, now);
      return;
    }
    this.servfail(q);
  }

  private sendTry(q: PendingQuery, link: UpstreamLink, now: number): void {
    let reg: Registration | undefined;
    for (const r of q.regs) if (r.link === link) reg = r;
    if (!reg) {
      const id = this.freshId(link);
      // The first upstream gets the query's own copy; another one needs its own buffer, since
      // the one sent before may still sit in a socket's send queue.
      const bytes = q.regs.length === 0 ? q.bytes : Buffer.from(q.bytes);
      bytes.writeUInt16BE(id, 0);
      reg = { link, id, bytes };
      q.regs.push(reg);
      link.inflight.set(id, q);
    }
    q.current = link;
    q.tryDeadline = now + this.tryTimeoutMs;
    this.byTryDeadline.delete(q);
    if (q.tryDeadline < q.deadline) this.byTryDeadline.add(q);
    this.transmit(link, reg.bytes);
  }

  private freshId(link: UpstreamLink): number {
    for (;;) {
      const id = this.random.uint32() >>> 16;
      if (!link.inflight.has(id)) return id;
    }
  }

  private onAnswer(link: UpstreamLink, msg: Buffer): void {
    if (msg.length < DNS_HLEN) {
      this.stats.spoofed++;
      return;
    }
    const q = link.inflight.get(msg.readUInt16BE(0));
    if (q === undefined) {
      this.stats.late++;
      return;
    }
    if ((msg.readUInt16BE(2) & DNS_FLAG_QR) === 0 || !sameQuestion(q.bytes, msg)) {
      this.stats.spoofed++;
      return;
    }
    msg.writeUInt16BE(q.originalId, 0);
    this.stats.answers++;
    this.finish(q, msg);
  }

  private servfail(q: PendingQuery): void {
    const answer = buildServfail(q.bytes);
    answer.writeUInt16BE(q.originalId, 0);
    this.stats.servfail++;
    this.finish(q, answer);
  }

  /** A SERVFAIL for a query that never went anywhere, after the caller's query() returns. */
  private servfailLater(payload: Uint8Array, reply: Reply): void {
    const answer = buildServfail(payload);
    this.stats.servfail++;
    queueMicrotask(() => this.deliver(reply, answer));
  }

  private finish(q: PendingQuery, answer: Buffer): void {
    if (q.done) return;
    q.done = true;
    this.byDeadline.delete(q);
    this.byTryDeadline.delete(q);
    for (const r of q.regs) {
      r.link.inflight.delete(r.id);
      if (r.link.retired && r.link.inflight.size === 0) this.closeLink(r.link);
    }
    this.stats.inFlight--;
    if (this.byDeadline.size === 0) this.stopTimer();
    if (this.inQuery) queueMicrotask(() => this.deliver(q.reply, answer));
    else this.deliver(q.reply, answer);
  }

  private deliver(reply: Reply, answer: Buffer): void {
    try {
      reply(answer);
    } catch (err) {
      this.internalError(err, 'the DNS reply callback threw');
    }
  }

  // ---- time ----

  private readonly onTimer = (): void => {
    this.timer = null;
    this.timerAt = Infinity;
    const now = this.clock.now();
    // Deleting the visited entry while iterating a Set is safe; a query moved to the end of
    // byTryDeadline has a deadline after `now`, so the loop stops before it.
    for (const q of this.byDeadline) {
      if (q.deadline > now) break;
      this.stats.timeouts++;
      this.servfail(q);
    }
    for (const q of this.byTryDeadline) {
      if (q.tryDeadline > now) break;
      const link = q.current;
      if (link) this.upstreamFailed(link, 'no answer', false, now);
      if (!q.done) this.advance(q, now);
    }
    this.arm(now);
  };

  /** Arms the timer for the earliest deadline (or stops it when nothing is in flight). */
  private arm(now: number): void {
    let next = Infinity;
    for (const q of this.byDeadline) {
      next = q.deadline;
      break;
    }
    for (const q of this.byTryDeadline) {
      if (q.tryDeadline < next) next = q.tryDeadline;
      break;
    }
    if (next === Infinity) {
      this.stopTimer();
      return;
    }
    if (this.timer !== null && this.timerAt <= next) return;
    this.clock.clear(this.timer);
    this.timerAt = next;
    this.timer = this.clock.setTimeout(this.onTimer, Math.max(1, Math.ceil(next - now)));
  }

  private stopTimer(): void {
    this.clock.clear(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
  }

  // ---- sockets ----

  private transmit(link: UpstreamLink, bytes: Buffer): void {
    const socket = link.socket ?? this.openSocket(link);
    if (!link.connected) {
      link.queued.push(bytes);
      return;
    }
    try {
      socket.send(bytes, link.onSent);
    } catch (err) {
      // Only a bug could get here (a closed socket); let the try time out rather than recurse.
      this.internalError(err, 'DNS upstream send threw');
    }
  }

  private openSocket(link: UpstreamLink): HostDatagramSocket {
    const { address, port, family } = link.upstream;
    const socket = this.host.createDatagramSocket({ type: family === 6 ? 'udp6' : 'udp4' });
    link.socket = socket;
    link.connected = false;
    socket.unref();
    socket.on('message', (msg: Buffer) => this.onAnswer(link, msg));
    socket.on('error', (err: NodeJS.ErrnoException) => this.onSocketError(link, socket, err));
    // A pending ICMP error is reported by the next send as often as by a receive (the kernel
    // hands sk_err to whichever comes first), and Node drops send errors without a callback.
    link.onSent = (err) => {
      if (err) this.onSocketError(link, socket, err as NodeJS.ErrnoException);
    };
    // connect() binds first, to port 0: a random ephemeral port chosen by the kernel.
    socket.connect(port, address, () => {
      if (link.socket !== socket) return;
      link.connected = true;
      for (const b of link.queued) socket.send(b, link.onSent);
      link.queued.length = 0;
    });
    return socket;
  }

  private onSocketError(link: UpstreamLink, socket: HostDatagramSocket, err: NodeJS.ErrnoException): void {
    if (link.socket !== socket) return;
    if (!link.connected) {
      // Bind or connect failed (no IPv6, no route...): this socket is useless; the next try on
      // this upstream opens a new one.
      link.socket = null;
      link.queued.length = 0;
      this.closeSocket(socket);
    }
    // Otherwise ECONNREFUSED (ICMP port unreachable, from a receive or a send) or another send
    // error (no route...); the socket stays usable.
    this.upstreamFailed(link, err.code ?? err.message, true, this.clock.now());
  }

  /**
   * An upstream failed: it stops being preferred; if hard, every query whose current try is on
   * it moves on now. Logged at most once a minute per upstream.
   */
  private upstreamFailed(link: UpstreamLink, reason: string, hard: boolean, now: number): void {
    link.failuresSinceLog++;
    if (now - link.loggedAt >= FAILURE_LOG_INTERVAL_MS) {
      this.log.warn(
        { upstream: link.label, reason, failures: link.failuresSinceLog },
        this.links.size > 1
          ? 'DNS upstream failing: queries fail over to the next upstream (logged at most once a minute per upstream)'
          : 'DNS upstream failing: queries are retried, then answered SERVFAIL (logged at most once a minute per upstream)',
      );
      link.loggedAt = now;
      link.failuresSinceLog = 0;
    }
    const set = this.set;
    if (set.members[set.preferred] === link) set.preferred = (set.preferred + 1) % set.members.length;
    if (!hard) return;
    link.hardFailedAt = now;
    const moving: PendingQuery[] = [];
    for (const q of link.inflight.values()) if (q.current === link && !q.done) moving.push(q);
    for (const q of moving) if (!q.done) this.advance(q, now);
  }

  private closeLink(link: UpstreamLink): void {
    if (this.links.get(link.key) === link) this.links.delete(link.key);
    const socket = link.socket;
    link.socket = null;
    link.connected = false;
    link.queued.length = 0;
    if (socket) this.closeSocket(socket);
  }

  private closeSocket(socket: HostDatagramSocket): void {
    const closing = new Promise<void>((resolve) => {
      try {
        socket.close(resolve);
      } catch {
        resolve(); // already closed
      }
    });
    this.socketsClosing.add(closing);
    void closing.then(() => this.socketsClosing.delete(closing));
  }

  private internalError(err: unknown, what: string): void {
    const now = this.clock.now();
    if (now - this.internalErrorLoggedAt < INTERNAL_ERROR_LOG_INTERVAL_MS) return;
    this.internalErrorLoggedAt = now;
    this.log.error({ err }, `${what} (further errors logged at most every 10 s)`);
  }
}
