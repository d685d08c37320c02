/**
 * The addon's datagram sockets (src/native/usernet_dgram.c): dgramOpen, sendTo and the batched
 * reader with its error queue. Loopback only (127.0.0.1), real kernel sockets, no privileges
 * needed: the ping and raw ICMP cases run when the process may open such sockets and otherwise
 * check that the refusal is the documented EACCES/EPERM, then report themselves skipped.
 */
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { closeSync, openSync, readdirSync, readlinkSync } from 'node:fs';
import { constants } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import {
  DGRAM_ERR_DATA_LENGTH,
  DGRAM_ERR_DATA_OFFSET,
  DGRAM_ERR_DST_ADDR,
  DGRAM_ERR_DST_PORT,
  DGRAM_ERR_ERRNO,
  DGRAM_ERR_ICMP_CODE,
  DGRAM_ERR_ICMP_TYPE,
  DGRAM_ERR_INFO,
  DGRAM_ERR_OFFENDER,
  DGRAM_ERR_ORIGIN,
  DGRAM_ERR_ROW,
  DGRAM_LENGTH,
  DGRAM_OFFSET,
  DGRAM_ROW,
  DGRAM_SLOT,
  DGRAM_SRC_ADDR,
  DGRAM_SRC_PORT,
  DGRAM_DST_ADDR,
  SO_EE_ORIGIN_ICMP,
  SO_EE_ORIGIN_LOCAL,
  errnoName,
  native,
  projectRoot,
  type DgramOpenOptions,
  type DgramOpenResult,
  type DgramReaderHandle,
  type ReaderHandle,
} from '../../../src/native/addon.js';

const addon = native();
const LOOPBACK = 0x7f000001;
const E = constants.errno;
/** How long a test waits for an event before failing with a description of what it waited for. */
const EVENT_TIMEOUT_MS = 5_000;

interface Datagram {
  data: Buffer;
  offset: number;
  addr: number;
  port: number;
  /** The address it was sent to (pktinfo sockets), else 0. */
  dst: number;
}

interface ErrorRow {
  errno: number;
  origin: number;
  type: number;
  code: number;
  offender: number;
  dstAddr: number;
  dstPort: number;
  info: number;
  dataOffset: number;
  data: Buffer;
}

interface Rx {
  handle: DgramReaderHandle;
  datagrams: Datagram[];
  errors: ErrorRow[];
  /** (count, errors) of every onBatch call, hard errors included. */
  batches: Array<[number, number]>;
  closed: boolean;
  /** Resolves once pred() holds (checked after every batch); rejects after EVENT_TIMEOUT_MS. */
  until(pred: () => boolean, what: string): Promise<void>;
  close(): Promise<void>;
}

const openFds = new Set<number>();
const openReaders = new Set<Rx>();
const nodeSockets = new Set<dgram.Socket>();

afterEach(async () => {
  for (const rx of openReaders) await rx.close();
  openReaders.clear();
  for (const fd of openFds) addon.closeFd(fd);
  openFds.clear();
  for (const s of nodeSockets) s.close();
  nodeSockets.clear();
});

function open(options: Partial<DgramOpenOptions> = {}): DgramOpenResult {
  const s = addon.dgramOpen({ kind: 'udp', bindAddress: LOOPBACK, ...options });
  openFds.add(s.fd);
  return s;
}

type ErrnoError = Error & { code: string; errno: number; syscall: string };

/** open(), or the error it threw (for sockets the process may not be allowed to open). */
function tryOpen(options: Partial<DgramOpenOptions>): DgramOpenResult | ErrnoError {
  try {
    return open(options);
  } catch (err) {
    return err as ErrnoError;
  }
}

function addrText(a: number): string {
  return [a >>> 24, (a >>> 16) & 255, (a >>> 8) & 255, a & 255].join('.');
}

