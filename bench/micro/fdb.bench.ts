/**
 * MAC table: src/switch's Fdb (numeric 48-bit keys in lru-cache, ageing by timestamp) against a
 * naive table keyed by the MAC's string form, as several user-space switches do. Each case
 * learns a source and looks up a destination for 1024 frames over 64 stations.
 */
import { Fdb } from '../../src/switch/fdb.js';
import { macToString, readMac } from '../../src/packet/mac.js';
import type { Port } from '../../src/link/port.js';
import { consume, runSuite } from './common.js';

const STATIONS = 64;
const FRAMES = 1024;
const frames = Buffer.alloc(FRAMES * 12);
for (let i = 0; i < FRAMES; i++) {
  frames.writeUIntBE(0x020000000000 + ((i * 7) % STATIONS), i * 12, 6);
  frames.writeUIntBE(0x020000000000 + (i % STATIONS), i * 12 + 6, 6);
}
const dv = new DataView(frames.buffer, frames.byteOffset, frames.byteLength);
const ports = Array.from({ length: 4 }, (_, i) => ({ name: `p${i}`, id: i }) as unknown as Port);

const fdb = new Fdb({ maxEntries: 8192, ageingTimeMs: 300_000 });
const naive = new Map<string, { port: Port; updatedAt: number }>();
let now = 0;

runSuite('MAC learning + lookup, 1024 frames', {
  'Fdb (numeric keys, lru-cache)': () => {
    now += 1;
    let acc = 0;
    for (let i = 0; i < FRAMES; i++) {
      const o = i * 12;
      fdb.learn(readMac(dv, o + 6), ports[i & 3], now);
      const p = fdb.lookup(readMac(dv, o), now);
      if (p !== null) acc += 1;
    }
    consume(acc);
  },
  'naive (string keys, Map)': () => {
    now += 1;
    let acc = 0;
    for (let i = 0; i < FRAMES; i++) {
      const o = i * 12;
      const src = macToString(readMac(dv, o + 6));
      naive.set(src, { port: ports[i & 3], updatedAt: now });
      const e = naive.get(macToString(readMac(dv, o)));
      if (e && now - e.updatedAt < 300_000) acc += 1;
    }
    consume(acc);
  },
});
