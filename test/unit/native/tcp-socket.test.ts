/**
 * The addon's two TCP socket queries (src/native/usernet_native.c), on loopback sockets:
 * socketOutq (SIOCOUTQ: bytes the peer has not acknowledged) and socketError (SO_ERROR: the
 * pending error, which reading clears). Tests wait for the kernel's counters with a deadline.
 */
import net from 'node:net';
import { constants } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { native } from '../../../src/native/addon.js';
import { SystemHostStack } from '../../../src/platform/host-stack.js';

const addon = native();
const E = constants.errno;
const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

const fdOf = (s: net.Socket): number => (s as unknown as { _handle: { fd: number } })._handle.fd;

async function eventually(pred: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A connected pair on 127.0.0.1; the server side does not read until resumed. */
async function pair(): Promise<{ server: net.Server; client: net.Socket; peer: net.Socket }> {
  const server = net.createServer({ pauseOnConnect: true });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await new Promise<void>((resolve) => client.once('connect', () => resolve()));
  const peer = await accepted;
  for (const s of [client, peer]) s.on('error', () => {});
  cleanups.push(() => {
    client.destroy();
    peer.destroy();
    server.close();
  });
  return { server, client, peer };
}

describe('socketOutq', () => {
  it('counts what the peer has not acknowledged, down to 0 once it reads', async () => {
    const { client, peer } = await pair();
    expect(addon.socketOutq(fdOf(client))).toBe(0);
    client.write(Buffer.alloc(8 << 20));
    await eventually(() => addon.socketOutq(fdOf(client)) > 0, 'bytes in the send queue');
    let got = 0;
    peer.on('data', (d: Buffer) => (got += d.length));
    peer.resume();
    await eventually(() => got === 8 << 20 && client.writableLength === 0 && addon.socketOutq(fdOf(client)) === 0, 'the peer to acknowledge everything');
  });

  it('returns -errno instead of throwing: a listening socket, a closed fd', async () => {
    const { server } = await pair();
    expect(addon.socketOutq((server as unknown as { _handle: { fd: number } })._handle.fd)).toBe(-E.EINVAL);
    expect(addon.socketOutq(1_000_000)).toBe(-E.EBADF);
  });
});

describe('socketError', () => {
  it('is 0 on a healthy socket, ECONNRESET once the peer reset, then 0 (reading clears it)', async () => {
    // The accepted side was never read from (pauseOnConnect): Node does not notice the reset,
    // so its fd stays open for the question.
    const { client, peer } = await pair();
    const fd = fdOf(peer);
    expect(addon.socketError(fd)).toBe(0);
    client.resetAndDestroy();
    let pending = 0;
    await eventually(() => (pending = addon.socketError(fd)) !== 0, 'the pending error');
    expect(pending).toBe(E.ECONNRESET);
    expect(addon.socketError(fd)).toBe(0);
    expect(addon.socketError(1_000_000)).toBe(-E.EBADF);
  });
});

describe('dupFd and SystemHostStack.tcpAdoptWithOnread', () => {
  it('dupFd returns a close-on-exec copy, or -errno', async () => {
    const { peer } = await pair();
    const copy = addon.dupFd(fdOf(peer));
    expect(copy).toBeGreaterThan(2);
    expect(addon.socketError(copy)).toBe(0);
    expect(addon.closeFd(copy)).toBe(0);
    expect(addon.dupFd(1_000_000)).toBe(-E.EBADF);
  });

  it('an accepted socket re-wrapped to read with onread: paused until resumed, then every byte both ways, and the end', async () => {
    const { client, peer } = await pair();
    const stack = new SystemHostStack();
    const buf = Buffer.alloc(1000);
    const reads: number[] = [];
    let got = '';
    const adopted = stack.tcpAdoptWithOnread(peer, {
      buffer: () => buf,
      callback: (n, b) => {
        reads.push(n);
        expect(b).toBe(buf);
        got += buf.toString('latin1', 0, n);
        return true;
      },
    });
    expect(adopted).not.toBeNull();
    const s = adopted as net.Socket;
    cleanups.push(() => s.destroy());
    s.on('error', () => {});
    expect(peer.destroyed).toBe(true);
    expect([s.remoteAddress, s.remotePort]).toEqual([client.localAddress, client.localPort]);
    const text = 'x'.repeat(2500) + 'end';
    client.write(text);
    // Paused: nothing is read until resume(), however long the bytes wait.
    await eventually(() => addon.socketOutq(fdOf(client)) === 0, 'the kernel to take the bytes');
    await new Promise((resolve) => setImmediate(resolve));
    expect(reads).toEqual([]);
    const ended = new Promise<void>((resolve) => s.once('end', () => resolve()));
    s.resume();
    // The old descriptor's close ended nothing: the copy still writes to the client.
    let back = '';
    client.on('data', (d: Buffer) => (back += d.toString()));
    s.write('pong');
    await eventually(() => back === 'pong', "the client to read the adopted socket's answer");
    client.end();
    await ended;
    expect(got).toBe(text);
    expect(Math.max(...reads)).toBeLessThanOrEqual(1000);
  });

  it('mid-stream, from inside its own data event: the rest of the bytes come through onread, in order, none lost', async () => {
    const { client, peer } = await pair();
    const stack = new SystemHostStack();
    const buf = Buffer.alloc(4096);
    const text = Buffer.alloc(3 << 20);
    for (let i = 0; i < text.length; i++) text[i] = (i * 31 + (i >>> 12)) & 0xff;
    const parts: Buffer[] = [];
    let adopted: net.Socket | null = null;
    let viaData = 0;
    let viaOnread = 0;
    peer.on('data', (d: Buffer) => {
      parts.push(Buffer.from(d));
      viaData += d.length;
      if (adopted) return;
      adopted = stack.tcpAdoptWithOnread(peer, {
        buffer: buf,
        callback: (n) => {
          parts.push(Buffer.from(buf.subarray(0, n)));
          viaOnread += n;
          return true;
        },
      }) as net.Socket | null;
      expect(adopted).not.toBeNull();
      adopted!.on('error', () => {});
      cleanups.push(() => adopted?.destroy());
    });
    peer.resume();
    client.end(text);
    await eventually(() => viaData + viaOnread === text.length, 'every byte');
    expect(Buffer.concat(parts).equals(text)).toBe(true);
    expect(viaOnread).toBeGreaterThan(0);
    expect(adopted!.isPaused()).toBe(false);
  });

  it('not while bytes wait unread in the old socket or it has ended: null, the socket unchanged', async () => {
    const { client, peer } = await pair();
    const stack = new SystemHostStack();
    const onread = { buffer: Buffer.alloc(10), callback: () => true };
    peer.on('readable', () => {});
    client.write('abc');
    await eventually(() => peer.readableLength === 3, 'bytes buffered in the socket');
    expect(stack.tcpAdoptWithOnread(peer, onread)).toBeNull();
    expect(peer.destroyed).toBe(false);
    expect(peer.read()?.toString()).toBe('abc');
    const ended = new Promise((resolve) => peer.once('end', resolve));
    client.end();
    peer.read();
    await ended;
    expect(stack.tcpAdoptWithOnread(peer, onread)).toBeNull();
  });
});
