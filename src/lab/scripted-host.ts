/**
 * A scripted container: the far end of a memory port, playing the part a container's kernel
 * plays behind a TAP — small, exact and deterministic. It answers ARP and ping for its address,
 * gets a lease by DHCP, pings, sends and receives UDP, and opens or accepts TCP connections
 * (in-order delivery, a fixed 64 KiB window, go-back-N retransmission after a fixed RTO), with
 * an HTTP/1.0 GET on top. Everything it does is timed by the Lab's clock and chosen by its
 * random source (ISNs, ephemeral ports, DHCP xids), so two runs with one seed send the same bytes.
 *
 * It never sends from inside the switch's delivery to it: what it answers is queued and sent
 * when its clock next runs timers (after 0 ms), as a host's kernel answers after the frame that
 * caused it, never in the middle of it.
 */
import type { Clock, Timer } from '../platform/clock.js';
import type { Random } from '../platform/random.js';
import type { MemoryPort, ReceivedFrame } from '../link/memory-port.js';
import { ARP_OP_REPLY, ARP_OP_REQUEST, ArpView, writeArp } from '../packet/arp.js';
import { finish, pseudoHeaderSumV4, sum16 } from '../packet/checksum.js';
import {
  DHCP_CLIENT_PORT,
  DHCP_OPT_DNS,
  DHCP_OPT_ROUTER,
  DHCP_OPT_SUBNET_MASK,
  DHCP_SERVER_PORT,
  DHCPACK,
  DHCPDISCOVER,
  DHCPNAK,
  DHCPOFFER,
  DHCPREQUEST,
  DhcpMessage,
  writeDhcpRequest,
} from '../packet/dhcp.js';
import { DNS_PORT, DNS_TYPE_A, readDnsMessage, writeDnsQuery } from '../packet/dns.js';
import { ETH_HLEN, ETH_P_ARP, ETH_P_IPV4, EthernetView, writeEthernetHeader } from '../packet/ethernet.js';
import { ICMP_DEST_UNREACH, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, IcmpView } from '../packet/icmp.js';
import { ipv4ToString, parseIpv4, prefixToMask } from '../packet/ip-address.js';
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPV4_MIN_HLEN, Ipv4View, writeIpv4Header } from '../packet/ipv4.js';
import { BROADCAST_MAC } from '../packet/mac.js';
import { ParseStatus } from '../packet/status.js';
import { TCP_ACK, TCP_FIN, TCP_MIN_HLEN, TCP_PSH, TCP_RST, TCP_SYN, TcpOptions, TcpView, writeTcpHeader } from '../packet/tcp.js';
import { UDP_HLEN, UdpView } from '../packet/udp.js';
import { InvalidArgumentError, UsernetError } from '../errors.js';
import { checksum } from '../packet/checksum.js';

/** How long an ARP, DHCP, ping or connect attempt waits before trying again / failing. */
const RETRY_MS = 1000;
const ARP_TRIES = 3;
const DHCP_TRIES = 4;
const TCP_RTO_MS = 1000;
const TCP_SYN_TRIES = 5;
const TCP_WINDOW = 65535;
const EPHEMERAL_FIRST = 32768;
const EPHEMERAL_COUNT = 28232;

/** DNS response codes by name (RFC 1035, 2136). */
const RCODE_NAMES: Record<number, string> = { 1: 'FORMERR', 2: 'SERVFAIL', 3: 'NXDOMAIN', 4: 'NOTIMP', 5: 'REFUSED' };

/** ICMP destination-unreachable codes in words (RFC 792, 1812). */
const UNREACH_WORDS: Record<number, string> = {
  0: 'network unreachable',
  1: 'host unreachable',
  2: 'protocol unreachable',
  3: 'port unreachable',
  4: 'fragmentation needed',
  13: 'communication administratively prohibited',
};

/** Throws InvalidArgumentError unless `port` is a TCP/UDP port number (1-65535). */
function checkPort(port: number, what: string): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgumentError(`${what}: ${port} is not a port number (1-65535)`);
}

/** What a scripted host failed at; `code` says which. */
export class ScriptedHostError extends UsernetError {}

export interface Lease {
  ip: string;
  prefix: number;
  router: string;
  dns: string[];
  leaseTimeSec: number;
}

export interface ScriptedHostOptions {
  clock: Clock;
  random: Random;
  /** 48-bit MAC; default 02:xx:… from the random source. */
  mac?: number;
  /** Static address ("10.0.2.50/24"); without it the host has none until dhcp(). */
  address?: string;
  /** Static default gateway (with `address`). */
  gateway?: string;
  mtu?: number;
}

type Waiter = { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: Timer | null };

/** One TCP connection of a scripted host. */
export class ScriptedTcpConnection {
  state: 'SYN_SENT' | 'SYN_RECEIVED' | 'ESTABLISHED' | 'FIN_WAIT' | 'CLOSE_WAIT' | 'LAST_ACK' | 'CLOSED' = 'CLOSED';
  private readonly receivedChunks: Buffer[] = [];
  private receivedBytes = 0;
  private receivedJoined: Buffer | null = Buffer.alloc(0);
  /** The peer sent FIN. */
  peerEnded = false;
  /** The peer reset the connection (or, with gaveUp, it never answered). */
  reset = false;
  /** The SYN went unanswered TCP_SYN_TRIES times. */
  gaveUp = false;
  /** An ICMP error ended the connect ("ICMP host unreachable"), or null. */
  icmpError: string | null = null;
  onData: ((data: Buffer) => void) | null = null;
  sndUna = 0;
  sndNxt = 0;
  rcvNxt = 0;
  peerWindow = 0;
  peerMss = 536;
  private unsent: Buffer[] = [];
  /** Sent and not yet acknowledged, from sndUna, in order (chunks: no copy per segment). */
  private inFlight: Buffer[] = [];
  private inFlightBytes = 0;
  private finQueued = false;
  private finSent = false;
  private rto: Timer | null = null;
  private synTries = 0;
  private readonly waiters = new Set<{ check: () => boolean; resolve: () => void; reject: (e: Error) => void }>();

