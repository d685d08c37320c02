/**
 * The NAT's conntrack table with a fake clock: RFC timeouts (4787/5382/5508), lookups both ways,
 * limits with TIME_WAIT eviction, the removal hook, and `conntrack -L` lines compared with the
 * ones Linux printed (docs: /work/shared/reference/nat-bridge-standards.md §2.7).
 */
import { describe, it, expect } from 'vitest';
import {
  Conntrack,
  ConntrackEntry,
  DEFAULT_CONNTRACK_MAX_ENTRIES,
  DEFAULT_CONNTRACK_MAX_PER_CONTAINER,
  DEFAULT_CONNTRACK_TIMEOUTS,
  DIR_ORIGINAL,
  DIR_REPLY,
  PROTO_ICMP,
  PROTO_TCP,
  PROTO_UDP,
  REFUSED_CONTAINER_FULL,
  REFUSED_EXISTS,
  REFUSED_REPLY_TAKEN,
  REFUSED_TABLE_FULL,
  TCP_CLOSE,
  TCP_CLOSE_WAIT,
  TCP_ESTABLISHED,
  TCP_FIN_WAIT,
  TCP_LAST_ACK,
  TCP_NONE,
  TCP_STATE_NAMES,
  TCP_SYN_RECV,
  TCP_SYN_SENT,
  TCP_TIME_WAIT,
  isRefusal,
  protoFromName,
  tcpStateFromName,
  type ConntrackAddParams,
  type ConntrackOptions,
  type ConntrackRefusal,
} from '../../../src/nat/conntrack.js';
import { formatConntrackLine, formatConntrackTable, toJson } from '../../../src/nat/conntrack-format.js';
import { parseIpv4 } from '../../../src/packet/ip-address.js';

const ip = parseIpv4;
const C1 = ip('10.0.2.100');
const C2 = ip('10.0.2.101');
const REMOTE = ip('198.51.100.2');
const REMOTE2 = ip('203.0.113.7');
const HOST = ip('198.51.100.1');
const K1 = 'default/10.0.2.100';
const K2 = 'default/10.0.2.101';

const S = 1000;
const MIN = 60 * S;
const HOUR = 60 * MIN;

interface Harness {
  ct: Conntrack;
  clock: { t: number };
  removed: Array<[ConntrackEntry, string]>;
}

function harness(options: ConntrackOptions = {}): Harness {
  const clock = { t: 1_000_000 };
  const removed: Array<[ConntrackEntry, string]> = [];
  const ct = new Conntrack({ clock: () => clock.t, onRemove: (e, reason) => removed.push([e, reason]), hashSeed: 1, ...options });
  return { ct, clock, removed };
}

function ok(r: ConntrackEntry | ConntrackRefusal): ConntrackEntry {
  if (isRefusal(r)) throw new Error(`refused: ${r.refused}`);
  return r;
}

/** A TCP flow from C1:sport to REMOTE:80 mapped to HOST:mapped (mapped 0: pending). */
function tcpParams(sport: number, mapped = sport, extra: Partial<ConntrackAddParams> = {}): ConntrackAddParams {
  return {
    proto: PROTO_TCP,
    origSrc: C1,
    origSport: sport,
    origDst: REMOTE,
    origDport: 80,
    replySrc: REMOTE,
    replySport: 80,
    replyDst: mapped === 0 ? 0 : HOST,
    replyDport: mapped,
    container: K1,
    ...extra,
  };
}

function udpParams(sport: number, mapped = sport, extra: Partial<ConntrackAddParams> = {}): ConntrackAddParams {
  return { ...tcpParams(sport, mapped, extra), proto: PROTO_UDP, origDport: 53, replySport: 53, ...extra };
}

function icmpParams(id: number, mappedId = id, extra: Partial<ConntrackAddParams> = {}): ConntrackAddParams {
  return { proto: PROTO_ICMP, origSrc: C1, origSport: id, origDst: REMOTE, origDport: 8, replyDst: HOST, replyDport: mappedId, container: K1, ...extra };
}

describe('Conntrack: configuration', () => {
  it('defaults to the RFC timeouts, 65536 entries and 8192 per container', () => {
    const { ct } = harness();
    expect(ct.maxEntries).toBe(DEFAULT_CONNTRACK_MAX_ENTRIES);
    expect(DEFAULT_CONNTRACK_MAX_ENTRIES).toBe(65536);
    expect(ct.maxPerContainer).toBe(DEFAULT_CONNTRACK_MAX_PER_CONTAINER);
    expect(DEFAULT_CONNTRACK_MAX_PER_CONTAINER).toBe(8192);
    expect(ct.timeouts).toEqual(DEFAULT_CONNTRACK_TIMEOUTS);
    expect(DEFAULT_CONNTRACK_TIMEOUTS).toEqual({
      tcpSynSent: 4 * MIN,
      tcpSynRecv: 4 * MIN,
      tcpEstablished: 2 * HOUR + 4 * MIN,
      tcpFinWait: 4 * MIN,
      tcpCloseWait: 4 * MIN,
      tcpLastAck: 4 * MIN,
      tcpTimeWait: 4 * MIN,
      tcpClose: 10 * S,
      udp: 5 * MIN,
      icmp: 60 * S,
    });
    expect(ct.size).toBe(0);
    expect(ct.nextExpiry()).toBe(Infinity);
  });

  it('accepts the RFC minimums and refuses less, unless allowShortTimeouts', () => {
    expect(() => new Conntrack({ timeoutsMs: { udp: 120 * S, icmp: 60 * S, tcpEstablished: 7440 * S } })).not.toThrow();
    expect(() => new Conntrack({ timeoutsMs: { udp: 120 * S - 1 } })).toThrow(/RFC 4787/);
    expect(() => new Conntrack({ timeoutsMs: { icmp: 59_999 } })).toThrow(/RFC 5508/);
    expect(() => new Conntrack({ timeoutsMs: { tcpEstablished: 7440 * S - 1 } })).toThrow(/RFC 5382/);
    expect(() => new Conntrack({ timeoutsMs: { udp: 30 * S, icmp: 30 * S, tcpEstablished: 60 * S }, allowShortTimeouts: true })).not.toThrow();
    expect(() => new Conntrack({ timeoutsMs: { tcpClose: 0 } })).toThrow(/positive/);
    expect(() => new Conntrack({ timeoutsMs: { tcpTimeWait: Number.NaN } })).toThrow(/positive/);
    expect(() => new Conntrack({ maxEntries: 0 })).toThrow(/maxEntries/);
    expect(() => new Conntrack({ maxPerContainer: 1.5 })).toThrow(/maxPerContainer/);
    try {
      new Conntrack({ timeoutsMs: { udp: 1 } });
    } catch (err) {
      expect((err as { code: string }).code).toBe('ERR_INVALID_ARGUMENT');
    }
  });

  it('tcpTransitory sets every opening and closing state (not CLOSE); single states still override', () => {
    const ct = new Conntrack({ timeoutsMs: { tcpTransitory: 5 * MIN, tcpLastAck: 6 * MIN } });
    expect(ct.timeouts).toMatchObject({
      tcpSynSent: 5 * MIN,
      tcpSynRecv: 5 * MIN,
      tcpFinWait: 5 * MIN,
      tcpCloseWait: 5 * MIN,
      tcpLastAck: 6 * MIN,
      tcpTimeWait: 5 * MIN,
      tcpClose: 10 * S,
      tcpEstablished: 7440 * S,
    });
  });

  it('names: TCP states as conntrack-tools prints them, protocols by name or number', () => {
    expect(TCP_STATE_NAMES.slice(1)).toEqual(['SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE']);
    expect(tcpStateFromName('TIME_WAIT')).toBe(TCP_TIME_WAIT);
    expect(tcpStateFromName('NONE')).toBe(-1);
    expect(tcpStateFromName('LISTEN')).toBe(-1);
    expect(protoFromName('tcp')).toBe(6);
    expect(protoFromName('UDP')).toBe(17);
    expect(protoFromName('icmp')).toBe(1);
    expect(protoFromName('47')).toBe(47);
    expect(protoFromName('sctpx')).toBe(-1);
  });
});

