/**
 * The addon's two TCP socket queries (src/native/usernet_native.c), on loopback sockets:
 * socketOutq (SIOCOUTQ: bytes the peer has not acknowledged) and socketError (SO_ERROR: the
 * pending error, which reading clears). Tests wait for the kernel's counters with a deadline.
 */
import net from 'node:net';
import { constants } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { native } from '../../../src/native/addon.js';

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
