/**
 * IPv4 reassembly (RFC 791 section 3.2, with RFC 815's "fill the holes" bookkeeping), sans-I/O.
 *
 * A container's UDP datagram larger than its MTU leaves its kernel as fragments; the NAT carries
 * datagrams through host sockets, which take whole datagrams, so it puts them back together
 * first — as slirp4netns does, and as a host's own IP layer would.
 *
 *   fragment ──input()──▶ find the datagram in progress: (src, dst, protocol, id)
 *                          │ none: take a free slot (evicting the oldest when at a cap)
 *                          ▼
 *                        checks: length a multiple of 8 unless last; end ≤ 65535; one end only;
 *                          │     overlap ─▶ the whole datagram is discarded (RFC 5722's rule),
 *                          │               and its later fragments with it (a tombstone until
 *                          │               the timeout); a fragment wholly inside data already
 *                          │               held is a duplicate and ignored
 *                          ▼
 *                        copy the data to its offset in the slot's buffer; merge the run list
 *                          │ one run from 0 to the end, last fragment seen?
 *                          ▼
 *                        COMPLETE: the datagram (first fragment's header, MF and offset cleared,
 *                        total length and checksum rewritten) in outBuf[outOff, outOff+outLen)
 *
 * Memory is bounded: at most `maxDatagrams` in progress and `maxBytes` of fragment data held;
 * a new datagram or fragment beyond either cap evicts the oldest datagrams in progress (the
 * likeliest to be lost already, as Linux's evictor reasons). Each slot owns one buffer of
 * 64 KiB + header room, allocated the first time the slot is used and reused afterwards, so
 * what is ever allocated is at most maxDatagrams × 64 KiB and nothing is allocated per
 * fragment. A datagram not complete `timeoutMs` after its first fragment (30 s, Linux's
 * ipfrag_time) is dropped by expire() or by the next fragment that finds it stale.
 *
 * Time is the caller's (`now`, ms, never going backwards). Every datagram or fragment thrown
 * away is counted by reason. The completed datagram's buffer is valid until the next input().
 */
import { checksum } from '../packet/checksum.js';
import type { Ipv4View } from '../packet/ipv4.js';
import { InvalidArgumentError } from '../errors.js';
import { copyBytes } from '../packet/bytes.js';

export const REASM_PENDING = 0;
export const REASM_COMPLETE = 1;
export const REASM_DROPPED = 2;

/** IPv4's total length is 16 bits. */
const IPV4_MAX_TOTAL = 65535;
/** Room in front of the data for the largest IPv4 header (IHL 15). */
const HEADER_ROOM = 60;
const SLOT_BUFFER = HEADER_ROOM + IPV4_MAX_TOTAL;
/**
 * Disjoint runs of data one datagram may hold. Adjacent fragments merge into one run, so in-order
 * or mildly reordered arrival needs one or two; only a pathological order reaches this.
 */
const MAX_RUNS = 32;

export interface ReassemblyOptions {
  /** Fragment data held at once, in bytes (at least 65535). Default 1 MiB. */
  maxBytes?: number;
  /** Datagrams in progress at once. Default 64. */
  maxDatagrams?: number;
  /** How long a datagram may take to complete, from its first fragment. Default 30 s. */
  timeoutMs?: number;
}

export interface ReassemblyStats {
  /** Fragments received. */
  fragments: number;
  /** Datagrams put back together. */
  reassembled: number;
  /** Datagrams dropped: not complete within the timeout. */
  timeouts: number;
  /** Datagrams dropped to stay within maxBytes. */
  overMemory: number;
  /** Datagrams dropped to stay within maxDatagrams. */
  overLimit: number;
  /** Datagrams dropped: a fragment overlapped data already held (RFC 5722). */
  overlaps: number;
  /** Datagrams dropped: they would end beyond 65535 bytes. */
  tooBig: number;
  /** Datagrams dropped: a fragment not a multiple of 8 bytes, or two different ends. */
  malformed: number;
  /** Datagrams dropped: more than 32 separate pieces held at once. */
  tooManyHoles: number;
  /** Fragments ignored: wholly inside data already held (a duplicate). */
  duplicates: number;
  /** Fragments thrown away, in dropped datagrams or arriving for one already discarded. */
  fragmentsDropped: number;
  /** Datagrams in progress now (including discarded ones swallowing their late fragments). */
  inProgress: number;
  /** Fragment data held now, in bytes. */
  bytesHeld: number;
}

