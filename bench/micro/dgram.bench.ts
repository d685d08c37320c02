/**
 * UDP on loopback, the NAT's outside path: receiving a burst of datagrams with the addon's
 * batched reader (recvmmsg into a shared slab, one JS call per batch) against node:dgram (one
 * Buffer, one rinfo object and one 'message' event per datagram), and sending with the addon's
 * sendTo against dgram's send. Each sample is a burst of BURST 64-byte datagrams, timed from the
 * first send until the last one has been handed to JS; ns/op is per datagram, send included.
 * Asynchronous, so it times samples itself and prints rows in common.ts's format.
 */
import dgram from 'node:dgram';
import { DGRAM_ERR_ROW, DGRAM_ROW, DGRAM_SLOT, native } from '../../src/native/addon.js';
import { consume, type Row } from './common.js';

const SUITE = 'UDP loopback, bursts of 256 x 64-byte datagrams';
const BURST = 256;
const SIZE = 64;
const WARMUP = 20;
const SAMPLES = 200;
const LOOPBACK = 0x7f000001;
const addon = native();
const payload = Buffer.alloc(SIZE, 0x5a);

interface Receiver {
  port: number;
  /** Resolves when `count` more datagrams have reached JS. */
  expect(count: number): Promise<void>;
  close(): Promise<void>;
}

function nativeReceiver(budget: number): Receiver {
  const s = addon.dgramOpen({ kind: 'udp', bindAddress: LOOPBACK, recvBufferSize: 8 << 20 });
  const slab = Buffer.alloc(budget * DGRAM_SLOT);
  const meta = new Int32Array(budget * DGRAM_ROW);
  let left = 0;
  let done: () => void = () => {};
  const h = addon.startDgramReader(s.fd, slab, meta, budget, (count) => {
    let acc = 0;
    for (let i = 0; i < count; i++) acc += slab[meta[i * DGRAM_ROW]];
    consume(acc);
    left -= count;
    if (left <= 0) done();
  }, new Int32Array(4 * DGRAM_ERR_ROW), true);
  return {
    port: s.port,
    expect(count) {
      left += count;
      return new Promise((resolve) => (done = resolve));
    },
    close: () => new Promise((resolve) => addon.closeDgramReader(h, resolve)),
  };
}

async function nodeReceiver(): Promise<Receiver> {
  const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 << 20 });
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
  let left = 0;
  let done: () => void = () => {};
  sock.on('message', (msg, rinfo) => {
    consume(msg[0] + rinfo.port);
    if (--left <= 0) done();
  });
  return {
    port: sock.address().port,
    expect(count) {
      left += count;
      return new Promise((resolve) => (done = resolve));
    },
    close: () => new Promise((resolve) => sock.close(() => resolve())),
  };
}

function nativeSender(): { send(port: number): void; close(): void } {
  const s = addon.dgramOpen({ kind: 'udp', bindAddress: LOOPBACK, sendBufferSize: 8 << 20 });
  return {
    send(port) {
      for (let i = 0; i < BURST; i++) addon.sendTo(s.fd, payload, 0, SIZE, LOOPBACK, port);
    },
    close: () => void addon.closeFd(s.fd),
  };
}

async function nodeSender(): Promise<{ send(port: number): void; close(): void }> {
  const sock = dgram.createSocket({ type: 'udp4', sendBufferSize: 8 << 20 });
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
  return {
    send(port) {
      for (let i = 0; i < BURST; i++) sock.send(payload, 0, SIZE, port, '127.0.0.1');
    },
    close: () => sock.close(),
  };
}

async function measure(name: string, rx: Receiver, tx: { send(port: number): void; close(): void }): Promise<Row> {
  const times: number[] = [];
  for (let i = 0; i < WARMUP + SAMPLES; i++) {
    const arrived = rx.expect(BURST);
    const t0 = process.hrtime.bigint();
    tx.send(rx.port);
    await arrived;
    if (i >= WARMUP) times.push(Number(process.hrtime.bigint() - t0) / BURST);
  }
  tx.close();
  await rx.close();
  const mean = times.reduce((a, b) => a + b, 0) / times.length;
  const sd = Math.sqrt(times.reduce((a, b) => a + (b - mean) ** 2, 0) / (times.length - 1));
  const rme = ((1.96 * sd) / Math.sqrt(times.length) / mean) * 100;
  return { suite: SUITE, name, opsPerSec: 1e9 / mean, nsPerOp: mean, rme, samples: times.length };
}

const rows: Row[] = [
  await measure('addon reader (recvmmsg, budget 64) <- addon sendTo', nativeReceiver(64), nativeSender()),
  await measure('addon reader (recvmmsg, budget 8) <- addon sendTo', nativeReceiver(8), nativeSender()),
  await measure('node:dgram message events <- addon sendTo', await nodeReceiver(), nativeSender()),
  await measure('addon reader (budget 64) <- node:dgram send', nativeReceiver(64), await nodeSender()),
  await measure('node:dgram <- node:dgram', await nodeReceiver(), await nodeSender()),
];
for (const row of rows) process.stdout.write(`${JSON.stringify(row)}\n`);
