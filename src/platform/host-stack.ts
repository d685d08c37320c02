/**
 * The host side of the NAT, the DNS forwarder and published ports, as an interface with two
 * implementations:
 *
 *   SystemHostStack  real host sockets: node:net, node:dgram and the addon's batched datagram
 *                    sockets (what the daemon uses; the addon is loaded on first use only)
 *   MemoryOutside    an in-memory "outside": hosts on documentation addresses with TCP and UDP
 *                    servers and clients a test scripts, driven by the virtual clock, needing
 *                    neither the addon nor a network (src/outside/)
 *
 * The socket shapes are the subsets of Node's own (net.Socket, net.Server, dgram.Socket) that
 * usernet uses, so the system implementation hands out Node's objects unchanged and costs nothing.
 */
import dgram from 'node:dgram';
import { Socket as NetSocket, createConnection, createServer, type Server, type Socket, type SocketConstructorOpts } from 'node:net';
import {
  DGRAM_DST_ADDR,
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
  native,
  type DgramReaderHandle,
  type NativeAddon,
} from '../native/addon.js';

/** Where a datagram came from (dgram's RemoteInfo). */
export interface HostRemoteInfo {
  address: string;
  family: 'IPv4' | 'IPv6';
  port: number;
  size: number;
}

/** The part of dgram.Socket that usernet uses. */
export interface HostDatagramSocket {
  bind(options: { address?: string; port?: number; exclusive?: boolean }, callback?: () => void): void;
  connect(port: number, address: string, callback?: () => void): void;
  /** On a connected socket. */
  send(msg: Uint8Array, callback?: (err: Error | null, bytes: number) => void): void;
  send(msg: Uint8Array, port: number, address: string, callback?: (err: Error | null, bytes: number) => void): void;
  address(): { address: string; family: string; port: number };
  close(callback?: () => void): void;
  unref(): void;
  on(event: 'message', listener: (msg: Buffer, rinfo: HostRemoteInfo) => void): void;
  on(event: 'error', listener: (err: NodeJS.ErrnoException) => void): void;
  on(event: 'listening' | 'connect' | 'close', listener: () => void): void;
  once(event: 'message', listener: (msg: Buffer, rinfo: HostRemoteInfo) => void): void;
  once(event: 'error', listener: (err: NodeJS.ErrnoException) => void): void;
  once(event: 'listening' | 'connect' | 'close', listener: () => void): void;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a listener given to on() or once(), of any of their types
  off(event: string, listener: (...args: any[]) => void): void;
}

export interface HostDatagramOptions {
  type: 'udp4' | 'udp6';
  ipv6Only?: boolean;
}


// ---------------------------------------------------------------------------------------------
// TCP

/**
 * The part of net.Socket the NAT uses for one host-side TCP connection (a connection it made, or
 * one a published port accepted). Methods return `unknown` so that Node's `this`-returning
 * overloads assign: a net.Socket is a HostTcpSocket.
 */
export interface HostTcpSocket {
  readonly remoteAddress?: string | undefined;
  readonly remotePort?: number | undefined;
  readonly localAddress?: string | undefined;
  readonly localPort?: number | undefined;
  /** Bytes queued in the socket object, not yet handed to the kernel. */
  readonly writableLength: number;
  readonly writableEnded: boolean;
  readonly writableFinished: boolean;
  readonly destroyed: boolean;
  /** `cb` runs once the bytes have been handed on (the buffer may be reused then). */
  write(data: Uint8Array, cb?: (err?: Error | null) => void): boolean;
  /** Half-close: a FIN after what is queued. */
  end(): unknown;
  destroy(): unknown;
  /** Closes with a RST (SO_LINGER 0). */
  resetAndDestroy(): unknown;
  pause(): unknown;
  resume(): unknown;
  /** Idle timeout: `cb` after `ms` without activity. */
  setTimeout(ms: number, cb?: () => void): unknown;
  on(event: 'data', listener: (data: Buffer) => void): unknown;
  on(event: 'error', listener: (err: NodeJS.ErrnoException) => void): unknown;
  on(event: 'connect' | 'end' | 'drain' | 'close' | 'finish', listener: () => void): unknown;
  once(event: 'data', listener: (data: Buffer) => void): unknown;
  once(event: 'error', listener: (err: NodeJS.ErrnoException) => void): unknown;
  once(event: 'connect' | 'end' | 'drain' | 'close' | 'finish', listener: () => void): unknown;
}

