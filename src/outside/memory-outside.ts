/**
 * An in-memory "outside" for the NAT: a HostStack whose sockets lead to hosts a test scripts,
 * instead of the real host's kernel. It needs neither the addon nor a network, and it is driven
 * entirely by a Clock and a Random: with a VirtualClock and a SeededRandom, the same script gives
 * the same events in the same order, and hours of protocol time pass in microseconds.
 *
 *   the NAT ──HostStack──▶ MemoryOutside ──▶ outside.host('203.0.113.10')   listenTcp, bindUdp, pings
 *   (the "local" machine:                    outside.host('127.0.0.1')       the host's loopback
 *    hostAddress + 127.0.0.1)        ◀────── outside clients                 connectTcp / UDP to published ports
 *
 * Every packet takes `latencyMs` one way (default 1 ms) on the clock: nothing the outside does
 * calls back into the NAT synchronously, and nothing runs on timers or microtasks the test does not
 * control. Failures are the kernel's: a connect to a host with no listener is refused
 * (ECONNREFUSED), one to an address with no host is unanswered (the NAT's connect timeout) or
 * EHOSTUNREACH as configured, a bind of a port in use fails with EADDRINUSE, a datagram to a
 * closed port comes back as an ICMP port unreachable. Ephemeral ports come from the Random.
 *
 * Usage (test/unit/nat/nat-memory.test.ts has the whole story):
 *
 *   const clock = new VirtualClock();
 *   const random = new SeededRandom(42);
 *   const outside = new MemoryOutside({ clock, random });
 *   outside.host('203.0.113.10').serveHttp(80, (req) => `hello from ${req.path}\n`);
 *   outside.host('203.0.113.10').bindUdp(53, (d) => d.reply(answer(d.data)));
 *   const nat = new Nat({ log, clock, random, host: outside });
 *   // ... the container's frames go in through the gateway; then:
 *   clock.advance(10);                                   // everything due in 10 ms happens, in order
 *   const client = outside.host('203.0.113.20').connectTcp(8080);   // a client of a published port
 *
 * Simplifications (each says what a test cannot rely on): TCP has no window or loss (a write is
 * delivered whole after the latency, and "acknowledged" on arrival); a port is in use on a machine
 * whatever address it was bound to; IPv6 is not modelled ('::' binds behave as 0.0.0.0).
 */
import { buildDnsResponse, DNS_FLAG_QR, DNS_RCODE_FORMERR, DNS_RCODE_NOERROR, DNS_RCODE_NXDOMAIN, DNS_TYPE_A, readDnsMessage } from '../packet/dns.js';
import { InvalidArgumentError } from '../errors.js';
import type { Clock, Timer } from '../platform/clock.js';
import type {
  HostDatagramOptions,
  HostDatagramSocket,
  HostRemoteInfo,
  HostStack,
  HostTcpConnectOptions,
  HostTcpListenOptions,
  HostTcpOnread,
  HostTcpServer,
  HostTcpServerOptions,
  HostTcpSocket,
  NatDatagramError,
  NatDatagramOptions,
  NatDatagramReceiver,
  NatDatagramSocket,
} from '../platform/host-stack.js';
import type { Random } from '../platform/random.js';
import { ipv4ToString, tryParseIpv4 } from '../packet/ip-address.js';

const LOOPBACK = 0x7f000001;
const EPHEMERAL_FIRST = 32768;
const EPHEMERAL_COUNT = 61000 - 32768;
/** What an ICMP error quotes of a datagram (RFC 1812: as much as fits 576 bytes). */
const ICMP_QUOTE_MAX = 576 - 28 - 28;
const SO_EE_ORIGIN_ICMP = 2;

/** errno values (Linux) of the failures the outside produces. */
const ERRNO: Record<string, number> = {
  ECONNREFUSED: 111,
  ECONNRESET: 104,
  EHOSTUNREACH: 113,
  EADDRINUSE: 98,
  EADDRNOTAVAIL: 99,
  EPERM: 1,
  EPIPE: 32,
  EINVAL: 22,
};

/** An Error shaped as Node's system errors are (`code`, `errno` negative, `syscall`). */
export function systemError(code: string, syscall: string, detail = ''): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`${syscall} ${code}${detail ? ` ${detail}` : ''}`);
  err.code = code;
  err.errno = -(ERRNO[code] ?? 5);
  err.syscall = syscall;
  return err;
}

export interface MemoryOutsideOptions {
  clock: Clock;
  random: Random;
  /** One-way latency of every packet, ms (default 1). */
  latencyMs?: number;
  /** The host's own address on the outside: the source outside hosts see, where published ports are reached. Default 198.51.100.1. */
  hostAddress?: string;
  /**
   * What a connect to an address with no host gets: 'timeout' (no answer: the NAT's connect
   * timeout decides, the default) or 'EHOSTUNREACH' (after `unreachableAfterMs`, default 3000,
   * Linux's ARP giving up).
   */
  unreachable?: 'timeout' | 'EHOSTUNREACH';
  unreachableAfterMs?: number;
  /** Keep a line per packet-level event in `trace` (what a determinism test compares). */
  trace?: boolean;
}

type Listener = (...args: never[]) => void;