/** Starts a reader that copies what it gets (rows are only valid during the callback). */
function read(fd: number, opts: { budget?: number; slabSize?: number; errRows?: number; closeFd?: boolean } = {}): Rx {
  const budget = opts.budget ?? 64;
  const slab = Buffer.alloc(opts.slabSize ?? budget * DGRAM_SLOT);
  const meta = new Int32Array(budget * DGRAM_ROW);
  const errMeta = new Int32Array((opts.errRows ?? 8) * DGRAM_ERR_ROW);
  const waiters: Array<() => boolean> = [];
  const closeFd = opts.closeFd ?? true;
  const rx: Rx = {
    handle: undefined as unknown as DgramReaderHandle,
    datagrams: [],
    errors: [],
    batches: [],
    closed: false,
    until(pred, what) {
      if (pred()) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(new Error(`timed out after ${EVENT_TIMEOUT_MS} ms waiting for ${what} (${rx.datagrams.length} datagrams, ${rx.errors.length} errors, batches ${JSON.stringify(rx.batches.slice(-5))})`));
        }, EVENT_TIMEOUT_MS);
        const check = () => {
          if (!pred()) return false;
          clearTimeout(timer);
          resolve();
          return true;
        };
        waiters.push(check);
      });
    },
    close() {
      if (rx.closed) return Promise.resolve();
      rx.closed = true;
      openReaders.delete(rx);
      if (closeFd) openFds.delete(fd);
      return new Promise((resolve) => addon.closeDgramReader(rx.handle, resolve));
    },
  };
  rx.handle = addon.startDgramReader(
    fd,
    slab,
    meta,
    budget,
    (count, errors) => {
      rx.batches.push([count, errors]);
      for (let i = 0; i < count; i++) {
        const r = i * DGRAM_ROW;
        const offset = meta[r + DGRAM_OFFSET];
        rx.datagrams.push({
          data: Buffer.from(slab.subarray(offset, offset + meta[r + DGRAM_LENGTH])),
          offset,
          addr: meta[r + DGRAM_SRC_ADDR] >>> 0,
          port: meta[r + DGRAM_SRC_PORT],
          dst: meta[r + DGRAM_DST_ADDR] >>> 0,
        });
      }
      for (let i = 0; i < errors; i++) {
        const r = i * DGRAM_ERR_ROW;
        const dataOffset = errMeta[r + DGRAM_ERR_DATA_OFFSET];
        rx.errors.push({
          errno: errMeta[r + DGRAM_ERR_ERRNO],
          origin: errMeta[r + DGRAM_ERR_ORIGIN],
          type: errMeta[r + DGRAM_ERR_ICMP_TYPE],
          code: errMeta[r + DGRAM_ERR_ICMP_CODE],
          offender: errMeta[r + DGRAM_ERR_OFFENDER] >>> 0,
          dstAddr: errMeta[r + DGRAM_ERR_DST_ADDR] >>> 0,
          dstPort: errMeta[r + DGRAM_ERR_DST_PORT],
          info: errMeta[r + DGRAM_ERR_INFO],
          dataOffset,
          data: Buffer.from(slab.subarray(dataOffset, dataOffset + errMeta[r + DGRAM_ERR_DATA_LENGTH])),
        });
      }
      for (let i = waiters.length - 1; i >= 0; i--) if (waiters[i]()) waiters.splice(i, 1);
    },
    errMeta,
    closeFd,
  );
  openReaders.add(rx);
  return rx;
}

function send(fd: number, data: Buffer, port: number, addr = LOOPBACK): number {
  return addon.sendTo(fd, data, 0, data.length, addr, port);
}

async function nodeSocket(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  nodeSockets.add(s);
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  return s;
}

/** A loopback UDP port nobody listens on: bound once, then released. */
async function closedPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  const { port } = s.address();
  await new Promise<void>((resolve) => s.close(resolve));
  return port;
}

function fdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

/** What fd refers to ('socket:[inode]'), or null when it is not open. */
function fdTarget(fd: number): string | null {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return null;
  }
}

