import { describe, it, expect } from 'vitest';
import { Fdb, LEARN_OK, LEARN_SPOOFED, DEFAULT_AGEING_TIME_MS, DEFAULT_FDB_MAX_ENTRIES } from '../../../src/switch/fdb.js';
import { MemoryPort } from '../../../src/link/memory-port.js';
import { MAC_A, MAC_B, MAC_C, MAC_D, MAC_E } from '../helpers/frames.js';

const p1 = new MemoryPort({ name: 'p1' });
const p2 = new MemoryPort({ name: 'p2' });
const gw = new MemoryPort({ name: 'gw', kind: 'gateway' });

describe('Fdb', () => {
  it('defaults to 300 s ageing and 8192 entries, like the Linux bridge and Open vSwitch', () => {
    const fdb = new Fdb();
    expect(fdb.ageingTimeMs).toBe(DEFAULT_AGEING_TIME_MS);
    expect(DEFAULT_AGEING_TIME_MS).toBe(300_000);
    expect(fdb.maxEntries).toBe(DEFAULT_FDB_MAX_ENTRIES);
    expect(DEFAULT_FDB_MAX_ENTRIES).toBe(8192);
    expect(fdb.size).toBe(0);
  });

  it('learns, looks up and moves entries', () => {
    const fdb = new Fdb();
    expect(fdb.lookup(MAC_A, 0)).toBeNull();
    expect(fdb.learn(MAC_A, p1, 0)).toBe(LEARN_OK);
    expect(fdb.lookup(MAC_A, 1)).toBe(p1);
    expect(fdb.learn(MAC_A, p1, 2)).toBe(LEARN_OK);
    expect(fdb.moves).toBe(0);
    expect(fdb.learn(MAC_A, p2, 3)).toBe(LEARN_OK);
    expect(fdb.lookup(MAC_A, 4)).toBe(p2);
    expect(fdb.moves).toBe(1);
    expect(fdb.size).toBe(1);
  });

  it('treats an entry as unknown once the ageing time has passed, and learning refreshes it', () => {
    const fdb = new Fdb({ ageingTimeMs: 1000 });
    fdb.learn(MAC_A, p1, 0);
    expect(fdb.lookup(MAC_A, 999)).toBe(p1);
    fdb.learn(MAC_A, p1, 900);
    expect(fdb.lookup(MAC_A, 1800)).toBe(p1);
    expect(fdb.lookup(MAC_A, 1901)).toBeNull();
    expect(fdb.size).toBe(0); // the expired entry was dropped by the lookup
    // Lookups (traffic *to* a MAC) do not refresh it; only traffic from it does.
    fdb.learn(MAC_B, p1, 0);
    for (let t = 100; t < 1000; t += 100) expect(fdb.lookup(MAC_B, t)).toBe(p1);
    expect(fdb.lookup(MAC_B, 1001)).toBeNull();
  });

  it('sweep() removes only expired entries and returns how many', () => {
    const fdb = new Fdb({ ageingTimeMs: 1000 });
    fdb.learn(MAC_A, p1, 0);
    fdb.learn(MAC_B, p1, 100);
    fdb.learn(MAC_C, p2, 200);
    fdb.learn(MAC_D, p2, 300);
    fdb.learn(MAC_A, p1, 400); // refreshed: now the youngest
    expect(fdb.sweep(1000)).toBe(0);
    expect(fdb.size).toBe(4);
    // At 1250, B (100) and C (200) are older than 1000 ms; D (300) and A (400) are not.
    expect(fdb.sweep(1250)).toBe(2);
    expect(fdb.size).toBe(2);
    expect(fdb.lookup(MAC_A, 1250)).toBe(p1);
    expect(fdb.lookup(MAC_D, 1250)).toBe(p2);
    expect(fdb.lookup(MAC_B, 1250)).toBeNull();
    expect(fdb.lookup(MAC_C, 1250)).toBeNull();
    expect(fdb.sweep(1250)).toBe(0);
    expect(fdb.sweep(10_000)).toBe(2);
    expect(fdb.size).toBe(0);
    expect(fdb.sweep(20_000)).toBe(0);
  });

  it('sweep() leaves static entries alone', () => {
    const fdb = new Fdb({ ageingTimeMs: 1000 });
    fdb.addStatic(MAC_E, gw);
    fdb.learn(MAC_A, p1, 0);
    expect(fdb.sweep(1e9)).toBe(1);
    expect(fdb.lookup(MAC_E, 1e9)).toBe(gw);
    expect(fdb.size).toBe(1);
  });

  it('evicts the least recently refreshed entry at the cap and counts evictions', () => {
    const fdb = new Fdb({ maxEntries: 4 });
    fdb.learn(MAC_A, p1, 0);
    fdb.learn(MAC_B, p1, 1);
    fdb.learn(MAC_C, p1, 2);
    fdb.learn(MAC_D, p1, 3);
    fdb.learn(MAC_A, p1, 4); // A refreshed: B is now the least recent
    fdb.lookup(MAC_B, 5); // a lookup is not a refresh
    expect(fdb.evictions).toBe(0);
    fdb.learn(MAC_E, p2, 6);
    expect(fdb.evictions).toBe(1);
    expect(fdb.size).toBe(4);
    expect(fdb.lookup(MAC_B, 7)).toBeNull();
    for (const mac of [MAC_A, MAC_C, MAC_D, MAC_E]) expect(fdb.lookup(mac, 7)).not.toBeNull();
    // Removals other than by the cap are not evictions.
    fdb.flushPort(p2);
    expect(fdb.sweep(1e12)).toBe(3);
    expect(fdb.evictions).toBe(1);
  });

  it('keeps static entries outside the cap: never evicted', () => {
    const fdb = new Fdb({ maxEntries: 2 });
    fdb.addStatic(MAC_E, gw);
    fdb.learn(MAC_A, p1, 0);
    fdb.learn(MAC_B, p1, 1);
    fdb.learn(MAC_C, p1, 2);
    expect(fdb.lookup(MAC_E, 3)).toBe(gw);
    expect(fdb.lookup(MAC_A, 3)).toBeNull();
    expect(fdb.evictions).toBe(1);
  });

  it('static entries: replace a learned entry, report spoofing from other ports, can be removed', () => {
    const fdb = new Fdb({ ageingTimeMs: 1000 });
    fdb.learn(MAC_E, p1, 0);
    fdb.addStatic(MAC_E, gw);
    expect(fdb.size).toBe(1);
    expect(fdb.evictions).toBe(0);
    expect(fdb.lookup(MAC_E, 1e9)).toBe(gw);
    expect(fdb.learn(MAC_E, p1, 10)).toBe(LEARN_SPOOFED);
    expect(fdb.learn(MAC_E, gw, 10)).toBe(LEARN_OK);
    expect(fdb.lookup(MAC_E, 10)).toBe(gw);
    expect(fdb.moves).toBe(0);
    expect(fdb.removeStatic(MAC_E)).toBe(true);
    expect(fdb.removeStatic(MAC_E)).toBe(false);
    expect(fdb.lookup(MAC_E, 10)).toBeNull();
    expect(fdb.learn(MAC_E, p1, 10)).toBe(LEARN_OK);
    expect(fdb.lookup(MAC_E, 10)).toBe(p1);
  });

  it('flushPort() forgets dynamic and static entries of that port only', () => {
    const fdb = new Fdb();
    fdb.learn(MAC_A, p1, 0);
    fdb.learn(MAC_B, p2, 0);
    fdb.learn(MAC_C, p1, 0);
    fdb.addStatic(MAC_D, p1);
    fdb.addStatic(MAC_E, gw);
    fdb.flushPort(p1);
    expect(fdb.size).toBe(2);
    expect(fdb.lookup(MAC_A, 0)).toBeNull();
    expect(fdb.lookup(MAC_C, 0)).toBeNull();
    expect(fdb.lookup(MAC_D, 0)).toBeNull();
    expect(fdb.lookup(MAC_B, 0)).toBe(p2);
    expect(fdb.lookup(MAC_E, 0)).toBe(gw);
    fdb.flushPort(p1); // idempotent
    expect(fdb.size).toBe(2);
  });

  it('snapshot(): static first, then learned entries most recent first, with ages in seconds', () => {
    const fdb = new Fdb({ ageingTimeMs: 10_000 });
    fdb.learn(MAC_A, p1, 0);
    fdb.learn(MAC_B, p2, 1234);
    fdb.learn(MAC_C, p1, 5000);
    fdb.addStatic(MAC_E, gw);
    fdb.learn(MAC_A, p2, 6000); // moved and refreshed
    expect(fdb.snapshot(7000)).toEqual([
      { mac: '02:00:00:00:00:0e', port: 'gw', static: true, age: 0 },
      { mac: '02:00:00:00:00:0a', port: 'p2', static: false, age: 1 },
      { mac: '02:00:00:00:00:0c', port: 'p1', static: false, age: 2 },
      { mac: '02:00:00:00:00:0b', port: 'p2', static: false, age: 5.77 },
    ]);
    // Aged entries are not shown, even before a sweep removed them.
    expect(fdb.snapshot(12_000).map((e) => e.mac)).toEqual(['02:00:00:00:00:0e', '02:00:00:00:00:0a', '02:00:00:00:00:0c']);
    expect(fdb.size).toBe(4);
    // The snapshot does not change the LRU order.
    expect(fdb.sweep(12_000)).toBe(1);
    expect(fdb.size).toBe(3);
  });
});