/** A minimal, synchronous event emitter: 'error' without a listener is kept, never thrown. */
class Emitter {
  private listeners = new Map<string, Array<{ fn: Listener; once: boolean }>>();
  on(event: string, fn: Listener): this {
    let l = this.listeners.get(event);
    if (!l) this.listeners.set(event, (l = []));
    l.push({ fn, once: false });
    return this;
  }
  once(event: string, fn: Listener): this {
    let l = this.listeners.get(event);
    if (!l) this.listeners.set(event, (l = []));
    l.push({ fn, once: true });
    return this;
  }
  off(event: string, fn: Listener): this {
    const l = this.listeners.get(event);
    if (l) {
      const i = l.findIndex((x) => x.fn === fn);
      if (i >= 0) l.splice(i, 1);
    }
    return this;
  }
  protected emit(event: string, ...args: unknown[]): boolean {
    const l = this.listeners.get(event);
    if (!l || l.length === 0) return false;
    for (const x of [...l]) {
      if (x.once) this.off(event, x.fn);
      (x.fn as (...a: unknown[]) => void)(...args);
    }
    return true;
  }
}

/** A machine: its TCP listeners and UDP endpoints by port, and whether it answers pings. */
class Machine {
  readonly tcp = new Map<number, { bindAddr: number; accept: (s: MemoryTcpSocket) => void }>();
  readonly udp = new Map<number, { bindAddr: number; receive: (data: Buffer, src: number, sport: number, dst: number) => void }>();
  /** Ports of connections this machine made (so two never share one). */
  readonly connectPorts = new Set<number>();
  answersPings = true;
  pingsReceived = 0;
  constructor(readonly name: string) {}
}

/**
 * One end of an in-memory TCP connection: the NAT's host socket (a HostTcpSocket) or the
 * scripted end an outside host holds (OutsideTcpConnection). Written bytes reach the peer after
 * the latency; a reset reaches it as ECONNRESET.
 */
export class MemoryTcpSocket extends Emitter implements HostTcpSocket {
  remoteAddress: string | undefined;
  remotePort: number | undefined;
  localAddress: string | undefined;
  localPort: number | undefined;
  readonly writableLength = 0;
  writableEnded = false;
  writableFinished = false;
  destroyed = false;
  connected = false;
  /** The peer's FIN arrived (and was delivered). */
  readableEnded = false;
  /** The connection was reset by the peer (or refused/unreachable: see `error`). */
  wasReset = false;
  closed = false;
  error: NodeJS.ErrnoException | null = null;
  /** Bytes written that have not reached the peer yet. */
  inFlight = 0;
  bytesReceived = 0;
  private readonly chunks: Buffer[] = [];
  peer: MemoryTcpSocket | null = null;
  private paused = false;
  /** Arrivals held while paused, in order ('end' as null). */
  private held: Array<Buffer | null> = [];
  /** The part of an arrival an `onread` callback paused in front of (already counted). */
  private unread: Buffer | null = null;
  private idleMs = 0;
  private idleTimer: Timer | null = null;
  private idleCb: (() => void) | null = null;
  /** The connect in progress (cancelled by destroy). */
  pendingTimer: Timer | null = null;
  /**
   * Node's `onread` (HostTcpConnectOptions): arrivals are copied into its buffer, a buffer's
   * length at a time, and handed to its callback instead of a 'data' event; `false` pauses.
   */
  onread: HostTcpConnectOptions['onread'] = undefined;

  constructor(
    private readonly outside: MemoryOutside,
    /** Keep what arrives (the scripted ends do; the NAT's do not need to). */
    private readonly record: boolean,
  ) {
    super();
  }

  /** Everything received so far. */
  received(): Buffer {
    return Buffer.concat(this.chunks);
  }
  text(): string {
    return this.received().toString();
  }

  write(data: Uint8Array | string, cb?: (err?: Error | null) => void): boolean {
    const o = this.outside;
    if (this.destroyed || this.writableEnded || this.peer === null) {
      const err = systemError('EPIPE', 'write');
      if (cb) o.later(0, () => cb(err));
      return false;
    }
    const copy = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
    this.inFlight += copy.length;
    this.touchIdle();
    const peer = this.peer;
    o.note(`tcp ${this.localAddress}:${this.localPort} > ${this.remoteAddress}:${this.remotePort} data ${copy.length}`);
    o.later(o.latencyMs, () => {
      this.inFlight -= copy.length;
      peer.arrive(copy, this);
    });
    if (cb) o.later(0, () => cb(null));
    return true;
  }

  end(data?: Uint8Array | string): this {
    if (data !== undefined) this.write(data);
    if (this.writableEnded || this.destroyed) return this;
    this.writableEnded = true;
    const o = this.outside;
    const peer = this.peer;
    o.note(`tcp ${this.localAddress}:${this.localPort} > ${this.remoteAddress}:${this.remotePort} FIN`);
    if (peer) o.later(o.latencyMs, () => peer.arrive(null, this));
    o.later(0, () => {
      if (this.writableFinished) return;
      this.writableFinished = true;
      this.emit('finish');
      this.maybeClose();
    });
    return this;
  }

  /** Closes: a FIN if not sent yet, or a RST when received data is left unread (as Linux does). */
  destroy(): this {
    if (this.destroyed) return this;
    if (this.unread !== null || this.held.some((h) => h !== null)) return this.resetAndDestroy();
    if (!this.writableEnded && this.peer && this.connected) this.end();
    this.finishLocally();
    return this;
  }

  resetAndDestroy(): this {
    if (this.destroyed) return this;
    const o = this.outside;
    const peer = this.peer;
    if (peer && this.connected) {
      o.note(`tcp ${this.localAddress}:${this.localPort} > ${this.remoteAddress}:${this.remotePort} RST`);
      o.later(o.latencyMs, () => peer.arriveReset());
    }
    this.finishLocally();
    return this;
  }