  constructor(
    readonly host: ScriptedHost,
    readonly localPort: number,
    readonly remoteIp: number,
    readonly remotePort: number,
    readonly iss: number,
  ) {
    this.sndUna = iss;
    this.sndNxt = iss;
  }

  /** Every byte received, in order (joined on demand: receiving stays linear). */
  get received(): Buffer {
    if (this.receivedJoined === null || this.receivedJoined.length !== this.receivedBytes) {
      this.receivedJoined = Buffer.concat(this.receivedChunks, this.receivedBytes);
      this.receivedChunks.length = 0;
      this.receivedChunks.push(this.receivedJoined);
    }
    return this.receivedJoined;
  }

  /** How many bytes have arrived. */
  get receivedLength(): number {
    return this.receivedBytes;
  }

  get remote(): string {
    return `${ipv4ToString(this.remoteIp)}:${this.remotePort}`;
  }

  /** Queues data to send (sent as the peer's window allows). */
  write(data: Uint8Array | string): void {
    if (this.finQueued || this.state === 'CLOSED') throw new ScriptedHostError('ERR_SCRIPTED_STATE', `write after end on ${this.remote}`);
    this.unsent.push(Buffer.from(typeof data === 'string' ? Buffer.from(data) : data));
    this.push();
  }

  /** Sends FIN after what is queued. */
  end(): void {
    if (this.finQueued) return;
    this.finQueued = true;
    this.push();
  }

  /** Sends a RST and forgets the connection. */
  abort(): void {
    if (this.state === 'CLOSED') return;
    this.host.sendTcp(this, TCP_RST | TCP_ACK, this.sndNxt, Buffer.alloc(0));
    this.closeNow();
  }

  /** Resolves once the peer has sent FIN (or rejects on a reset): all data is in `received`. */
  readToEnd(): Promise<Buffer> {
    return this.until(() => this.peerEnded, 'the peer ends the stream').then(() => this.received);
  }

  /** Resolves once at least `n` bytes have arrived. */
  readBytes(n: number): Promise<Buffer> {
    return this.until(() => this.receivedBytes >= n, `${n} bytes arrive`).then(() => this.received);
  }

  /** Resolves once the connection is closed both ways (or reset). */
  closed(): Promise<void> {
    return this.until(() => this.state === 'CLOSED', 'the connection closes', true);
  }

  /** @internal */
  until(check: () => boolean, what: string, resetIsDone = false): Promise<void> {
    if (check()) return Promise.resolve();
    if (this.reset && !resetIsDone) return Promise.reject(new ScriptedHostError('ERR_SCRIPTED_RESET', `connection to ${this.remote} was reset before ${what}`));
    return new Promise((resolve, reject) => {
      const w = {
        check: () => check() || (resetIsDone && this.reset),
        resolve,
        reject: (e: Error) => reject(new ScriptedHostError('ERR_SCRIPTED_RESET', `${e.message} before ${what}`)),
      };
      this.waiters.add(w);
    });
  }

  private wake(): void {
    for (const w of [...this.waiters]) {
      if (w.check()) {
        this.waiters.delete(w);
        w.resolve();
      } else if (this.reset) {
        this.waiters.delete(w);
        w.reject(new Error(`connection to ${this.remote} was reset`));
      }
    }
  }

  /** @internal Active open. */
  open(): void {
    this.state = 'SYN_SENT';
    this.sndNxt = (this.iss + 1) >>> 0;
    this.sendSyn();
  }

  private sendSyn(): void {
    this.synTries++;
    this.host.sendTcp(this, this.state === 'SYN_SENT' ? TCP_SYN : TCP_SYN | TCP_ACK, this.iss, Buffer.alloc(0), true);
    this.armRto();
  }

  /** @internal A segment for this connection. */
  segment(t: TcpView, opts: TcpOptions, payload: Buffer): void {
    const flags = t.flags;
    if (flags & TCP_RST) {
      this.reset = true;
      this.closeNow();
      return;
    }
    if (this.state === 'SYN_SENT') {
      if ((flags & (TCP_SYN | TCP_ACK)) !== (TCP_SYN | TCP_ACK) || t.ack !== this.sndNxt) return;
      this.rcvNxt = (t.seq + 1) >>> 0;
      this.sndUna = t.ack;
      this.peerWindow = t.window;
      if (opts.mss > 0) this.peerMss = opts.mss;
      this.state = 'ESTABLISHED';
      this.clearRto();
      this.host.sendTcp(this, TCP_ACK, this.sndNxt, Buffer.alloc(0));
      this.wake();
      this.push();
      return;
    }
    if (this.state === 'SYN_RECEIVED' && (flags & TCP_ACK) && t.ack === this.sndNxt) {
      this.state = 'ESTABLISHED';
      this.sndUna = t.ack;
      this.clearRto();
      this.wake();
    }
    if (flags & TCP_SYN) {
      // A retransmitted SYN (our SYN-ACK or ACK was lost): answer again.
      this.host.sendTcp(this, this.state === 'SYN_RECEIVED' ? TCP_SYN | TCP_ACK : TCP_ACK, this.state === 'SYN_RECEIVED' ? this.iss : this.sndNxt, Buffer.alloc(0), this.state === 'SYN_RECEIVED');
      return;
    }
    if (flags & TCP_ACK) this.acknowledge(t.ack, t.window);
    let changed = false;
    if (payload.length > 0 || (flags & TCP_FIN)) {
      if (t.seq === this.rcvNxt) {
        if (payload.length > 0) {
          this.receivedChunks.push(payload);
          this.receivedBytes += payload.length;
          this.rcvNxt = (this.rcvNxt + payload.length) >>> 0;
          changed = true;
          this.onData?.(payload);
        }
        if ((flags & TCP_FIN) && !this.peerEnded) {
          this.peerEnded = true;
          this.rcvNxt = (this.rcvNxt + 1) >>> 0;
          changed = true;
          if (this.state === 'ESTABLISHED') this.state = 'CLOSE_WAIT';
        }
      }
      // In order or not, say where we are (a duplicate ACK for a gap) — the peer's FIN included,
      // before the connection is forgotten (our TIME_WAIT is not modelled: a late FIN gets a RST).
      this.host.sendTcp(this, TCP_ACK, this.sndNxt, Buffer.alloc(0));
      if (this.state === 'FIN_WAIT' && this.peerEnded && this.finAcked()) this.closeNow();
    }
    if (changed || (flags & TCP_ACK)) this.wake();
  }

