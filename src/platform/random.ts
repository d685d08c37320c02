/**
 * Chance, as one injectable thing: ISNs' secret, DNS transaction IDs, NAT port and identifier
 * choices, generated MACs, the loss and corruption draws of impairment. The daemon uses the
 * system's cryptographic source; a test gives a SeededRandom, and the same seed gives the same
 * choices, so a run can be replayed byte for byte.
 */
import { randomFillSync } from 'node:crypto';
import { InvalidArgumentError } from '../errors.js';

export interface Random {
  /** A uniformly distributed integer in [0, 2^32). */
  uint32(): number;
  /** A uniformly distributed number in [0, 1). */
  float(): number;
  /** An integer in [0, n) for n ≤ 2^32 (no modulo bias worth the name below 2^20). */
  below(n: number): number;
  /** Fills `buf` with random bytes and returns it. */
  fill(buf: Uint8Array): Uint8Array;
}

/** The system's cryptographic source, drawn from a refilled pool so one value costs no syscall. */
export class SystemRandom implements Random {
  private readonly pool = new Uint32Array(1024);
  private next = this.pool.length;

  uint32(): number {
    if (this.next === this.pool.length) {
      randomFillSync(this.pool);
      this.next = 0;
    }
    return this.pool[this.next++];
  }
  float(): number {
    return this.uint32() / 0x1_0000_0000;
  }
  below(n: number): number {
    return Math.floor(this.float() * n);
  }
  fill(buf: Uint8Array): Uint8Array {
    return randomFillSync(buf);
  }
}

/** The source every component uses when it is given none. */
export const systemRandom: Random = new SystemRandom();

/**
 * A deterministic source: sfc32 (Chris Doty-Humphrey's Small Fast Counting generator, 128 bits of
 * state, passes PractRand to 2^40+ bytes), seeded from a number or a string by splitmix32. Not for
 * anything secret.
 */
export class SeededRandom implements Random {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  readonly seed: number | string;

  /**
   * `seed`: an integer 0 to 2^32 - 1, or a non-empty string. Anything else (NaN, a fraction, a
   * negative or larger number, an empty string) is refused rather than quietly mapped onto
   * another seed's sequence.
   */
  constructor(seed: number | string) {
    const ok = typeof seed === 'number' ? Number.isInteger(seed) && seed >= 0 && seed <= 0xffffffff : typeof seed === 'string' && seed.length > 0;
    if (!ok) throw new InvalidArgumentError(`a seed must be an integer from 0 to 4294967295 or a non-empty string, not ${typeof seed === 'string' ? JSON.stringify(seed) : String(seed)}`);
    this.seed = seed;
    let s = typeof seed === 'number' ? seed >>> 0 : hashString(seed);
    const split = (): number => {
      s = (s + 0x9e3779b9) | 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
      z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
      return (z ^ (z >>> 15)) >>> 0;
    };
    this.a = split();
    this.b = split();
    this.c = split();
    this.d = split();
    for (let i = 0; i < 12; i++) this.uint32();
  }

  uint32(): number {
    let t = (this.a + this.b) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.d = (this.d + 1) | 0;
    t = (t + this.d) | 0;
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }
  float(): number {
    return this.uint32() / 0x1_0000_0000;
  }
  below(n: number): number {
    return Math.floor(this.float() * n);
  }
  fill(buf: Uint8Array): Uint8Array {
    let i = 0;
    for (; i + 4 <= buf.length; i += 4) {
      const v = this.uint32();
      buf[i] = v & 255;
      buf[i + 1] = (v >>> 8) & 255;
      buf[i + 2] = (v >>> 16) & 255;
      buf[i + 3] = v >>> 24;
    }
    if (i < buf.length) {
      let v = this.uint32();
      for (; i < buf.length; i++, v >>>= 8) buf[i] = v & 255;
    }
    return buf;
  }
}

/** FNV-1a over the string's UTF-16 code units. */
function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