export interface HostTcpConnectOptions {
  host: string;
  port: number;
  /** Local address to bind (--outbound-addr). */
  localAddress?: string;
  allowHalfOpen?: boolean;
  noDelay?: boolean;
  /** Reads through `onread` (HostTcpOnread) instead of 'data'; 'end', 'error', pause() and resume() as usual. */
  onread?: HostTcpOnread;
}

/**
 * Node's `onread`: each read lands in `buffer` (or in the buffer the function returns, asked
 * before every read) and is handed to `callback` (bytes read, that buffer), synchronously,
 * instead of a 'data' event with a fresh Buffer. The callback must copy what it keeps: the next
 * read overwrites it; `false` pauses the socket.
 */
export interface HostTcpOnread {
  buffer: Uint8Array | (() => Uint8Array);
  callback: (bytesRead: number, buf: Uint8Array) => boolean;
}

export interface HostTcpServerOptions {
  /** Accepted sockets start paused (nothing read before resume()). */
  pauseOnConnect?: boolean;
  allowHalfOpen?: boolean;
  noDelay?: boolean;
}

export interface HostTcpListenOptions {
  host: string;
  port: number;
  exclusive?: boolean;
  ipv6Only?: boolean;
}

/** The part of net.Server that published ports use. */
export interface HostTcpServer {
  listen(options: HostTcpListenOptions, callback?: () => void): unknown;
  address(): { address: string; family: string; port: number } | string | null;
  close(callback?: (err?: Error) => void): unknown;
  on(event: 'connection', listener: (socket: HostTcpSocket) => void): unknown;
  on(event: 'error', listener: (err: NodeJS.ErrnoException) => void): unknown;
  once(event: 'error', listener: (err: NodeJS.ErrnoException) => void): unknown;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a listener given to on() or once()
  off(event: string, listener: (...args: any[]) => void): unknown;
}

// ---------------------------------------------------------------------------------------------
// The NAT's datagram sockets

/**
 * What a NAT datagram socket is:
 *   'udp'       UDP: sendTo() the payload; the receiver gets payloads with source address and port.
 *   'icmp'      an ICMP "ping" socket: sendTo() an echo request (ICMP header first; the stack sets
 *               the identifier to the socket's `port` and the checksum); the receiver gets ICMP
 *               messages without the IP header, source port 0.
 *   'icmp-raw'  a raw ICMP socket: sendTo() a complete ICMP message (checksum the caller's); the
 *               receiver gets every ICMP packet of the host, IPv4 header first.
 * Addresses are IPv4 as uint32 (host order).
 */
export type NatDatagramKind = 'udp' | 'icmp' | 'icmp-raw';

export interface NatDatagramOptions {
  kind: NatDatagramKind;
  /** Local address, 0 for any. */
  bindAddress?: number;
  /** 'udp': the port (0: an ephemeral one); 'icmp': the identifier (0: the stack picks). */
  bindPort?: number;
  /** ICMP errors about our datagrams go to receiver.error (default true for 'udp' and 'icmp'). */
  recvErr?: boolean;
  /** 'udp': report each datagram's destination address (IP_PKTINFO). */
  pktinfo?: boolean;
}

/**
 * An ICMP (or local) error about a datagram we sent, as IP_RECVERR reports it. One object is
 * reused for every error: read it during the call only.
 */
export interface NatDatagramError {
  /** Negative errno (-111: ECONNREFUSED for a port unreachable). */
  errno: number;
  /** SO_EE_ORIGIN_LOCAL (1) or SO_EE_ORIGIN_ICMP (2). */
  origin: number;
  icmpType: number;
  icmpCode: number;
  /** Who sent the ICMP error (0 when not ICMP). */
  offender: number;
  /** Destination (and port, for UDP) of the datagram the error is about. */
  dstAddr: number;
  dstPort: number;
  /** Next-hop MTU for "fragmentation needed", the pointer of a parameter problem; else 0. */
  info: number;
  /** The quoted original (UDP: our payload; ICMP kinds: our ICMP message), data[dataOffset, +dataLength). */
  data: Uint8Array;
  dataOffset: number;
  dataLength: number;
}