describe('Conntrack: timeouts (fake clock)', () => {
  const states: Array<[string, number, number]> = [
    ['SYN_SENT', TCP_SYN_SENT, 4 * MIN],
    ['SYN_RECV', TCP_SYN_RECV, 4 * MIN],
    ['ESTABLISHED', TCP_ESTABLISHED, 7440 * S],
    ['FIN_WAIT', TCP_FIN_WAIT, 4 * MIN],
    ['CLOSE_WAIT', TCP_CLOSE_WAIT, 4 * MIN],
    ['LAST_ACK', TCP_LAST_ACK, 4 * MIN],
    ['TIME_WAIT', TCP_TIME_WAIT, 4 * MIN],
    ['CLOSE', TCP_CLOSE, 10 * S],
  ];

  it.each(states)('TCP %s lives exactly its timeout after setState()', (_name, state, ms) => {
    const { ct, clock, removed } = harness();
    const e = ok(ct.add(tcpParams(40000)));
    clock.t += 5 * S;
    expect(ct.setState(e, state)).toBe(true);
    expect(e.state).toBe(state);
    expect(ct.timeoutOf(e)).toBe(ms);
    expect(ct.remaining(e)).toBe(ms / 1000);
    clock.t += ms - 1;
    expect(ct.expire()).toBe(0);
    expect(ct.remaining(e)).toBe(0); // 1 ms left prints as 0, as conntrack does
    expect(ct.findOriginal(PROTO_TCP, C1, 40000, REMOTE, 80)).toBe(e);
    clock.t += 1;
    expect(ct.expire()).toBe(1);
    expect(removed).toEqual([[e, 'timeout']]);
    expect(e.live).toBe(false);
    expect(ct.findOriginal(PROTO_TCP, C1, 40000, REMOTE, 80)).toBeUndefined();
    expect(ct.size).toBe(0);
  });

  it('a new TCP entry starts in SYN_SENT with the transitory timer (4 min), unreplied', () => {
    const { ct, clock } = harness();
    const e = ok(ct.add(tcpParams(40000, 0)));
    expect(e.state).toBe(TCP_SYN_SENT);
    expect(e.stateName).toBe('SYN_SENT');
    expect(e.seenReply).toBe(false);
    expect(e.assured).toBe(false);
    clock.t += 4 * MIN - 1;
    expect(ct.expire()).toBe(0);
    clock.t += 1;
    expect(ct.expire()).toBe(1);
  });

  it('TCP ESTABLISHED survives 2 h 3 min (and 2 h 3 min 59.999 s) idle, expires at 2 h 4 min', () => {
    const { ct, clock } = harness();
    const e = ok(ct.add(tcpParams(40000)));
    ct.setState(e, TCP_ESTABLISHED);
    clock.t += 2 * HOUR + 3 * MIN;
    expect(ct.expire()).toBe(0);
    expect(ct.remaining(e)).toBe(60);
    clock.t += 59_999;
    expect(ct.expire()).toBe(0);
    clock.t += 1;
    expect(ct.expire()).toBe(1);
  });

  it('TCP is refreshed by traffic either way, and each state change restarts the timer', () => {
    const { ct, clock } = harness();
    const e = ok(ct.add(tcpParams(40000)));
    ct.setState(e, TCP_ESTABLISHED);
    clock.t += 2 * HOUR;
    ct.touch(e, DIR_REPLY, 100); // inbound only: still a refresh for TCP
    clock.t += 2 * HOUR;
    expect(ct.expire()).toBe(0);
    ct.touch(e, DIR_ORIGINAL, 100);
    clock.t += 2 * HOUR;
    expect(ct.expire()).toBe(0);
    ct.setState(e, TCP_FIN_WAIT);
    clock.t += 3 * MIN;
    ct.setState(e, TCP_FIN_WAIT); // same state again: timer restarts
    clock.t += 3 * MIN;
    expect(ct.expire()).toBe(0);
    clock.t += MIN;
    expect(ct.expire()).toBe(1);
  });

  it('transitory states expire after 4 min even while ESTABLISHED ones live on', () => {
    const { ct, clock, removed } = harness();
    const syn = ok(ct.add(tcpParams(40001)));
    const est = ok(ct.add(tcpParams(40002)));
    ct.setState(est, TCP_ESTABLISHED);
    const fin = ok(ct.add(tcpParams(40003)));
    ct.setState(fin, TCP_LAST_ACK);
    clock.t += 4 * MIN;
    expect(ct.expire()).toBe(2);
    expect(removed.map(([e]) => e)).toEqual([syn, fin]);
    expect(ct.list()).toEqual([est]);
  });

  it('UDP: 5 min by default, refreshed by outbound packets only (RFC 4787 REQ-6)', () => {
    const { ct, clock, removed } = harness();
    const e = ok(ct.add(udpParams(5000)));
    expect(ct.remaining(e)).toBe(300);
    // Replies every 10 s do not keep it alive.
    for (let i = 0; i < 29; i++) {
      clock.t += 10 * S;
      ct.touch(e, DIR_REPLY, 64);
      expect(ct.expire()).toBe(0);
    }
    expect(ct.remaining(e)).toBe(10);
    expect(e.replyPackets).toBe(29);
    expect(e.lastSeen).toBe(clock.t);
    clock.t += 10 * S;
    expect(ct.expire()).toBe(1);
    expect(removed).toEqual([[e, 'timeout']]);

    // An outbound packet restarts the 5 min.
    const f = ok(ct.add(udpParams(5001)));
    clock.t += 299 * S;
    ct.touch(f, DIR_ORIGINAL, 64);
    expect(f.lastOutbound).toBe(clock.t);
    clock.t += 299 * S;
    expect(ct.expire()).toBe(0);
    clock.t += S;
    expect(ct.expire()).toBe(1);
  });

  it('UDP: a mapping idle 119 s or 2 min 1 s survives at the 5 min default; at the 2 min minimum, 119 s survives and 2 min 1 s does not', () => {
    for (const [timeout, at119, at121] of [
      [undefined, true, true],
      [120 * S, true, false],
    ] as const) {
      const { ct, clock } = harness(timeout === undefined ? {} : { timeoutsMs: { udp: timeout } });
      const e = ok(ct.add(udpParams(5000)));
      ct.touch(e, DIR_ORIGINAL, 40);
      ct.touch(e, DIR_REPLY, 40); // one request/response exchange, then silence
      clock.t += 119 * S;
      ct.expire();
      expect(e.live).toBe(at119);
      clock.t += 2 * S;
      ct.expire();
      expect(e.live).toBe(at121);
    }
  });

  it('ICMP query sessions: 60 s (RFC 5508 REQ-2), refreshed by outbound echo requests only', () => {
    const { ct, clock } = harness();
    const e = ok(ct.add(icmpParams(10790)));
    clock.t += 59 * S;
    ct.touch(e, DIR_REPLY, 64); // an echo reply 59 s later still finds the session
    expect(ct.findReply(PROTO_ICMP, REMOTE, 0, HOST, 10790)).toBe(e);
    expect(ct.expire()).toBe(0);
    clock.t += S;
    expect(ct.expire()).toBe(1);

    const f = ok(ct.add(icmpParams(10791)));
    for (let i = 0; i < 10; i++) {
      clock.t += 50 * S;
      ct.touch(f, DIR_ORIGINAL, 64);
      expect(ct.expire()).toBe(0);
    }
    clock.t += 60 * S;
    expect(ct.expire()).toBe(1);
  });

  it('expire() stops at the first live entry of each class and nextExpiry() says when work is due', () => {
    const { ct, clock } = harness();
    const a = ok(ct.add(udpParams(1)));
    clock.t += 10 * S;
    const b = ok(ct.add(udpParams(2)));
    const i = ok(ct.add(icmpParams(7)));
    expect(ct.nextExpiry()).toBe(i.expiresAt);
    expect(i.expiresAt).toBe(clock.t + 60 * S);
    clock.t += 10 * S;
    ct.touch(a, DIR_ORIGINAL, 1); // a is now the youngest UDP entry
    expect(ct.nextExpiry()).toBe(i.expiresAt);
    clock.t += 50 * S;
    expect(ct.expire()).toBe(1); // the ICMP one
    expect(ct.nextExpiry()).toBe(b.expiresAt);
    clock.t = b.expiresAt;
    expect(ct.expire()).toBe(1);
    expect(a.live).toBe(true);
    expect(ct.nextExpiry()).toBe(a.expiresAt);
  });

  it('an entry stays in effect until expire(): lookups find it, list() hides it', () => {
    const { ct, clock } = harness();
    const e = ok(ct.add(udpParams(5000)));
    clock.t += 301 * S;
    expect(ct.findOriginal(PROTO_UDP, C1, 5000, REMOTE, 53)).toBe(e);
    expect(ct.list()).toEqual([]);
    expect(ct.remaining(e)).toBe(0);
    ct.touch(e, DIR_ORIGINAL, 10); // a late outbound packet revives it, as if the sweep came later
    expect(ct.expire()).toBe(0);
    expect(ct.list()).toEqual([e]);
  });
});