  private finAcked(): boolean {
    return this.finSent && this.sndUna === this.sndNxt;
  }

  private acknowledge(ack: number, window: number): void {
    const acked = (ack - this.sndUna) >>> 0;
    const outstanding = (this.sndNxt - this.sndUna) >>> 0;
    this.peerWindow = window;
    if (acked === 0 || acked > outstanding) {
      this.push();
      return;
    }
    this.sndUna = ack;
    let dataAcked = Math.min(acked, this.inFlightBytes);
    this.inFlightBytes -= dataAcked;
    while (dataAcked > 0) {
      const head = this.inFlight[0];
      if (head.length <= dataAcked) {
        this.inFlight.shift();
        dataAcked -= head.length;
      } else {
        this.inFlight[0] = head.subarray(dataAcked);
        dataAcked = 0;
      }
    }
    if (this.sndUna === this.sndNxt) this.clearRto();
    else this.armRto();
    if (this.finAcked()) {
      if (this.state === 'LAST_ACK' || (this.state === 'FIN_WAIT' && this.peerEnded)) this.closeNow();
    }
    this.push();
  }

  /** Sends what the window allows. */
  private push(): void {
    if (this.state !== 'ESTABLISHED' && this.state !== 'CLOSE_WAIT') return;
    const mss = Math.min(this.peerMss, this.host.mtu - IPV4_MIN_HLEN - TCP_MIN_HLEN);
    while (this.unsent.length > 0) {
      const inflight = (this.sndNxt - this.sndUna) >>> 0;
      const room = this.peerWindow - inflight;
      if (room <= 0) break;
      const head = this.unsent[0];
      const n = Math.min(head.length, mss, room);
      const seg = head.subarray(0, n);
      if (n === head.length) this.unsent.shift();
      else this.unsent[0] = head.subarray(n);
      // State first, then the send: its answer may come back before sendTcp returns (a NAT
      // that ACKs at once), and must find the segment accounted for.
      const seq = this.sndNxt;
      this.inFlight.push(seg);
      this.inFlightBytes += n;
      this.sndNxt = (this.sndNxt + n) >>> 0;
      this.armRto();
      this.host.sendTcp(this, TCP_ACK | TCP_PSH, seq, seg);
    }
    if (this.finQueued && !this.finSent && this.unsent.length === 0 && (this.state === 'ESTABLISHED' || this.state === 'CLOSE_WAIT')) {
      this.finSent = true;
      const seq = this.sndNxt;
      this.sndNxt = (this.sndNxt + 1) >>> 0;
      this.state = this.state === 'CLOSE_WAIT' ? 'LAST_ACK' : 'FIN_WAIT';
      this.armRto();
      this.host.sendTcp(this, TCP_FIN | TCP_ACK, seq, Buffer.alloc(0));
    }
  }

  private armRto(): void {
    const clock = this.host.clock;
    clock.clear(this.rto);
    this.rto = clock.setTimeout(() => this.onRto(), TCP_RTO_MS);
  }

  private clearRto(): void {
    this.host.clock.clear(this.rto);
    this.rto = null;
  }

  private onRto(): void {
    this.rto = null;
    if (this.state === 'SYN_SENT' || this.state === 'SYN_RECEIVED') {
      if (this.synTries >= TCP_SYN_TRIES) {
        this.reset = true;
        this.gaveUp = true;
        this.closeNow();
        return;
      }
      this.sendSyn();
      return;
    }
    // Go back N: everything unacknowledged goes again, then the FIN if it was sent. (The
    // segments are those first sent: each chunk was at most one MSS.)
    this.armRto();
    let seq = this.sndUna;
    for (const seg of [...this.inFlight]) {
      if (this.state === 'CLOSED') return;
      this.host.sendTcp(this, TCP_ACK | TCP_PSH, seq, seg);
      seq = (seq + seg.length) >>> 0;
    }
    if (this.finSent && this.sndUna !== this.sndNxt && this.state !== 'CLOSED') this.host.sendTcp(this, TCP_FIN | TCP_ACK, seq, Buffer.alloc(0));
    if (this.sndUna === this.sndNxt) this.clearRto();
  }

  /** @internal */
  closeNow(): void {
    this.state = 'CLOSED';
    this.clearRto();
    this.host.forget(this);
    this.wake();
  }
}

/** A host behind a memory port. */
export class ScriptedHost {
  readonly name: string;
  readonly mac: number;
  readonly clock: Clock;
  readonly mtu: number;
  /** Our address (0 until configured). */
  ip = 0;
  prefix = 0;
  gateway = 0;
  dnsServers: number[] = [];
  /** Frames received that nothing here handled (other hosts' traffic flooded to us, say). */
  readonly unhandled: ReceivedFrame[] = [];
  private readonly random: Random;
  private readonly arpCache = new Map<number, number>();
  private readonly arpWaiting = new Map<number, { frames: Buffer[]; tries: number; timer: Timer | null }>();
  private readonly pings = new Map<number, { sentAt: number; waiter: Waiter }>();
  private pingId: number;
  private pingSeq = 0;
  private readonly udpHandlers = new Map<number, (payload: Buffer, from: { address: string; port: number }) => void>();
  /** udpRequest()s waiting, by source port: told of an ICMP error about their datagram. */
  private readonly udpErrors = new Map<number, (why: string) => void>();
  /** Next hops whose ARP went unanswered (until they are heard from). */
  private readonly unresolved = new Set<number>();
  private readonly tcp = new Map<string, ScriptedTcpConnection>();
  private readonly listeners = new Map<number, (c: ScriptedTcpConnection) => void>();
  private dhcpState: { xid: number; waiter: Waiter; tries: number; offered: number; server: number } | null = null;
  private readonly out: Buffer;
  private readonly outDv: DataView;
  private readonly outbox: Buffer[] = [];
  private flushTimer: Timer | null = null;
  private delivering = false;
  private ipId = 0;
  // Views, reused.
  private readonly eth = new EthernetView();
  private readonly arp = new ArpView();
  private readonly ipv4 = new Ipv4View();
  private readonly udp = new UdpView();
  private readonly icmp = new IcmpView();
  private readonly tcpView = new TcpView();
  private readonly tcpOpts = new TcpOptions();
  private readonly dhcpMsg = new DhcpMessage();

