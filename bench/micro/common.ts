/**
 * Shared helpers for the micro benchmarks (benchmark.js). Each benchmark file runs in its own
 * process (bench/run-micro.mjs) so JIT state does not leak between them; results go to a sink
 * so V8 cannot drop the work.
 */
import Benchmark from 'benchmark';

export let sink = 0;
export function consume(x: number): void {
  sink = (sink + x) | 0;
}

export interface Row {
  suite: string;
  name: string;
  opsPerSec: number;
  nsPerOp: number;
  rme: number;
  samples: number;
}

/** Runs a suite of synchronous cases and prints one JSON line per case (and a readable line). */
export function runSuite(suiteName: string, cases: Record<string, () => void>): void {
  const suite = new Benchmark.Suite(suiteName);
  for (const [name, fn] of Object.entries(cases)) suite.add(name, fn, { minSamples: 20 });
  suite.on('cycle', (event: Benchmark.Event) => {
    const b = event.target as Benchmark.Target & { name: string; hz: number; stats: { rme: number; sample: number[] } };
    const row: Row = { suite: suiteName, name: b.name, opsPerSec: b.hz, nsPerOp: 1e9 / b.hz, rme: b.stats.rme, samples: b.stats.sample.length };
    process.stdout.write(`${JSON.stringify(row)}\n`);
  });
  suite.on('complete', () => {
    if (sink === 0x7fffffff) process.stdout.write('\n');
  });
  suite.run({ async: false });
}

/** An Ethernet/IPv4/TCP frame (with a virtio-net header in front) at `off` in `buf`. */
export function writeTcpFrame(buf: Buffer, off: number, dst: number, src: number, payload = 1448): number {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  buf.fill(0, off, off + 10); // empty virtio-net header
  const e = off + 10;
  dv.setUint16(e, Math.floor(dst / 2 ** 32));
  dv.setUint32(e + 2, dst % 2 ** 32);
  dv.setUint16(e + 6, Math.floor(src / 2 ** 32));
  dv.setUint32(e + 8, src % 2 ** 32);
  dv.setUint16(e + 12, 0x0800);
  const ip = e + 14;
  dv.setUint8(ip, 0x45);
  dv.setUint16(ip + 2, 20 + 32 + payload);
  dv.setUint8(ip + 8, 64);
  dv.setUint8(ip + 9, 6);
  dv.setUint32(ip + 12, 0x0a000901);
  dv.setUint32(ip + 16, 0x0a000902);
  const tcp = ip + 20;
  dv.setUint16(tcp, 40000);
  dv.setUint16(tcp + 2, 5001);
  dv.setUint32(tcp + 4, 12345);
  dv.setUint32(tcp + 8, 67890);
  dv.setUint8(tcp + 12, 8 << 4);
  dv.setUint8(tcp + 13, 0x18);
  dv.setUint16(tcp + 14, 502);
  return 10 + 14 + 20 + 32 + payload;
}