describe('Conntrack: lookups', () => {
  it('finds TCP, UDP and ICMP entries from both sides, and nothing for other tuples', () => {
    const { ct } = harness();
    const t = ok(ct.add(tcpParams(40000, 61000)));
    const u = ok(ct.add(udpParams(40000, 61000)));
    const i = ok(ct.add(icmpParams(40000, 61000)));
    expect(ct.findOriginal(PROTO_TCP, C1, 40000, REMOTE, 80)).toBe(t);
    expect(ct.findReply(PROTO_TCP, REMOTE, 80, HOST, 61000)).toBe(t);
    expect(ct.findOriginal(PROTO_UDP, C1, 40000, REMOTE, 53)).toBe(u);
    expect(ct.findReply(PROTO_UDP, REMOTE, 53, HOST, 61000)).toBe(u);
    // ICMP: sport = identifier, dport = type (8) in the original; reply sport = type 0, dport = mapped id.
    expect(ct.findOriginal(PROTO_ICMP, C1, 40000, REMOTE, 8)).toBe(i);
    expect(ct.findReply(PROTO_ICMP, REMOTE, 0, HOST, 61000)).toBe(i);
    expect(i.replySrc).toBe(REMOTE);
    expect(i.replySport).toBe(0);

    expect(ct.findOriginal(PROTO_UDP, C1, 40000, REMOTE, 80)).toBeUndefined();
    expect(ct.findOriginal(PROTO_TCP, C2, 40000, REMOTE, 80)).toBeUndefined();
    expect(ct.findOriginal(PROTO_TCP, C1, 40001, REMOTE, 80)).toBeUndefined();
    expect(ct.findOriginal(PROTO_TCP, C1, 40000, REMOTE2, 80)).toBeUndefined();
    expect(ct.findOriginal(PROTO_TCP, C1, 40000, REMOTE, 81)).toBeUndefined();
    expect(ct.findReply(PROTO_TCP, REMOTE, 80, HOST, 61001)).toBeUndefined();
    expect(ct.findReply(PROTO_TCP, REMOTE, 81, HOST, 61000)).toBeUndefined();
    expect(ct.findReply(PROTO_TCP, REMOTE2, 80, HOST, 61000)).toBeUndefined();
    expect(ct.findReply(PROTO_TCP, REMOTE, 80, C1, 61000)).toBeUndefined();
    expect(ct.findReply(PROTO_ICMP, REMOTE, 0, HOST, 40000 + 1)).toBeUndefined();
  });

  it('reply tuple defaults: src = original dst, sport = original dport; pending (0.0.0.0:0) until setReply()', () => {
    const { ct } = harness();
    const e = ok(ct.add({ proto: PROTO_TCP, origSrc: C1, origSport: 40000, origDst: REMOTE, origDport: 443, container: K1 }));
    expect([e.replySrc, e.replySport, e.replyDst, e.replyDport]).toEqual([REMOTE, 443, 0, 0]);
    expect(ct.findReply(PROTO_TCP, REMOTE, 443, 0, 0)).toBeUndefined();
    expect(ct.setReply(e, HOST, 51000)).toBe(true);
    expect(ct.findReply(PROTO_TCP, REMOTE, 443, HOST, 51000)).toBe(e);
    // Moving the mapping re-indexes it.
    expect(ct.setReply(e, HOST, 51001)).toBe(true);
    expect(ct.findReply(PROTO_TCP, REMOTE, 443, HOST, 51000)).toBeUndefined();
    expect(ct.findReply(PROTO_TCP, REMOTE, 443, HOST, 51001)).toBe(e);
    expect(ct.setReply(e, HOST, 51001)).toBe(true);
    // Two pending entries towards the same remote do not collide.
    const f = ok(ct.add({ proto: PROTO_TCP, origSrc: C1, origSport: 40001, origDst: REMOTE, origDport: 443, container: K1 }));
    const g = ok(ct.add({ proto: PROTO_TCP, origSrc: C2, origSport: 40001, origDst: REMOTE, origDport: 443, container: K2 }));
    expect(ct.setReply(f, HOST, 52000)).toBe(true);
    expect(ct.setReply(g, HOST, 52000)).toBe(false); // held by f, which is live
    expect(g.replyDport).toBe(0);
    expect(ct.findReply(PROTO_TCP, REMOTE, 443, HOST, 52000)).toBe(f);
  });

  it('the one-entry caches never return a removed entry', () => {
    const { ct } = harness();
    const e = ok(ct.add(tcpParams(40000, 61000)));
    expect(ct.findOriginal(PROTO_TCP, C1, 40000, REMOTE, 80)).toBe(e);
    expect(ct.findReply(PROTO_TCP, REMOTE, 80, HOST, 61000)).toBe(e);
    ct.remove(e, 'closed');
    expect(ct.findOriginal(PROTO_TCP, C1, 40000, REMOTE, 80)).toBeUndefined();
    expect(ct.findReply(PROTO_TCP, REMOTE, 80, HOST, 61000)).toBeUndefined();
    const f = ok(ct.add(tcpParams(40000, 61000)));
    expect(f).not.toBe(e);
    expect(f.id).toBeGreaterThan(e.id);
    expect(ct.findOriginal(PROTO_TCP, C1, 40000, REMOTE, 80)).toBe(f);
    expect(ct.findReply(PROTO_TCP, REMOTE, 80, HOST, 61000)).toBe(f);
    // setReply moving the mapping away drops the reply cache too.
    ct.setReply(f, HOST, 61001);
    expect(ct.findReply(PROTO_TCP, REMOTE, 80, HOST, 61000)).toBeUndefined();
  });

  it('add() refuses a live duplicate of the original tuple, and a reply tuple another entry holds', () => {
    const { ct } = harness();
    const e = ok(ct.add(tcpParams(40000, 61000)));
    expect(ct.add(tcpParams(40000, 62000))).toBe(REFUSED_EXISTS);
    expect(ct.add(tcpParams(40001, 61000))).toBe(REFUSED_REPLY_TAKEN);
    // The same ports on another protocol are another tuple.
    ok(ct.add(udpParams(40000, 61000, { origDport: 80, replySport: 80 })));
    expect(ct.stats.refusedExists).toBe(2);
    expect(ct.size).toBe(2);
    expect(ct.findOriginal(PROTO_TCP, C1, 40000, REMOTE, 80)).toBe(e);
  });
});