class Slot {
  buf: Buffer | null = null;
  dv: DataView | null = null;
  src = 0;
  dst = 0;
  id = 0;
  proto = 0;
  createdAt = 0;
  /** Data length once the last fragment (MF clear) arrived; -1 before. */
  end = -1;
  /** Header length of the first fragment once it arrived; 0 before. */
  headerLength = 0;
  /** Fragment data held, in bytes. */
  bytes = 0;
  /** Fragments held (counted as dropped if the datagram is). */
  fragments = 0;
  /** Discarded after an overlap: swallows the datagram's later fragments until it times out. */
  dead = false;
  readonly runStart = new Int32Array(MAX_RUNS);
  readonly runEnd = new Int32Array(MAX_RUNS);
  runs = 0;
}

export class Ipv4Reassembler {
  readonly stats: ReassemblyStats = {
    fragments: 0,
    reassembled: 0,
    timeouts: 0,
    overMemory: 0,
    overLimit: 0,
    overlaps: 0,
    tooBig: 0,
    malformed: 0,
    tooManyHoles: 0,
    duplicates: 0,
    fragmentsDropped: 0,
    inProgress: 0,
    bytesHeld: 0,
  };
  /** The completed datagram (after input() returned REASM_COMPLETE). */
  outBuf: Buffer = Buffer.alloc(0);
  outDv: DataView = new DataView(new ArrayBuffer(0));
  outOff = 0;
  outLen = 0;

  readonly maxBytes: number;
  readonly maxDatagrams: number;
  readonly timeoutMs: number;
  /** Datagrams in progress, oldest first. */
  private readonly active: Slot[] = [];
  private readonly free: Slot[] = [];
  private last: Slot | null = null;

  constructor(options: ReassemblyOptions = {}) {
    this.maxBytes = options.maxBytes ?? 1 << 20;
    this.maxDatagrams = options.maxDatagrams ?? 64;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    if (!Number.isInteger(this.maxBytes) || this.maxBytes < IPV4_MAX_TOTAL) throw new InvalidArgumentError(`reassembly: maxBytes must be an integer of at least ${IPV4_MAX_TOTAL}, not ${this.maxBytes}`);
    if (!Number.isInteger(this.maxDatagrams) || this.maxDatagrams < 1) throw new InvalidArgumentError(`reassembly: maxDatagrams must be a positive integer, not ${this.maxDatagrams}`);
    if (!(this.timeoutMs > 0)) throw new InvalidArgumentError(`reassembly: timeoutMs must be positive, not ${this.timeoutMs}`);
    for (let i = 0; i < this.maxDatagrams; i++) this.free.push(new Slot());
  }