  constructor(
    readonly port: MemoryPort,
    options: ScriptedHostOptions,
  ) {
    this.name = port.name;
    this.clock = options.clock;
    this.random = options.random;
    this.mtu = options.mtu ?? port.mtu;
    this.out = Buffer.alloc(this.mtu + ETH_HLEN);
    this.outDv = new DataView(this.out.buffer, this.out.byteOffset, this.out.length);
    // A locally administered unicast MAC: 02 then five random bytes.
    this.mac = options.mac ?? 0x02_00_00_00_00_00 + ((this.random.uint32() >>> 0) * 256 + (this.random.uint32() & 255));
    this.pingId = this.random.below(65536);
    if (options.address !== undefined) {
      const [a, p] = options.address.split('/');
      this.ip = parseIpv4(a);
      this.prefix = p === undefined ? 24 : Number(p);
      if (options.gateway !== undefined) this.gateway = parseIpv4(options.gateway);
    }
    port.onFrame = (f) => this.receive(f);
  }

  /** Our address as text ("" before DHCP). */
  get address(): string {
    return this.ip === 0 ? '' : ipv4ToString(this.ip);
  }

  // ---------------------------------------------------------------------------------------
  // What a test asks of the host
  // ---------------------------------------------------------------------------------------

  /** DISCOVER, OFFER, REQUEST, ACK: configures the host from the lease and resolves with it. */
  dhcp(): Promise<Lease> {
    if (this.dhcpState) return Promise.reject(new ScriptedHostError('ERR_SCRIPTED_STATE', `${this.name}: a DHCP exchange is already running`));
    return new Promise<unknown>((resolve, reject) => {
      this.dhcpState = { xid: this.random.uint32(), waiter: { resolve, reject, timer: null }, tries: 0, offered: 0, server: 0 };
      this.sendDhcp(DHCPDISCOVER);
    }) as Promise<Lease>;
  }