describe('Conntrack: limits, TIME_WAIT eviction and replacement', () => {
  it('evicts the oldest TIME_WAIT entry when the table is full, then refuses when there is none', () => {
    const { ct, clock, removed } = harness({ maxEntries: 4 });
    const a = ok(ct.add(tcpParams(1)));
    const b = ok(ct.add(tcpParams(2)));
    const c = ok(ct.add(tcpParams(3)));
    const d = ok(ct.add(udpParams(4)));
    ct.setState(b, TCP_TIME_WAIT);
    clock.t += S;
    ct.setState(a, TCP_TIME_WAIT); // younger TIME_WAIT
    const e = ok(ct.add(tcpParams(5)));
    expect(removed).toEqual([[b, 'evicted']]);
    const f = ok(ct.add(tcpParams(6)));
    expect(removed).toEqual([
      [b, 'evicted'],
      [a, 'evicted'],
    ]);
    expect(ct.stats.evictedTimeWait).toBe(2);
    expect(ct.add(tcpParams(7))).toBe(REFUSED_TABLE_FULL);
    expect(ct.stats.refusedTableFull).toBe(1);
    expect(ct.size).toBe(4);
    expect(ct.list()).toEqual([c, d, e, f]);
    expect(removed.length).toBe(2);
    expect(ct.containerCount(K1)).toBe(4);
  });

  it('reaps expired entries before evicting TIME_WAIT ones', () => {
    const { ct, clock, removed } = harness({ maxEntries: 2 });
    const a = ok(ct.add(udpParams(1)));
    const b = ok(ct.add(tcpParams(2)));
    ct.setState(b, TCP_TIME_WAIT);
    clock.t += 5 * MIN; // a is due (300 s), b too (240 s) — both only by the clock
    ok(ct.add(tcpParams(3)));
    expect(removed).toEqual([
      [b, 'timeout'],
      [a, 'timeout'],
    ]);
    expect(ct.stats.evictedTimeWait).toBe(0);
  });

  it("a container at its limit evicts its own oldest TIME_WAIT, never another container's", () => {
    const { ct, clock, removed } = harness({ maxPerContainer: 2 });
    const other = ok(ct.add(tcpParams(1, 1, { origSrc: C2, container: K2 })));
    ct.setState(other, TCP_TIME_WAIT); // the oldest TIME_WAIT of the table
    clock.t += S;
    const a = ok(ct.add(tcpParams(10)));
    const b = ok(ct.add(tcpParams(11)));
    expect(ct.add(tcpParams(12))).toBe(REFUSED_CONTAINER_FULL);
    expect(ct.stats.refusedContainerFull).toBe(1);
    expect(removed).toEqual([]);
    ct.setState(b, TCP_TIME_WAIT);
    clock.t += S;
    ct.setState(a, TCP_TIME_WAIT);
    clock.t += S;
    ct.touch(b, DIR_REPLY, 40); // traffic in TIME_WAIT refreshes it: a is now the older one
    const c = ok(ct.add(tcpParams(12)));
    expect(removed).toEqual([[a, 'evicted']]);
    expect(ct.containerCount(K1)).toBe(2);
    expect(ct.containerCount(K2)).toBe(1);
    expect(other.live).toBe(true);
    expect(ct.list({ container: K1 })).toEqual([b, c]);
  });

  it('the container limit refuses even when the table has room and other containers have TIME_WAIT entries', () => {
    const { ct } = harness({ maxPerContainer: 1, maxEntries: 10 });
    const tw = ok(ct.add(tcpParams(1, 1, { origSrc: C2, container: K2 })));
    ct.setState(tw, TCP_TIME_WAIT);
    ok(ct.add(tcpParams(2)));
    expect(ct.add(tcpParams(3))).toBe(REFUSED_CONTAINER_FULL);
    expect(tw.live).toBe(true);
    // With maxPerContainer 1, a container's only entry in TIME_WAIT makes room for its next flow.
    const { ct: ct1, removed } = harness({ maxPerContainer: 1 });
    const only = ok(ct1.add(tcpParams(1)));
    ct1.setState(only, TCP_TIME_WAIT);
    const next = ok(ct1.add(tcpParams(2)));
    expect(removed).toEqual([[only, 'evicted']]);
    expect(ct1.containerCount(K1)).toBe(1);
    expect(ct1.list()).toEqual([next]);
  });

  it('a new SYN on the tuple of a TIME_WAIT (or CLOSE) entry replaces it', () => {
    const { ct, removed } = harness();
    const old = ok(ct.add(tcpParams(40000, 61000)));
    ct.setState(old, TCP_ESTABLISHED);
    ct.setState(old, TCP_TIME_WAIT);
    const neu = ok(ct.add(tcpParams(40000, 61000)));
    expect(removed).toEqual([[old, 'replaced']]);
    expect(neu.state).toBe(TCP_SYN_SENT);
    expect(neu.seenReply).toBe(false);
    expect(ct.findOriginal(PROTO_TCP, C1, 40000, REMOTE, 80)).toBe(neu);
    expect(ct.findReply(PROTO_TCP, REMOTE, 80, HOST, 61000)).toBe(neu);
    expect(ct.containerCount(K1)).toBe(1);
    expect(ct.size).toBe(1);
    ct.setState(neu, TCP_CLOSE); // reset
    const third = ok(ct.add(tcpParams(40000, 0)));
    expect(removed[1]).toEqual([neu, 'replaced']);
    expect(ct.stats.removed).toEqual({ replaced: 2 });
    // The mapped port another flow left in TIME_WAIT is taken over too.
    const tw = ok(ct.add(tcpParams(40001, 62000)));
    ct.setState(tw, TCP_TIME_WAIT);
    expect(ct.setReply(third, HOST, 62000)).toBe(true);
    expect(removed[2]).toEqual([tw, 'replaced']);
    expect(ct.findReply(PROTO_TCP, REMOTE, 80, HOST, 62000)).toBe(third);
    expect(ct.containerCount(K1)).toBe(1);
  });

  it('replaceTimeWait() removes a TIME_WAIT/CLOSE entry on a tuple, and nothing else', () => {
    const { ct, removed } = harness();
    const e = ok(ct.add(tcpParams(40000)));
    expect(ct.replaceTimeWait(PROTO_TCP, C1, 40000, REMOTE, 80)).toBe(false);
    ct.setState(e, TCP_ESTABLISHED);
    expect(ct.replaceTimeWait(PROTO_TCP, C1, 40000, REMOTE, 80)).toBe(false);
    ct.setState(e, TCP_TIME_WAIT);
    expect(ct.replaceTimeWait(PROTO_TCP, C1, 40001, REMOTE, 80)).toBe(false);
    expect(ct.replaceTimeWait(PROTO_TCP, C1, 40000, REMOTE, 80)).toBe(true);
    expect(removed).toEqual([[e, 'replaced']]);
    expect(ct.containerCount(K1)).toBe(0);
  });
});