  /**
   * One fragment (`ip` bound to it in `buf`, header checksum already checked; MF set or a
   * non-zero offset). Returns REASM_COMPLETE with the datagram in outBuf, REASM_PENDING, or
   * REASM_DROPPED (counted).
   */
  input(buf: Uint8Array, ip: Ipv4View, now: number): number {
    this.stats.fragments++;
    const src = ip.src;
    const dst = ip.dst;
    const id = ip.id;
    const proto = ip.protocol;
    const ff = ip.flagsFragment;
    const more = (ff & 0x2000) !== 0;
    const start = (ff & 0x1fff) * 8;
    const hl = ip.headerLength;
    const len = ip.totalLength - hl;
    const end = start + len;

    let s = this.find(src, dst, id, proto);
    if (s !== null && now - s.createdAt >= this.timeoutMs) {
      this.drop(s, 'timeouts');
      s = null;
    }
    if (s === null) {
      s = this.take(now);
      s.src = src;
      s.dst = dst;
      s.id = id;
      s.proto = proto;
    }
    this.last = s;
    if (s.dead) {
      this.stats.fragmentsDropped++;
      return REASM_DROPPED;
    }
    // RFC 791: every fragment but the last carries a multiple of 8 bytes (and some bytes).
    if (more && (len === 0 || (len & 7) !== 0)) return this.reject(s, 'malformed');
    if (hl + end > IPV4_MAX_TOTAL) return this.reject(s, 'tooBig');
    if (!more) {
      // The last fragment fixes the end: a second, different one, or data already beyond it, is nonsense.
      if ((s.end >= 0 && s.end !== end) || (s.runs > 0 && s.runEnd[s.runs - 1] > end)) return this.reject(s, 'malformed');
      s.end = end;
    } else if (s.end >= 0 && end > s.end) {
      return this.reject(s, 'malformed');
    }
    if (len > 0) {
      // Where the new piece goes among the runs (sorted, disjoint, never adjacent).
      let i = 0;
      while (i < s.runs && s.runEnd[i] < start) i++;
      if (i < s.runs && s.runStart[i] <= start && end <= s.runEnd[i]) {
        this.stats.duplicates++;
        return REASM_PENDING;
      }
      // Touching (sharing an edge) is fine; sharing a byte is an overlap.
      if (i < s.runs && s.runStart[i] < end && start < s.runEnd[i]) return this.overlap(s);
      if (i + 1 < s.runs && s.runStart[i + 1] < end) return this.overlap(s);
      if (this.stats.bytesHeld + len > this.maxBytes && !this.makeRoom(len, s)) return this.reject(s, 'overMemory');
      const joinsLeft = i < s.runs && s.runEnd[i] === start;
      const rightIndex = joinsLeft ? i + 1 : i;
      const joinsRight = rightIndex < s.runs && s.runStart[rightIndex] === end;
      if (!joinsLeft && !joinsRight && s.runs === MAX_RUNS) return this.reject(s, 'tooManyHoles');
      if (s.buf === null) {
        s.buf = Buffer.allocUnsafeSlow(SLOT_BUFFER);
        s.dv = new DataView(s.buf.buffer, s.buf.byteOffset, s.buf.byteLength);
      }
      copyBytes(buf, ip.payloadOffset, s.buf, HEADER_ROOM + start, len);
      if (joinsLeft && joinsRight) {
        s.runEnd[i] = s.runEnd[i + 1];
        for (let k = i + 1; k + 1 < s.runs; k++) {
          s.runStart[k] = s.runStart[k + 1];
          s.runEnd[k] = s.runEnd[k + 1];
        }
        s.runs--;
      } else if (joinsLeft) {
        s.runEnd[i] = end;
      } else if (joinsRight) {
        s.runStart[rightIndex] = start;
      } else {
        for (let k = s.runs; k > i; k--) {
          s.runStart[k] = s.runStart[k - 1];
          s.runEnd[k] = s.runEnd[k - 1];
        }
        s.runStart[i] = start;
        s.runEnd[i] = end;
        s.runs++;
      }
      s.bytes += len;
      this.stats.bytesHeld += len;
    }
    s.fragments++;
    if (start === 0) {
      // The reassembled datagram carries the first fragment's header, options and all (RFC 791).
      // (A first fragment has data: the buffer exists.)
      s.headerLength = hl;
      copyBytes(buf, ip.off, s.buf as Buffer, HEADER_ROOM - hl, hl);
    }
    if (s.end < 0 || s.headerLength === 0 || s.runs !== 1 || s.runStart[0] !== 0 || s.runEnd[0] !== s.end) return REASM_PENDING;
    // The first fragment's header may be longer than the one whose end was checked.
    if (s.headerLength + s.end > IPV4_MAX_TOTAL) {
      this.drop(s, 'tooBig');
      return REASM_DROPPED;
    }
    return this.complete(s);
  }

  /** Drops datagrams older than the timeout; returns how many. Call it every second or so. */
  expire(now: number): number {
    let n = 0;
    while (this.active.length > 0 && now - this.active[0].createdAt >= this.timeoutMs) {
      this.drop(this.active[0], 'timeouts');
      n++;
    }
    return n;
  }

