/**
 * Typed access to the native addon (src/native/usernet_native.c, built by node-gyp on install).
 * The addon is loaded lazily and once; a missing build is reported with the command that fixes it.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getSystemErrorName } from 'node:util';
import { UsernetError } from '../errors.js';

export interface TapOpenOptions {
  /** Interface name inside the namespace (created when absent, attached when present). */
  ifname: string;
  /** Join the user + network namespaces of this process. */
  pid?: number;
  /** Or join this network namespace (its owning user namespace is found and joined too). */
  netnsPath?: string;
  /** Explicit user namespace to join with netnsPath. */
  usernsPath?: string;
  /** Ask for IFF_VNET_HDR (used when the kernel has it). Default true. */
  vnetHdr?: boolean;
  /** Ask for TUNSETOFFLOAD checksum + TSO4/6 (with vnetHdr). Default true. */
  offload?: boolean;
  /** Create the interface if absent (default true); false fails with ENODEV. */
  create?: boolean;
  /** -1 leave, 0 clear, 1 set TUNSETPERSIST. */
  persist?: -1 | 0 | 1;
  mtu?: number;
  mac?: Uint8Array;
  txqlen?: number;
  /** IPv4 address as uint32 (host order) with its prefix length. */
  address?: number;
  prefix?: number;
  /** Default route via this uint32 address. */
  gateway?: number;
  linkUp?: boolean;
  loUp?: boolean;
}

export interface TapOpenResult {
  fd: number;
  ifname: string;
  ifindex: number;
  mtu: number;
  mac: Buffer;
  /** 10 when frames carry a virtio-net header, else 0. */
  vnetHdrLen: number;
  /** TUN_F_* bits in effect. */
  offloads: number;
  /** TUNGETFEATURES. */
  features: number;
  /** The interface existed before (attached rather than created). */
  existed: boolean;
  /** Its IPv4 address (host order) once opened and configured; 0 if it has none. */
  address: number;
  prefix: number;
}

/** Opaque handles owned by the addon. */
export type ReaderHandle = { readonly __reader: unique symbol };
export type WatchHandle = { readonly __watch: unique symbol };
export type DgramReaderHandle = { readonly __dgramReader: unique symbol };

/*
 * Datagram sockets (src/native/usernet_dgram.c), for the NAT. IPv4 only: addresses are uint32 in
 * host order (0x7f000001 is 127.0.0.1); an IPv6 kind would come with its own row layouts.
 *
 * What each kind sends and receives:
 *   'udp'       sendTo: the UDP payload to addr:port. Reader: the payload, with the source
 *               address and port.
 *   'ping'      (SOCK_DGRAM/IPPROTO_ICMP) sendTo: an ICMP echo request (type 8, code 0, header
 *               included) to addr, port ignored; the kernel overwrites the identifier with the
 *               socket's (dgramOpen's `port`) and computes the checksum. Reader: ICMP messages
 *               without the IP header (echo replies carrying our identifier), source port 0.
 *               Opening it needs the process's gid in net.ipv4.ping_group_range.
 *   'raw-icmp'  (SOCK_RAW/IPPROTO_ICMP) sendTo: a complete ICMP message to addr, port ignored,
 *               checksum the caller's; the kernel adds the IP header. Reader: *every* ICMP packet
 *               the host receives (echo replies for others, errors about anybody's traffic, even
 *               our own requests to a local address) with its IPv4 header in front (the ICMP
 *               message starts at (byte0 & 15) * 4), source port 0. Needs CAP_NET_RAW.
 */

/** Columns of a datagram row in the reader's `meta`: DGRAM_ROW int32s per datagram. */
export const DGRAM_ROW = 5;
/** Offset of the datagram in the slab (64-byte aligned). */
export const DGRAM_OFFSET = 0;
/** Its length in bytes (never truncated: every IPv4 datagram fits a DGRAM_SLOT). */
export const DGRAM_LENGTH = 1;
/** Source address, uint32 as int32 bits: read it with `>>> 0`. */
export const DGRAM_SRC_ADDR = 2;
/** Source port (0 for ICMP kinds). */
export const DGRAM_SRC_PORT = 3;
/** The address the datagram was sent to (IP_PKTINFO, on a socket opened with `pktinfo`), else 0. */
export const DGRAM_DST_ADDR = 4;

/**
 * Columns of an error row in the reader's `errMeta` (one per entry of the socket error queue,
 * IP_RECVERR): DGRAM_ERR_ROW int32s per error.
 */