  /** Scripted ends: reset the connection. */
  reset(): void {
    this.resetAndDestroy();
  }

  pause(): this {
    this.paused = true;
    return this;
  }

  resume(): this {
    if (!this.paused) return this;
    this.paused = false;
    // What arrived meanwhile is delivered on the clock, never inside resume() itself.
    if (this.held.length > 0 || this.unread !== null) this.outside.later(0, () => this.flushHeld());
    return this;
  }

  setTimeout(ms: number, cb?: () => void): this {
    this.idleMs = ms;
    if (cb) this.idleCb = cb;
    this.touchIdle();
    return this;
  }

  private touchIdle(): void {
    const o = this.outside;
    o.clock.clear(this.idleTimer);
    this.idleTimer = null;
    if (this.idleMs > 0 && !this.destroyed) {
      this.idleTimer = o.clock.setTimeout(() => {
        this.idleTimer = null;
        this.emit('timeout');
        this.idleCb?.();
      }, this.idleMs);
    }
  }

  /** The connection is up (this end learns it). */
  connectedNow(): void {
    if (this.destroyed) return;
    this.connected = true;
    this.emit('connect');
  }

  /** A failed connect: the error, then close. */
  failConnect(err: NodeJS.ErrnoException): void {
    if (this.destroyed) return;
    this.error = err;
    this.emit('error', err);
    this.finishLocally();
  }

  /** Data (or, as null, the FIN) from the peer. */
  arrive(data: Buffer | null, from: MemoryTcpSocket): void {
    if (this.destroyed) {
      // Data to a closed socket is answered with a RST.
      if (data !== null && !from.destroyed) this.outside.later(this.outside.latencyMs, () => from.arriveReset());
      return;
    }
    if (this.paused || this.held.length > 0 || this.unread !== null) {
      this.held.push(data);
      return;
    }
    this.deliver(data);
  }

  private flushHeld(): void {
    if (this.unread !== null && !this.paused && !this.destroyed) {
      const rest = this.unread;
      this.unread = null;
      this.handToOnread(rest);
    }
    while (!this.paused && this.held.length > 0 && !this.destroyed) this.deliver(this.held.shift() as Buffer | null);
  }

  private deliver(data: Buffer | null): void {
    this.touchIdle();
    if (data === null) {
      this.readableEnded = true;
      this.emit('end');
      this.maybeClose();
      return;
    }
    this.bytesReceived += data.length;
    if (this.record) this.chunks.push(data);
    if (this.onread === undefined) this.emit('data', data);
    else this.handToOnread(data);
  }

  private handToOnread(data: Buffer): void {
    const { buffer: given, callback } = this.onread as NonNullable<HostTcpConnectOptions['onread']>;
    for (let off = 0; off < data.length && !this.destroyed; ) {
      // A function is asked for the buffer before every read, as Node does.
      const buffer = typeof given === 'function' ? given() : given;
      const n = Math.min(buffer.length, data.length - off);
      buffer.set(data.subarray(off, off + n), 0);
      off += n;
      if (callback(n, buffer) === false) {
        // As Node does: reading stops; the rest of this arrival waits for resume().
        this.paused = true;
        if (off < data.length) this.unread = data.subarray(off);
        return;
      }
    }
  }

  arriveReset(): void {
    if (this.destroyed) return;
    this.held = [];
    this.unread = null;
    this.wasReset = true;
    const err = systemError('ECONNRESET', 'read');
    this.error = err;
    this.emit('error', err);
    this.finishLocally();
  }

  /** Both directions done: the socket closes by itself. */
  private maybeClose(): void {
    if (this.readableEnded && this.writableFinished && !this.destroyed) this.finishLocally();
  }

  private finishLocally(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    const o = this.outside;
    o.clock.clear(this.idleTimer);
    o.clock.clear(this.pendingTimer);
    this.idleTimer = null;
    this.pendingTimer = null;
    o.releaseConnectPort(this);
    o.later(0, () => {
      this.closed = true;
      this.emit('close', this.error !== null);
    });
  }
}

/** The end of a TCP connection an outside host holds (or the host's loopback services). */
export type OutsideTcpConnection = MemoryTcpSocket;

/** A published port's listener (or any TCP server the NAT opens), on the local machine. */
class MemoryTcpServer extends Emitter implements HostTcpServer {
  private bound: { address: string; port: number } | null = null;
  private readonly open = new Set<MemoryTcpSocket>();
  constructor(
    private readonly outside: MemoryOutside,
    private readonly options: HostTcpServerOptions,
  ) {
    super();
  }

  listen(options: HostTcpListenOptions, callback?: () => void): this {
    const o = this.outside;
    o.later(0, () => {
      const addr = o.localBindAddress(options.host);
      if (addr < 0) {
        this.emit('error', systemError('EADDRNOTAVAIL', 'listen', `${options.host}:${options.port}`));
        return;
      }
      const m = o.local;
      const port = options.port === 0 ? o.ephemeral(m.tcp) : options.port;
      if (m.tcp.has(port)) {
        this.emit('error', systemError('EADDRINUSE', 'listen', `${options.host}:${port}`));
        return;
      }
      m.tcp.set(port, {
        bindAddr: addr,
        accept: (s) => {
          if (this.options.pauseOnConnect) s.pause();
          this.open.add(s);
          s.once('close', () => this.open.delete(s));
          this.emit('connection', s);
        },
      });
      this.bound = { address: options.host === '::' ? '0.0.0.0' : options.host, port };
      o.note(`tcp listen ${this.bound.address}:${port}`);
      this.emit('listening');
      callback?.();
    });
    return this;
  }