describe('Conntrack: removal paths, per-container counts and the onRemove hook', () => {
  it('keeps per-container counts exact through remove, expire, replace, evict, removeContainer and flush', () => {
    const { ct, clock } = harness({ maxEntries: 6 });
    const a1 = ok(ct.add(tcpParams(1)));
    const a2 = ok(ct.add(udpParams(2)));
    const a3 = ok(ct.add(icmpParams(3)));
    const b1 = ok(ct.add(tcpParams(1, 101, { origSrc: C2, container: K2 })));
    const b2 = ok(ct.add(tcpParams(2, 102, { origSrc: C2, container: K2 })));
    ok(ct.add(tcpParams(3, 103, { origSrc: C2, container: K2 })));
    const counts = (): [number, number, number] => [ct.containerCount(K1), ct.containerCount(K2), ct.size];
    expect(counts()).toEqual([3, 3, 6]);
    expect(ct.remove(a1, 'closed')).toBe(true);
    expect(counts()).toEqual([2, 3, 5]);
    expect(ct.remove(a1, 'closed')).toBe(false);
    expect(counts()).toEqual([2, 3, 5]);
    clock.t += 61 * S;
    expect(ct.expire()).toBe(1); // a3 (ICMP)
    expect(a3.live).toBe(false);
    expect(counts()).toEqual([1, 3, 4]);
    ct.setState(b1, TCP_TIME_WAIT);
    ok(ct.add(tcpParams(1, 101, { origSrc: C2, container: K2 }))); // replaces b1
    expect(counts()).toEqual([1, 3, 4]);
    ct.setState(b2, TCP_TIME_WAIT);
    ok(ct.add(tcpParams(7)));
    ok(ct.add(tcpParams(8)));
    ok(ct.add(tcpParams(9))); // table full: evicts b2
    expect(b2.live).toBe(false);
    expect(counts()).toEqual([4, 2, 6]);
    expect(ct.removeContainer(K2)).toBe(2);
    expect(counts()).toEqual([4, 0, 4]);
    expect(ct.removeContainer(K2)).toBe(0);
    expect(ct.removeContainer('nobody')).toBe(0);
    expect(ct.removeWhere((e) => e.proto === PROTO_UDP, 'policy')).toBe(1);
    expect(a2.live).toBe(false);
    expect(counts()).toEqual([3, 0, 3]);
    expect(ct.flush()).toBe(3);
    expect(counts()).toEqual([0, 0, 0]);
    expect(ct.stats.entries).toBe(0);
    expect(ct.stats.inserted).toBe(10);
    expect(ct.stats.removed).toEqual({ closed: 1, timeout: 1, replaced: 1, evicted: 1, 'container gone': 2, policy: 1, flush: 3 });
    // A container that went to zero starts again from zero.
    ok(ct.add(tcpParams(1, 101, { origSrc: C2, container: K2 })));
    expect(counts()).toEqual([0, 1, 1]);
  });

  it('calls onRemove exactly once per entry, after the entry left the table', () => {
    const seen: string[] = [];
    const { ct, clock } = harness();
    ct.onRemove = (e, reason) => {
      seen.push(`${e.id}:${reason}:${ct.findOriginal(e.proto, e.origSrc, e.origSport, e.origDst, e.origDport) === undefined}:${ct.containerCount(e.container)}`);
      expect(ct.remove(e, 'again')).toBe(false); // removing itself from the hook is a no-op
    };
    const a = ok(ct.add(tcpParams(1)));
    ok(ct.add(tcpParams(2)));
    ok(ct.add(udpParams(3)));
    ct.remove(a, 'closed');
    ct.remove(a, 'closed');
    clock.t += 300 * S;
    ct.expire();
    ct.expire();
    ct.flush();
    expect(seen).toEqual(['1:closed:true:2', '2:timeout:true:1', '3:timeout:true:0']);
  });

  it('the hook may remove other entries during expire, removeWhere, removeContainer and flush', () => {
    for (const path of ['expire', 'removeWhere', 'removeContainer', 'flush'] as const) {
      const { ct, clock } = harness();
      const calls = new Map<number, number>();
      const entries: ConntrackEntry[] = [];
      for (let i = 0; i < 20; i++) entries.push(ok(ct.add(udpParams(1000 + i))));
      ct.onRemove = (e) => {
        calls.set(e.id, (calls.get(e.id) ?? 0) + 1);
        // Each removal takes its partner (the next odd one) with it, forward and backward.
        const partner = entries[(entries.indexOf(e) + 7) % entries.length];
        ct.remove(partner, 'partner');
      };
      clock.t += 300 * S;
      const n =
        path === 'expire'
          ? ct.expire()
          : path === 'removeWhere'
            ? ct.removeWhere(() => true)
            : path === 'removeContainer'
              ? ct.removeContainer(K1)
              : ct.flush();
      expect(ct.size, path).toBe(0);
      expect(ct.containerCount(K1), path).toBe(0);
      expect(calls.size, path).toBe(20);
      for (const c of calls.values()) expect(c, path).toBe(1);
      const reasons = ct.stats.removed;
      expect((reasons.partner ?? 0) + n, path).toBe(20);
      expect(entries.every((e) => !e.live), path).toBe(true);
    }
  });

  it('entries the hook adds during flush() are not flushed with the others', () => {
    const { ct } = harness();
    ok(ct.add(tcpParams(1)));
    ok(ct.add(tcpParams(2)));
    let added: ConntrackEntry | null = null;
    ct.onRemove = (e) => {
      if (added === null) added = ok(ct.add(tcpParams(100 + e.origSport)));
    };
    expect(ct.flush()).toBe(2);
    expect(ct.list()).toEqual([added]);
  });

  it('touch, setState, setReply and markReply on a removed entry change nothing', () => {
    const { ct } = harness();
    const e = ok(ct.add(tcpParams(1)));
    ct.remove(e);
    ct.touch(e, DIR_ORIGINAL, 100);
    ct.markReply(e);
    expect(ct.setState(e, TCP_ESTABLISHED)).toBe(false);
    expect(ct.setReply(e, HOST, 5)).toBe(false);
    expect([e.origPackets, e.seenReply, e.state]).toEqual([0, false, TCP_SYN_SENT]);
    expect(ct.size).toBe(0);
    expect(ct.stats.removed).toEqual({ removed: 1 });
  });

  it('stats: removal reasons are counted up to the first ":" and at most 64 of them', () => {
    const { ct } = harness();
    for (let i = 0; i < 70; i++) ct.remove(ok(ct.add(tcpParams(i + 1))), `reason${i}: detail ${i}`);
    ct.remove(ok(ct.add(tcpParams(1000))), 'connect failed: ECONNREFUSED');
    ct.remove(ok(ct.add(tcpParams(1001))), 'reason3: other detail');
    ct.remove(ok(ct.add(tcpParams(1002))), 'constructor');
    const r = ct.stats.removed;
    expect(Object.keys(r).length).toBe(65);
    expect(r.reason0).toBe(1);
    expect(r.reason3).toBe(2);
    expect(r.reason63).toBe(1);
    expect(r.reason64).toBeUndefined();
    expect(r.other).toBe(6 + 1 + 1);
    expect(ct.stats.inserted).toBe(73);
    expect(ct.stats.entries).toBe(0);
  });
});