export const DGRAM_ERR_ROW = 10;
/** Negative errno, Node style (-111 = ECONNREFUSED for a port unreachable): see errnoName(). */
export const DGRAM_ERR_ERRNO = 0;
/** Where the error came from: SO_EE_ORIGIN_LOCAL (our own stack, e.g. EMSGSIZE over the path
 *  MTU) or SO_EE_ORIGIN_ICMP (an ICMP error received). */
export const DGRAM_ERR_ORIGIN = 1;
/** ICMP type and code of the error (origin ICMP; 0 otherwise). */
export const DGRAM_ERR_ICMP_TYPE = 2;
export const DGRAM_ERR_ICMP_CODE = 3;
/** Who sent the ICMP error (uint32 as int32 bits; 0 when not ICMP). */
export const DGRAM_ERR_OFFENDER = 4;
/** Destination of the datagram the error is about (uint32 as int32 bits) and its port (UDP; 0
 *  for ICMP kinds). */
export const DGRAM_ERR_DST_ADDR = 5;
export const DGRAM_ERR_DST_PORT = 6;
/** ee_info: the next-hop MTU for "fragmentation needed" / EMSGSIZE, the pointer of a parameter
 *  problem; else 0. */
export const DGRAM_ERR_INFO = 7;
/**
 * The quoted original, as the kernel returns it, in the slab at DGRAM_ERR_DATA_OFFSET (64-byte
 * aligned, after the batch's datagrams) for DGRAM_ERR_DATA_LENGTH bytes. For 'udp' it is our
 * datagram's payload (after the UDP header), as far as the ICMP error quoted it; for 'ping' and
 * 'raw-icmp' it is our ICMP message (from its ICMP header). Local errors quote nothing.
 */
export const DGRAM_ERR_DATA_OFFSET = 8;
export const DGRAM_ERR_DATA_LENGTH = 9;

/** SO_EE_ORIGIN_* values of DGRAM_ERR_ORIGIN (linux/errqueue.h). */
export const SO_EE_ORIGIN_NONE = 0;
export const SO_EE_ORIGIN_LOCAL = 1;
export const SO_EE_ORIGIN_ICMP = 2;

/**
 * Room one datagram takes in the slab while recvmmsg fills it (the largest IPv4 datagram), before
 * it is packed. A slab of budget x DGRAM_SLOT lets one recvmmsg call take a whole batch; the
 * minimum is one DGRAM_SLOT.
 */
export const DGRAM_SLOT = 65536;

export interface DgramOpenOptions {
  kind: 'udp' | 'ping' | 'raw-icmp';
  /** Local address, uint32 host order; default 0 (INADDR_ANY). */
  bindAddress?: number;
  /** 'udp': the port (0: an ephemeral one). 'ping': the echo identifier (0: the kernel picks).
   *  Ignored for 'raw-icmp'. */
  bindPort?: number;
  /** IP_RECVERR: ICMP and local errors go to the error queue, which the reader reports.
   *  Default true for 'udp' and 'ping', false for 'raw-icmp' (which sees ICMP errors as packets). */
  recvErr?: boolean;
  /** 'udp': IP_PKTINFO, so the reader reports each datagram's destination address (DGRAM_DST_ADDR)
   *  — on a socket bound to 0.0.0.0, which of the host's addresses the sender used. Default false. */
  pktinfo?: boolean;
  /** SO_RCVBUF/SO_SNDBUF request. With CAP_NET_ADMIN the *FORCE options pass net.core.rmem_max /
   *  wmem_max; without, the kernel caps the request there. */
  recvBufferSize?: number;
  sendBufferSize?: number;
}

export interface DgramOpenResult {
  /** Non-blocking, close-on-exec; owned by the caller (or by a reader started with closeFd). */
  fd: number;
  /** The bound port ('udp'), the echo identifier the kernel puts in requests ('ping'), 0 ('raw-icmp'). */
  port: number;
  /** The buffer sizes in effect, as the kernel reports them (twice the request: its bookkeeping). */
  recvBufferSize: number;
  sendBufferSize: number;
}

/** One TCP socket seen by sock_diag; `state` is the kernel's number (1 ESTABLISHED, 2 SYN_SENT, …). */
export interface TcpSocketInfo {
  state: number;
  src: number;
  sport: number;
  dst: number;
  dport: number;
}

/** What the TAP reader needs to answer the gateway's echo (TapPort.answerGatewayEcho). */
export interface FastEchoConfig {
  vnetHdrLen: number;
  macHi: number;
  macLo: number;
  ip: number;
  dnsIp: number;
  portFastPath: Float64Array;
  portCounters: Float64Array;
  gatewayFastPath: Float64Array;
  gatewayCounters: Float64Array;
}

