import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CaptureSession, MAX_QUEUED, STAGING_SIZE } from '../../../src/control/capture.js';
import { DROP_CAPTURE } from '../../../src/link/counters.js';
import { Frame } from '../../../src/link/frame.js';
import { MemoryPort } from '../../../src/link/memory-port.js';
import { DIRECTION_RX, DIRECTION_TX, type FrameTap, type Port } from '../../../src/link/port.js';
import { LINKTYPE_ETHERNET, readPcap } from '../../../src/packet/pcap.js';
import { VNET_F_NEEDS_CSUM, VNET_HDR_LEN, writeVnetHeader } from '../../../src/packet/virtio-net.js';
import { ethFrame, inspect, MAC_A, MAC_B, partialize, patternPayload, tcpFrame, udpFrame, type BuiltFrame } from '../helpers/frames.js';


let dir: string;
let server: Server;
let serverSide: Socket;
let client: Socket;
let received: Promise<Buffer>;
let port: MemoryPort;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'usernet-capture-'));
  const path = join(dir, 'cap.sock');
  server = createServer();
  await new Promise<void>((r) => server.listen(path, () => r()));
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  client = connect(path);
  await new Promise<void>((r) => client.once('connect', () => r()));
  serverSide = await accepted;
  serverSide.on('error', () => {});
  const chunks: Buffer[] = [];
  client.on('data', (c: Buffer) => chunks.push(c));
  received = new Promise((r) => client.once('end', () => r(Buffer.concat(chunks))));
  port = new MemoryPort({ name: 'c1' });
});