describe('Conntrack: replies, ASSURED and counters', () => {
  it('TCP: ESTABLISHED makes it ASSURED; SYN_RECV and later mean a reply was seen', () => {
    const { ct } = harness();
    const e = ok(ct.add(tcpParams(1)));
    expect([e.seenReply, e.assured]).toEqual([false, false]);
    ct.setState(e, TCP_SYN_RECV);
    expect([e.seenReply, e.assured]).toEqual([true, false]);
    ct.setState(e, TCP_ESTABLISHED);
    expect([e.seenReply, e.assured]).toEqual([true, true]);
    ct.setState(e, TCP_FIN_WAIT);
    expect(e.assured).toBe(true);
    const r = ok(ct.add(tcpParams(2)));
    ct.setState(r, TCP_CLOSE); // refused before any reply
    expect([r.seenReply, r.assured]).toEqual([false, false]);
    expect(ct.setState(r, TCP_NONE)).toBe(false);
    expect(ct.setState(r, 9)).toBe(false);
    expect(ct.setState(r, 2.5)).toBe(false);
  });

  it('UDP: ASSURED once replies were seen and a packet comes more than 2 s after the first (Linux)', () => {
    const { ct, clock } = harness();
    const e = ok(ct.add(udpParams(1)));
    ct.touch(e, DIR_ORIGINAL, 30);
    clock.t += 100;
    ct.touch(e, DIR_REPLY, 60);
    expect([e.seenReply, e.assured]).toEqual([true, false]); // a single quick exchange: not a stream
    clock.t += 1900;
    ct.touch(e, DIR_ORIGINAL, 30);
    expect(e.assured).toBe(false); // exactly 2 s: not yet
    clock.t += 1;
    ct.touch(e, DIR_ORIGINAL, 30);
    expect(e.assured).toBe(true);
    // One-way traffic never becomes ASSURED.
    const oneway = ok(ct.add(udpParams(2)));
    for (let i = 0; i < 10; i++) {
      clock.t += S;
      ct.touch(oneway, DIR_ORIGINAL, 30);
    }
    expect([oneway.seenReply, oneway.assured]).toEqual([false, false]);
    // A first reply after 3 s assures at once; markReply() alone too.
    const late = ok(ct.add(udpParams(3)));
    clock.t += 3 * S;
    ct.touch(late, DIR_REPLY, 10);
    expect(late.assured).toBe(true);
    const marked = ok(ct.add(udpParams(4)));
    ct.markReply(marked);
    expect([marked.seenReply, marked.assured]).toEqual([true, false]);
    clock.t += 3 * S;
    ct.markReply(marked);
    expect(marked.assured).toBe(true);
  });

  it('ICMP and setState: never ASSURED, no TCP state', () => {
    const { ct, clock } = harness();
    const e = ok(ct.add(icmpParams(9)));
    ct.touch(e, DIR_ORIGINAL, 84);
    clock.t += 5 * S;
    ct.touch(e, DIR_REPLY, 84);
    ct.touch(e, DIR_ORIGINAL, 84);
    expect([e.seenReply, e.assured, e.state]).toEqual([true, false, TCP_NONE]);
    expect(ct.setState(e, TCP_ESTABLISHED)).toBe(false);
  });

  it('counts packets and bytes per direction and keeps the time stamps', () => {
    const { ct, clock } = harness();
    const t0 = clock.t;
    const e = ok(ct.add(tcpParams(1)));
    clock.t += 10;
    ct.touch(e, DIR_ORIGINAL, 60);
    clock.t += 10;
    ct.touch(e, DIR_REPLY, 1500);
    ct.touch(e, DIR_REPLY, 1500, clock.t + 5); // the caller's own clock reading
    expect([e.origPackets, e.origBytes, e.replyPackets, e.replyBytes]).toEqual([1, 60, 2, 3000]);
    expect([e.createdAt, e.lastOutbound, e.lastSeen]).toEqual([t0, t0 + 10, t0 + 25]);
  });
});