  address(): { address: string; family: string; port: number } | null {
    return this.bound ? { address: this.bound.address, family: 'IPv4', port: this.bound.port } : null;
  }

  /** Stops listening now; `callback` once every accepted connection has closed, as net.Server does. */
  close(callback?: (err?: Error) => void): this {
    const o = this.outside;
    const b = this.bound;
    if (b !== null) {
      o.local.tcp.delete(b.port);
      this.bound = null;
    }
    const done = (): void => {
      if (this.open.size === 0) o.later(0, () => callback?.());
      else o.later(o.latencyMs, done);
    };
    done();
    return this;
  }
}

/** A datagram an outside host received. */
export interface OutsideDatagram {
  data: Buffer;
  from: string;
  fromPort: number;
  /** The address it was sent to. */
  to: string;
  /** Answers from the port it arrived on. */
  reply(data: Uint8Array | string): void;
}

/** A UDP port bound on an outside host. */
export interface OutsideUdpSocket {
  readonly port: number;
  received: OutsideDatagram[];
  send(data: Uint8Array | string, address: string, port: number): void;
  close(): void;
}

export interface OutsideTcpListener {
  readonly port: number;
  /** Every connection accepted, in order. */
  readonly connections: OutsideTcpConnection[];
  close(): void;
}

/** What serveHttp's handler gets. */
export interface HttpRequest {
  method: string;
  path: string;
  version: string;
  headers: Record<string, string>;
  body: Buffer;
}
export type HttpAnswer = string | Buffer | { status?: number; body?: string | Buffer; headers?: Record<string, string> };

const HTTP_REASONS: Record<number, string> = { 200: 'OK', 204: 'No Content', 400: 'Bad Request', 404: 'Not Found', 500: 'Internal Server Error' };

/** A host on the outside (or the host's own loopback), as a test scripts it. */
export class OutsideHost {
  constructor(
    readonly outside: MemoryOutside,
    readonly address: string,
    /** uint32 */
    readonly addr: number,
    readonly machine: Machine,
  ) {}

  /** Whether it answers ping (default yes). */
  get answersPings(): boolean {
    return this.machine.answersPings;
  }
  set answersPings(on: boolean) {
    this.machine.answersPings = on;
  }
  get pingsReceived(): number {
    return this.machine.pingsReceived;
  }

  /** Listens on `port`; each connection is handed over as it is accepted. Throws EADDRINUSE. */
  listenTcp(port: number, onConnection: (c: OutsideTcpConnection) => void = () => {}): OutsideTcpListener {
    const m = this.machine;
    if (m.tcp.has(port)) throw systemError('EADDRINUSE', 'listen', `${this.address}:${port}`);
    const connections: OutsideTcpConnection[] = [];
    m.tcp.set(port, {
      bindAddr: this.addr,
      accept: (s) => {
        connections.push(s);
        onConnection(s);
      },
    });
    return {
      port,
      connections,
      close: () => {
        if (m.tcp.get(port)?.bindAddr === this.addr) m.tcp.delete(port);
      },
    };
  }

  /**
   * Connects from this host to `address:port` (default: the host's address, or 127.0.0.1 from
   * the loopback host) — a client of a published port. Its 'connect' or 'error' comes later.
   */
  connectTcp(port: number, address?: string): OutsideTcpConnection {
    const o = this.outside;
    const to = address ?? (this.addr === LOOPBACK ? '127.0.0.1' : o.hostAddress);
    return o.connect(this.machine, this.addr, to, port, true);
  }