afterEach(async () => {
  client.destroy();
  serverSide.destroy();
  await new Promise<void>((r) => server.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});

function session(limit = 0, onEnd: (s: CaptureSession) => void = () => {}): CaptureSession {
  const s = new CaptureSession(port, serverSide, limit, onEnd);
  port.taps = [...port.taps, s];
  return s;
}

/** A lent frame as a port hands it over: Ethernet bytes at an offset inside a larger buffer. */
function plainFrame(bytes: Buffer): Frame {
  const f = new Frame();
  f.buf = Buffer.concat([Buffer.alloc(7, 0xee), bytes, Buffer.alloc(5, 0xee)]);
  f.dv = new DataView(f.buf.buffer, f.buf.byteOffset, f.buf.length);
  f.off = 7;
  f.len = bytes.length;
  f.vnetOff = -1;
  return f;
}

/** A frame behind a virtio-net header that asks for the L4 checksum to be completed. */
function needsCsumFrame(b: BuiltFrame): Frame {
  const bytes = partialize(b);
  const f = new Frame();
  f.buf = Buffer.concat([Buffer.alloc(3), Buffer.alloc(VNET_HDR_LEN), bytes]);
  f.dv = new DataView(f.buf.buffer, f.buf.byteOffset, f.buf.length);
  f.vnetOff = 3;
  f.off = 3 + VNET_HDR_LEN;
  f.len = bytes.length;
  writeVnetHeader(f.dv, f.vnetOff, VNET_F_NEEDS_CSUM, 0, 0, 0, b.l4, b.csumOffset);
  f.vnet.read(f.dv, f.vnetOff, f.len);
  return f;
}

describe('CaptureSession', () => {
  it('streams the frames it is given as a pcap file', async () => {
    const s = session();
    const frames = [ethFrame(MAC_B, MAC_A, 0x0806, 28), ethFrame(MAC_A, MAC_B, 0x0800, patternPayload(1400, 3)), udpFrame({ payload: Buffer.from('hi') }).frame];
    const before = Date.now() / 1000;
    s.onFrame(port, DIRECTION_RX, plainFrame(frames[0]));
    s.onFrame(port, DIRECTION_TX, plainFrame(frames[1]));
    s.onFrame(port, DIRECTION_RX, plainFrame(frames[2]));
    s.end();
    const pcap = readPcap(await received);
    const after = Date.now() / 1000;
    expect(pcap.linktype).toBe(LINKTYPE_ETHERNET);
    expect(pcap.snaplen).toBeGreaterThanOrEqual(65535);
    expect(pcap.records).toHaveLength(3);
    pcap.records.forEach((r, i) => {
      expect(r.data.equals(frames[i])).toBe(true);
      expect(r.originalLength).toBe(frames[i].length);
      expect(r.usec).toBeLessThan(1_000_000);
      const t = r.sec + r.usec / 1e6;
      expect(t).toBeGreaterThanOrEqual(Math.floor(before) - 1);
      expect(t).toBeLessThanOrEqual(after + 1);
    });
    expect(s.frames).toBe(3);
    expect(s.dropped).toBe(0);
  });

  it('sends a valid, empty pcap file when the session ends without frames', async () => {
    session().end();
    const file = await received;
    expect(file).toHaveLength(24);
    expect(readPcap(file).records).toEqual([]);
  });

  it.each([
    ['TCP/IPv4', () => tcpFrame({ payload: patternPayload(333) })],
    ['TCP/IPv6', () => tcpFrame({ v6: true, payload: patternPayload(1000, 1) })],
    ['UDP/IPv4', () => udpFrame({ payload: patternPayload(71, 2) })],
    ['UDP/IPv6', () => udpFrame({ v6: true, payload: patternPayload(8, 5) })],
  ])('completes a NEEDS_CSUM %s checksum in the copy, not in the lent frame', async (_what, build) => {
    const b = build();
    const f = needsCsumFrame(b);
    const lent = Buffer.from(f.buf);
    expect(inspect(f.buf.subarray(f.off, f.off + f.len)).l4ChecksumOk).toBe(false);
    const s = session();
    s.onFrame(port, DIRECTION_RX, f);
    s.end();
    const [rec] = readPcap(await received).records;
    expect(rec.data).toHaveLength(b.frame.length);
    const parsed = inspect(rec.data);
    expect(parsed.l4ChecksumOk).toBe(true);
    expect(parsed.ipChecksumOk).toBe(true);
    expect(rec.data.equals(b.frame)).toBe(true);
    expect(f.buf.equals(lent)).toBe(true);
  });

  it('leaves frames without NEEDS_CSUM as they are, even behind a virtio-net header', async () => {
    const b = tcpFrame({ payload: patternPayload(50) });
    const f = needsCsumFrame(b);
    writeVnetHeader(f.dv, f.vnetOff, 0, 0, 0, 0, 0, 0);
    f.vnet.read(f.dv, f.vnetOff, f.len);
    const s = session();
    s.onFrame(port, DIRECTION_TX, f);
    s.end();
    const [rec] = readPcap(await received).records;
    expect(rec.data.equals(partialize(b))).toBe(true);
  });

  it('ends at the count limit: calls onEnd once, ignores later frames, detaches from the port', async () => {
    let ends = 0;
    let endedWith: CaptureSession | undefined;
    const s = session(2, (x) => {
      ends++;
      endedWith = x;
    });
    const frames = [1, 2, 3].map((i) => ethFrame(MAC_B, MAC_A, 0x0800, patternPayload(60, i)));
    s.onFrame(port, DIRECTION_RX, plainFrame(frames[0]));
    expect(ends).toBe(0);
    s.onFrame(port, DIRECTION_RX, plainFrame(frames[1]));
    expect(ends).toBe(1);
    expect(endedWith).toBe(s);
    expect(port.taps).not.toContain(s);
    s.onFrame(port, DIRECTION_RX, plainFrame(frames[2]));
    s.end();
    const pcap = readPcap(await received);
    expect(pcap.records.map((r) => r.data)).toEqual([frames[0], frames[1]]);
    expect(s.frames).toBe(2);
    if (!serverSide.closed) await new Promise<void>((r) => serverSide.once('close', () => r()));
    expect(ends).toBe(1);
  });

  it('end() is idempotent', async () => {
    let ends = 0;
    const s = session(0, () => ends++);
    const other: FrameTap = { onFrame: () => true };
    port.taps = [...port.taps, other];
    s.end();
    s.end();
    expect(ends).toBe(1);
    expect(port.taps).toEqual([other]);
    await received;
    s.end();
    expect(ends).toBe(1);
  });

  it('ends when the client goes away', async () => {
    let ends = 0;
    const ended = new Promise<void>((r) => {
      const s = session(0, () => {
        ends++;
        r();
      });
      s.onFrame(port, DIRECTION_RX, plainFrame(ethFrame(MAC_B, MAC_A, 0x0800)));
    });
    client.destroy();
    await ended;
    expect(ends).toBe(1);
    expect(port.taps).toEqual([]);
  });

  it('drops (and counts) a frame too big for the staging buffer, keeps the others', async () => {
    const s = session();
    const huge = ethFrame(MAC_B, MAC_A, 0x0800, STAGING_SIZE);
    const small = ethFrame(MAC_B, MAC_A, 0x0800, 100);
    port.tapFrame(DIRECTION_RX, plainFrame(huge));
    port.tapFrame(DIRECTION_RX, plainFrame(small));
    s.end();
    const pcap = readPcap(await received);
    expect(pcap.records).toHaveLength(1);
    expect(pcap.records[0].data.equals(small)).toBe(true);
    expect(s.dropped).toBe(1);
    expect(port.counters[DROP_CAPTURE]).toBe(1);
  });

  it('counts a frame once on the port however many sessions dropped it; each session counts its own (regression: once per session per frame)', () => {
    const a = session();
    const b = session();
    const huge = plainFrame(ethFrame(MAC_B, MAC_A, 0x0800, STAGING_SIZE));
    const small = plainFrame(ethFrame(MAC_B, MAC_A, 0x0800, 100));
    for (let i = 0; i < 5; i++) port.tapFrame(DIRECTION_RX, huge);
    port.tapFrame(DIRECTION_TX, small);
    expect(port.counters[DROP_CAPTURE]).toBe(5);
    expect([a.dropped, b.dropped, a.frames, b.frames]).toEqual([5, 5, 1, 1]);
    // A frame only one of the sessions drops still counts once.
    const dropsEverything: FrameTap = { onFrame: () => false };
    port.taps = [...port.taps, dropsEverything];
    port.tapFrame(DIRECTION_RX, small);
    expect(port.counters[DROP_CAPTURE]).toBe(6);
    a.end();
    b.end();
  });

  it('gives a client that half-closes every frame staged until then, then ends the stream (regression: Ctrl-C lost the staged frames)', async () => {
    let ended: CaptureSession | undefined;
    const s = session(0, (x) => (ended = x));
    const frames = [1, 2, 3, 4, 5, 6].map((i) => ethFrame(MAC_B, MAC_A, 0x0800, patternPayload(98, i)));
    for (const f of frames) port.tapFrame(DIRECTION_RX, plainFrame(f));
    // The CLI on Ctrl-C: end our side, keep reading until the daemon ends its own.
    client.end();
    const pcap = readPcap(await received);
    expect(pcap.records.map((r) => r.data)).toEqual(frames);
    expect(ended).toBe(s);
    expect(port.taps).toEqual([]);
  });

  it('bounds what a client that never reads can make the daemon hold, dropping frames instead', async () => {
    client.pause();
    const s = session();
    const frame = plainFrame(ethFrame(MAC_B, MAC_A, 0x0800, 1500));
    const total = 8000; // ~12 MB of frames, far more than the socket and the bound hold
    let maxQueued = 0;
    for (let i = 0; i < total; i++) {
      port.tapFrame(DIRECTION_RX, frame);
      maxQueued = Math.max(maxQueued, serverSide.writableLength);
      // Let the socket write now and then, as the event loop would between batches.
      if (i % 500 === 499) await new Promise<void>((r) => setImmediate(r));
    }
    // A session's budget: what the socket may queue plus one staging buffer, under 2 MiB.
    expect(MAX_QUEUED + STAGING_SIZE).toBeLessThanOrEqual(2 * 1024 * 1024);
    expect(maxQueued).toBeLessThanOrEqual(MAX_QUEUED + STAGING_SIZE);
    expect(maxQueued).toBeGreaterThan(MAX_QUEUED / 2); // the client really did not read
    expect(s.dropped).toBeGreaterThan(0);
    expect(s.frames + s.dropped).toBe(total);
    expect(port.counters[DROP_CAPTURE]).toBe(s.dropped);
    // What was kept is a valid capture with every recorded frame.
    s.end();
    client.resume();
    const pcap = readPcap(await received);
    expect(pcap.records).toHaveLength(s.frames);
  });

  it('flushes when the staging buffer fills, keeping frames in order', async () => {
    const s = session();
    const frames: Buffer[] = [];
    for (let i = 0; i < 40; i++) frames.push(ethFrame(MAC_B, MAC_A, 0x0800, patternPayload(30_000 + i, i)));
    for (const f of frames) s.onFrame(port, DIRECTION_RX, plainFrame(f));
    s.end();
    const pcap = readPcap(await received);
    expect(pcap.records).toHaveLength(40);
    pcap.records.forEach((r, i) => expect(r.data.equals(frames[i])).toBe(true));
    expect(s.dropped).toBe(0);
  });
});