describe('conntrack -L format and JSON', () => {
  // The lines Linux printed (conntrack-tools 1.4.7), nat-bridge-standards.md §2.7.
  const LINUX_TCP = 'tcp      6 431998 ESTABLISHED src=192.0.2.11 dst=198.51.100.2 sport=6001 dport=8081 src=198.51.100.2 dst=198.51.100.1 sport=8081 dport=6001 [ASSURED] mark=0 use=1';
  const LINUX_UDP = 'udp      17 29 src=192.0.2.12 dst=198.51.100.2 sport=5000 dport=7000 [UNREPLIED] src=198.51.100.2 dst=198.51.100.1 sport=7000 dport=47873 mark=0 use=1';
  const LINUX_ICMP = 'icmp     1 29 src=192.0.2.11 dst=198.51.100.2 type=8 code=0 id=10790 src=198.51.100.2 dst=198.51.100.1 type=0 code=0 id=10790 mark=0 use=1';

  it('prints the exact lines Linux printed, given Linux timeouts', () => {
    const { ct, clock } = harness({ timeoutsMs: { tcpEstablished: 432_000 * S, udp: 30 * S, icmp: 30 * S }, allowShortTimeouts: true });
    const t = ok(
      ct.add({
        proto: PROTO_TCP,
        origSrc: ip('192.0.2.11'),
        origSport: 6001,
        origDst: REMOTE,
        origDport: 8081,
        replyDst: HOST,
        replyDport: 6001,
        container: 'lab/192.0.2.11',
        state: TCP_ESTABLISHED,
      }),
    );
    const u = ok(ct.add({ proto: PROTO_UDP, origSrc: ip('192.0.2.12'), origSport: 5000, origDst: REMOTE, origDport: 7000, replyDst: HOST, replyDport: 47873, container: 'lab/192.0.2.12' }));
    const i = ok(ct.add({ proto: PROTO_ICMP, origSrc: ip('192.0.2.11'), origSport: 10790, origDst: REMOTE, origDport: 8, replyDst: HOST, replyDport: 10790, container: 'lab/192.0.2.11' }));
    ct.touch(i, DIR_REPLY, 84);
    clock.t += 500;
    expect(formatConntrackLine(u, clock.t)).toBe(LINUX_UDP);
    expect(formatConntrackLine(i, clock.t)).toBe(LINUX_ICMP);
    clock.t += 1500;
    expect(formatConntrackLine(t, clock.t)).toBe(LINUX_TCP);
  });

  it('prints the brief example and the RFC-default variants ([UNREPLIED], pending mapping, UDP [ASSURED])', () => {
    const { ct, clock } = harness({ timeoutsMs: { tcpEstablished: 432_000 * S } });
    const t = ok(ct.add(tcpParams(40000, 40000)));
    ct.setState(t, TCP_ESTABLISHED);
    clock.t += 2 * S;
    expect(formatConntrackLine(t, clock.t)).toBe(
      'tcp      6 431998 ESTABLISHED src=10.0.2.100 dst=198.51.100.2 sport=40000 dport=80 src=198.51.100.2 dst=198.51.100.1 sport=80 dport=40000 [ASSURED] mark=0 use=1',
    );
    const syn = ok(ct.add(tcpParams(40001, 0)));
    expect(formatConntrackLine(syn, ct.now())).toBe(
      'tcp      6 240 SYN_SENT src=10.0.2.100 dst=198.51.100.2 sport=40001 dport=80 [UNREPLIED] src=198.51.100.2 dst=0.0.0.0 sport=80 dport=0 mark=0 use=1',
    );
    const ping = ok(ct.add(icmpParams(7, 61234)));
    expect(formatConntrackLine(ping, ct.now())).toBe(
      'icmp     1 60 src=10.0.2.100 dst=198.51.100.2 type=8 code=0 id=7 [UNREPLIED] src=198.51.100.2 dst=198.51.100.1 type=0 code=0 id=61234 mark=0 use=1',
    );
    const dns = ok(ct.add(udpParams(5353, 40000)));
    expect(formatConntrackLine(dns, ct.now())).toBe(
      'udp      17 300 src=10.0.2.100 dst=198.51.100.2 sport=5353 dport=53 [UNREPLIED] src=198.51.100.2 dst=198.51.100.1 sport=53 dport=40000 mark=0 use=1',
    );
    clock.t += 3 * S;
    ct.touch(dns, DIR_REPLY, 100);
    ct.touch(dns, DIR_ORIGINAL, 40);
    expect(formatConntrackLine(dns, ct.now())).toBe(
      'udp      17 300 src=10.0.2.100 dst=198.51.100.2 sport=5353 dport=53 src=198.51.100.2 dst=198.51.100.1 sport=53 dport=40000 [ASSURED] mark=0 use=1',
    );
    clock.t += 299_999;
    expect(formatConntrackLine(dns, ct.now())).toMatch(/^udp {6}17 0 src=/);
  });

  it('accounting and id options place counters after each tuple and id at the end, as conntrack-tools', () => {
    const { ct } = harness();
    const e = ok(ct.add(udpParams(5000, 47873)));
    ct.touch(e, DIR_ORIGINAL, 40);
    ct.touch(e, DIR_ORIGINAL, 40);
    expect(formatConntrackLine(e, ct.now(), { accounting: true, showId: true })).toBe(
      `udp      17 300 src=10.0.2.100 dst=198.51.100.2 sport=5000 dport=53 packets=2 bytes=80 [UNREPLIED] src=198.51.100.2 dst=198.51.100.1 sport=53 dport=47873 packets=0 bytes=0 mark=0 use=1 id=${e.id}`,
    );
    const f = ok(ct.add(udpParams(5001, 47874)));
    expect(formatConntrackTable(ct.list(), ct.now()).split('\n')).toEqual([formatConntrackLine(e, ct.now()), formatConntrackLine(f, ct.now()), '']);
    expect(formatConntrackTable([], 0)).toBe('');
  });

  it('toJson() has every field, addresses as strings', () => {
    const { ct, clock } = harness();
    const t0 = clock.t;
    const e = ok(ct.add(tcpParams(40000, 61000)));
    ct.setState(e, TCP_ESTABLISHED);
    ct.touch(e, DIR_ORIGINAL, 100);
    clock.t += 1500;
    ct.touch(e, DIR_REPLY, 2000);
    clock.t += 1000;
    expect(toJson(e, clock.t)).toEqual({
      id: e.id,
      proto: 'tcp',
      protoNumber: 6,
      state: 'ESTABLISHED',
      timeout: 7439,
      original: { src: '10.0.2.100', dst: '198.51.100.2', sport: 40000, dport: 80 },
      reply: { src: '198.51.100.2', dst: '198.51.100.1', sport: 80, dport: 61000 },
      unreplied: false,
      assured: true,
      counters: { original: { packets: 1, bytes: 100 }, reply: { packets: 1, bytes: 2000 } },
      createdAt: t0,
      lastOutbound: t0,
      lastSeen: t0 + 1500,
      age: 2.5,
      idle: 1,
      container: K1,
      dnat: false,
    });
    const i = ok(ct.add(icmpParams(10790, 999)));
    expect(toJson(i, clock.t)).toMatchObject({
      proto: 'icmp',
      protoNumber: 1,
      state: null,
      timeout: 60,
      original: { src: '10.0.2.100', dst: '198.51.100.2', type: 8, code: 0, id: 10790 },
      reply: { src: '198.51.100.2', dst: '198.51.100.1', type: 0, code: 0, id: 999 },
      unreplied: true,
      assured: false,
    });
    expect(JSON.parse(JSON.stringify(toJson(i, clock.t)))).toEqual(toJson(i, clock.t));
  });
});