export interface NativeAddon {
  readonly VNET_HDR_LEN: number;
  tapOpen(options: TapOpenOptions): TapOpenResult;
  setPersist(fd: number, on: boolean): void;
  /** 0 or -errno. */
  closeFd(fd: number): number;
  /** A close-on-exec duplicate of `fd`, or -errno (EMFILE...). */
  dupFd(fd: number): number;
  /** Bytes written or -errno. */
  write(fd: number, buf: Uint8Array, off: number, len: number): number;
  /** One frame from two pieces; bytes written or -errno. */
  writev(fd: number, b1: Uint8Array, o1: number, l1: number, b2: Uint8Array, o2: number, l2: number): number;
  /**
   * SIOCOUTQ of a TCP socket: bytes written but not yet acknowledged by the peer (a FIN not yet
   * acknowledged counts as one), or -errno (-EINVAL: a listening socket). Never throws for I/O.
   */
  socketOutq(fd: number): number;
  /**
   * SO_ERROR of a socket: its pending error as a positive errno (ECONNRESET after a reset), 0 if
   * none, or -errno. Reading it clears it. Never throws for I/O.
   */
  socketError(fd: number): number;
  startReader(
    fd: number,
    slab: Uint8Array,
    meta: Int32Array,
    maxFrame: number,
    budget: number,
    onBatch: (count: number, error: number) => void,
    closeFd: boolean,
  ): ReaderHandle;
  /** Stops reading now; closes the fd once libuv has let go of it, then calls onClosed. */
  closeReader(handle: ReaderHandle, onClosed?: () => void): void;
  pauseReader(handle: ReaderHandle, paused: boolean): void;
  /** The reader answers the gateway's ICMP echo itself (usernet_echo.c), or stops (null). */
  readerFastEcho(handle: ReaderHandle, config: FastEchoConfig | null): void;
  /**
   * The native echo answer on a buffer, for tests: turns the frame at [off, off+len) into the
   * reply in place and returns its length, or 0 (not an echo request it answers; untouched).
   */
  echoAnswer(frame: Uint8Array, off: number, len: number, vnetHdrLen: number, macHi: number, macLo: number, ip: number, dnsIp: number, maxRequest: number, maxReply: number, ipId: number): number;
  watchPid(pid: number, onExit: (status: number) => void): WatchHandle;
  /** The process at the other end of a connected UNIX socket (SO_PEERCRED). Throws with the errno. */
  peerCredentials(fd: number): { pid: number; uid: number; gid: number };
  /**
   * The IPv4 TCP sockets (every state but LISTEN) in a container's network namespace, by
   * sock_diag; addresses host-order. `truncated` is set when there were more than fit.
   */
  tcpSockets(target: { pid?: number; netnsPath?: string; usernsPath?: string }): TcpSocketInfo[] & { truncated?: boolean };
  unwatch(handle: WatchHandle): void;
  /**
   * usernet-slirp4netns --enable-sandbox (usernet_sandbox.c): pivots into an empty root holding
   * /etc and /run — in a mount namespace of the process's own, made before Node started — and
   * drops the calling thread's capabilities to CAP_NET_BIND_SERVICE.
   */
  sandboxEnter(): { etcReadOnly: boolean; runReadOnly: boolean; rootReadOnly: boolean; netBindService: boolean };
  /** --enable-seccomp: the deny-list filter on every thread (TSYNC). Returns how many calls it denies. */
  seccompDeny(): number;