  /** Binds a UDP port (0: an ephemeral one). Throws EADDRINUSE. */
  bindUdp(port: number, onDatagram: (d: OutsideDatagram) => void = () => {}): OutsideUdpSocket {
    const o = this.outside;
    const m = this.machine;
    const p = port === 0 ? o.ephemeral(m.udp) : port;
    if (m.udp.has(p)) throw systemError('EADDRINUSE', 'bind', `${this.address}:${p}`);
    const received: OutsideDatagram[] = [];
    const send = (data: Uint8Array | string, address: string, toPort: number): void => {
      const dst = tryParseIpv4(address);
      if (dst < 0) throw systemError('EINVAL', 'send', address);
      const copy = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data);
      o.sendDatagram(this.addr, p, dst, toPort, copy, null);
    };
    m.udp.set(p, {
      bindAddr: this.addr,
      receive: (data, src, sport, dst) => {
        const d: OutsideDatagram = { data, from: ipv4ToString(src), fromPort: sport, to: ipv4ToString(dst), reply: (r) => send(r, ipv4ToString(src), sport) };
        received.push(d);
        onDatagram(d);
      },
    });
    return {
      port: p,
      received,
      send,
      close: () => {
        if (m.udp.get(p)?.bindAddr === this.addr) m.udp.delete(p);
      },
    };
  }

  /** One datagram from an ephemeral port of this host (one port per call). */
  sendUdp(address: string, port: number, data: Uint8Array | string): OutsideUdpSocket {
    const s = this.bindUdp(0);
    s.send(data, address, port);
    return s;
  }

  /**
   * A small HTTP/1.0 server: the request line and headers are parsed, a body of Content-Length
   * bytes waited for, and the handler's answer sent with its Content-Length, then the connection
   * is closed (HTTP/1.0: one request per connection). A malformed request gets 400.
   */
  /**
   * A DNS server on UDP `port` (default 53) answering A queries from `records` (name → IPv4
   * addresses; names compared case-insensitively, without a trailing dot), NXDOMAIN for names
   * it does not have, an empty answer for other types of names it has, FORMERR for what is not
   * a query. Point a Lab's `dnsUpstreams` at it.
   */
  serveDns(records: Record<string, string[]>, port = 53, ttl = 60): OutsideUdpSocket {
    const table = new Map<string, Uint8Array[]>();
    for (const [name, addrs] of Object.entries(records)) {
      table.set(name.toLowerCase().replace(/\.$/, ''), addrs.map((a) => {
        const n = tryParseIpv4(a);
        if (n < 0) throw new InvalidArgumentError(`serveDns: ${a} (for ${name}) is not an IPv4 address`);
        return Uint8Array.of(n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255);
      }));
    }
    return this.bindUdp(port, (d) => {
      const q = readDnsMessage(d.data, 0, d.data.length);
      if (!q || (q.flags & DNS_FLAG_QR) !== 0 || q.questions.length !== 1) {
        if (q) d.reply(buildDnsResponse(q, DNS_RCODE_FORMERR, []));
        return;
      }
      const question = q.questions[0];
      const addrs = table.get(question.name.toLowerCase());
      if (!addrs) return d.reply(buildDnsResponse(q, DNS_RCODE_NXDOMAIN, []));
      const answers = question.type === DNS_TYPE_A ? addrs.map((data) => ({ name: question.name, type: DNS_TYPE_A, ttl, data })) : [];
      d.reply(buildDnsResponse(q, DNS_RCODE_NOERROR, answers));
    });
  }

  serveHttp(port: number, handler: (req: HttpRequest) => HttpAnswer): OutsideTcpListener {
    return this.listenTcp(port, (c) => {
      let buf = Buffer.alloc(0);
      let answered = false;
      const answer = (status: number, body: Buffer, headers: Record<string, string>): void => {
        answered = true;
        const head = [`HTTP/1.0 ${status} ${HTTP_REASONS[status] ?? 'Unknown'}`, `Content-Length: ${body.length}`, 'Connection: close', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
        c.write(Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`), body]));
        c.end();
      };
      const tryParse = (): void => {
        if (answered) return;
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
        const m = /^([A-Z]+) (\S+) (HTTP\/\d\.\d)$/.exec(lines[0] ?? '');
        if (!m) {
          answer(400, Buffer.from('bad request line\n'), {});
          return;
        }
        const headers: Record<string, string> = {};
        for (const l of lines.slice(1)) {
          const i = l.indexOf(':');
          if (i <= 0) {
            answer(400, Buffer.from('bad header\n'), {});
            return;
          }
          headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
        }
        const len = headers['content-length'] === undefined ? 0 : Number(headers['content-length']);
        if (!Number.isInteger(len) || len < 0) {
          answer(400, Buffer.from('bad Content-Length\n'), {});
          return;
        }
        if (buf.length < end + 4 + len) return;
        const req: HttpRequest = { method: m[1]!, path: m[2]!, version: m[3]!, headers, body: Buffer.from(buf.subarray(end + 4, end + 4 + len)) };
        const a = handler(req);
        if (typeof a === 'string' || Buffer.isBuffer(a)) answer(200, Buffer.from(a), {});
        else answer(a.status ?? 200, Buffer.from(a.body ?? ''), a.headers ?? {});
      };
      c.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        tryParse();
      });
      c.on('end', () => {
        if (!answered) answer(400, Buffer.from('incomplete request\n'), {});
      });
    });
  }
}

/** A NAT datagram socket on the local machine. */
class MemoryNatDatagram implements NatDatagramSocket {
  closed = false;
  constructor(
    private readonly outside: MemoryOutside,
    readonly kind: 'udp' | 'icmp',
    readonly port: number,
    readonly bindAddr: number,
    private readonly receiver: NatDatagramReceiver,
    private readonly recvErr: boolean,
    private readonly pktinfo: boolean,
  ) {}

  sendTo(data: Uint8Array, off: number, len: number, addr: number, port: number, srcAddr?: number): number {
    if (this.closed) return -9;
    const o = this.outside;
    const copy = Buffer.from(data.subarray(off, off + len));
    const src = srcAddr || ((addr >>> 24) === 127 ? LOOPBACK : this.bindAddr || o.hostAddr);
    if (this.kind === 'icmp') {
      if (len < 8) return -ERRNO.EINVAL!;
      copy.writeUInt16BE(this.port, 4);
      o.ping(src, addr, copy, this);
      return len;
    }
    o.sendDatagram(src, this.port, addr, port, copy, this);
    return len;
  }

  deliver(data: Buffer, src: number, sport: number, dst: number): void {
    if (!this.closed) this.receiver.datagram(data, 0, data.length, src, sport, this.pktinfo ? dst : 0);
  }

  icmpError(e: NatDatagramError): void {
    if (!this.closed && this.recvErr) this.receiver.error?.(e);
  }

  close(onClosed?: () => void): void {
    if (this.closed) return;
    this.closed = true;
    this.outside.unbindNat(this);
    this.outside.later(0, () => onClosed?.());
  }
}

/** A dgram-like socket on the local machine (the DNS forwarder's, an IPv6 published port's). */
class MemoryDatagramSocket extends Emitter implements HostDatagramSocket {
  private port = 0;
  private bindAddr = 0;
  private remote: { addr: number; port: number } | null = null;
  private closedFlag = false;
  constructor(private readonly outside: MemoryOutside) {
    super();
  }
  bind(options: { address?: string; port?: number; exclusive?: boolean }, callback?: () => void): void {
    const o = this.outside;
    o.later(0, () => {
      const addr = o.localBindAddress(options.address ?? '0.0.0.0');
      if (addr < 0) {
        this.emit('error', systemError('EADDRNOTAVAIL', 'bind', options.address));
        return;
      }
      const m = o.local;
      const port = options.port ? options.port : o.ephemeral(m.udp);
      if (m.udp.has(port)) {
        this.emit('error', systemError('EADDRINUSE', 'bind', `${options.address ?? '0.0.0.0'}:${port}`));
        return;
      }
      this.port = port;
      this.bindAddr = addr;
      m.udp.set(port, { bindAddr: addr, receive: (data, src, sport) => this.message(data, src, sport) });
      this.emit('listening');
      callback?.();
    });
  }
  connect(port: number, address: string, callback?: () => void): void {
    const addr = tryParseIpv4(address);
    const o = this.outside;
    o.later(0, () => {
      if (addr < 0) {
        this.emit('error', systemError('EINVAL', 'connect', address));
        return;
      }
      if (this.port === 0) {
        this.port = o.ephemeral(o.local.udp);
        o.local.udp.set(this.port, { bindAddr: 0, receive: (data, src, sport) => this.message(data, src, sport) });
      }
      this.remote = { addr, port };
      this.emit('connect');
      callback?.();
    });
  }
  send(msg: Uint8Array, ...rest: unknown[]): void {
    const o = this.outside;
    let port: number;
    let addr: number;
    let cb: ((err: Error | null, bytes: number) => void) | undefined;
    if (typeof rest[0] === 'number') {
      port = rest[0];
      addr = tryParseIpv4(String(rest[1]).replace(/^::ffff:/, ''));
      cb = rest[2] as typeof cb;
    } else {
      cb = rest[0] as typeof cb;
      port = this.remote?.port ?? 0;
      addr = this.remote?.addr ?? -1;
    }
    if (addr < 0 || this.closedFlag) {
      const err = systemError(this.closedFlag ? 'EPIPE' : 'EINVAL', 'send');
      o.later(0, () => (cb ? cb(err, 0) : this.emit('error', err)));
      return;
    }
    if (this.port === 0) {
      this.port = o.ephemeral(o.local.udp);
      o.local.udp.set(this.port, { bindAddr: 0, receive: (data, src, sport) => this.message(data, src, sport) });
    }
    const src = (addr >>> 24) === 127 ? LOOPBACK : this.bindAddr || o.hostAddr;
    o.sendDatagram(src, this.port, addr, port, Buffer.from(msg), null);
    if (cb) o.later(0, () => cb(null, msg.length));
  }
  private message(data: Buffer, src: number, sport: number): void {
    if (this.closedFlag) return;
    if (this.remote && (this.remote.addr !== src || this.remote.port !== sport)) return;
    const rinfo: HostRemoteInfo = { address: ipv4ToString(src), family: 'IPv4', port: sport, size: data.length };
    this.emit('message', data, rinfo);
  }
  address(): { address: string; family: string; port: number } {
    return { address: ipv4ToString(this.bindAddr), family: 'IPv4', port: this.port };
  }
  close(callback?: () => void): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    const m = this.outside.local;
    if (this.port !== 0 && m.udp.get(this.port)?.receive !== undefined) m.udp.delete(this.port);
    this.outside.later(0, () => {
      this.emit('close');
      callback?.();
    });
  }
  unref(): void {}
}

/**
 * The in-memory outside. `host(address)` gives the scripted host at that address (created on
 * first use; '127.0.0.1' is the host's own loopback, where 10.0.2.2 leads).
 */
export class MemoryOutside implements HostStack {
  readonly kind = 'memory' as const;
  readonly clock: Clock;
  readonly random: Random;
  readonly latencyMs: number;
  readonly hostAddress: string;
  readonly hostAddr: number;
  readonly unreachable: 'timeout' | 'EHOSTUNREACH';
  readonly unreachableAfterMs: number;
  /** Packet-level events, one line each, when `trace` is on. */
  readonly trace: string[] = [];
  private readonly tracing: boolean;
  /** The machine the NAT runs on: hostAddress and 127.0.0.0/8. */
  readonly local = new Machine('local');
  private readonly machines = new Map<number, Machine>();
  private readonly hosts = new Map<number, OutsideHost>();
  /** NAT ping sockets by identifier. */
  private readonly pingIds = new Map<number, MemoryNatDatagram>();
  /** The error given to NAT receivers, reused as the system stack's is. */
  private readonly err: NatDatagramError = { errno: 0, origin: 0, icmpType: 0, icmpCode: 0, offender: 0, dstAddr: 0, dstPort: 0, info: 0, data: new Uint8Array(0), dataOffset: 0, dataLength: 0 };

  constructor(options: MemoryOutsideOptions) {
    this.clock = options.clock;
    this.random = options.random;
    this.latencyMs = options.latencyMs ?? 1;
    this.hostAddress = options.hostAddress ?? '198.51.100.1';
    this.hostAddr = tryParseIpv4(this.hostAddress);
    if (this.hostAddr < 0) throw new InvalidArgumentError(`MemoryOutside: hostAddress ${this.hostAddress} is not an IPv4 address`);
    this.unreachable = options.unreachable ?? 'timeout';
    this.unreachableAfterMs = options.unreachableAfterMs ?? 3000;
    this.tracing = options.trace ?? false;
    this.hosts.set(LOOPBACK, new OutsideHost(this, '127.0.0.1', LOOPBACK, this.local));
  }

  /** The scripted host at `address` (created on first use). */
  host(address: string): OutsideHost {
    const addr = tryParseIpv4(address);
    if (addr < 0) throw new InvalidArgumentError(`MemoryOutside.host: ${address} is not an IPv4 address (outside hosts are addressed by IPv4, e.g. 203.0.113.10)`);
    let h = this.hosts.get(addr);
    if (h) return h;
    if (addr >>> 24 === 127 || addr === this.hostAddr) return this.hosts.get(LOOPBACK) as OutsideHost;
    const m = new Machine(address);
    this.machines.set(addr, m);
    h = new OutsideHost(this, address, addr, m);
    this.hosts.set(addr, h);
    return h;
  }

  /** Removes a host: its address answers nothing any more. */
  removeHost(address: string): void {
    const addr = tryParseIpv4(address);
    if (addr === LOOPBACK || addr < 0) return;
    this.machines.delete(addr);
    this.hosts.delete(addr);
  }

  // ---- HostStack ------------------------------------------------------------------------------

  createDatagramSocket(options: HostDatagramOptions): HostDatagramSocket {
    void options;
    return new MemoryDatagramSocket(this);
  }

  createTcpConnection(options: HostTcpConnectOptions): HostTcpSocket {
    const dst = tryParseIpv4(options.host);
    if (dst < 0) throw systemError('EINVAL', 'connect', options.host);
    const from = (dst >>> 24) === 127 ? LOOPBACK : options.localAddress ? tryParseIpv4(options.localAddress) : this.hostAddr;
    if (from < 0 || (from !== this.hostAddr && from >>> 24 !== 127)) {
      const s = new MemoryTcpSocket(this, false);
      this.later(0, () => s.failConnect(systemError('EADDRNOTAVAIL', 'connect', options.localAddress)));
      return s;
    }
    const s = this.connect(this.local, from, options.host, options.port, false);
    s.onread = options.onread;
    return s;
  }

  createTcpServer(options: HostTcpServerOptions): HostTcpServer {
    return new MemoryTcpServer(this, options);
  }

  openNatDatagram(options: NatDatagramOptions, receiver: NatDatagramReceiver): NatDatagramSocket {
    if (options.kind === 'icmp-raw') throw systemError('EPERM', 'socket', '(MemoryOutside has ping sockets only)');
    const bindAddr = options.bindAddress ?? 0;
    if (bindAddr !== 0 && bindAddr !== this.hostAddr && bindAddr >>> 24 !== 127) throw systemError('EADDRNOTAVAIL', 'bind', ipv4ToString(bindAddr));
    const recvErr = options.recvErr ?? true;
    if (options.kind === 'icmp') {
      let id = options.bindPort ?? 0;
      if (id === 0) {
        do id = 1 + this.random.below(65535);
        while (this.pingIds.has(id));
      } else if (this.pingIds.has(id)) throw systemError('EADDRINUSE', 'bind', `ping identifier ${id}`);
      const s = new MemoryNatDatagram(this, 'icmp', id, bindAddr, receiver, recvErr, false);
      this.pingIds.set(id, s);
      return s;
    }
    const m = this.local;
    const port = options.bindPort ? options.bindPort : this.ephemeral(m.udp);
    if (m.udp.has(port)) throw systemError('EADDRINUSE', 'bind', `${ipv4ToString(bindAddr)}:${port}`);
    const s = new MemoryNatDatagram(this, 'udp', port, bindAddr, receiver, recvErr, options.pktinfo ?? false);
    m.udp.set(port, { bindAddr, receive: (data, src, sport, dst) => s.deliver(data, src, sport, dst) });
    this.note(`udp bind ${ipv4ToString(bindAddr)}:${port}`);
    return s;
  }

  /** Memory sockets have no fd to write to: the NAT writes through write(). */
  tcpWriteDirect(): number {
    return -1;
  }

  tcpUnacknowledged(socket: HostTcpSocket): number {
    return socket instanceof MemoryTcpSocket && !socket.destroyed ? socket.inFlight : -1;
  }

  tcpPendingError(): number {
    return 0;
  }

  tcpAdoptWithOnread(socket: HostTcpSocket, onread: HostTcpOnread): HostTcpSocket | null {
    if (!(socket instanceof MemoryTcpSocket) || socket.destroyed || socket.readableEnded) return null;
    socket.onread = onread;
    return socket;
  }

  // ---- the wire -------------------------------------------------------------------------------

  /** Runs `fn` after `ms` on the clock. */
  later(ms: number, fn: () => void): Timer {
    return this.clock.setTimeout(fn, ms);
  }

  note(line: string): void {
    if (this.tracing) this.trace.push(`${this.clock.now()} ${line}`);
  }

  /** The machine at `addr`, or undefined (no host there). */
  machineAt(addr: number): Machine | undefined {
    if (addr >>> 24 === 127 || addr === this.hostAddr) return this.local;
    return this.machines.get(addr);
  }

  /** An address a local socket may bind ('0.0.0.0', '::', the host's address, 127/8) as uint32; -1 otherwise. */
  localBindAddress(host: string): number {
    if (host === '0.0.0.0' || host === '::' || host === '') return 0;
    const a = tryParseIpv4(host);
    return a === this.hostAddr || (a >= 0 && a >>> 24 === 127) ? a : -1;
  }

  /** A free port of `table`, drawn from the Random. */
  ephemeral(table: { has(port: number): boolean }): number {
    for (let i = 0; i < 1000; i++) {
      const p = EPHEMERAL_FIRST + this.random.below(EPHEMERAL_COUNT);
      if (!table.has(p)) return p;
    }
    throw systemError('EADDRINUSE', 'bind', '(no ephemeral port free)');
  }

  private readonly connectPortOf = new Map<MemoryTcpSocket, Machine>();

  releaseConnectPort(s: MemoryTcpSocket): void {
    const m = this.connectPortOf.get(s);
    if (m === undefined) return;
    this.connectPortOf.delete(s);
    if (s.localPort !== undefined) m.connectPorts.delete(s.localPort);
  }

  /** A TCP connect from `fromMachine` (address `from`) to `to:port`. */
  connect(fromMachine: Machine, from: number, to: string, port: number, record: boolean): MemoryTcpSocket {
    const s = new MemoryTcpSocket(this, record);
    const dst = tryParseIpv4(to);
    if (dst < 0) {
      this.later(0, () => s.failConnect(systemError('EINVAL', 'connect', to)));
      return s;
    }
    const sport = this.ephemeral({ has: (p) => fromMachine.connectPorts.has(p) || fromMachine.tcp.has(p) });
    fromMachine.connectPorts.add(sport);
    this.connectPortOf.set(s, fromMachine);
    s.localAddress = ipv4ToString(from);
    s.localPort = sport;
    this.note(`tcp ${s.localAddress}:${sport} > ${to}:${port} SYN`);
    s.pendingTimer = this.later(this.latencyMs, () => {
      s.pendingTimer = null;
      const m = this.machineAt(dst);
      if (m === undefined) {
        if (this.unreachable === 'EHOSTUNREACH') {
          s.pendingTimer = this.later(Math.max(0, this.unreachableAfterMs - this.latencyMs), () => s.failConnect(systemError('EHOSTUNREACH', 'connect', `${to}:${port}`)));
        }
        return;
      }
      const l = m.tcp.get(port);
      if (l === undefined || (l.bindAddr !== 0 && l.bindAddr !== dst)) {
        this.note(`tcp ${to}:${port} > ${s.localAddress}:${sport} RST (refused)`);
        s.pendingTimer = this.later(this.latencyMs, () => s.failConnect(systemError('ECONNREFUSED', 'connect', `${to}:${port}`)));
        return;
      }
      const peer = new MemoryTcpSocket(this, m !== this.local || record === false);
      peer.localAddress = to;
      peer.localPort = port;
      peer.remoteAddress = s.localAddress;
      peer.remotePort = sport;
      peer.peer = s;
      peer.connected = true;
      s.peer = peer;
      s.remoteAddress = to;
      s.remotePort = port;
      this.note(`tcp ${to}:${port} > ${s.localAddress}:${sport} SYN-ACK`);
      // The connect completes on the client a latency later (the SYN-ACK's way back).
      s.pendingTimer = this.later(this.latencyMs, () => {
        s.pendingTimer = null;
        s.connectedNow();
      });
      l.accept(peer);
    });
    return s;
  }

  /** A UDP datagram `src:sport → dst:dport`; `sender` (a NAT socket) gets the ICMP error if any. */
  sendDatagram(src: number, sport: number, dst: number, dport: number, data: Buffer, sender: MemoryNatDatagram | null): void {
    this.note(`udp ${ipv4ToString(src)}:${sport} > ${ipv4ToString(dst)}:${dport} len ${data.length}`);
    this.later(this.latencyMs, () => {
      const m = this.machineAt(dst);
      if (m === undefined) return;
      const e = m.udp.get(dport);
      if (e !== undefined && (e.bindAddr === 0 || e.bindAddr === dst)) {
        e.receive(data, src, sport, dst);
        return;
      }
      // Port unreachable, back to the sender a latency later.
      this.note(`icmp ${ipv4ToString(dst)} > ${ipv4ToString(src)} port unreachable ${dport}`);
      if (sender === null) return;
      this.later(this.latencyMs, () => {
        const err = this.err;
        err.errno = -ERRNO.ECONNREFUSED!;
        err.origin = SO_EE_ORIGIN_ICMP;
        err.icmpType = 3;
        err.icmpCode = 3;
        err.offender = dst;
        err.dstAddr = dst;
        err.dstPort = dport;
        err.info = 0;
        err.data = data;
        err.dataOffset = 0;
        err.dataLength = Math.min(data.length, ICMP_QUOTE_MAX);
        sender.icmpError(err);
      });
    });
  }

  /** An echo request (ICMP message, our identifier in it) from a NAT ping socket. */
  ping(src: number, dst: number, msg: Buffer, sender: MemoryNatDatagram): void {
    this.note(`icmp ${ipv4ToString(src)} > ${ipv4ToString(dst)} echo request id ${msg.readUInt16BE(4)} seq ${msg.readUInt16BE(6)}`);
    this.later(this.latencyMs, () => {
      const m = this.machineAt(dst);
      if (m === undefined) return;
      m.pingsReceived++;
      if (!m.answersPings) return;
      const reply = Buffer.from(msg);
      reply[0] = 0;
      reply.writeUInt16BE(0, 2);
      reply.writeUInt16BE(icmpChecksum(reply), 2);
      this.note(`icmp ${ipv4ToString(dst)} > ${ipv4ToString(src)} echo reply`);
      this.later(this.latencyMs, () => sender.deliver(reply, dst, 0, src));
    });
  }

  unbindNat(s: MemoryNatDatagram): void {
    if (s.kind === 'icmp') {
      if (this.pingIds.get(s.port) === s) this.pingIds.delete(s.port);
      return;
    }
    this.local.udp.delete(s.port);
  }
}

function icmpChecksum(b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i + 1 < b.length; i += 2) sum += (b[i]! << 8) | b[i + 1]!;
  if (b.length & 1) sum += b[b.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}