describe('Conntrack: list() filters', () => {
  it('filters on the original tuple like conntrack -L -p tcp --src A --dst B, in insertion order', () => {
    const { ct } = harness();
    const a = ok(ct.add(tcpParams(1)));
    const b = ok(ct.add(tcpParams(2, 2, { origDst: REMOTE2, replySrc: REMOTE2 })));
    const c = ok(ct.add(udpParams(3)));
    const d = ok(ct.add(tcpParams(4, 4, { origSrc: C2, container: K2 })));
    const i = ok(ct.add(icmpParams(5)));
    expect(ct.list()).toEqual([a, b, c, d, i]);
    expect(ct.list({ proto: PROTO_TCP })).toEqual([a, b, d]);
    expect(ct.list({ proto: PROTO_TCP, src: C1 })).toEqual([a, b]);
    expect(ct.list({ proto: PROTO_TCP, src: C1, dst: REMOTE })).toEqual([a]);
    expect(ct.list({ dst: REMOTE })).toEqual([a, c, d, i]);
    expect(ct.list({ src: C2 })).toEqual([d]);
    expect(ct.list({ proto: PROTO_ICMP })).toEqual([i]);
    expect(ct.list({ proto: PROTO_UDP, dport: 53 })).toEqual([c]);
    expect(ct.list({ sport: 2 })).toEqual([b]);
    expect(ct.list({ container: K2 })).toEqual([d]);
    // --src/--dst name the original tuple: the host address of the reply side matches nothing.
    expect(ct.list({ src: HOST })).toEqual([]);
    expect(ct.list({ dst: HOST })).toEqual([]);
  });
});

describe('Conntrack: 100 000 entries (sanity, no timing assertions)', () => {
  it('adds, finds both ways, expires in two waves and keeps every count right', () => {
    const N = 100_000;
    const { ct, clock, removed } = harness({ maxEntries: 200_000, maxPerContainer: 20_000 });
    let hookCalls = 0;
    ct.onRemove = () => hookCalls++;
    const containers = 10;
    const srcOf = (i: number): number => (C1 & 0xffffff00) + 2 + (i % containers);
    const dstOf = (i: number): number => REMOTE2 + (i % 251);
    const sportOf = (i: number): number => 1024 + Math.floor(i / containers);
    for (let i = 0; i < N; i++) {
      const proto = i % 3 === 0 ? PROTO_UDP : PROTO_TCP;
      ok(
        ct.add({
          proto,
          origSrc: srcOf(i),
          origSport: sportOf(i),
          origDst: dstOf(i),
          origDport: 443,
          replyDst: HOST,
          replyDport: 1024 + (i % 60_000),
          container: `c${i % containers}`,
        }),
      );
    }
    expect(ct.size).toBe(N);
    for (let k = 0; k < containers; k++) expect(ct.containerCount(`c${k}`)).toBe(N / containers);
    let found = 0;
    for (let i = 0; i < N; i++) {
      const proto = i % 3 === 0 ? PROTO_UDP : PROTO_TCP;
      const e = ct.findOriginal(proto, srcOf(i), sportOf(i), dstOf(i), 443);
      if (e !== undefined && ct.findReply(proto, dstOf(i), 443, HOST, 1024 + (i % 60_000)) === e) found++;
    }
    expect(found).toBe(N);
    // Half the TCP flows get established; UDP ages out at 5 min, the other TCP ones at 4 min.
    clock.t += MIN;
    let established = 0;
    for (const e of ct.list({ proto: PROTO_TCP })) {
      if (e.origSport % 2 === 0) {
        ct.setState(e, TCP_ESTABLISHED);
        established++;
      }
    }
    clock.t += 4 * MIN;
    const udp = ct.list({ proto: PROTO_UDP }).length;
    const wave1 = ct.expire();
    expect(wave1).toBe(N - udp - established);
    clock.t += MIN;
    expect(ct.expire()).toBe(udp);
    expect(ct.size).toBe(established);
    clock.t += 3 * HOUR;
    expect(ct.expire()).toBe(established);
    expect(ct.size).toBe(0);
    for (let k = 0; k < containers; k++) expect(ct.containerCount(`c${k}`)).toBe(0);
    expect(hookCalls).toBe(N);
    expect(removed.length).toBe(0); // the replaced hook took over
    expect(ct.stats).toEqual({
      entries: 0,
      inbound: 0,
      inserted: N,
      removed: { timeout: N },
      refusedTableFull: 0,
      refusedContainerFull: 0,
      refusedExists: 0,
      evictedTimeWait: 0,
    });
  });
});