/**
 * Where a NAT datagram socket delivers. Called per datagram; `data[off, off+len)` is valid during
 * the call only (a shared slab in the system stack): copy what must be kept.
 */
export interface NatDatagramReceiver {
  /** `dstAddr`: the address it was sent to (pktinfo sockets), else 0. */
  datagram(data: Uint8Array, off: number, len: number, srcAddr: number, srcPort: number, dstAddr: number): void;
  error?(err: NatDatagramError): void;
  /** The socket failed for good (`errno` negative) and reads no more. */
  failed?(errno: number): void;
}

export interface NatDatagramSocket {
  /** The bound port ('udp') or the echo identifier ('icmp'); 0 for 'icmp-raw'. */
  readonly port: number;
  /**
   * One datagram to addr:port (port ignored for ICMP kinds); bytes sent or -errno, never a throw
   * for I/O errors. A non-zero `srcAddr` is the source address (a pktinfo socket's reply).
   */
  sendTo(data: Uint8Array, off: number, len: number, addr: number, port: number, srcAddr?: number): number;
  /** Stops reading and closes; `onClosed` once the socket is gone (its port is free). */
  close(onClosed?: () => void): void;
}

/**
 * The host's sockets: datagram sockets (DNS forwarder, IPv6 published UDP ports), TCP
 * connections and servers (NAT, published TCP ports), the NAT's datagram sockets, and the kernel
 * extras the NAT's TCP relies on.
 */
export interface HostStack {
  /** "system" for real host sockets, "memory" for an in-memory outside. */
  readonly kind: 'system' | 'memory';
  createDatagramSocket(options: HostDatagramOptions): HostDatagramSocket;
  /** Starts a TCP connect; failures arrive as 'error' events (or a throw for bad arguments). */
  createTcpConnection(options: HostTcpConnectOptions): HostTcpSocket;
  createTcpServer(options: HostTcpServerOptions): HostTcpServer;
  /**
   * Opens a NAT datagram socket reading into `receiver`. Throws an error with `.code` (EADDRINUSE,
   * EACCES, EPERM, EADDRNOTAVAIL, EMFILE...) when it cannot be opened.
   */
  openNatDatagram(options: NatDatagramOptions, receiver: NatDatagramReceiver): NatDatagramSocket;
  /**
   * Writes straight to the connection, bypassing the socket object's queue (call only when
   * writableLength is 0): bytes taken, possibly fewer than `len` (or 0), or -1 when it cannot be
   * done at all; the caller writes the rest through write().
   */
  tcpWriteDirect(socket: HostTcpSocket, data: Uint8Array, off: number, len: number): number;
  /**
   * Bytes written that the peer has not acknowledged (SIOCOUTQ); 0 when all are, negative when
   * it cannot be known (closing socket): nothing more can be delivered then.
   */
  tcpUnacknowledged(socket: HostTcpSocket): number;
  /** The connection's pending error (SO_ERROR) as a positive errno, 0 for none or unknown. */
  tcpPendingError(socket: HostTcpSocket): number;
  /**
   * A connected socket (an accepted one: net.Server offers no onread of its own) made to read
   * through `onread` from now on: returns the socket to use in its place, paused or flowing as it
   * was. The system stack wraps a duplicate of its descriptor in a new net.Socket and destroys
   * the old one, which sends nothing (the connection lives on in the copy); the old one's
   * listeners stay on it. Null, and the socket unchanged, when it cannot: bytes read and not yet
   * delivered, a write not finished, the stream ended or destroyed, no descriptor, EMFILE.
   */
  tcpAdoptWithOnread(socket: HostTcpSocket, onread: HostTcpOnread): HostTcpSocket | null;
}

// ---------------------------------------------------------------------------------------------
// The system implementation

/** The fd under a connected net.Socket (libuv's TCP handle), or -1 if Node does not expose it. */
function socketFd(socket: HostTcpSocket): number {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : -1;
}

