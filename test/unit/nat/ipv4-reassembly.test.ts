/**
 * IPv4 reassembly, pure: fragments cut here by hand (not with src/packet/build.ts), fed in
 * every order, with duplicates, overlaps, holes left open, caps hit and the clock moved by the
 * test. The whole datagram that comes out is compared byte for byte with the one that was cut,
 * and its header checksum with an independent sum.
 */
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../../src/errors.js';
import { Ipv4Reassembler, REASM_COMPLETE, REASM_DROPPED, REASM_PENDING, type ReassemblyOptions } from '../../../src/nat/ipv4-reassembly.js';
import { Ipv4View } from '../../../src/packet/ipv4.js';
import { ParseStatus } from '../../../src/packet/status.js';
import { dvOf, naiveChecksum, naiveSum, patternPayload, prng } from '../helpers/frames.js';

const SRC = 0x0a000264; // 10.0.2.100
const DST = 0xc6336402; // 198.51.100.2 (documentation range)

/** A whole IPv4 datagram (UDP-ish payload), not a fragment. `options` makes the header longer. */
function datagram(payloadLength: number, o: { id?: number; src?: number; proto?: number; options?: Buffer; salt?: number } = {}): Buffer {
  const opts = o.options ?? Buffer.alloc(0);
  const hl = 20 + opts.length;
  const d = Buffer.alloc(hl + payloadLength);
  d[0] = 0x40 | (hl / 4);
  d.writeUInt16BE(d.length, 2);
  d.writeUInt16BE(o.id ?? 0x4242, 4);
  d.writeUInt16BE(0, 6);
  d[8] = 64;
  d[9] = o.proto ?? 17;
  d.writeUInt32BE(o.src ?? SRC, 12);
  d.writeUInt32BE(DST, 16);
  opts.copy(d, 20);
  d.writeUInt16BE(naiveChecksum(d.subarray(0, hl)), 10);
  patternPayload(payloadLength, o.salt ?? 1).copy(d, hl);
  return d;
}

/**
 * The fragment of `whole` carrying payload bytes [start, start+len), MF as given (default: set
 * unless it ends the payload). Non-first fragments carry a plain 20-byte header (RFC 791 copies
 * only some options).
 */
function fragment(whole: Buffer, start: number, len: number, more = start + len < whole.length - (whole[0] & 15) * 4): Buffer {
  const hl0 = (whole[0] & 15) * 4;
  const hl = start === 0 ? hl0 : 20;
  const f = Buffer.alloc(hl + len);
  whole.copy(f, 0, 0, 20);
  if (hl > 20) whole.copy(f, 20, 20, hl);
  f[0] = 0x40 | (hl / 4);
  f.writeUInt16BE(f.length, 2);
  f.writeUInt16BE((more ? 0x2000 : 0) | (start / 8), 6);
  f.writeUInt16BE(0, 10);
  f.writeUInt16BE(naiveChecksum(f.subarray(0, hl)), 10);
  whole.copy(f, hl, hl0 + start, hl0 + start + len);
  return f;
}

/** Cuts `whole` into fragments of `size` payload bytes (a multiple of 8), in order. */
function cut(whole: Buffer, size: number): Buffer[] {
  const payload = whole.length - (whole[0] & 15) * 4;
  const out: Buffer[] = [];
  for (let at = 0; at < payload; at += size) out.push(fragment(whole, at, Math.min(size, payload - at)));
  return out;
}

class Harness {
  readonly r: Ipv4Reassembler;
  readonly ip = new Ipv4View();
  now = 5_000;
  constructor(o: ReassemblyOptions = {}) {
    this.r = new Ipv4Reassembler(o);
  }
  feed(f: Buffer): number {
    expect(this.ip.bind(dvOf(f), 0, f.length)).toBe(ParseStatus.OK);
    return this.r.input(f, this.ip, this.now);
  }
  /** Feeds all; returns the datagram completed by the last one (and checks none came earlier). */
  feedAll(frags: Buffer[]): Buffer | null {
    for (let i = 0; i < frags.length; i++) {
      const st = this.feed(frags[i]);
      if (i < frags.length - 1) expect(st, `fragment ${i} of ${frags.length}`).not.toBe(REASM_COMPLETE);
      else if (st === REASM_COMPLETE) return this.out();
    }
    return null;
  }
  out(): Buffer {
    return Buffer.from(this.r.outBuf.subarray(this.r.outOff, this.r.outOff + this.r.outLen));
  }
}

