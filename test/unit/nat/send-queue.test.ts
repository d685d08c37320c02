/**
 * A flow's send queue against a plain byte array: whatever is appended, consumed and copied out,
 * the queue holds the same bytes, and it holds exactly the chunks those bytes need.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CHUNK_SIZE, ChunkPool } from '../../../src/nat/chunk-pool.js';
import { copyBytes } from '../../../src/packet/bytes.js';
import { SendQueue } from '../../../src/nat/send-queue.js';

type Op = { kind: 'append'; len: number; seed: number } | { kind: 'consume'; len: number } | { kind: 'copy'; at: number; len: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('append' as const), len: fc.oneof(fc.integer({ min: 0, max: 60 }), fc.integer({ min: 0, max: 2 * CHUNK_SIZE + 7 })), seed: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('consume' as const), len: fc.oneof(fc.integer({ min: 0, max: 60 }), fc.integer({ min: 0, max: 3 * CHUNK_SIZE })) }),
  fc.record({ kind: fc.constant('copy' as const), at: fc.nat(), len: fc.integer({ min: 0, max: CHUNK_SIZE + 100 }) }),
);

function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (seed + i * 7 + (i >> 8)) & 0xff;
  return b;
}

/** Chunks taken from the pool and not given back. */
const heldBy = (pool: ChunkPool): number => pool.allocated - pool.idle;

describe('SendQueue', () => {
  it('holds the same bytes as a reference array through any appends, consumes and copies', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 25 }), (ops) => {
        const pool = new ChunkPool(1000);
        const q = new SendQueue(pool);
        let ref = new Uint8Array(0);
        let head = 0; // bytes consumed since the queue last emptied, as the queue's offset in its first chunk
        for (const op of ops) {
          if (op.kind === 'append') {
            const src = pattern(op.len + 5, op.seed);
            q.append(src, 5, op.len);
            const next = new Uint8Array(ref.length + op.len);
            next.set(ref);
            next.set(src.subarray(5), ref.length);
            ref = next;
          } else if (op.kind === 'consume') {
            q.consume(op.len);
            const n = Math.min(op.len, ref.length);
            ref = ref.slice(n);
            head = ref.length === 0 ? 0 : (head + n) % CHUNK_SIZE;
          } else {
            if (ref.length === 0) continue;
            const offset = op.at % ref.length;
            const len = Math.min(op.len, ref.length - offset);
            const out = new Uint8Array(len + 3);
            q.copyOut(offset, len, out, 3);
            expect(Buffer.from(out.subarray(3)).equals(Buffer.from(ref.subarray(offset, offset + len)))).toBe(true);
          }
          expect(q.length).toBe(ref.length);
          expect(heldBy(pool)).toBe(ref.length === 0 ? 0 : Math.ceil((head + ref.length) / CHUNK_SIZE));
        }
        const all = new Uint8Array(ref.length);
        q.copyOut(0, ref.length, all, 0);
        expect(Buffer.from(all).equals(Buffer.from(ref))).toBe(true);
        q.clear();
        expect(q.length).toBe(0);
        expect(heldBy(pool)).toBe(0);
      }),
      { numRuns: 150 },
    );
  });

  it('refuses to copy bytes it does not hold', () => {
    const q = new SendQueue(new ChunkPool());
    q.append(Buffer.from('hello'), 0, 5);
    expect(() => q.copyOut(3, 3, new Uint8Array(3), 0)).toThrow(RangeError);
    expect(() => q.copyOut(-1, 1, new Uint8Array(1), 0)).toThrow(RangeError);
  });

  it('an emptied queue keeps no chunk, and a drained one reuses the pool', () => {
    const pool = new ChunkPool();
    const q = new SendQueue(pool);
    q.append(new Uint8Array(CHUNK_SIZE + 1), 0, CHUNK_SIZE + 1);
    expect(heldBy(pool)).toBe(2);
    q.consume(CHUNK_SIZE);
    expect(heldBy(pool)).toBe(1);
    q.consume(1);
    expect(heldBy(pool)).toBe(0);
    q.append(new Uint8Array(10), 0, 10);
    expect(pool.allocated).toBe(2); // taken from the idle ones, not allocated anew
  });
});

describe('copyBytes', () => {
  it('copies short and long runs alike, including overlapping-free offsets', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 200 }), fc.integer({ min: 0, max: 20 }), fc.integer({ min: 0, max: 20 }), (n, so, doff) => {
        const src = pattern(n + so, 3);
        const dst = new Uint8Array(n + doff + 4).fill(0xee);
        copyBytes(src, so, dst, doff, n);
        expect(Buffer.from(dst.subarray(doff, doff + n)).equals(Buffer.from(src.subarray(so)))).toBe(true);
        expect(dst.subarray(0, doff).every((b) => b === 0xee)).toBe(true);
        expect(dst.subarray(doff + n).every((b) => b === 0xee)).toBe(true);
      }),
    );
  });
});