/** Rows of the shared error table: enough for a batch of UDP errors. */
const ERR_ROWS = 16;
/** Bytes of quoted data kept per error in the slab, after the datagrams. */
const ERR_QUOTE_ROOM = 128;
/** Datagrams per read (recvmmsg). */
const DGRAM_BUDGET = 64;

/** One addon datagram reader and where its datagrams go. */
class SystemNatDatagram implements NatDatagramSocket {
  reader: DgramReaderHandle | null = null;
  constructor(
    private readonly addon: NativeAddon,
    readonly fd: number,
    readonly port: number,
  ) {}
  sendTo(data: Uint8Array, off: number, len: number, addr: number, port: number, srcAddr?: number): number {
    if (this.reader === null) return -9; // EBADF
    return srcAddr ? this.addon.sendTo(this.fd, data, off, len, addr, port, srcAddr) : this.addon.sendTo(this.fd, data, off, len, addr, port);
  }
  close(onClosed?: () => void): void {
    const r = this.reader;
    this.reader = null;
    if (r !== null) this.addon.closeDgramReader(r, onClosed);
    else onClosed?.();
  }
}

/**
 * Real host sockets: node:net, node:dgram and the addon's batched datagram sockets. The addon is
 * loaded on first use of what needs it, so importing usernet works without a built addon.
 */
export class SystemHostStack implements HostStack {
  readonly kind = 'system' as const;
  private addonCache: NativeAddon | null = null;
  /**
   * One slab and one pair of row tables for every NAT datagram reader: the addon calls a reader's
   * callback with its batch before it reads another, so they can share (allocated on first use).
   */
  private slab: Buffer | null = null;
  private meta: Int32Array | null = null;
  private errMeta: Int32Array | null = null;
  /** The error handed to receivers, reused. */
  private readonly err: NatDatagramError = { errno: 0, origin: 0, icmpType: 0, icmpCode: 0, offender: 0, dstAddr: 0, dstPort: 0, info: 0, data: new Uint8Array(0), dataOffset: 0, dataLength: 0 };

  private get addon(): NativeAddon {
    return (this.addonCache ??= native());
  }

  createDatagramSocket(options: HostDatagramOptions): HostDatagramSocket {
    return dgram.createSocket(options);
  }

  createTcpConnection(options: HostTcpConnectOptions): HostTcpSocket {
    return createConnection(options);
  }

  createTcpServer(options: HostTcpServerOptions): HostTcpServer {
    return createServer(options);
  }

  openNatDatagram(options: NatDatagramOptions, receiver: NatDatagramReceiver): NatDatagramSocket {
    const addon = this.addon;
    const kind = options.kind === 'udp' ? 'udp' : options.kind === 'icmp' ? 'ping' : 'raw-icmp';
    const opened = addon.dgramOpen({
      kind,
      ...(options.bindAddress !== undefined ? { bindAddress: options.bindAddress } : {}),
      ...(options.bindPort !== undefined ? { bindPort: options.bindPort } : {}),
      ...(options.recvErr !== undefined ? { recvErr: options.recvErr } : {}),
      ...(options.pktinfo !== undefined ? { pktinfo: options.pktinfo } : {}),
    });
    const s = new SystemNatDatagram(addon, opened.fd, opened.port);
    if (this.slab === null) {
      this.slab = Buffer.allocUnsafeSlow(DGRAM_BUDGET * DGRAM_SLOT + ERR_ROWS * ERR_QUOTE_ROOM);
      this.meta = new Int32Array(DGRAM_BUDGET * DGRAM_ROW);
      this.errMeta = new Int32Array(ERR_ROWS * DGRAM_ERR_ROW);
      this.err.data = this.slab;
    }
    const slab = this.slab;
    const meta = this.meta as Int32Array;
    const errMeta = this.errMeta as Int32Array;
    try {
      s.reader = addon.startDgramReader(opened.fd, slab, meta, DGRAM_BUDGET, (count, errors) => this.batch(s, receiver, count, errors), errMeta, true);
    } catch (err) {
      addon.closeFd(opened.fd);
      throw err;
    }
    // A NAT socket alone must not keep the daemon alive (its control socket does).
    addon.refDgramReader(s.reader, false);
    return s;
  }