function shuffled<T>(xs: T[], seed: number): T[] {
  const rand = prng(seed);
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

describe('Ipv4Reassembler: putting datagrams back together', () => {
  it('an 8 KiB datagram cut at MTU 1500, in order: the very datagram that was cut, header checksum valid', () => {
    const whole = datagram(8192 + 8);
    const frags = cut(whole, 1480);
    expect(frags).toHaveLength(6);
    const h = new Harness();
    const got = h.feedAll(frags);
    expect(got).not.toBeNull();
    expect(got!.equals(whole)).toBe(true);
    expect(naiveSum(got!.subarray(0, 20))).toBe(0xffff);
    expect(h.r.stats).toMatchObject({ fragments: 6, reassembled: 1, inProgress: 0, bytesHeld: 0, fragmentsDropped: 0 });
  });

  it('in reverse and in shuffled orders, with odd-sized pieces', () => {
    const whole = datagram(20_003);
    for (const [name, frags] of [
      ['reverse', cut(whole, 1480).reverse()],
      ['shuffled 1', shuffled(cut(whole, 1480), 1)],
      ['reverse, 8-byte pieces', cut(whole, 8).reverse()],
      ['shuffled 3, 512-byte pieces', shuffled(cut(whole, 512), 3)],
    ] as const) {
      const h = new Harness();
      const got = h.feedAll([...frags]);
      expect(got?.equals(whole), name).toBe(true);
      expect(h.r.stats.bytesHeld, name).toBe(0);
    }
  });

  it('keeps the first fragment’s header options; a 65535-byte datagram is the largest', () => {
    const opts = Buffer.from([0x94, 0x04, 0x00, 0x00]); // router alert
    const whole = datagram(65535 - 24, { options: opts });
    const got = new Harness().feedAll(shuffled(cut(whole, 1480), 4));
    expect(got?.equals(whole)).toBe(true);
    expect(got!.readUInt16BE(2)).toBe(65535);
  });

  it('several datagrams interleaved, the same id from two sources and two protocols, each whole', () => {
    const a = datagram(5000, { id: 7, salt: 1 });
    const b = datagram(5000, { id: 7, src: SRC + 1, salt: 2 });
    const c = datagram(3000, { id: 7, proto: 6, salt: 3 });
    const d = datagram(3000, { id: 8, salt: 4 });
    const h = new Harness();
    const all = [cut(a, 1480), cut(b, 1480), cut(c, 1000), cut(d, 1000)];
    const order: Buffer[] = [];
    for (let i = 0; i < 4; i++) for (const fs of all) if (fs[i]) order.push(fs[i]);
    const done: Buffer[] = [];
    for (const f of order) if (h.feed(f) === REASM_COMPLETE) done.push(h.out());
    expect(done).toHaveLength(4);
    for (const w of [a, b, c, d]) expect(done.some((x) => x.equals(w))).toBe(true);
    expect(h.r.stats).toMatchObject({ reassembled: 4, inProgress: 0, bytesHeld: 0 });
  });

  it('a duplicate fragment is ignored and counted; the datagram still completes', () => {
    const whole = datagram(4000);
    const [f0, f1, f2] = cut(whole, 1480);
    const h = new Harness();
    expect(h.feed(f0)).toBe(REASM_PENDING);
    expect(h.feed(f0)).toBe(REASM_PENDING);
    expect(h.feed(f2)).toBe(REASM_PENDING);
    expect(h.feed(f2)).toBe(REASM_PENDING);
    expect(h.feed(f1)).toBe(REASM_COMPLETE);
    expect(h.out().equals(whole)).toBe(true);
    expect(h.r.stats.duplicates).toBe(2);
  });

  it('a fragment after its datagram completed starts a new one, which times out', () => {
    const whole = datagram(3000);
    const frags = cut(whole, 1480);
    const h = new Harness();
    h.feedAll(frags);
    expect(h.feed(frags[1])).toBe(REASM_PENDING);
    expect(h.r.stats.inProgress).toBe(1);
    h.now += 30_000;
    expect(h.r.expire(h.now)).toBe(1);
    expect(h.r.stats).toMatchObject({ timeouts: 1, fragmentsDropped: 1, inProgress: 0, bytesHeld: 0 });
  });
});

describe('Ipv4Reassembler: what it throws away, and counts', () => {
  it('overlap (RFC 5722): the whole datagram goes, its later fragments with it, until the timeout', () => {
    const whole = datagram(4000);
    const [f0, f1, f2] = cut(whole, 1480);
    const h = new Harness();
    expect(h.feed(f0)).toBe(REASM_PENDING);
    // 8 bytes into the first fragment's data, and beyond it: shares bytes with it.
    expect(h.feed(fragment(whole, 1472, 1480))).toBe(REASM_DROPPED);
    expect(h.r.stats).toMatchObject({ overlaps: 1, fragmentsDropped: 2, bytesHeld: 0 });
    // The rest arrives, even a perfect set: nothing comes out of a discarded datagram.
    expect(h.feed(f1)).toBe(REASM_DROPPED);
    expect(h.feed(f2)).toBe(REASM_DROPPED);
    expect(h.feed(f0)).toBe(REASM_DROPPED);
    expect(h.r.stats).toMatchObject({ reassembled: 0, fragmentsDropped: 5, inProgress: 1, bytesHeld: 0 });
    // After the timeout the same id is a new datagram again (and the tombstone is not a second drop).
    h.now += 30_000;
    expect(h.r.expire(h.now)).toBe(1);
    expect(h.r.stats.timeouts).toBe(0);
    expect(h.feedAll([f0, f1, f2])?.equals(whole)).toBe(true);
  });

  it('an overlap with the start of a later piece, and one covering a whole piece, are overlaps too', () => {
    const whole = datagram(4000);
    for (const bad of [fragment(whole, 1480, 1488), fragment(whole, 0, 2960)]) {
      const h = new Harness();
      expect(h.feed(fragment(whole, 1480 + 8, 8))).toBe(REASM_PENDING);
      expect(h.feed(bad)).toBe(REASM_DROPPED);
      expect(h.r.stats.overlaps).toBe(1);
    }
    // Pieces that only touch are not.
    const h = new Harness();
    expect(h.feed(fragment(whole, 8, 8))).toBe(REASM_PENDING);
    expect(h.feed(fragment(whole, 24, 8))).toBe(REASM_PENDING);
    expect(h.feed(fragment(whole, 16, 8))).toBe(REASM_PENDING);
    expect(h.r.stats.overlaps).toBe(0);
  });

  it('times out 30 s after the first fragment (not refreshed by later ones), by expire() or by the next fragment', () => {
    const whole = datagram(4000);
    const [f0, f1, f2] = cut(whole, 1480);
    const h = new Harness();
    h.feed(f0);
    h.now += 20_000;
    h.feed(f1);
    h.now += 9_999;
    expect(h.r.expire(h.now)).toBe(0);
    h.now += 1;
    expect(h.r.expire(h.now)).toBe(1);
    expect(h.r.stats).toMatchObject({ timeouts: 1, fragmentsDropped: 2, inProgress: 0, bytesHeld: 0 });
    // Found stale by the next fragment before any expire():
    h.feed(f0);
    h.now += 30_000;
    expect(h.feed(f1)).toBe(REASM_PENDING);
    expect(h.r.stats.timeouts).toBe(2);
    expect(h.feed(f2)).toBe(REASM_PENDING); // f0 went with the stale datagram
  });

  it('the timeout is configurable', () => {
    const h = new Harness({ timeoutMs: 1000 });
    h.feed(cut(datagram(3000), 1480)[0]);
    h.now += 1000;
    expect(h.r.expire(h.now)).toBe(1);
  });

  it('over maxDatagrams the oldest datagram in progress is evicted', () => {
    const h = new Harness({ maxDatagrams: 2 });
    const ws = [1, 2, 3].map((id) => datagram(3000, { id }));
    h.feed(cut(ws[0], 1480)[0]);
    h.now += 1;
    h.feed(cut(ws[1], 1480)[0]);
    h.now += 1;
    h.feed(cut(ws[2], 1480)[0]);
    expect(h.r.stats).toMatchObject({ overLimit: 1, inProgress: 2, fragmentsDropped: 1 });
    // The first is gone; the other two complete.
    expect(h.feedAll(cut(ws[1], 1480).slice(1))?.equals(ws[1])).toBe(true);
    expect(h.feedAll(cut(ws[2], 1480).slice(1))?.equals(ws[2])).toBe(true);
    expect(h.feedAll(cut(ws[0], 1480).slice(1))).toBeNull();
  });

  it('over maxBytes the oldest datagrams are evicted to make room; the total held never exceeds it', () => {
    const h = new Harness({ maxBytes: 70_000 });
    const big = [1, 2, 3].map((id) => datagram(40_000, { id }));
    let peak = 0;
    // 30 000 bytes of each, oldest first: the third does not fit beside the other two.
    for (const w of big) {
      for (const f of cut(w, 1480).slice(0, 20)) {
        h.feed(f);
        peak = Math.max(peak, h.r.stats.bytesHeld);
      }
      h.now += 1;
    }
    expect(peak).toBeLessThanOrEqual(70_000);
    expect(h.r.stats.overMemory).toBe(1);
    expect(h.r.stats.inProgress).toBe(2);
    expect(h.feedAll(cut(big[2], 1480).slice(20))?.equals(big[2])).toBe(true);
    expect(h.r.stats.bytesHeld).toBeLessThanOrEqual(70_000);
  });

  it('a datagram that would end beyond 65535 bytes is dropped as too big', () => {
    const whole = datagram(65535 - 20);
    const h = new Harness();
    h.feed(fragment(whole, 0, 1480));
    // Offset 65528 (the largest) + 16 bytes: ends at 65544 + 20 of header.
    const f = fragment(datagram(65535 - 20), 65512, 16);
    f.writeUInt16BE(0x2000 | (65528 / 8), 6);
    f.writeUInt16BE(0, 10);
    f.writeUInt16BE(naiveChecksum(f.subarray(0, 20)), 10);
    expect(h.feed(f)).toBe(REASM_DROPPED);
    expect(h.r.stats).toMatchObject({ tooBig: 1, inProgress: 0, bytesHeld: 0, fragmentsDropped: 2 });
  });

  it('malformed: a middle fragment not a multiple of 8 bytes; two different ends; data beyond the end', () => {
    const whole = datagram(4000);
    let h = new Harness();
    expect(h.feed(fragment(whole, 0, 1479, true))).toBe(REASM_DROPPED);
    expect(h.r.stats.malformed).toBe(1);

    h = new Harness();
    h.feed(fragment(whole, 2960, 1040, false));
    expect(h.feed(fragment(whole, 1480, 1000, false))).toBe(REASM_DROPPED);
    expect(h.r.stats.malformed).toBe(1);

    h = new Harness();
    h.feed(fragment(whole, 2960, 1040, true));
    expect(h.feed(fragment(whole, 0, 1480, false))).toBe(REASM_DROPPED);
    expect(h.r.stats).toMatchObject({ malformed: 1, fragmentsDropped: 2, inProgress: 0 });
  });

  it('more than 32 separate pieces at once: dropped as too many holes', () => {
    const whole = datagram(8 * 100);
    const h = new Harness();
    for (let i = 0; i < 32; i++) expect(h.feed(fragment(whole, i * 16, 8))).toBe(REASM_PENDING);
    expect(h.feed(fragment(whole, 32 * 16, 8))).toBe(REASM_DROPPED);
    expect(h.r.stats).toMatchObject({ tooManyHoles: 1, fragmentsDropped: 33, inProgress: 0, bytesHeld: 0 });
    // Filling holes merges pieces and never needs more runs.
    const g = new Harness();
    const frags = cut(whole, 8);
    const evens = frags.filter((_, i) => i % 2 === 0).slice(0, 32);
    for (const f of evens) g.feed(f);
    expect(g.feedAll(frags.filter((f) => !evens.includes(f)))?.equals(whole)).toBe(true);
  });

  it('rejects nonsense limits with a stable error code', () => {
    expect(() => new Ipv4Reassembler({ maxBytes: 1000 })).toThrow(InvalidArgumentError);
    expect(() => new Ipv4Reassembler({ maxDatagrams: 0 })).toThrow(/maxDatagrams/);
    expect(() => new Ipv4Reassembler({ timeoutMs: 0 })).toThrow(/timeoutMs/);
  });

  it('clear() empties it without counting drops', () => {
    const h = new Harness();
    h.feed(cut(datagram(3000), 1480)[0]);
    h.r.clear();
    expect(h.r.stats).toMatchObject({ inProgress: 0, bytesHeld: 0, timeouts: 0 });
  });
});
