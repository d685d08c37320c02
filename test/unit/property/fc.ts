/**
 * Shared set-up for the property-based tests (fast-check).
 *
 * fast-check picks a random seed per run and prints it, with the shrunk counterexample, when a
 * property fails; FC_SEED=<seed> (and FC_PATH from the same report) replays that run exactly.
 * FC_NUM_RUNS scales every property up for a longer hunt (the default keeps the whole
 * property suite at a few seconds on the 2-core machine).
 */
import fc from 'fast-check';

const seed = process.env.FC_SEED === undefined ? undefined : Number(process.env.FC_SEED);
const path = process.env.FC_PATH;
const scale = process.env.FC_NUM_RUNS === undefined ? 1 : Number(process.env.FC_NUM_RUNS) / 100;

function params<Ts>(runs: number): fc.Parameters<Ts> {
  return { numRuns: Math.max(1, Math.round(runs * scale)), ...(seed !== undefined ? { seed } : {}), ...(path !== undefined ? { path } : {}) };
}

/** Runs a property `runs` times (scaled by FC_NUM_RUNS/100); throws with the seed on failure. */
export function check<Ts extends [unknown, ...unknown[]]>(property: fc.IProperty<Ts>, runs = 100): void {
  fc.assert(property, params<Ts>(runs));
}

/** As check, for async properties. */
export function checkAsync<Ts extends [unknown, ...unknown[]]>(property: fc.IAsyncProperty<Ts>, runs = 100): Promise<void> {
  return fc.assert(property, params<Ts>(runs));
}

/**
 * `bytes` placed at a random offset inside a larger ArrayBuffer, with the DataView ending exactly
 * at the last byte: a codec that reads past the length it was given throws a RangeError instead
 * of silently reading neighbouring memory, and one that confuses absolute and relative offsets
 * reads the wrong bytes.
 */
export interface Placed {
  buf: Uint8Array;
  dv: DataView;
  off: number;
  len: number;
}

export function place(bytes: Uint8Array, off: number): Placed {
  const ab = new ArrayBuffer(off + bytes.length);
  const buf = new Uint8Array(ab);
  buf.fill(0xa5, 0, off);
  buf.set(bytes, off);
  return { buf, dv: new DataView(ab), off, len: bytes.length };
}

/** Arbitrary bytes at an arbitrary offset (0..15). */
export function placedBytes(maxLength = 200): fc.Arbitrary<Placed> {
  return fc.tuple(fc.uint8Array({ maxLength }), fc.integer({ min: 0, max: 15 })).map(([b, o]) => place(b, o));
}

export const u8 = fc.integer({ min: 0, max: 0xff });
export const u16 = fc.integer({ min: 0, max: 0xffff });
export const u32 = fc.integer({ min: 0, max: 0xffffffff });
/** A 48-bit MAC as the codecs keep it: a number. */
export const mac = fc.integer({ min: 0, max: 2 ** 48 - 1 });

/** Bytes whose first bytes are biased towards a given prefix, so fuzzing reaches past the first check. */
export function bytesWithPrefix(prefix: fc.Arbitrary<Uint8Array>, maxLength = 200): fc.Arbitrary<Uint8Array> {
  return fc.tuple(prefix, fc.uint8Array({ maxLength }), fc.boolean()).map(([p, rest, keep]) => {
    if (!keep) return rest;
    const out = new Uint8Array(p.length + rest.length);
    out.set(p, 0);
    out.set(rest, p.length);
    return out;
  });
}

/** Naive RFC 1071 sum (independent of src/packet/checksum.ts). */
export function naiveSum(bytes: Uint8Array, seed = 0): number {
  let sum = seed;
  for (let i = 0; i < bytes.length; i += 2) sum += (bytes[i] << 8) | (i + 1 < bytes.length ? bytes[i + 1] : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/** Checks `fn` either returns or throws an error carrying one of `codes`; anything else fails. */
export function throwsOnly(fn: () => unknown, codes: readonly string[]): void {
  try {
    fn();
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code !== 'string' || !codes.includes(code)) throw new Error(`unexpected exception ${String(err)} (code ${String(code)})`, { cause: err });
  }
}
