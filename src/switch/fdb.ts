/**
 * The forwarding database (MAC table) of a learning switch, after IEEE 802.1D 7.8-7.9 and the
 * Linux bridge:
 *
 *  - learned (dynamic) entries map a unicast source MAC to the port it was last seen on; a MAC
 *    seen on another port moves at once;
 *  - an entry not refreshed for the ageing time (default 300 s) is gone: lookups treat it as
 *    unknown at once, and a periodic sweep frees it;
 *  - the table has a cap (default 8192, like Open vSwitch); when full, the least recently refreshed
 *    entry is evicted (LRU), so a MAC flood cannot grow memory;
 *  - static entries (the gateway's MAC) never age, are never evicted, and a frame that claims a
 *    static MAC as its source from another port is reported as spoofed.
 *
 * Learning refreshes with lru-cache's `get`, which also moves the entry to the most-recent end:
 * the LRU order is then the order of last refresh, so the sweep walks from the oldest end and
 * stops at the first live entry (O(expired), not O(table)).
 */
import { LRUCache } from 'lru-cache';
import { macToString } from '../packet/mac.js';
import type { Port } from '../link/port.js';

export const DEFAULT_AGEING_TIME_MS = 300_000;
export const DEFAULT_FDB_MAX_ENTRIES = 8192;

export class FdbEntry {
  constructor(
    readonly mac: number,
    public port: Port,
    /** Clock time (ms) of the last frame from this MAC. */
    public updatedAt: number,
    readonly isStatic: boolean,
  ) {}
}

export interface FdbEntrySnapshot {
  mac: string;
  port: string;
  static: boolean;
  /** Seconds since the entry was last refreshed (0 for static entries). */
  age: number;
}

/** Result of learn(). */
export const LEARN_OK = 0;
export const LEARN_SPOOFED = 1;

export interface FdbOptions {
  ageingTimeMs?: number;
  maxEntries?: number;
}

export class Fdb {
  readonly ageingTimeMs: number;
  readonly maxEntries: number;
  private readonly dynamic: LRUCache<number, FdbEntry>;
  private readonly statics = new Map<number, FdbEntry>();
  /** Entries that moved to another port, and entries evicted by the cap (for diagnostics). */
  moves = 0;
  evictions = 0;

  constructor(options: FdbOptions = {}) {
    this.ageingTimeMs = options.ageingTimeMs ?? DEFAULT_AGEING_TIME_MS;
    this.maxEntries = options.maxEntries ?? DEFAULT_FDB_MAX_ENTRIES;
    this.dynamic = new LRUCache<number, FdbEntry>({
      max: this.maxEntries,
      dispose: (_value, _key, reason) => {
        if (reason === 'evict') this.evictions++;
      },
    });
  }

  /** Learns `mac` (a valid unicast source) on `port` at time `now`. */
  learn(mac: number, port: Port, now: number): number {
    if (this.statics.size !== 0) {
      const s = this.statics.get(mac);
      if (s !== undefined) return s.port === port ? LEARN_OK : LEARN_SPOOFED;
    }
    const e = this.dynamic.get(mac);
    if (e !== undefined) {
      if (e.port !== port) {
        e.port = port;
        this.moves++;
      }
      e.updatedAt = now;
      return LEARN_OK;
    }
    this.dynamic.set(mac, new FdbEntry(mac, port, now, false));
    return LEARN_OK;
  }

  /** The port `mac` was learned on, or null when unknown (or aged out). */
  lookup(mac: number, now: number): Port | null {
    if (this.statics.size !== 0) {
      const s = this.statics.get(mac);
      if (s !== undefined) return s.port;
    }
    const e = this.dynamic.peek(mac);
    if (e === undefined) return null;
    if (now - e.updatedAt >= this.ageingTimeMs) {
      this.dynamic.delete(mac);
      return null;
    }
    return e.port;
  }

  addStatic(mac: number, port: Port): void {
    this.dynamic.delete(mac);
    this.statics.set(mac, new FdbEntry(mac, port, 0, true));
  }

  removeStatic(mac: number): boolean {
    return this.statics.delete(mac);
  }

  /** Forgets every entry (dynamic and static) on `port`: the port was unplugged. */
  flushPort(port: Port): void {
    const victims: number[] = [];
    for (const [mac, e] of this.dynamic.entries()) if (e.port === port) victims.push(mac);
    for (const mac of victims) this.dynamic.delete(mac);
    for (const [mac, e] of this.statics) if (e.port === port) this.statics.delete(mac);
  }

  /** Removes aged-out entries; returns how many. */
  sweep(now: number): number {
    const victims: number[] = [];
    // rvalues(): least recently refreshed first.
    for (const e of this.dynamic.rvalues()) {
      if (e === undefined || now - e.updatedAt < this.ageingTimeMs) break;
      victims.push(e.mac);
    }
    for (const mac of victims) this.dynamic.delete(mac);
    return victims.length;
  }

  get size(): number {
    return this.dynamic.size + this.statics.size;
  }

  /** Every live entry, static first, then learned ones most recent first. */
  snapshot(now: number): FdbEntrySnapshot[] {
    const out: FdbEntrySnapshot[] = [];
    for (const e of this.statics.values()) out.push({ mac: macToString(e.mac), port: e.port.name, static: true, age: 0 });
    for (const [, e] of this.dynamic.entries()) {
      const age = now - e.updatedAt;
      if (age >= this.ageingTimeMs) continue;
      out.push({ mac: macToString(e.mac), port: e.port.name, static: false, age: Math.round(age / 10) / 100 });
    }
    return out;
  }
}
