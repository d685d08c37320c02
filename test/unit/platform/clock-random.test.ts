import { describe, expect, it } from 'vitest';
import { SystemClock, VirtualClock } from '../../../src/platform/clock.js';
import { SeededRandom, SystemRandom } from '../../../src/platform/random.js';

describe('VirtualClock', () => {
  it('fires timers in due order, then in the order they were set, each at its own time', () => {
    const c = new VirtualClock();
    const seen: string[] = [];
    c.setTimeout(() => seen.push(`b@${c.now()}`), 20);
    c.setTimeout(() => seen.push(`a@${c.now()}`), 10);
    c.setTimeout(() => seen.push(`c@${c.now()}`), 20);
    expect(c.advance(15)).toBe(1);
    expect(c.now()).toBe(15);
    c.advance(5);
    expect(seen).toEqual(['a@10', 'b@20', 'c@20']);
    expect(c.pending).toBe(0);
  });

  it('runs intervals until cleared, and timers set by a timer inside the same advance', () => {
    const c = new VirtualClock();
    let ticks = 0;
    const seen: number[] = [];
    const t = c.setInterval(() => {
      ticks++;
      if (ticks === 2) c.setTimeout(() => seen.push(c.now()), 5);
    }, 10);
    c.advance(100);
    expect(ticks).toBe(10);
    expect(seen).toEqual([25]);
    c.clear(t);
    c.advance(100);
    expect(ticks).toBe(10);
    expect(t.dueAt).toBe(Infinity);
  });

  it('cancels a pending timer and ignores clearing one that fired or none', () => {
    const c = new VirtualClock();
    let fired = 0;
    const a = c.setTimeout(() => fired++, 10);
    const b = c.setTimeout(() => fired++, 10);
    c.clear(a);
    c.advance(10);
    expect(fired).toBe(1);
    c.clear(b);
    c.clear(null);
    c.clear(undefined);
    expect(c.pending).toBe(0);
  });

  it('reaches two hours in far less than a second of real time with an interval running', () => {
    const c = new VirtualClock();
    let n = 0;
    c.setInterval(() => n++, 50);
    const t0 = performance.now();
    c.advance(2 * 3600_000 + 4 * 60_000);
    expect(n).toBe(148_800);
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it('gives a wall time that starts at a fixed instant and refuses going backwards', () => {
    const c = new VirtualClock({ wallTimeAtZero: 1_000_000 });
    c.advance(500);
    expect(c.wallTime()).toBe(1_000_500);
    expect(() => c.advance(-1)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    expect(() => c.advance(Infinity)).toThrow(/finite/);
    c.advanceTo(100);
    expect(c.now()).toBe(500);
  });

  it('step() fires the next timer only', () => {
    const c = new VirtualClock();
    const seen: number[] = [];
    c.setTimeout(() => seen.push(1), 30);
    c.setTimeout(() => seen.push(2), 40);
    expect(c.step()).toBe(true);
    expect(seen).toEqual([1]);
    expect(c.now()).toBe(30);
    expect(c.nextDue).toBe(40);
  });
});

describe('SystemClock', () => {
  it('fires an unref-ed timeout and can cancel one', async () => {
    const c = new SystemClock();
    const cancelled = c.setTimeout(() => {
      throw new Error('must not fire');
    }, 5);
    c.clear(cancelled);
    await new Promise<void>((resolve) => c.setTimeout(resolve, 10));
    expect(cancelled.dueAt).toBe(Infinity);
  });
});

describe('SeededRandom', () => {
  it('gives the same sequence for the same seed and a different one for another', () => {
    const a = new SeededRandom(42);
    const b = new SeededRandom(42);
    const c = new SeededRandom('42');
    const sa = Array.from({ length: 8 }, () => a.uint32());
    expect(Array.from({ length: 8 }, () => b.uint32())).toEqual(sa);
    expect(Array.from({ length: 8 }, () => c.uint32())).not.toEqual(sa);
  });

  it('refuses seeds that would quietly alias another seed', () => {
    for (const bad of [NaN, Infinity, -1, 1.5, 2 ** 32, '', null, undefined, {}]) {
      expect(() => new SeededRandom(bad as unknown as number), String(bad)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    }
    expect(new SeededRandom(0).uint32()).not.toBe(new SeededRandom(1).uint32());
    expect(new SeededRandom(0xffffffff).uint32()).toBeTypeOf('number');
  });

  it('stays within range and fills buffers of any length', () => {
    const r = new SeededRandom(7);
    for (let i = 0; i < 10_000; i++) {
      const f = r.float();
      expect(f >= 0 && f < 1).toBe(true);
      const n = r.below(6);
      expect(Number.isInteger(n) && n >= 0 && n < 6).toBe(true);
    }
    const buf = r.fill(new Uint8Array(7));
    expect(buf.some((x) => x !== 0)).toBe(true);
  });

  it('is roughly uniform (chi-square over 16 buckets)', () => {
    const r = new SeededRandom(2026);
    const buckets = new Array<number>(16).fill(0);
    const n = 160_000;
    for (let i = 0; i < n; i++) buckets[r.uint32() >>> 28]++;
    const expected = n / 16;
    const chi = buckets.reduce((s, x) => s + (x - expected) ** 2 / expected, 0);
    expect(chi).toBeLessThan(37.7); // p = 0.001 for 15 degrees of freedom
  });
});

describe('SystemRandom', () => {
  it('draws 32-bit values from its pool across refills', () => {
    const r = new SystemRandom();
    const seen = new Set<number>();
    for (let i = 0; i < 3000; i++) {
      const v = r.uint32();
      expect(Number.isInteger(v) && v >= 0 && v < 2 ** 32).toBe(true);
      seen.add(v);
    }
    expect(seen.size).toBeGreaterThan(2990);
  });
});