  /** One batch from the addon: the receiver is called per datagram, then per error. */
  private batch(s: SystemNatDatagram, receiver: NatDatagramReceiver, count: number, errors: number): void {
    if (count < 0) {
      // The reader stopped for good (EBADF...); the addon closes the fd with it.
      if (s.reader !== null) {
        const r = s.reader;
        s.reader = null;
        this.addon.closeDgramReader(r);
      }
      receiver.failed?.(count);
      return;
    }
    const meta = this.meta as Int32Array;
    const slab = this.slab as Buffer;
    for (let i = 0; i < count; i++) {
      const row = i * DGRAM_ROW;
      receiver.datagram(slab, meta[row + DGRAM_OFFSET], meta[row + DGRAM_LENGTH], meta[row + DGRAM_SRC_ADDR] >>> 0, meta[row + DGRAM_SRC_PORT], meta[row + DGRAM_DST_ADDR] >>> 0);
    }
    if (errors === 0 || receiver.error === undefined) return;
    const em = this.errMeta as Int32Array;
    const e = this.err;
    for (let i = 0; i < errors; i++) {
      const row = i * DGRAM_ERR_ROW;
      e.errno = em[row + DGRAM_ERR_ERRNO];
      e.origin = em[row + DGRAM_ERR_ORIGIN];
      e.icmpType = em[row + DGRAM_ERR_ICMP_TYPE];
      e.icmpCode = em[row + DGRAM_ERR_ICMP_CODE];
      e.offender = em[row + DGRAM_ERR_OFFENDER] >>> 0;
      e.dstAddr = em[row + DGRAM_ERR_DST_ADDR] >>> 0;
      e.dstPort = em[row + DGRAM_ERR_DST_PORT];
      e.info = em[row + DGRAM_ERR_INFO];
      e.dataOffset = em[row + DGRAM_ERR_DATA_OFFSET];
      e.dataLength = em[row + DGRAM_ERR_DATA_LENGTH];
      receiver.error(e);
    }
  }

  tcpWriteDirect(socket: HostTcpSocket, data: Uint8Array, off: number, len: number): number {
    // The fd is read from the live handle each time: never a number a closed socket left behind.
    const fd = socketFd(socket);
    return fd >= 0 ? this.addon.write(fd, data, off, len) : -1;
  }

  tcpUnacknowledged(socket: HostTcpSocket): number {
    const fd = socketFd(socket);
    return fd >= 0 ? this.addon.socketOutq(fd) : -1;
  }

  tcpPendingError(socket: HostTcpSocket): number {
    const fd = socketFd(socket);
    return fd >= 0 ? this.addon.socketError(fd) : 0;
  }

  tcpAdoptWithOnread(socket: HostTcpSocket, onread: HostTcpOnread): HostTcpSocket | null {
    const fd = socketFd(socket);
    if (fd < 0 || !(socket instanceof NetSocket) || socket.destroyed || socket.readableEnded || socket.readableLength !== 0 || socket.writableLength !== 0 || socket.writableEnded) return null;
    const flowing = !socket.isPaused();
    const copy = this.addon.dupFd(fd);
    if (copy < 0) return null;
    let adopted: NetSocket;
    try {
      // (Node's constructor takes onread, as documented; @types/node lists it for connect() only.)
      const options: SocketConstructorOpts & { onread: HostTcpOnread } = { fd: copy, readable: true, writable: true, allowHalfOpen: socket.allowHalfOpen, onread };
      adopted = new NetSocket(options);
    } catch {
      this.addon.closeFd(copy);
      return null;
    }
    // (The constructor starts reading; nothing can arrive before this, in the same tick.)
    if (!flowing) adopted.pause();
    // Closing one of two descriptors of a socket sends nothing: the connection lives on in the copy.
    socket.destroy();
    return adopted;
  }
}

/** The stack every component uses when it is given none. */
export const systemHostStack: HostStack = new SystemHostStack();

/** Compile-time proof that Node's own objects are the interfaces' (no wrapping on the system path). */
export type NodeSocketIsHostTcpSocket = Socket extends HostTcpSocket ? true : never;
export type NodeServerIsHostTcpServer = Server extends HostTcpServer ? true : never;
const nodeSocketsAssign: [NodeSocketIsHostTcpSocket, NodeServerIsHostTcpServer] = [true, true];
void nodeSocketsAssign;
