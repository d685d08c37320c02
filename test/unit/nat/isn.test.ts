import { describe, expect, it } from 'vitest';
import { IsnGenerator } from '../../../src/nat/isn.js';

const SECRET = new Uint8Array(16).fill(7);

describe('IsnGenerator (RFC 6528)', () => {
  it('advances 250 000 per second on the same four ports, so a later connection starts beyond an earlier one', () => {
    let now = 1000;
    const g = new IsnGenerator({ clockMs: () => now, secret: SECRET });
    const a = g.next(0x0a000202, 40000, 0x0a000264, 80);
    now += 1000;
    const b = g.next(0x0a000202, 40000, 0x0a000264, 80);
    expect((b - a) >>> 0).toBe(250_000);
    now += 0.004;
    expect((g.next(0x0a000202, 40000, 0x0a000264, 80) - b) >>> 0).toBe(1);
  });

  it('differs between tuples and between secrets, at the same instant', () => {
    const now = () => 5;
    const g = new IsnGenerator({ clockMs: now, secret: SECRET });
    const base = g.next(0x0a000202, 40000, 0x0a000264, 80);
    const others = [
      g.next(0x0a000202, 40001, 0x0a000264, 80),
      g.next(0x0a000203, 40000, 0x0a000264, 80),
      g.next(0x0a000202, 40000, 0x0a000265, 80),
      g.next(0x0a000202, 40000, 0x0a000264, 81),
      new IsnGenerator({ clockMs: now }).next(0x0a000202, 40000, 0x0a000264, 80),
    ];
    for (const o of others) expect(o).not.toBe(base);
    expect(new Set(others).size).toBe(others.length);
  });

  it('wraps modulo 2^32 and refuses a secret of the wrong size', () => {
    const g = new IsnGenerator({ clockMs: () => 2 ** 40, secret: SECRET });
    const v = g.next(1, 2, 3, 4);
    expect(Number.isInteger(v) && v >= 0 && v < 2 ** 32).toBe(true);
    expect(() => new IsnGenerator({ secret: new Uint8Array(8) })).toThrow(RangeError);
  });
});