/** One turn of the event loop after the current one's poll phase. */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function icmpChecksum(buf: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < buf.length; i += 2) sum += buf.readUInt16BE(i);
  if (buf.length & 1) sum += buf[buf.length - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function echoRequest(id: number, seq: number, payload: Buffer): Buffer {
  const m = Buffer.alloc(8 + payload.length);
  m[0] = 8; // echo request
  m.writeUInt16BE(id, 4);
  m.writeUInt16BE(seq, 6);
  payload.copy(m, 8);
  m.writeUInt16BE(icmpChecksum(m), 2);
  return m;
}

function expectErrno(fn: () => unknown, code: string, syscall: string): ErrnoError {
  try {
    fn();
  } catch (err) {
    const e = err as ErrnoError;
    expect(e.code).toBe(code);
    expect(e.errno).toBe(-E[code as keyof typeof E]);
    expect(e.syscall).toBe(syscall);
    return e;
  }
  throw new Error(`expected ${code} from ${syscall}, but nothing was thrown`);
}

describe('the addon exports', () => {
  it('row layouts that match addon.ts', () => {
    expect(addon.DGRAM_SLOT).toBe(DGRAM_SLOT);
    expect(addon.DGRAM_ROW).toBe(DGRAM_ROW);
    expect(addon.DGRAM_ERR_ROW).toBe(DGRAM_ERR_ROW);
  });
});

describe('dgramOpen', () => {
  it('binds a non-blocking close-on-exec UDP socket and reports its port', () => {
    const s = open();
    expect(s.fd).toBeGreaterThan(2);
    expect(s.port).toBeGreaterThan(0);
    expect(s.recvBufferSize).toBeGreaterThan(0);
    expect(fdTarget(s.fd)).toMatch(/^socket:\[\d+\]$/);
  });

  it('binds the port asked for', async () => {
    const port = await closedPort();
    expect(open({ bindPort: port }).port).toBe(port);
  });

  it('refuses a port in use with EADDRINUSE and a message that says which and what to do', async () => {
    const a = open();
    const before = fdCount();
    const e = expectErrno(() => open({ bindPort: a.port }), 'EADDRINUSE', 'bind');
    expect(e.message).toBe(
      `dgramOpen(udp 127.0.0.1:${a.port}): bind failed: address already in use (EADDRINUSE); another socket is bound to port 127.0.0.1:${a.port}; pick another port (0: any free one)`,
    );
    expect(fdCount()).toBe(before); // the failed socket was closed
    const n = await nodeSocket();
    expectErrno(() => open({ bindPort: n.address().port }), 'EADDRINUSE', 'bind');
  });

  it('refuses a privileged port with EACCES when the process may not bind it', (ctx) => {
    ctx.skip(process.getuid?.() === 0, 'running as root: binding a port below 1024 is allowed, nothing to refuse');
    const e = expectErrno(() => open({ bindPort: 1 }), 'EACCES', 'bind');
    expect(e.message).toContain('net.ipv4.ip_unprivileged_port_start');
  });

  it('rejects bad options with TypeError/RangeError', () => {
    expect(() => addon.dgramOpen({ kind: 'tcp' } as unknown as DgramOpenOptions)).toThrow(TypeError);
    expect(() => addon.dgramOpen(undefined as unknown as DgramOpenOptions)).toThrow(TypeError);
    expect(() => addon.dgramOpen({ kind: 'udp', bindPort: 70000 })).toThrow(RangeError);
    expect(() => addon.dgramOpen({ kind: 'udp', recvBufferSize: -1 })).toThrow(RangeError);
  });

  it('takes buffer sizes (past rmem_max only with CAP_NET_ADMIN)', () => {
    const s = open({ recvBufferSize: 1 << 20, sendBufferSize: 1 << 20 });
    // The kernel doubles the request for its bookkeeping, or caps it at net.core.[rw]mem_max.
    expect(s.recvBufferSize).toBeGreaterThan(0);
    expect(s.sendBufferSize).toBeGreaterThan(0);
  });
});

describe('sendTo', () => {
  it('returns -errno instead of throwing', () => {
    const s = open();
    const buf = Buffer.alloc(65508);
    expect(addon.sendTo(s.fd, buf, 0, buf.length, LOOPBACK, 9)).toBe(-E.EMSGSIZE);
    const fd = addon.dgramOpen({ kind: 'udp', bindAddress: LOOPBACK }).fd;
    addon.closeFd(fd);
    expect(addon.sendTo(fd, buf, 0, 1, LOOPBACK, 9)).toBe(-E.EBADF);
  });

  it('checks its arguments', () => {
    const s = open();
    const buf = Buffer.alloc(4);
    expect(() => addon.sendTo(s.fd, buf, 2, 4, LOOPBACK, 9)).toThrow(RangeError);
    expect(() => addon.sendTo(s.fd, buf, 0, 4, LOOPBACK, 65536)).toThrow(RangeError);
    expect(() => addon.sendTo(s.fd, 'abcd' as unknown as Buffer, 0, 4, LOOPBACK, 9)).toThrow(TypeError);
  });
});

describe('the datagram reader', () => {
  it('moves datagrams between two native sockets with the right source in each row', async () => {
    const a = open();
    const b = open();
    const ra = read(a.fd);
    const rb = read(b.fd);
    expect(send(a.fd, Buffer.from('hello from a'), b.port)).toBe(12);
    await rb.until(() => rb.datagrams.length === 1, 'a -> b');
    expect(rb.datagrams[0]).toMatchObject({ addr: LOOPBACK, port: a.port });
    expect(rb.datagrams[0].data.toString()).toBe('hello from a');
    expect(send(b.fd, Buffer.from('reply'), rb.datagrams[0].port, rb.datagrams[0].addr)).toBe(5);
    await ra.until(() => ra.datagrams.length === 1, 'b -> a');
    expect(ra.datagrams[0]).toMatchObject({ addr: LOOPBACK, port: b.port });
    expect(ra.datagrams[0].data.toString()).toBe('reply');
    expect(ra.errors).toEqual([]);
  });

  it('exchanges datagrams with a node:dgram socket', async () => {
    const s = open();
    const rx = read(s.fd);
    const n = await nodeSocket();
    const got = new Promise<[Buffer, dgram.RemoteInfo]>((resolve) => n.once('message', (msg, rinfo) => resolve([msg, rinfo])));
    expect(send(s.fd, Buffer.from('to node'), n.address().port)).toBe(7);
    const [msg, rinfo] = await got;
    expect(msg.toString()).toBe('to node');
    expect(rinfo).toMatchObject({ address: '127.0.0.1', port: s.port });
    n.send('from node', s.port, '127.0.0.1');
    await rx.until(() => rx.datagrams.length === 1, 'node -> native');
    expect(rx.datagrams[0].data.toString()).toBe('from node');
    expect(rx.datagrams[0]).toMatchObject({ addr: LOOPBACK, port: n.address().port });
    expect(addrText(rx.datagrams[0].addr)).toBe('127.0.0.1');
  });

  it('carries datagrams of 0, 1 and 65507 bytes whole, from native and node:dgram senders', async () => {
    const rxSock = open();
    const rx = read(rxSock.fd, { budget: 8 });
    const tx = open();
    const n = await nodeSocket();
    const sizes = [0, 1, 65507];
    const payload = (size: number, salt: number) => Buffer.from(Array.from({ length: size }, (_, i) => (i * 7 + salt) & 255));
    for (const size of sizes) expect(send(tx.fd, payload(size, 1), rxSock.port)).toBe(size);
    for (const size of sizes) n.send(payload(size, 2), rxSock.port, '127.0.0.1');
    await rx.until(() => rx.datagrams.length === 6, 'six datagrams');
    const fromNative = rx.datagrams.filter((d) => d.port === tx.port);
    const fromNode = rx.datagrams.filter((d) => d.port === n.address().port);
    expect(fromNative.map((d) => d.data.length)).toEqual(sizes);
    expect(fromNode.map((d) => d.data.length)).toEqual(sizes);
    for (let i = 0; i < sizes.length; i++) {
      expect(fromNative[i].data.equals(payload(sizes[i], 1))).toBe(true);
      expect(fromNode[i].data.equals(payload(sizes[i], 2))).toBe(true);
    }
    for (const d of rx.datagrams) expect(d.offset % 64).toBe(0);
  });

  for (const [label, budget, slabSize] of [
    ['a slab of budget x DGRAM_SLOT', 64, 64 * DGRAM_SLOT],
    ['the smallest slab (one DGRAM_SLOT: one datagram per recvmmsg)', 64, DGRAM_SLOT],
    ['a slab of 3 slots and an odd budget', 37, 3 * DGRAM_SLOT],
  ] as const) {
    it(`delivers a burst of 1000 datagrams in order across batches, with ${label}`, async (ctx) => {
      const COUNT = 1000;
      const rxSock = open({ recvBufferSize: 8 << 20 });
      // Loopback UDP has no flow control: the whole burst must fit the receive queue (a small
      // datagram takes about 1 KiB of it). Root can force the size; others get net.core.rmem_max.
      ctx.skip(
        rxSock.recvBufferSize < COUNT * 1280,
        `receive buffer ${rxSock.recvBufferSize} bytes cannot hold a 1000-datagram burst: needs root or net.core.rmem_max >= 1 MiB`,
      );
      const rx = read(rxSock.fd, { budget, slabSize });
      const tx = open();
      for (let i = 0; i < COUNT; i++) {
        const d = Buffer.alloc(4 + (i % 200), i & 255);
        d.writeUInt32BE(i, 0);
        expect(send(tx.fd, d, rxSock.port)).toBe(d.length);
      }
      await rx.until(() => rx.datagrams.length >= COUNT, `${COUNT} datagrams`);
      expect(rx.datagrams.length).toBe(COUNT);
      rx.datagrams.forEach((d, i) => {
        expect(d.data.length).toBe(4 + (i % 200));
        expect(d.data.readUInt32BE(0)).toBe(i);
        expect(d.data.subarray(4).every((b) => b === (i & 255))).toBe(true);
        expect(d.port).toBe(tx.port);
      });
      expect(rx.batches.length).toBeGreaterThanOrEqual(Math.ceil(COUNT / budget));
      for (const [count, errors] of rx.batches) {
        expect(count).toBeGreaterThan(0);
        expect(count).toBeLessThanOrEqual(budget);
        expect(errors).toBe(0);
      }
    });
  }

  it('reports a closed port as an error row (ECONNREFUSED from ICMP 3/3) and stays usable', async () => {
    const a = open();
    const b = open();
    const ra = read(a.fd);
    const rb = read(b.fd);
    const port = await closedPort();
    const probe = Buffer.from('anyone there?');
    expect(send(a.fd, probe, port)).toBe(probe.length);
    // Linux also keeps the ICMP error in sk_err, which the next send would return instead of
    // sending; sendTo retries once, so this datagram goes out although no batch has run yet.
    expect(send(a.fd, Buffer.from('still here'), b.port)).toBe(10);
    await ra.until(() => ra.errors.length === 1, 'the port unreachable');
    const err = ra.errors[0];
    expect(errnoName(err.errno)).toBe('ECONNREFUSED');
    expect(err).toMatchObject({
      errno: -E.ECONNREFUSED,
      origin: SO_EE_ORIGIN_ICMP,
      type: 3,
      code: 3,
      offender: LOOPBACK,
      dstAddr: LOOPBACK,
      dstPort: port,
      info: 0,
    });
    expect(err.dataOffset % 64).toBe(0);
    expect(err.data.toString()).toBe('anyone there?'); // the quote, from our payload's start
    await rb.until(() => rb.datagrams.length === 1, 'the datagram sent right after');
    expect(rb.datagrams[0].data.toString()).toBe('still here');
    // Both ways still work after the error.
    expect(send(b.fd, Buffer.from('back'), a.port)).toBe(4);
    await ra.until(() => ra.datagrams.length === 1, 'b -> a after the error');
    expect(ra.datagrams[0].data.toString()).toBe('back');
    expect(send(a.fd, Buffer.from('again'), b.port)).toBe(5);
    await rb.until(() => rb.datagrams.length === 2, 'a -> b after the error');
    expect(ra.errors.length).toBe(1);
  });

  it('reads errors and datagrams pending together, in one wake, errors after the datagrams in the slab', async () => {
    const a = open();
    const b = open();
    const port = await closedPort();
    // Queue both before the reader exists, so the first wake finds a datagram and an error.
    expect(send(b.fd, Buffer.from('data'), a.port)).toBe(4);
    expect(send(a.fd, Buffer.from('lost'), port)).toBe(4);
    const ra = read(a.fd);
    await ra.until(() => ra.datagrams.length === 1 && ra.errors.length === 1, 'a datagram and an error');
    expect(ra.batches).toEqual([[1, 1]]);
    expect(ra.errors[0].dataOffset).toBeGreaterThan(ra.datagrams[0].offset);
    expect(ra.errors[0]).toMatchObject({ errno: -E.ECONNREFUSED, dstPort: port });
  });

  it('drains many errors across wakes when errMeta holds fewer rows', async () => {
    const a = open();
    const ra = read(a.fd, { errRows: 2, slabSize: DGRAM_SLOT + 13 }); // a slab length not a multiple of 64
    const ports: number[] = [];
    for (let i = 0; i < 5; i++) ports.push(await closedPort());
    for (const p of ports) expect(send(a.fd, Buffer.from(`to ${p}`), p)).toBe(`to ${p}`.length);
    await ra.until(() => ra.errors.length === 5, 'five errors');
    expect(ra.errors.map((e) => e.dstPort).sort()).toEqual([...ports].sort());
    for (const [, errors] of ra.batches) expect(errors).toBeLessThanOrEqual(2);
    for (const e of ra.errors) expect(e.data.toString()).toBe(`to ${e.dstPort}`);
  });

  it('reports a local error (EMSGSIZE, origin LOCAL) for a datagram too big to send', async () => {
    const a = open();
    const ra = read(a.fd);
    const big = Buffer.alloc(65508);
    expect(addon.sendTo(a.fd, big, 0, big.length, LOOPBACK, 9)).toBe(-E.EMSGSIZE);
    await ra.until(() => ra.errors.length === 1, 'the local error');
    expect(ra.errors[0]).toMatchObject({ errno: -E.EMSGSIZE, origin: SO_EE_ORIGIN_LOCAL, dstAddr: LOOPBACK });
    expect(ra.errors[0].info).toBeGreaterThan(0); // the size limit it ran into
  });

  it('without recvErr, reports no error rows (and a closed port costs nothing)', async () => {
    const a = open({ recvErr: false });
    const b = open();
    const ra = read(a.fd);
    const rb = read(b.fd);
    expect(send(a.fd, Buffer.from('x'), await closedPort())).toBe(1);
    expect(send(a.fd, Buffer.from('y'), b.port)).toBe(1);
    await rb.until(() => rb.datagrams.length === 1, 'y');
    expect(send(b.fd, Buffer.from('z'), a.port)).toBe(1);
    await ra.until(() => ra.datagrams.length === 1, 'z');
    expect(ra.errors).toEqual([]);
  });

  it('closes the fd it owns only after the handle is released, then calls onClosed', async () => {
    const before = fdCount();
    const s = addon.dgramOpen({ kind: 'udp', bindAddress: LOOPBACK });
    expect(fdCount()).toBe(before + 1);
    const h = addon.startDgramReader(s.fd, Buffer.alloc(DGRAM_SLOT), new Int32Array(DGRAM_ROW), 1, () => {}, new Int32Array(DGRAM_ERR_ROW), true);
    const socket = fdTarget(s.fd);
    expect(socket).toMatch(/^socket:/);
    let closed = false;
    addon.closeDgramReader(h, () => {
      closed = true;
      expect(fdTarget(s.fd)).not.toBe(socket); // closed before onClosed runs
    });
    expect(fdTarget(s.fd)).toBe(socket); // still libuv's until the close callback
    await new Promise<void>((resolve) => {
      const wait = () => (closed ? resolve() : setImmediate(wait));
      wait();
    });
    expect(fdTarget(s.fd)).not.toBe(socket);
    expect(fdCount()).toBe(before);
  });

  it('leaves the fd open with closeFd false', async () => {
    const s = open();
    const h = addon.startDgramReader(s.fd, Buffer.alloc(DGRAM_SLOT), new Int32Array(DGRAM_ROW), 1, () => {}, new Int32Array(DGRAM_ERR_ROW), false);
    const socket = fdTarget(s.fd);
    await new Promise<void>((resolve) => addon.closeDgramReader(h, resolve));
    expect(fdTarget(s.fd)).toBe(socket);
    expect(addon.closeFd(s.fd)).toBe(0);
    openFds.delete(s.fd);
  });

  it('makes no callback after closeDgramReader returns, even with datagrams queued', async () => {
    const a = open();
    const b = open();
    let calls = 0;
    const h = addon.startDgramReader(a.fd, Buffer.alloc(DGRAM_SLOT), new Int32Array(4 * DGRAM_ROW), 4, () => {
      calls++;
    }, new Int32Array(DGRAM_ERR_ROW), true);
    openFds.delete(a.fd);
    for (let i = 0; i < 10; i++) send(b.fd, Buffer.from('queued'), a.port);
    send(a.fd, Buffer.from('x'), await closedPort()); // an error pending too
    let onClosed = 0;
    addon.closeDgramReader(h, () => {
      onClosed++;
    });
    addon.closeDgramReader(h, () => {
      onClosed += 100; // a second close does nothing
    });
    await nextTurn();
    await nextTurn();
    expect(calls).toBe(0);
    expect(onClosed).toBe(1);
  });

  it('makes no further callback when closed from inside onBatch', async () => {
    const a = open();
    const b = open();
    const batches: number[] = [];
    const closed = new Promise<void>((resolve) => {
      const h = addon.startDgramReader(a.fd, Buffer.alloc(DGRAM_SLOT), new Int32Array(DGRAM_ROW), 1, (count) => {
        batches.push(count);
        addon.closeDgramReader(h, resolve);
      }, new Int32Array(DGRAM_ERR_ROW), true);
    });
    openFds.delete(a.fd);
    for (let i = 0; i < 5; i++) send(b.fd, Buffer.from('one of five'), a.port);
    await closed;
    await nextTurn();
    expect(batches).toEqual([1]);
  });

  it('with pktinfo, reports the address each datagram was sent to, and answers from it', async () => {
    // A socket bound to 0.0.0.0 (a published port): 127.0.0.2 is one of the host's addresses.
    const s = open({ bindAddress: 0, pktinfo: true });
    const rx = read(s.fd);
    const client = await nodeSocket();
    const replies: Array<{ msg: string; from: string }> = [];
    const twoReplies = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for two replies, got ${JSON.stringify(replies)}`)), EVENT_TIMEOUT_MS);
      client.on('message', (msg, rinfo) => {
        replies.push({ msg: msg.toString(), from: rinfo.address });
        if (replies.length === 2) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    for (const to of ['127.0.0.2', '127.0.0.1']) client.send(`to ${to}`, s.port, to);
    await rx.until(() => rx.datagrams.length === 2, 'both datagrams');
    const byText = new Map(rx.datagrams.map((d) => [d.data.toString(), d]));
    expect(byText.get('to 127.0.0.2')?.dst).toBe(0x7f000002);
    expect(byText.get('to 127.0.0.1')?.dst).toBe(LOOPBACK);
    // The answer to 127.0.0.2 leaves from 127.0.0.2 (without srcAddr the kernel would pick 127.0.0.1).
    const reply = Buffer.from('reply');
    const cport = client.address().port;
    expect(addon.sendTo(s.fd, reply, 0, reply.length, LOOPBACK, cport, 0x7f000002)).toBe(reply.length);
    expect(addon.sendTo(s.fd, reply, 0, reply.length, LOOPBACK, cport)).toBe(reply.length);
    await twoReplies;
    expect(replies.map((r) => r.from)).toEqual(['127.0.0.2', '127.0.0.1']);
    // Without pktinfo the column is 0.
    const plain = open();
    const rx2 = read(plain.fd);
    client.send('plain', plain.port, '127.0.0.1');
    await rx2.until(() => rx2.datagrams.length === 1, 'the plain datagram');
    expect(rx2.datagrams[0].dst).toBe(0);
  });

  it('pauses and resumes', async () => {
    const a = open();
    const b = open();
    const ra = read(a.fd);
    const rb = read(b.fd);
    addon.pauseDgramReader(ra.handle, true);
    send(b.fd, Buffer.from('while paused'), a.port);
    // A datagram the other way, sent after: once it has arrived, the first one had its chance.
    send(a.fd, Buffer.from('barrier'), b.port);
    await rb.until(() => rb.datagrams.length === 1, 'the barrier');
    await nextTurn();
    expect(ra.datagrams.length).toBe(0);
    addon.pauseDgramReader(ra.handle, false);
    await ra.until(() => ra.datagrams.length === 1, 'the datagram held while paused');
    expect(ra.datagrams[0].data.toString()).toBe('while paused');
  });

  it('does not keep the process alive once unref-ed', async () => {
    const script = `
      const a = require(${JSON.stringify(`${projectRoot()}/build/Release/usernet_native.node`)});
      const s = a.dgramOpen({ kind: 'udp', bindAddress: 0x7f000001 });
      const h = a.startDgramReader(s.fd, Buffer.alloc(65536), new Int32Array(a.DGRAM_ROW), 1, () => {}, new Int32Array(10), true);
      a.refDgramReader(h, false);
    `;
    const child = spawn(process.execPath, ['-e', script], { stdio: 'inherit' });
    const code = await new Promise<number | null>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error('the child with an unref-ed reader did not exit by itself'));
      }, EVENT_TIMEOUT_MS);
      child.on('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    expect(code).toBe(0);
  });

  it('checks its arguments and refuses handles of another kind', () => {
    const s = open();
    const ok = [Buffer.alloc(DGRAM_SLOT), new Int32Array(DGRAM_ROW), 1, () => {}, new Int32Array(DGRAM_ERR_ROW)] as const;
    const start = (slab: Uint8Array, meta: Int32Array, budget: number, errMeta: Int32Array) =>
      addon.startDgramReader(s.fd, slab, meta, budget, () => {}, errMeta, false);
    expect(() => start(Buffer.alloc(DGRAM_SLOT - 1), ok[1], 1, ok[4])).toThrow(RangeError);
    expect(() => start(ok[0], new Int32Array(DGRAM_ROW), 2, ok[4])).toThrow(RangeError);
    expect(() => start(ok[0], ok[1], 1, new Int32Array(DGRAM_ERR_ROW - 1))).toThrow(RangeError);
    expect(() => start(ok[0], new Uint32Array(DGRAM_ROW) as unknown as Int32Array, 1, ok[4])).toThrow(TypeError);
    // A TAP reader's handle (here on a UDP socket, which read(2) can serve) is not a dgram reader's.
    const tap: ReaderHandle = addon.startReader(s.fd, Buffer.alloc(2048), new Int32Array(2), 2048, 1, () => {}, false);
    try {
      expect(() => addon.closeDgramReader(tap as unknown as DgramReaderHandle)).toThrow(TypeError);
      expect(() => addon.pauseDgramReader({} as DgramReaderHandle, true)).toThrow(TypeError);
    } finally {
      addon.closeReader(tap);
    }
  });

  it('refuses a descriptor that is not a socket', () => {
    const fd = openSync('/dev/null', 'r');
    try {
      const e = expectErrno(
        () => addon.startDgramReader(fd, Buffer.alloc(DGRAM_SLOT), new Int32Array(DGRAM_ROW), 1, () => {}, new Int32Array(DGRAM_ERR_ROW), false),
        'ENOTSOCK',
        'getsockopt(SO_DOMAIN)',
      );
      expect(e.message).toContain('startDgramReader');
    } finally {
      closeSync(fd);
    }
  });
});

describe('ICMP sockets', () => {
  it("'ping': echo to 127.0.0.1 comes back with the kernel's identifier", async (ctx) => {
    const s = tryOpen({ kind: 'ping', bindAddress: 0 });
    if (s instanceof Error) {
      expect(['EACCES', 'EPERM']).toContain(s.code);
      expect(s.syscall).toBe('socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)');
      expect(s.message).toContain('net.ipv4.ping_group_range');
      return ctx.skip(`ping sockets not allowed here (${s.code}: gid ${process.getgid?.()} outside net.ipv4.ping_group_range); the refusal was checked, the echo was not`);
    }
    expect(s.port).toBeGreaterThan(0); // the echo identifier
    const rx = read(s.fd);
    const payload = Buffer.from('usernet ping payload');
    const req = echoRequest(0, 7, payload); // identifier and checksum are the kernel's to set
    expect(addon.sendTo(s.fd, req, 0, req.length, LOOPBACK, 0)).toBe(req.length);
    await rx.until(() => rx.datagrams.some((d) => d.data[0] === 0), 'the echo reply');
    const reply = rx.datagrams.find((d) => d.data[0] === 0)!;
    expect(reply).toMatchObject({ addr: LOOPBACK, port: 0 });
    expect(reply.data[1]).toBe(0); // code
    expect(reply.data.readUInt16BE(4)).toBe(s.port); // the kernel's identifier
    expect(reply.data.readUInt16BE(6)).toBe(7);
    expect(reply.data.subarray(8).equals(payload)).toBe(true); // no IP header in front
  });

  it("'raw-icmp': echo to 127.0.0.1 comes back with its IPv4 header", async (ctx) => {
    const s = tryOpen({ kind: 'raw-icmp', bindAddress: 0 });
    if (s instanceof Error) {
      expect(['EPERM', 'EACCES']).toContain(s.code);
      expect(s.syscall).toBe('socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)');
      expect(s.message).toContain('CAP_NET_RAW');
      return ctx.skip(`raw ICMP sockets not allowed here (${s.code}, no CAP_NET_RAW); the refusal was checked, the echo was not`);
    }
    expect(s.port).toBe(0);
    const rx = read(s.fd);
    const id = (process.pid & 0xffff) ^ 0x5a5a;
    const payload = Buffer.from('usernet raw payload');
    const req = echoRequest(id, 9, payload);
    expect(addon.sendTo(s.fd, req, 0, req.length, LOOPBACK, 0)).toBe(req.length);
    const isOurReply = (d: Datagram) => {
      const ihl = (d.data[0] & 15) * 4;
      return d.data[9] === 1 && d.data[ihl] === 0 && d.data.readUInt16BE(ihl + 4) === id && d.data.readUInt16BE(ihl + 6) === 9;
    };
    await rx.until(() => rx.datagrams.some(isOurReply), 'the echo reply');
    const reply = rx.datagrams.find(isOurReply)!;
    expect(reply).toMatchObject({ addr: LOOPBACK, port: 0 });
    const ihl = (reply.data[0] & 15) * 4;
    expect(reply.data[0] >> 4).toBe(4);
    expect(reply.data.readUInt32BE(12)).toBe(LOOPBACK); // IPv4 source
    expect(reply.data.subarray(ihl + 8).equals(payload)).toBe(true);
  });
});

describe('a process that exits with readers still open', () => {
  it('exits cleanly, with datagrams still queued on an unref-ed datagram reader (no batch into a dying env)', async () => {
    // Runs the built addon in a child: a datagram reader left open and unref'd, 256 datagrams
    // queued on it, and the process ending (its event loop empty). Before the env cleanup hook,
    // libuv delivered the queued batch during teardown: SIGSEGV (exit 139).
    const addonJs = new URL('../../../src/native/addon.ts', import.meta.url).pathname.replace(/\/src\/native\/addon\.ts$/, '/dist/src/native/addon.js');
    const script = `
      import { native, DGRAM_ROW, DGRAM_SLOT, DGRAM_ERR_ROW } from ${JSON.stringify(addonJs)};
      const addon = native();
      const s = addon.dgramOpen({ kind: 'udp', bindAddress: 0x7f000001 });
      const h = addon.startDgramReader(s.fd, Buffer.alloc(64 * DGRAM_SLOT), new Int32Array(64 * DGRAM_ROW), 64, () => {}, new Int32Array(16 * DGRAM_ERR_ROW), true);
      addon.refDgramReader(h, false);
      const tx = addon.dgramOpen({ kind: 'udp', bindAddress: 0x7f000001 });
      for (let i = 0; i < 256; i++) addon.sendTo(tx.fd, Buffer.alloc(64), 0, 64, 0x7f000001, s.port);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('exit', (c, s) => resolve([c, s])));
    expect({ code, signal, stderr }).toEqual({ code: 0, signal: null, stderr: '' });
  });
});