  readonly DGRAM_SLOT: number;
  readonly DGRAM_ROW: number;
  readonly DGRAM_ERR_ROW: number;
  /**
   * Opens and binds a datagram socket. Throws Node-style errno errors (code, negative errno,
   * syscall: 'socket(...)', 'bind', 'setsockopt(...)', 'getsockname') whose one-line message says
   * what to do: EACCES/EPERM for a ping socket outside net.ipv4.ping_group_range or a raw socket
   * without CAP_NET_RAW, EACCES for a privileged port, EADDRINUSE, EADDRNOTAVAIL, EMFILE.
   */
  dgramOpen(options: DgramOpenOptions): DgramOpenResult;
  /**
   * One datagram to addr (uint32, host order; int32 bits from a row work too) and port; bytes sent
   * or -errno, never a throw for I/O errors (-EAGAIN: the send buffer is full, count a drop).
   * For 'ping'/'raw-icmp' `buf` holds the ICMP message and the port is ignored. A failure caused
   * by an earlier datagram's ICMP error (Linux reports it on the next send) is retried once.
   * A non-zero `srcAddr` (uint32) is the source address (IP_PKTINFO): the reply of a socket bound
   * to 0.0.0.0 leaves from the address its peer wrote to.
   */
  sendTo(fd: number, buf: Uint8Array, off: number, len: number, addr: number, port: number, srcAddr?: number): number;
  /**
   * Reads the socket in batches. On each wake: up to `budget` datagrams (recvmmsg) into `slab`,
   * a DGRAM_ROW row each in `meta`; then, if IP_RECVERR is on and an error is pending, up to
   * errMeta.length / DGRAM_ERR_ROW errors from the error queue, a DGRAM_ERR_ROW row each in
   * `errMeta`, quoted data in `slab` after the datagrams; then onBatch(count, errors) once, if
   * anything was read. Rows and slab bytes are valid only during the callback, so one slab and
   * one pair of arrays can serve every reader in the process.
   * A hard error (EBADF) stops reading for good and is reported once as onBatch(-errno, 0).
   * The reader keeps the process alive (refDgramReader(h, false) to change that).
   * @param slab at least DGRAM_SLOT bytes; budget x DGRAM_SLOT lets one syscall take a batch
   * @param meta at least budget x DGRAM_ROW int32s
   * @param errMeta at least DGRAM_ERR_ROW int32s
   * @param closeFd close the fd when the reader is closed
   */
  startDgramReader(
    fd: number,
    slab: Uint8Array,
    meta: Int32Array,
    budget: number,
    onBatch: (count: number, errors: number) => void,
    errMeta: Int32Array,
    closeFd: boolean,
  ): DgramReaderHandle;
  /** Stops reading now (no onBatch after this returns); closes the fd (closeFd) once libuv has
   *  let go of it, then calls onClosed. Idempotent. */
  closeDgramReader(handle: DgramReaderHandle, onClosed?: () => void): void;
  /** Stops or restarts polling; the kernel queues (then drops) what arrives meanwhile. */
  pauseDgramReader(handle: DgramReaderHandle, paused: boolean): void;
  /** Whether the reader keeps the event loop alive (default true). */
  refDgramReader(handle: DgramReaderHandle, ref: boolean): void;
}

/** The project root: the nearest directory above this file that holds binding.gyp. */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'binding.gyp'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new UsernetError('ERR_NATIVE_NOT_FOUND', 'cannot find the usernet package root (binding.gyp)');
    dir = parent;
  }
}

let cached: NativeAddon | undefined;

/**
 * Where scripts/build-addon.mjs (the package's install script) leaves node-gyp's output when the
 * build failed; the error below names it.
 */
const BUILD_LOG = join('build', 'addon-build.log');

/** How to build the addon from where this copy of usernet is: a dependency, or a checkout. */
function buildAdvice(root: string): string {
  const needs = 'it needs python3, make and a C compiler (Debian: apt-get install python3 make g++)';
  const log = join(root, BUILD_LOG);
  const lastTry = existsSync(log) ? `; the last build's output is in ${log}` : '';
  const how = root.split(/[\\/]/).includes('node_modules')
    ? 'run "npm rebuild usernet" in the project that depends on usernet'
    : `run "npm ci" or "npm rebuild" in ${root}`;
  return `${how}; ${needs}${lastTry}`;
}

/**
 * Loads the addon once, on first use: nothing loads it at import time, so `import('usernet')`
 * works where it was never built (installed with --ignore-scripts, or without a compiler), and
 * the in-memory switch, ports and codecs work there. What needs it — TAP ports, real host
 * sockets (the NAT, published ports), the daemon — throws UsernetError ERR_NATIVE_NOT_BUILT,
 * with the command that builds it, when the addon is missing or cannot be loaded.
 */
export function native(): NativeAddon {
  if (cached) return cached;
  const root = projectRoot();
  const path = join(root, 'build', 'Release', 'usernet_native.node');
  const what = "usernet's native addon (TAP ports, real host sockets, the daemon)";
  if (!existsSync(path)) {
    throw new UsernetError('ERR_NATIVE_NOT_BUILT', `${what} is not built: ${path} is missing. To build it, ${buildAdvice(root)}`);
  }
  const require = createRequire(import.meta.url);
  try {
    cached = require(path) as NativeAddon;
  } catch (err) {
    // Built for another Node ABI or machine, or cut short: say so instead of dlopen's raw words.
    const reason = (err instanceof Error ? err.message : String(err)).split('\n')[0];
    throw new UsernetError('ERR_NATIVE_NOT_BUILT', `${what} at ${path} cannot be loaded (${reason}). To rebuild it, ${buildAdvice(root)}`, { cause: err });
  }
  return cached;
}

/** Node's negative-errno convention to a name (EIO, EBADFD, ...), for counters and messages. */
export function errnoName(negErrno: number): string {
  try {
    return getSystemErrorName(negErrno);
  } catch {
    return `errno ${-negErrno}`;
  }
}