  /** Drops everything in progress (not counted as drops: nobody is waiting any more). */
  clear(): void {
    while (this.active.length > 0) this.release(this.active[0]);
  }

  private complete(s: Slot): number {
    const buf = s.buf as Buffer;
    const dv = s.dv as DataView;
    const off = HEADER_ROOM - s.headerLength;
    const total = s.headerLength + s.end;
    dv.setUint16(off + 2, total);
    dv.setUint16(off + 6, 0); // not a fragment any more (DF cannot have been set on one)
    dv.setUint16(off + 10, 0);
    dv.setUint16(off + 10, checksum(dv, off, s.headerLength));
    this.outBuf = buf;
    this.outDv = dv;
    this.outOff = off;
    this.outLen = total;
    this.stats.reassembled++;
    // The slot goes back to the free list; its buffer stays valid until it is taken again, which
    // is no sooner than the next input().
    this.release(s);
    return REASM_COMPLETE;
  }

  private find(src: number, dst: number, id: number, proto: number): Slot | null {
    const l = this.last;
    if (l !== null && l.id === id && l.src === src && l.dst === dst && l.proto === proto) return l;
    const a = this.active;
    for (let i = a.length - 1; i >= 0; i--) {
      const s = a[i];
      if (s.id === id && s.src === src && s.dst === dst && s.proto === proto) return s;
    }
    return null;
  }

  /** A free slot, evicting the oldest datagram in progress when all are taken. */
  private take(now: number): Slot {
    if (this.free.length === 0) this.drop(this.active[0], 'overLimit');
    const s = this.free.pop() as Slot;
    s.createdAt = now;
    s.end = -1;
    s.headerLength = 0;
    s.bytes = 0;
    s.fragments = 0;
    s.runs = 0;
    s.dead = false;
    this.active.push(s);
    this.stats.inProgress++;
    return s;
  }

  /** Evicts the oldest other datagrams until `len` more bytes fit; false if they cannot. */
  private makeRoom(len: number, keep: Slot): boolean {
    let i = 0;
    while (this.stats.bytesHeld + len > this.maxBytes && i < this.active.length) {
      const s = this.active[i];
      if (s === keep || s.bytes === 0) {
        i++;
        continue;
      }
      this.drop(s, 'overMemory');
    }
    return this.stats.bytesHeld + len <= this.maxBytes;
  }

  /** This fragment makes its datagram impossible: the datagram goes, counted under `reason`. */
  private reject(s: Slot, reason: DropReason): number {
    this.stats.fragmentsDropped++;
    this.drop(s, reason);
    return REASM_DROPPED;
  }

  /** RFC 5722: the whole datagram is discarded, and so are its fragments still to come. */
  private overlap(s: Slot): number {
    this.stats.overlaps++;
    this.stats.fragmentsDropped += s.fragments + 1;
    this.stats.bytesHeld -= s.bytes;
    s.bytes = 0;
    s.fragments = 0;
    s.runs = 0;
    s.dead = true;
    return REASM_DROPPED;
  }

  private drop(s: Slot, reason: DropReason): void {
    // A discarded datagram already counted its overlap; its timeout is only the end of its tombstone.
    if (!s.dead) {
      this.stats[reason]++;
      this.stats.fragmentsDropped += s.fragments;
    }
    this.release(s);
  }

  private release(s: Slot): void {
    const a = this.active;
    const i = a.indexOf(s);
    if (i < 0) return;
    for (let k = i; k + 1 < a.length; k++) a[k] = a[k + 1];
    a.length--;
    this.stats.bytesHeld -= s.bytes;
    this.stats.inProgress--;
    s.bytes = 0;
    s.dead = false;
    s.src = s.dst = s.id = s.proto = 0;
    s.runs = 0;
    if (this.last === s) this.last = null;
    this.free.push(s);
  }
}

type DropReason = 'timeouts' | 'overMemory' | 'overLimit' | 'tooBig' | 'malformed' | 'tooManyHoles';