  /** One echo request; resolves with the round-trip time in clock milliseconds. */
  ping(target: string, options: { size?: number; timeoutMs?: number } = {}): Promise<number> {
    const dst = parseIpv4(target);
    const seq = (this.pingSeq = (this.pingSeq + 1) & 0xffff);
    const size = options.size ?? 56;
    return new Promise<unknown>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, timer: null };
      waiter.timer = this.clock.setTimeout(() => {
        this.pings.delete(seq);
        reject(new ScriptedHostError('ERR_SCRIPTED_NO_ANSWER', `${this.name}: no echo reply from ${target} (seq ${seq}) within ${options.timeoutMs ?? 2 * RETRY_MS} ms`));
      }, options.timeoutMs ?? 2 * RETRY_MS);
      this.pings.set(seq, { sentAt: this.clock.now(), waiter });
      const data = Buffer.alloc(4 + size);
      data.writeUInt16BE(this.pingId, 0);
      data.writeUInt16BE(seq, 2);
      for (let i = 4; i < data.length; i++) data[i] = i & 0xff;
      this.sendEcho(dst, ICMP_ECHO_REQUEST, data);
    }) as Promise<number>;
  }

  /** Sends one UDP datagram (from `srcPort`, default an ephemeral port). Returns the source port. */
  sendUdp(target: string, dstPort: number, payload: Uint8Array | string, srcPort = this.ephemeralPort()): number {
    checkPort(dstPort, 'sendUdp: the destination port');
    checkPort(srcPort, 'sendUdp: the source port');
    const data = Buffer.from(typeof payload === 'string' ? Buffer.from(payload) : payload);
    this.sendIp(parseIpv4(target), IPPROTO_UDP, (o, dv, at) => this.writeUdp(o, dv, at, srcPort, dstPort, data, parseIpv4(target)));
    return srcPort;
  }

  /** Handles datagrams to `port` (replacing any earlier handler). */
  onUdp(port: number, handler: (payload: Buffer, from: { address: string; port: number }) => void): void {
    checkPort(port, 'onUdp');
    this.udpHandlers.set(port, handler);
  }

  /** Sends a datagram and resolves with the first datagram back to its source port. */
  udpRequest(target: string, dstPort: number, payload: Uint8Array | string, options: { timeoutMs?: number } = {}): Promise<Buffer> {
    checkPort(dstPort, 'udpRequest');
    const srcPort = this.ephemeralPort();
    return new Promise((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        this.udpHandlers.delete(srcPort);
        this.udpErrors.delete(srcPort);
        reject(new ScriptedHostError('ERR_SCRIPTED_NO_ANSWER', `${this.name}: no answer from ${target}:${dstPort} within ${options.timeoutMs ?? 2 * RETRY_MS} ms`));
      }, options.timeoutMs ?? 2 * RETRY_MS);
      this.onUdp(srcPort, (answer) => {
        this.clock.clear(timer);
        this.udpHandlers.delete(srcPort);
        this.udpErrors.delete(srcPort);
        resolve(answer);
      });
      this.udpErrors.set(srcPort, (why) => {
        this.clock.clear(timer);
        this.udpHandlers.delete(srcPort);
        this.udpErrors.delete(srcPort);
        reject(new ScriptedHostError('ERR_SCRIPTED_REFUSED', `${this.name}: ${target}:${dstPort} answered ${why}`));
      });
      this.sendUdp(target, dstPort, payload, srcPort);
    });
  }

  /**
   * Looks `name` up (A records) at the DNS server DHCP gave (or `server`), as a stub resolver
   * does: one UDP query to port 53. Resolves with the addresses; rejects with
   * ERR_SCRIPTED_REFUSED on an error answer (NXDOMAIN, SERVFAIL…), ERR_SCRIPTED_NO_ANSWER on none.
   */
  async resolve(name: string, options: { server?: string; timeoutMs?: number } = {}): Promise<string[]> {
    const server = options.server ?? (this.dnsServers[0] !== undefined ? ipv4ToString(this.dnsServers[0]) : '');
    if (!server) throw new ScriptedHostError('ERR_SCRIPTED_STATE', `${this.name}: no DNS server (dhcp() first, or give one)`);
    const id = this.random.below(65536);
    const query = Buffer.alloc(300);
    const len = writeDnsQuery(query, 0, id, name, DNS_TYPE_A);
    const answer = await this.udpRequest(server, DNS_PORT, query.subarray(0, len), options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {});
    const m = readDnsMessage(answer, 0, answer.length);
    if (!m || m.id !== id) throw new ScriptedHostError('ERR_SCRIPTED_BAD_RESPONSE', `${this.name}: the answer from ${server} for ${name} is not a DNS answer to the query`);
    if (m.rcode !== 0) throw new ScriptedHostError('ERR_SCRIPTED_REFUSED', `${this.name}: ${server} answered ${RCODE_NAMES[m.rcode] ?? `rcode ${m.rcode}`} for ${name}`);
    return m.answers.filter((a) => a.type === DNS_TYPE_A && a.data.length === 4).map((a) => `${a.data[0]}.${a.data[1]}.${a.data[2]}.${a.data[3]}`);
  }

  /** Opens a TCP connection; resolves once it is established (rejects on a reset or no answer). */
  connect(target: string, port: number, options: { srcPort?: number } = {}): Promise<ScriptedTcpConnection> {
    checkPort(port, 'connect');
    if (options.srcPort !== undefined) checkPort(options.srcPort, 'connect: srcPort');
    const c = new ScriptedTcpConnection(this, options.srcPort ?? this.ephemeralPort(), parseIpv4(target), port, this.random.uint32());
    this.tcp.set(this.tcpKey(c.localPort, c.remoteIp, c.remotePort), c);
    c.open();
    return c
      .until(() => c.state === 'ESTABLISHED' || c.state === 'CLOSE_WAIT', 'it is established')
      .then(
        () => c,
        () => {
          if (c.icmpError) throw new ScriptedHostError('ERR_SCRIPTED_REFUSED', `${this.name}: connection to ${target}:${port} answered ${c.icmpError}`);
          if (c.gaveUp) {
            const hop = this.onLink(c.remoteIp) ? c.remoteIp : this.gateway;
            if (this.unresolved.has(hop)) throw new ScriptedHostError('ERR_SCRIPTED_NO_ANSWER', `${this.name}: no ARP reply from ${ipv4ToString(hop)}, the next hop to ${target}`);
            throw new ScriptedHostError('ERR_SCRIPTED_NO_ANSWER', `${this.name}: no answer from ${target}:${port} to ${TCP_SYN_TRIES} SYNs`);
          }
          throw new ScriptedHostError('ERR_SCRIPTED_REFUSED', `${this.name}: connection to ${target}:${port} refused (reset)`);
        },
      );
  }

  /** Accepts TCP connections to `port` (published ports reach a container this way). */
  listen(port: number, onConnection: (c: ScriptedTcpConnection) => void): void {
    checkPort(port, 'listen');
    this.listeners.set(port, onConnection);
  }

  /** An HTTP/1.0 GET; resolves with the status code, headers and body. */
  async httpGet(target: string, port: number, path = '/', host = target): Promise<{ status: number; headers: Record<string, string>; body: Buffer }> {
    const c = await this.connect(target, port);
    c.write(`GET ${path} HTTP/1.0\r\nHost: ${host}\r\nUser-Agent: usernet-lab\r\n\r\n`);
    c.end();
    const raw = await c.readToEnd();
    const split = raw.indexOf('\r\n\r\n');
    if (split < 0) throw new ScriptedHostError('ERR_SCRIPTED_BAD_RESPONSE', `${this.name}: no HTTP header in ${raw.length} bytes from ${target}:${port}`);
    const lines = raw.subarray(0, split).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
    if (!m) throw new ScriptedHostError('ERR_SCRIPTED_BAD_RESPONSE', `${this.name}: bad status line "${lines[0]}" from ${target}:${port}`);
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    return { status: Number(m[1]), headers, body: raw.subarray(split + 4) };
  }

  // ---------------------------------------------------------------------------------------
  // Receiving
  // ---------------------------------------------------------------------------------------

  private receive(f: ReceivedFrame): void {
    this.delivering = true;
    try {
      this.handle(f);
    } finally {
      this.delivering = false;
    }
  }

  private handle(f: ReceivedFrame): void {
    const buf = f.frame;
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
    const eth = this.eth;
    if (eth.bind(buf, dv, 0, buf.length) !== ParseStatus.OK) return void this.unhandled.push(f);
    if (eth.dst !== this.mac && eth.dst !== BROADCAST_MAC) return void this.unhandled.push(f);
    if (eth.etherType === ETH_P_ARP) return this.handleArp(dv, eth.payloadOffset, buf.length - eth.payloadOffset, f);
    if (eth.etherType !== ETH_P_IPV4) return void this.unhandled.push(f);
    const ip = this.ipv4;
    if (ip.bind(dv, eth.payloadOffset, buf.length - eth.payloadOffset) !== ParseStatus.OK) return void this.unhandled.push(f);
    // Learn the sender's MAC from its IP packets too, as a shortcut for replies.
    if (ip.src !== 0 && !this.arpCache.has(ip.src) && this.onLink(ip.src)) this.arpCache.set(ip.src, eth.src);
    if (ip.protocol === IPPROTO_UDP) {
      const u = this.udp;
      if (u.bind(dv, ip.payloadOffset, ip.payloadLength) !== ParseStatus.OK) return void this.unhandled.push(f);
      const payload = Buffer.from(buf.subarray(u.payloadOffset, u.payloadOffset + u.payloadLength));
      if (u.dstPort === DHCP_CLIENT_PORT && u.srcPort === DHCP_SERVER_PORT) return this.handleDhcp(dv, u.payloadOffset, u.payloadLength);
      if (ip.dst !== this.ip) return void this.unhandled.push(f);
      const h = this.udpHandlers.get(u.dstPort);
      if (h) h(payload, { address: ipv4ToString(ip.src), port: u.srcPort });
      else this.unhandled.push(f);
      return;
    }
    if (ip.dst !== this.ip) return void this.unhandled.push(f);
    if (ip.protocol === IPPROTO_ICMP) return this.handleIcmp(buf, dv, f);
    if (ip.protocol === IPPROTO_TCP) return this.handleTcp(buf, dv, f);
    this.unhandled.push(f);
  }

  private handleArp(dv: DataView, off: number, len: number, f: ReceivedFrame): void {
    const a = this.arp;
    if (a.bind(dv, off, len) !== ParseStatus.OK) return void this.unhandled.push(f);
    if (a.senderIp !== 0) this.learn(a.senderIp, a.senderMac);
    if (a.operation === ARP_OP_REQUEST && this.ip !== 0 && a.targetIp === this.ip) {
      const o = Buffer.alloc(ETH_HLEN + 28);
      const odv = new DataView(o.buffer, o.byteOffset, o.length);
      writeEthernetHeader(odv, 0, a.senderMac, this.mac, ETH_P_ARP);
      writeArp(odv, ETH_HLEN, ARP_OP_REPLY, this.mac, this.ip, a.senderMac, a.senderIp);
      this.transmit(o);
    } else if (a.operation !== ARP_OP_REPLY && a.operation !== ARP_OP_REQUEST) {
      this.unhandled.push(f);
    }
  }

  private learn(ip: number, mac: number): void {
    this.arpCache.set(ip, mac);
    this.unresolved.delete(ip);
    const w = this.arpWaiting.get(ip);
    if (!w) return;
    this.arpWaiting.delete(ip);
    this.clock.clear(w.timer);
    for (const frame of w.frames) {
      frame.writeUIntBE(Math.floor(mac / 0x1_0000_0000), 0, 2);
      frame.writeUInt32BE(mac >>> 0, 2);
      this.transmit(frame);
    }
  }

  private handleIcmp(buf: Buffer, dv: DataView, f: ReceivedFrame): void {
    const ip = this.ipv4;
    const c = this.icmp;
    if (c.bind(dv, ip.payloadOffset, ip.payloadLength) !== ParseStatus.OK) return void this.unhandled.push(f);
    if (c.type === ICMP_ECHO_REQUEST) {
      const body = Buffer.from(buf.subarray(ip.payloadOffset + 4, ip.payloadOffset + ip.payloadLength));
      this.sendEcho(ip.src, ICMP_ECHO_REPLY, body);
      return;
    }
    if (c.type === ICMP_DEST_UNREACH && this.icmpUnreachable(buf, dv, c)) return;
    if (c.type === ICMP_ECHO_REPLY && c.identifier === this.pingId) {
      const p = this.pings.get(c.sequence);
      if (!p) return void this.unhandled.push(f);
      this.pings.delete(c.sequence);
      this.clock.clear(p.waiter.timer);
      p.waiter.resolve(this.clock.now() - p.sentAt);
      return;
    }
    this.unhandled.push(f);
  }

  /**
   * An ICMP destination unreachable quoting a datagram of ours: a waiting udpRequest() or a
   * connect() in SYN_SENT ends with it, as a kernel's would (ECONNREFUSED, EHOSTUNREACH …).
   */
  private icmpUnreachable(buf: Buffer, dv: DataView, c: IcmpView): boolean {
    const qOff = c.payloadOffset;
    const qLen = c.payloadLength;
    if (qLen < IPV4_MIN_HLEN + 8) return false;
    const ihl = (buf[qOff] & 15) * 4;
    if (ihl < IPV4_MIN_HLEN || qLen < ihl + 8 || dv.getUint32(qOff + 12) !== this.ip) return false;
    const proto = buf[qOff + 9];
    const dst = dv.getUint32(qOff + 16);
    const sport = dv.getUint16(qOff + ihl);
    const dport = dv.getUint16(qOff + ihl + 2);
    const why = `ICMP ${UNREACH_WORDS[c.code] ?? `destination unreachable (code ${c.code})`}`;
    if (proto === IPPROTO_UDP) {
      const e = this.udpErrors.get(sport);
      if (!e) return false;
      e(why);
      return true;
    }
    if (proto === IPPROTO_TCP) {
      const conn = this.tcp.get(this.tcpKey(sport, dst, dport));
      if (!conn || conn.state !== 'SYN_SENT') return false;
      conn.icmpError = why;
      conn.reset = true;
      conn.closeNow();
      return true;
    }
    return false;
  }

  private handleTcp(buf: Buffer, dv: DataView, f: ReceivedFrame): void {
    const ip = this.ipv4;
    const t = this.tcpView;
    if (t.bind(dv, ip.payloadOffset, ip.payloadLength) !== ParseStatus.OK) return void this.unhandled.push(f);
    this.tcpOpts.reset();
    t.readOptions(this.tcpOpts);
    const payload = Buffer.from(buf.subarray(t.payloadOffset, t.payloadOffset + t.payloadLength));
    const key = this.tcpKey(t.dstPort, ip.src, t.srcPort);
    const c = this.tcp.get(key);
    if (c) return c.segment(t, this.tcpOpts, payload);
    const accept = this.listeners.get(t.dstPort);
    if (accept && (t.flags & (TCP_SYN | TCP_ACK | TCP_RST)) === TCP_SYN) {
      const nc = new ScriptedTcpConnection(this, t.dstPort, ip.src, t.srcPort, this.random.uint32());
      nc.state = 'SYN_RECEIVED';
      nc.rcvNxt = (t.seq + 1) >>> 0;
      nc.sndNxt = (nc.iss + 1) >>> 0;
      nc.peerWindow = t.window;
      if (this.tcpOpts.mss > 0) nc.peerMss = this.tcpOpts.mss;
      this.tcp.set(key, nc);
      this.sendTcp(nc, TCP_SYN | TCP_ACK, nc.iss, Buffer.alloc(0), true);
      void nc.until(() => nc.state === 'ESTABLISHED' || nc.state === 'CLOSE_WAIT', 'it is established').then(
        () => accept(nc),
        () => {},
      );
      return;
    }
    if ((t.flags & TCP_RST) === 0) {
      // Nobody here: RST, as a kernel answers a closed port.
      const len = t.payloadLength + ((t.flags & TCP_SYN) !== 0 ? 1 : 0) + ((t.flags & TCP_FIN) !== 0 ? 1 : 0);
      const seq = (t.flags & TCP_ACK) !== 0 ? t.ack : 0;
      const ack = (t.seq + len) >>> 0;
      const srcPort = t.dstPort;
      const dstPort = t.srcPort;
      this.sendIp(ip.src, IPPROTO_TCP, (o, odv, at) => this.writeTcp(o, odv, at, srcPort, dstPort, seq, ack, (t.flags & TCP_ACK) !== 0 ? TCP_RST : TCP_RST | TCP_ACK, 0, Buffer.alloc(0), false, ip.src));
    }
    this.unhandled.push(f);
  }

  private handleDhcp(dv: DataView, off: number, len: number): void {
    const s = this.dhcpState;
    const m = this.dhcpMsg;
    if (!s || m.bind(dv, off, len) !== ParseStatus.OK || m.xid !== s.xid || m.chaddr !== this.mac) return;
    if (m.messageType === DHCPOFFER && s.offered === 0) {
      s.offered = m.yiaddr;
      s.server = m.serverId >>> 0;
      s.tries = 0;
      this.sendDhcp(DHCPREQUEST);
      return;
    }
    if (m.messageType === DHCPNAK) {
      this.endDhcp(new ScriptedHostError('ERR_SCRIPTED_REFUSED', `${this.name}: the DHCP server refused the request (NAK)`));
      return;
    }
    if (m.messageType !== DHCPACK || s.offered === 0) return;
    const mask = m.option(DHCP_OPT_SUBNET_MASK);
    const router = m.option(DHCP_OPT_ROUTER);
    const dns = m.option(DHCP_OPT_DNS);
    const maskBits = mask && mask.length === 4 ? Buffer.from(mask).readUInt32BE(0) : 0xffffff00;
    let prefix = 0;
    while (prefix < 32 && ((maskBits >>> (31 - prefix)) & 1) === 1) prefix++;
    this.ip = m.yiaddr;
    this.prefix = prefix;
    this.gateway = router && router.length >= 4 ? Buffer.from(router).readUInt32BE(0) : 0;
    this.dnsServers = [];
    if (dns) for (let i = 0; i + 4 <= dns.length; i += 4) this.dnsServers.push(Buffer.from(dns).readUInt32BE(i));
    const lease: Lease = { ip: ipv4ToString(this.ip), prefix, router: ipv4ToString(this.gateway), dns: this.dnsServers.map(ipv4ToString), leaseTimeSec: m.leaseTime };
    this.endDhcp(null, lease);
  }

  private endDhcp(err: Error | null, lease?: Lease): void {
    const s = this.dhcpState;
    if (!s) return;
    this.dhcpState = null;
    this.clock.clear(s.waiter.timer);
    if (err) s.waiter.reject(err);
    else s.waiter.resolve(lease);
  }

  private sendDhcp(type: number): void {
    const s = this.dhcpState;
    if (!s) return;
    s.tries++;
    const msg = Buffer.alloc(548);
    const n = writeDhcpRequest(msg, 0, {
      messageType: type,
      xid: s.xid,
      chaddr: this.mac,
      paramRequestList: [DHCP_OPT_SUBNET_MASK, DHCP_OPT_ROUTER, DHCP_OPT_DNS],
      ...(type === DHCPREQUEST ? { requestedIp: s.offered, serverId: s.server } : {}),
    });
    const frame = Buffer.alloc(ETH_HLEN + IPV4_MIN_HLEN + UDP_HLEN + n);
    const dv = new DataView(frame.buffer, frame.byteOffset, frame.length);
    const at = writeEthernetHeader(dv, 0, BROADCAST_MAC, this.mac, ETH_P_IPV4);
    const udp = writeIpv4Header(dv, at, { totalLength: IPV4_MIN_HLEN + UDP_HLEN + n, protocol: IPPROTO_UDP, src: 0, dst: 0xffffffff, flagsFragment: 0 });
    this.writeUdpAt(frame, dv, udp, DHCP_CLIENT_PORT, DHCP_SERVER_PORT, msg.subarray(0, n), 0, 0xffffffff);
    this.transmit(frame);
    this.clock.clear(s.waiter.timer);
    s.waiter.timer = this.clock.setTimeout(() => {
      if (this.dhcpState !== s) return;
      if (s.tries >= DHCP_TRIES) {
        this.endDhcp(new ScriptedHostError('ERR_SCRIPTED_NO_ANSWER', `${this.name}: no DHCP ${s.offered ? 'ACK' : 'OFFER'} after ${s.tries} tries`));
        return;
      }
      this.sendDhcp(s.offered ? DHCPREQUEST : DHCPDISCOVER);
    }, RETRY_MS);
  }

  // ---------------------------------------------------------------------------------------
  // Sending
  // ---------------------------------------------------------------------------------------

  /** An echo request or reply to `dst`; `rest` is the identifier, sequence and data. */
  private sendEcho(dst: number, type: number, rest: Buffer): void {
    this.sendIp(dst, IPPROTO_ICMP, (o, dv, at) => {
      dv.setUint8(at, type);
      dv.setUint8(at + 1, 0);
      dv.setUint16(at + 2, 0);
      o.set(rest, at + 4);
      dv.setUint16(at + 2, checksum(dv, at, 4 + rest.length));
      return 4 + rest.length;
    });
  }

  /** @internal */
  sendTcp(c: ScriptedTcpConnection, flags: number, seq: number, payload: Buffer, synOptions = false): void {
    const ack = (flags & TCP_ACK) !== 0 ? c.rcvNxt : 0;
    this.sendIp(c.remoteIp, IPPROTO_TCP, (o, dv, at) => this.writeTcp(o, dv, at, c.localPort, c.remotePort, seq, ack, flags, TCP_WINDOW, payload, synOptions, c.remoteIp));
  }

  /** @internal */
  forget(c: ScriptedTcpConnection): void {
    const key = this.tcpKey(c.localPort, c.remoteIp, c.remotePort);
    if (this.tcp.get(key) === c) this.tcp.delete(key);
  }

  private writeTcp(o: Buffer, dv: DataView, at: number, sport: number, dport: number, seq: number, ack: number, flags: number, window: number, payload: Buffer, synOptions: boolean, dst: number): number {
    const hl = synOptions ? TCP_MIN_HLEN + 4 : TCP_MIN_HLEN;
    writeTcpHeader(dv, at, { srcPort: sport, dstPort: dport, seq, ack, flags, window, headerLength: hl });
    if (synOptions) {
      dv.setUint8(at + 20, 2);
      dv.setUint8(at + 21, 4);
      dv.setUint16(at + 22, this.mtu - IPV4_MIN_HLEN - TCP_MIN_HLEN);
    }
    o.set(payload, at + hl);
    const len = hl + payload.length;
    dv.setUint16(at + 16, finish(sum16(dv, at, len, pseudoHeaderSumV4(this.ip, dst, IPPROTO_TCP, len))));
    return len;
  }

  private writeUdp(o: Buffer, dv: DataView, at: number, sport: number, dport: number, data: Buffer, dst: number): number {
    return this.writeUdpAt(o, dv, at, sport, dport, data, this.ip, dst);
  }

  private writeUdpAt(o: Buffer, dv: DataView, at: number, sport: number, dport: number, data: Buffer, src: number, dst: number): number {
    const len = UDP_HLEN + data.length;
    dv.setUint16(at, sport);
    dv.setUint16(at + 2, dport);
    dv.setUint16(at + 4, len);
    dv.setUint16(at + 6, 0);
    o.set(data, at + UDP_HLEN);
    let c = finish(sum16(dv, at, len, pseudoHeaderSumV4(src, dst, IPPROTO_UDP, len)));
    if (c === 0) c = 0xffff;
    dv.setUint16(at + 6, c);
    return len;
  }

  /** Builds an IPv4 packet to `dst` (the L4 part written by `body`) and sends it via ARP. */
  private sendIp(dst: number, protocol: number, body: (o: Buffer, dv: DataView, at: number) => number): void {
    if (this.ip === 0) throw new ScriptedHostError('ERR_SCRIPTED_STATE', `${this.name} has no IPv4 address yet (call dhcp() or give one)`);
    const o = this.out;
    const dv = this.outDv;
    const l4 = ETH_HLEN + IPV4_MIN_HLEN;
    const len = body(o, dv, l4);
    if (IPV4_MIN_HLEN + len > this.mtu) throw new ScriptedHostError('ERR_SCRIPTED_STATE', `${this.name}: a ${IPV4_MIN_HLEN + len}-byte packet does not fit the MTU ${this.mtu}`);
    this.ipId = (this.ipId + 1) & 0xffff;
    writeIpv4Header(dv, ETH_HLEN, { totalLength: IPV4_MIN_HLEN + len, id: this.ipId, protocol, src: this.ip, dst });
    const hop = this.onLink(dst) ? dst : this.gateway;
    if (hop === 0) throw new ScriptedHostError('ERR_SCRIPTED_STATE', `${this.name}: no route to ${ipv4ToString(dst)} (no gateway)`);
    const mac = this.arpCache.get(hop);
    writeEthernetHeader(dv, 0, mac ?? 0, this.mac, ETH_P_IPV4);
    const frame = Buffer.from(o.subarray(0, ETH_HLEN + IPV4_MIN_HLEN + len));
    if (mac !== undefined) {
      this.transmit(frame);
      return;
    }
    const w = this.arpWaiting.get(hop);
    if (w) {
      w.frames.push(frame);
      return;
    }
    // Queued before the request goes: its answer may come back within arpRequest().
    this.arpWaiting.set(hop, { frames: [frame], tries: 0, timer: null });
    this.arpRequest(hop);
  }

  private arpRequest(ip: number): void {
    const w = this.arpWaiting.get(ip);
    if (!w) return;
    if (w.tries >= ARP_TRIES) {
      this.arpWaiting.delete(ip);
      this.unresolved.add(ip);
      return;
    }
    w.tries++;
    const o = Buffer.alloc(ETH_HLEN + 28);
    const dv = new DataView(o.buffer, o.byteOffset, o.length);
    writeEthernetHeader(dv, 0, BROADCAST_MAC, this.mac, ETH_P_ARP);
    writeArp(dv, ETH_HLEN, ARP_OP_REQUEST, this.mac, this.ip, 0, ip);
    this.transmit(o);
    w.timer = this.clock.setTimeout(() => this.arpRequest(ip), RETRY_MS);
  }

  private onLink(ip: number): boolean {
    if (this.prefix === 0) return false;
    const mask = prefixToMask(this.prefix);
    return ((ip & mask) >>> 0) === ((this.ip & mask) >>> 0);
  }

  /** Sends now, unless we are inside the switch's delivery to us: then right after it. */
  private transmit(frame: Buffer): void {
    if (!this.delivering && this.outbox.length === 0) {
      this.port.inject(frame);
      return;
    }
    this.outbox.push(frame);
    if (this.flushTimer === null) {
      this.flushTimer = this.clock.setTimeout(() => {
        this.flushTimer = null;
        const frames = this.outbox.splice(0);
        for (const f of frames) this.port.inject(f);
      }, 0);
    }
  }

  private ephemeralPort(): number {
    for (;;) {
      const p = EPHEMERAL_FIRST + this.random.below(EPHEMERAL_COUNT);
      let used = this.udpHandlers.has(p) || this.listeners.has(p);
      for (const c of this.tcp.values()) if (c.localPort === p) used = true;
      if (!used) return p;
    }
  }

  private tcpKey(localPort: number, remoteIp: number, remotePort: number): string {
    return `${localPort}/${remoteIp}/${remotePort}`;
  }
}
