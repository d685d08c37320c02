/**
 * The conntrack table as people and scripts read it: `conntrack -L` lines in conntrack-tools'
 * exact layout (so the same grep/awk assertions run against Linux and against usernet), and JSON
 * for the API. Control plane only: these build strings.
 *
 * Layout (libnetfilter_conntrack's default output, conntrack-tools 1.4.7):
 *
 *   tcp      6 431998 ESTABLISHED src=… dst=… sport=… dport=… src=… dst=… sport=… dport=… [ASSURED] mark=0 use=1
 *   udp      17 29 src=… dst=… sport=… dport=… [UNREPLIED] src=… dst=… sport=… dport=… mark=0 use=1
 *   icmp     1 29 src=… dst=… type=8 code=0 id=… src=… dst=… type=0 code=0 id=… mark=0 use=1
 *
 * the protocol name left-aligned in 8 columns, its number, the whole seconds left, the TCP state,
 * the original tuple, [UNREPLIED] while no reply was seen, the reply tuple (its dst and dport are
 * the NAT mapping), [ASSURED], then mark and use. With accounting (Linux: nf_conntrack_acct=1)
 * `packets=… bytes=…` follows each tuple; `-o id` appends `id=…`.
 */
import { ipv4ToString } from '../packet/ip-address.js';
import { PROTO_ICMP, PROTO_TCP, protoName, remainingSeconds, type ConntrackEntry } from './conntrack.js';

export interface ConntrackLineOptions {
  /** Print packet and byte counters after each tuple (as with nf_conntrack_acct=1). */
  accounting?: boolean;
  /** Append `id=N` (as `conntrack -L -o id`). */
  showId?: boolean;
}

/** One `conntrack -L` line for `e` at clock time `now` (ms). */
export function formatConntrackLine(e: ConntrackEntry, now: number, options: ConntrackLineOptions = {}): string {
  let s = `${protoName(e.proto).padEnd(8)} ${e.proto} ${remainingSeconds(e, now)} `;
  if (e.proto === PROTO_TCP) s += `${e.stateName} `;
  s += `src=${origSrc(e)} dst=${origDst(e)} `;
  s += e.proto === PROTO_ICMP ? `type=${e.origDport} code=0 id=${e.origSport} ` : `sport=${e.origSport} dport=${e.origDport} `;
  if (options.accounting) s += `packets=${e.origPackets} bytes=${e.origBytes} `;
  if (!e.seenReply) s += '[UNREPLIED] ';
  s += `src=${ipv4ToString(e.replySrc)} dst=${ipv4ToString(e.replyDst)} `;
  s += e.proto === PROTO_ICMP ? `type=${e.replySport} code=0 id=${e.replyDport} ` : `sport=${e.replySport} dport=${e.replyDport} `;
  if (options.accounting) s += `packets=${e.replyPackets} bytes=${e.replyBytes} `;
  if (e.assured) s += '[ASSURED] ';
  s += 'mark=0 use=1';
  if (options.showId) s += ` id=${e.id}`;
  return s;
}

/** Every line, one per entry, newline-terminated (empty string for no entries). */
export function formatConntrackTable(entries: Iterable<ConntrackEntry>, now: number, options: ConntrackLineOptions = {}): string {
  let out = '';
  for (const e of entries) out += formatConntrackLine(e, now, options) + '\n';
  return out;
}

export interface ConntrackTupleJson {
  src: string;
  dst: string;
  /** TCP/UDP. */
  sport?: number;
  dport?: number;
  /** ICMP. */
  type?: number;
  code?: number;
  id?: number;
}

export interface ConntrackEntryJson {
  id: number;
  proto: string;
  protoNumber: number;
  /** TCP state name; null for UDP and ICMP. */
  state: string | null;
  /** Whole seconds before the entry times out. */
  timeout: number;
  original: ConntrackTupleJson;
  reply: ConntrackTupleJson;
  unreplied: boolean;
  assured: boolean;
  counters: {
    original: { packets: number; bytes: number };
    reply: { packets: number; bytes: number };
  };
  /** Clock times (ms) of creation, the last outbound packet and the last packet either way. */
  createdAt: number;
  lastOutbound: number;
  lastSeen: number;
  /** Seconds since creation and since the last packet (two decimals). */
  age: number;
  idle: number;
  container: string;
  /** A published port's flow (DNAT): original = client → host address:port, reply = the container's side. */
  dnat: boolean;
}

/** Every field of `e` at clock time `now`, addresses as strings. */
export function toJson(e: ConntrackEntry, now: number): ConntrackEntryJson {
  const icmp = e.proto === PROTO_ICMP;
  return {
    id: e.id,
    proto: protoName(e.proto),
    protoNumber: e.proto,
    state: e.proto === PROTO_TCP ? e.stateName : null,
    timeout: remainingSeconds(e, now),
    original: icmp
      ? { src: origSrc(e), dst: origDst(e), type: e.origDport, code: 0, id: e.origSport }
      : { src: origSrc(e), dst: origDst(e), sport: e.origSport, dport: e.origDport },
    reply: icmp
      ? { src: ipv4ToString(e.replySrc), dst: ipv4ToString(e.replyDst), type: e.replySport, code: 0, id: e.replyDport }
      : { src: ipv4ToString(e.replySrc), dst: ipv4ToString(e.replyDst), sport: e.replySport, dport: e.replyDport },
    unreplied: !e.seenReply,
    assured: e.assured,
    counters: {
      original: { packets: e.origPackets, bytes: e.origBytes },
      reply: { packets: e.replyPackets, bytes: e.replyBytes },
    },
    createdAt: e.createdAt,
    lastOutbound: e.lastOutbound,
    lastSeen: e.lastSeen,
    age: Math.round((now - e.createdAt) / 10) / 100,
    idle: Math.round((now - e.lastSeen) / 10) / 100,
    container: e.container,
    dnat: e.inbound,
  };
}

function origSrc(e: ConntrackEntry): string {
  return e.origSrcText ?? ipv4ToString(e.origSrc);
}

function origDst(e: ConntrackEntry): string {
  return e.origDstText ?? ipv4ToString(e.origDst);
}
