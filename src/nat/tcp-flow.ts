/**
 * The container-facing TCP endpoint of one NAT'ed connection — sans-I/O.
 *
 * Theory of operation
 * -------------------
 * A container's TCP connection to the outside is terminated here and re-originated by the host
 * kernel through an ordinary socket (`TcpFlowHost`). Towards the container this object plays the
 * remote peer; it is a translation state machine in the passt tradition, not a full stack:
 *
 *  - The handshake completes only when the host socket has connected: SYN → (host connect) →
 *    SYN-ACK. A retransmitted SYN while connecting opens nothing new.
 *  - Container → host: in-order data is written to the host socket at once and acknowledged;
 *    a gap is answered with a duplicate ACK (the container's kernel retransmits, we never
 *    reassemble). The window we advertise is what the host socket can still buffer
 *    (RECEIVE_LIMIT − its writableLength), so memory stays bounded whatever the peer's speed.
 *  - Host → container: bytes read from the host socket wait in a send queue until the container
 *    acknowledges them (Node cannot MSG_PEEK), bounded by SEND_LIMIT: beyond it the host socket
 *    is paused, and the remote's real TCP is flow-controlled by the host kernel. Segments are
 *    sent within the container's window, up to 64 KiB at a time (the wire turns them into GSO
 *    frames with gso_size = the container's MSS).
 *  - Loss: retransmission from the oldest unacknowledged byte on RTO (200 ms, doubling, 12 tries)
 *    and on three duplicate ACKs; a zero window is probed on a persist timer.
 *  - FIN and half-close both ways; RST both ways, each delivered after the data that preceded
 *    it, as through the kernel (where a reset never takes back bytes the peer already received):
 *    a container's RST resets the host socket only once the host peer has acknowledged every
 *    byte written to it (TcpNat's part: SIOCOUTQ), and a host reset reaches the container only
 *    once it has acknowledged the host data still queued here. Either wait is bounded by
 *    RESET_DRAIN_MS, after which the reset goes anyway.
 *  - Published ports open the other way (`activeOpen`): a host client was accepted, we send the
 *    container a SYN from the client's address, and the host socket stays paused until the
 *    container's SYN-ACK. A reset answer resets the client at once; silence, after 4 SYNs (3 s).
 *
 * No congestion control: the container's kernel runs its own, and the host kernel the real one
 * towards the network. Time comes from the owner (`tick(now)`), so tests walk through timeouts.
 * Sequence numbers are compared modulo 2^32.
 */
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN } from '../packet/tcp.js';
import { TcpCloseReason } from './reasons.js';
import { sharedChunkPool } from './chunk-pool.js';
import { SendQueue } from './send-queue.js';

/** The host side: a net.Socket in production, a fake in tests. */
export interface TcpFlowHost {
  /**
   * Queues `len` bytes of `data` from `off`. They are lent (a TAP slab): the host copies what it
   * keeps. False when the socket's buffer is over its high-water mark.
   */
  write(data: Uint8Array, off: number, len: number): boolean;
  /** Half-close (FIN after queued data). */
  end(): void;
  /** Abort with RST. */
  reset(): void;
  pause(): void;
  resume(): void;
  readonly writableLength: number;
}

/** Where segments towards the container go (the NAT builds the frames). */
export interface TcpFlowWire {
  /**
   * Sends one segment to the container. `payloadOffset`/`payloadLength` name bytes of the flow's
   * send queue (offset from sndUna); copy them with `flow.copyPayload()`. `synOptions` asks for
   * MSS and window-scale options (SYN-ACK).
   */
  segment(flow: TcpFlow, flags: number, seq: number, ack: number, window: number, payloadOffset: number, payloadLength: number, synOptions: boolean): void;
  /** The flow's conntrack-visible state changed (or it ended: `CLOSED`). */
  stateChanged(flow: TcpFlow): void;
}

/** Endpoint states (towards the container). TIME_WAIT and CLOSED stay the highest two. */
export const FLOW_CONNECTING = 0; // container's SYN seen, host socket connecting
export const FLOW_SYN_SENT = 1; // (published port) our SYN sent, waiting for the container's SYN-ACK
export const FLOW_SYN_RCVD = 2; // SYN-ACK sent, waiting for the container's ACK
export const FLOW_ESTABLISHED = 3; // data both ways (half-closes tracked by flags)
export const FLOW_TIME_WAIT = 4; // both FINs exchanged and acknowledged: no socket left
export const FLOW_CLOSED = 5; // reset, refused, or given up

/** Bytes of container data the host socket may hold before our window closes. */
export const RECEIVE_LIMIT = 4 * 1024 * 1024;
/** Bytes of host data waiting for the container's ACK before the host socket is paused. */
export const SEND_LIMIT = 4 * 1024 * 1024;
/** Largest payload in one segment towards the container (fits a 64 KiB IPv4 datagram). */
export const MAX_SEGMENT_PAYLOAD = 65535 - 20 - 20;
/** Our window-scale shift: windows up to 2^14 * 64 KiB. */
export const OUR_WSCALE = 7;
const RTO_INITIAL_MS = 200;
const RTO_MAX_MS = 10_000;
const MAX_RETRIES = 12;
/**
 * SYNs sent to a container for a published port before its host client is reset: 200 + 400 +
 * 800 + 1600 ms, so a client waits about 3 s for a container that does not answer, not minutes.
 */
export const SYN_RETRIES = 4;
const PERSIST_MS = 500;
/**
 * How long a reset waits for the data in front of it to be acknowledged (by the container here,
 * by the host peer in TcpNat) before it is sent anyway. Long enough for a reader that is merely
 * slow to take a few MiB; short enough that a reader that never reads does not hold the data.
 */
export const RESET_DRAIN_MS = 2000;

const seqLt = (a: number, b: number): boolean => ((a - b) | 0) < 0;
const seqLe = (a: number, b: number): boolean => ((a - b) | 0) <= 0;
const seqAdd = (a: number, n: number): number => (a + n) >>> 0;
const seqDiff = (a: number, b: number): number => (a - b) | 0;

export class TcpFlow {
  state = FLOW_CONNECTING;
  // Receive side (container → us).
  irs: number;
  rcvNxt: number;
  /** Window we last advertised (bytes). */
  private advertised = 0;
  // Send side (us → container).
  readonly iss: number;
  sndUna: number;
  sndNxt: number;
  /** The container's receive window (bytes) and its window-scale shift (-1: not negotiated). */
  sndWnd: number;
  sndWscale = -1;
  /** Our shift towards the container (0 when it did not offer scaling). */
  rcvWscale = 0;
  /** The container's MSS (its MTU − 40), the GSO segment size towards it. */
  mss: number;
  // Half-closes.
  containerFin = false;
  hostEnded = false;
  finSent = false;
  finAcked = false;
  // Send queue: host bytes from sndUna on.
  private readonly queue = new SendQueue(sharedChunkPool);
  /** Bytes from sndUna on, waiting for the container's acknowledgement. */
  get queued(): number {
    return this.queue.length;
  }
  private hostPaused = false;
  // Timers (absolute times from the owner's clock; 0 = not armed).
  rtoAt = 0;
  private rto = RTO_INITIAL_MS;
  private retries = 0;
  /** SYN_SENT: the SYN was already sent again after resetting a stale connection. */
  private synResent = false;
  persistAt = 0;
  private dupAcks = 0;
  private now = 0;
  // Counters (conntrack shows them).
  packetsFromContainer = 0;
  bytesFromContainer = 0;
  packetsToContainer = 0;
  bytesToContainer = 0;
  /** Why the flow closed (for logs and conntrack): '' while open. */
  closeReason = '';
  /** We opened the connection (a published port) rather than the container. */
  active = false;
  /**
   * The host side was reset with data still queued for the container: the RST goes once the
   * container has acknowledged that data, or at this time (0: no reset pending).
   */
  resetAt = 0;
  private resetReason = '';
  /** The pending reset went at its deadline, with data the container had not acknowledged. */
  resetDrainTimedOut = false;
  private peerMss = -1;
  private peerWscale = -1;

  constructor(
    readonly host: TcpFlowHost,
    readonly wire: TcpFlowWire,
    /** The container's SYN: its ISN, window, MSS option (-1 absent), window scale (-1 absent). */
    syn: { seq: number; window: number; mss: number; wscale: number },
    iss: number,
    now: number,
  ) {
    this.now = now;
    this.irs = syn.seq >>> 0;
    this.rcvNxt = seqAdd(this.irs, 1);
    this.iss = iss >>> 0;
    this.sndUna = this.iss;
    this.sndNxt = this.iss;
    this.mss = syn.mss > 0 ? syn.mss : 536;
    if (syn.wscale >= 0) {
      this.sndWscale = Math.min(syn.wscale, 14);
      this.rcvWscale = OUR_WSCALE;
    }
    this.sndWnd = syn.window; // a SYN's window is never scaled
  }

  /**
   * A connection we open towards the container (a published port): SYN with our MSS and window
   * scale, host socket paused until the container answers. `peerSyn()` then gives its options.
   */
  static activeOpen(host: TcpFlowHost, wire: TcpFlowWire, iss: number, now: number): TcpFlow {
    const f = new TcpFlow(host, wire, { seq: 0, window: 0, mss: -1, wscale: -1 }, iss, now);
    f.state = FLOW_SYN_SENT;
    f.active = true;
    f.rcvWscale = OUR_WSCALE; // offered; dropped if the container's SYN-ACK has no window scale
    f.host.pause();
    f.hostPaused = true;
    f.sendSyn();
    return f;
  }

  /** The MSS and window-scale options of the container's SYN-ACK (-1: absent); before segment(). */
  peerSyn(mss: number, wscale: number): void {
    this.peerMss = mss;
    this.peerWscale = wscale;
  }

  // ------------------------------------------------------------------------------------------
  // Host events
  // ------------------------------------------------------------------------------------------

  /** The host socket connected: answer the container's SYN. */
  hostConnected(now: number): void {
    this.now = now;
    if (this.state !== FLOW_CONNECTING) return;
    this.state = FLOW_SYN_RCVD;
    // No host data until the container completes the handshake.
    this.host.pause();
    this.hostPaused = true;
    this.sendSynAck();
    this.wire.stateChanged(this);
  }

  /** Host data: `len` bytes of `data` from `off`, copied (the caller may reuse its buffer). */
  hostData(data: Uint8Array, off: number, len: number, now: number): void {
    this.now = now;
    if (this.state >= FLOW_TIME_WAIT || len === 0) return;
    this.queue.append(data, off, len);
    if (this.queued >= SEND_LIMIT && !this.hostPaused) {
      this.host.pause();
      this.hostPaused = true;
    }
    this.pump();
  }

  /** The host peer half-closed: FIN towards the container once everything queued is sent. */
  hostEnd(now: number): void {
    this.now = now;
    if (this.hostEnded || this.state >= FLOW_TIME_WAIT) return;
    this.hostEnded = true;
    this.pump();
    this.wire.stateChanged(this);
  }

  /** The host socket can take more: reopen our window if it was (nearly) shut. */
  hostDrain(now: number): void {
    this.now = now;
    if (this.state !== FLOW_ESTABLISHED || this.containerFin) return;
    const w = this.window();
    if (this.advertised < this.mss && w >= this.mss) this.sendAck();
  }

  /**
   * The host connection was reset (or failed): reset the container's side — after the host data
   * already queued here. Through the kernel the container would read every byte the host peer
   * sent before its reset and then get the reset, and we have acknowledged those bytes to the
   * peer, so they are delivered first (bounded by RESET_DRAIN_MS); what the container sends
   * meanwhile is not acknowledged, since nothing on the host can take it.
   */
  hostReset(now: number, reason: string): void {
    this.now = now;
    if (this.state >= FLOW_TIME_WAIT || this.resetAt !== 0) return;
    if (this.state === FLOW_ESTABLISHED && this.queued > 0) {
      this.resetAt = now + RESET_DRAIN_MS;
      this.resetReason = reason;
      this.pump();
      return;
    }
    this.abort(now, reason);
  }

  /** Resets the container's side at once, dropping whatever is queued (a flush, a timeout). */
  abort(now: number, reason: string): void {
    this.now = now;
    if (this.state >= FLOW_TIME_WAIT) return;
    // Before the container's SYN-ACK its sequence numbers are unknown: a bare RST (in its window
    // if it did answer meanwhile) ends its half-open connection.
    if (this.state === FLOW_SYN_SENT) this.wire.segment(this, TCP_RST, this.sndNxt, 0, 0, 0, 0, false);
    else if (this.state !== FLOW_CONNECTING) this.wire.segment(this, TCP_RST | TCP_ACK, this.sndNxt, this.rcvNxt, 0, 0, 0, false);
    this.close(reason);
  }

  // ------------------------------------------------------------------------------------------
  // Segments from the container
  // ------------------------------------------------------------------------------------------

  /**
   * One segment from the container. `payload[off, off+len)` is lent: written to the host (which
   * copies) before returning. Options matter only on SYNs (handled by the owner).
   */
  segment(flags: number, seq: number, ack: number, window: number, payload: Uint8Array, off: number, len: number, now: number): void {
    this.now = now;
    this.packetsFromContainer++;
    this.bytesFromContainer += len;
    seq >>>= 0;
    ack >>>= 0;
    if (this.state === FLOW_CLOSED) return;
    if (this.state === FLOW_SYN_SENT) {
      this.synSentSegment(flags, seq, ack, window);
      return;
    }

    if ((flags & TCP_RST) !== 0) {
      // Accept a reset whose sequence number is inside what we expect (RFC 5961 spirit, relaxed).
      const d = seqDiff(seq, this.rcvNxt);
      if (d >= -1 && d <= Math.max(this.advertised, 1)) {
        this.host.reset();
        this.close(TcpCloseReason.ResetByContainer);
      }
      return;
    }
    if ((flags & TCP_SYN) !== 0) {
      // A retransmitted SYN: while connecting, nothing to do (no second socket); after our
      // SYN-ACK, send it again; later, a challenge ACK.
      if (this.state === FLOW_SYN_RCVD && seq === this.irs) this.sendSynAck();
      else if (this.state !== FLOW_CONNECTING) this.sendAck();
      return;
    }
    if (this.state === FLOW_CONNECTING) return; // nothing but SYNs before we have answered
    if ((flags & TCP_ACK) === 0) return; // every segment after the handshake carries ACK

    if (this.state === FLOW_TIME_WAIT) {
      // Our last ACK was lost: the container retransmits its FIN.
      if ((flags & TCP_FIN) !== 0) this.sendAck();
      return;
    }

    if (this.state === FLOW_SYN_RCVD) {
      if (ack !== seqAdd(this.iss, 1)) {
        this.wire.segment(this, TCP_RST, ack, 0, 0, 0, 0, false);
        return;
      }
      this.state = FLOW_ESTABLISHED;
      this.sndUna = ack;
      this.sndNxt = ack;
      this.clearRto();
      this.wire.stateChanged(this);
      // The window this ACK announces first, then the host's bytes: a host stack that delivers
      // on resume() at once (MemoryOutside) would otherwise send into the SYN's window.
      this.onAck(ack, window, false);
      if (this.state === FLOW_ESTABLISHED && this.hostPaused) {
        this.hostPaused = false;
        this.host.resume();
      }
    } else {
      this.onAck(ack, window, len === 0 && (flags & TCP_FIN) === 0);
    }
    if (this.resetAt !== 0) {
      this.resetSegment(flags, seq, len);
      return;
    }

    let needAck = false;
    if (len > 0) needAck = this.onData(seq, payload, off, len) || needAck;
    if ((flags & TCP_FIN) !== 0) {
      if (seqAdd(seq, len) === this.rcvNxt && !this.containerFin) {
        this.rcvNxt = seqAdd(this.rcvNxt, 1);
        this.containerFin = true;
        this.host.end();
        this.wire.stateChanged(this);
      }
      needAck = true;
    }
    if (needAck) this.sendAck();
    this.pump();
    this.maybeDone();
  }

  /**
   * A segment while a host reset waits for the container to acknowledge the data before it:
   * its ACK was taken; its data and FIN are not (the host socket is gone), a duplicate ACK says
   * so. The RST goes as soon as nothing is left unacknowledged.
   */
  private resetSegment(flags: number, seq: number, len: number): void {
    if (this.queued === 0) {
      this.sendPendingReset();
      return;
    }
    if (len > 0 || (flags & TCP_FIN) !== 0) this.sendAck();
    this.pump();
  }

  /** The pending host reset: RST|ACK right after everything we sent, then the flow is closed. */
  private sendPendingReset(): void {
    this.wire.segment(this, TCP_RST | TCP_ACK, this.sndNxt, this.rcvNxt, 0, 0, 0, false);
    this.close(this.resetReason);
  }

  /** SYN-SENT (RFC 9293 3.10.7.3): the container answers our SYN, refuses it, or talks nonsense. */
  private synSentSegment(flags: number, seq: number, ack: number, window: number): void {
    const ackOk = (flags & TCP_ACK) !== 0 && ack === seqAdd(this.iss, 1);
    if ((flags & TCP_ACK) !== 0 && !ackOk) {
      // Acknowledges something we never sent (an old connection on these ports): reset it.
      if ((flags & TCP_RST) === 0) {
        this.wire.segment(this, TCP_RST, ack, 0, 0, 0, 0, false);
        // Usually the container's TIME_WAIT of an earlier connection on the same ports, whose
        // answer to our SYN was a challenge ACK. Our RST ends that TIME_WAIT (Linux, with the
        // default tcp_rfc1337=0), so a SYN sent now opens the connection at once instead of
        // after the retransmission timer. Once per flow, so that a peer answering every SYN
        // this way cannot make us loop.
        if (!this.synResent && this.state === FLOW_SYN_SENT) {
          this.synResent = true;
          this.sendSyn();
        }
      }
      return;
    }
    if ((flags & TCP_RST) !== 0) {
      if (ackOk) {
        // Nothing listens on that port in the container: the host client is reset at once.
        this.host.reset();
        this.close(TcpCloseReason.RefusedByContainer);
      }
      return;
    }
    if ((flags & TCP_SYN) === 0 || !ackOk) return; // (a simultaneous open is not expected of a server)
    this.irs = seq;
    this.rcvNxt = seqAdd(seq, 1);
    this.sndUna = ack;
    this.sndNxt = ack;
    this.sndWnd = window; // a SYN's window is never scaled
    this.mss = this.peerMss > 0 ? this.peerMss : 536;
    if (this.peerWscale >= 0) this.sndWscale = Math.min(this.peerWscale, 14);
    else {
      this.sndWscale = -1;
      this.rcvWscale = 0;
    }
    this.state = FLOW_ESTABLISHED;
    this.clearRto();
    this.sendAck();
    this.hostPaused = false;
    this.host.resume();
    this.wire.stateChanged(this);
    this.pump();
  }

  private onAck(ack: number, window: number, pureAck: boolean): void {
    const newWnd = window << Math.max(this.sndWscale, 0);
    if (seqLt(this.sndUna, ack) && seqLe(ack, this.sndNxt)) {
      let acked = seqDiff(ack, this.sndUna);
      // Our FIN occupies one sequence number after the data.
      if (this.finSent && ack === this.sndNxt) {
        acked -= 1;
        if (!this.finAcked) {
          this.finAcked = true;
          this.wire.stateChanged(this);
        }
      }
      this.consume(acked);
      this.sndUna = ack;
      this.dupAcks = 0;
      this.retries = 0;
      this.rto = RTO_INITIAL_MS;
      if (this.sndUna === this.sndNxt) this.clearRto();
      else this.rtoAt = this.now + this.rto;
      if (this.hostPaused && this.queued < SEND_LIMIT / 2 && this.state === FLOW_ESTABLISHED) {
        this.hostPaused = false;
        this.host.resume();
      }
    } else if (ack === this.sndUna && pureAck && this.sndNxt !== this.sndUna && newWnd === this.sndWnd) {
      // Three duplicate ACKs: the container lost a segment of ours; resend from sndUna.
      if (++this.dupAcks === 3) this.retransmit();
    }
    this.sndWnd = newWnd;
    if (this.sndWnd > 0) this.persistAt = 0;
  }

  /** In-order data goes to the host; returns true when an ACK must be sent. */
  private onData(seq: number, payload: Uint8Array, off: number, len: number): boolean {
    if (this.containerFin) return true;
    const skip = seqDiff(this.rcvNxt, seq);
    if (skip < 0) return true; // a gap: duplicate ACK, the container retransmits what is missing
    if (skip >= len) return true; // all old: a retransmission we already have
    // A container that ignores our window cannot make us buffer without bound.
    if (this.host.writableLength > 2 * RECEIVE_LIMIT) return true;
    this.host.write(payload, off + skip, len - skip);
    this.rcvNxt = seqAdd(this.rcvNxt, len - skip);
    return true;
  }

  // ------------------------------------------------------------------------------------------
  // Sending
  // ------------------------------------------------------------------------------------------

  /** The window we can offer: what the host socket may still buffer. */
  window(): number {
    return Math.max(0, RECEIVE_LIMIT - this.host.writableLength);
  }

  private windowField(): number {
    const w = this.window();
    this.advertised = Math.min(w, 0xffff << this.rcvWscale);
    return Math.min(0xffff, w >>> this.rcvWscale);
  }

  private sendSyn(): void {
    this.advertised = Math.min(this.window(), 0xffff);
    this.sndNxt = seqAdd(this.iss, 1);
    this.armRto();
    this.wire.segment(this, TCP_SYN, this.iss, 0, this.advertised, 0, 0, true);
  }

  private sendSynAck(): void {
    this.advertised = Math.min(this.window(), 0xffff);
    this.sndNxt = seqAdd(this.iss, 1);
    this.armRto();
    this.wire.segment(this, TCP_SYN | TCP_ACK, this.iss, this.rcvNxt, Math.min(0xffff, this.window()), 0, 0, true);
  }

  sendAck(): void {
    this.wire.segment(this, TCP_ACK, this.sndNxt, this.rcvNxt, this.windowField(), 0, 0, false);
  }

  /** Sends what the container's window allows, then our FIN if the host is done. */
  pump(): void {
    // Once our FIN is acknowledged there is nothing left to send — and the sums below, which
    // count the FIN's sequence number as in flight, would take its acknowledgement for a byte.
    if (this.state !== FLOW_ESTABLISHED || this.finAcked) return;
    for (;;) {
      const inFlight = seqDiff(this.sndNxt, this.sndUna) - (this.finSent ? 1 : 0);
      const unsent = this.queued - inFlight;
      if (unsent <= 0) break;
      const room = this.sndWnd - inFlight;
      if (room <= 0) {
        if (this.persistAt === 0 && this.sndWnd === 0) this.persistAt = this.now + PERSIST_MS;
        break;
      }
      let n = Math.min(unsent, room, MAX_SEGMENT_PAYLOAD);
      // Whole MSS-sized pieces in a big segment, so the GSO split needs no short middle piece.
      if (n > this.mss && n < unsent) n -= n % this.mss;
      const flags = TCP_ACK | (n === unsent ? TCP_PSH : 0);
      // State first, then the segment: the container's answer may come back before segment()
      // returns (a MemoryPort driven from its frame callback) and must find sndNxt past it.
      const seq = this.sndNxt;
      this.sndNxt = seqAdd(seq, n);
      this.packetsToContainer++;
      this.bytesToContainer += n;
      if (this.rtoAt === 0) this.armRto();
      this.wire.segment(this, flags, seq, this.rcvNxt, this.windowField(), inFlight, n, false);
      if (this.state !== FLOW_ESTABLISHED) return; // closed by what came back meanwhile
    }
    const inFlight = seqDiff(this.sndNxt, this.sndUna) - (this.finSent ? 1 : 0);
    if (this.hostEnded && !this.finSent && inFlight === this.queued) {
      const seq = this.sndNxt;
      this.finSent = true;
      this.sndNxt = seqAdd(seq, 1);
      if (this.rtoAt === 0) this.armRto();
      this.wire.segment(this, TCP_FIN | TCP_ACK, seq, this.rcvNxt, this.windowField(), 0, 0, false);
      this.wire.stateChanged(this);
    }
  }

  /** Copies `len` queued bytes starting `offset` bytes after sndUna into `target` at `at`. */
  copyPayload(offset: number, len: number, target: Uint8Array, at: number): void {
    this.queue.copyOut(offset, len, target, at);
  }

  /** Drops `n` acknowledged bytes from the front of the send queue. */
  private consume(n: number): void {
    this.queue.consume(n);
  }

  private armRto(): void {
    this.rtoAt = this.now + this.rto;
  }

  private clearRto(): void {
    this.rtoAt = 0;
    this.retries = 0;
    this.rto = RTO_INITIAL_MS;
  }

  /** Go back to sndUna and send again (RTO, fast retransmit). */
  private retransmit(): void {
    if (this.state === FLOW_SYN_SENT) {
      this.sendSyn();
      return;
    }
    if (this.state === FLOW_SYN_RCVD) {
      this.sendSynAck();
      return;
    }
    if (this.finSent && !this.finAcked && seqDiff(this.sndNxt, this.sndUna) === 1) {
      this.armRto();
      this.wire.segment(this, TCP_FIN | TCP_ACK, this.sndUna, this.rcvNxt, this.windowField(), 0, 0, false);
      return;
    }
    this.sndNxt = this.sndUna;
    this.finSent = false;
    this.armRto();
    this.pump();
  }

  /** Timers: RTO, zero-window probes, a pending reset. Call when `now` passes rtoAt, persistAt or resetAt. */
  tick(now: number): void {
    this.now = now;
    if (this.state >= FLOW_TIME_WAIT) return;
    if (this.resetAt !== 0 && now >= this.resetAt) {
      // The container did not take the data in time: the reset goes anyway.
      this.resetDrainTimedOut = true;
      this.sendPendingReset();
      return;
    }
    if (this.rtoAt !== 0 && now >= this.rtoAt) {
      if (this.state === FLOW_SYN_SENT && this.retries + 1 >= SYN_RETRIES) {
        // The container never answered: the client that is waiting on the host is reset.
        this.host.reset();
        this.wire.segment(this, TCP_RST, this.sndNxt, 0, 0, 0, 0, false);
        this.close(TcpCloseReason.ContainerDidNotAnswer);
        return;
      }
      if (++this.retries > MAX_RETRIES) {
        this.host.reset();
        this.wire.segment(this, TCP_RST | TCP_ACK, this.sndNxt, this.rcvNxt, 0, 0, 0, false);
        this.close(TcpCloseReason.ContainerStoppedAnswering);
        return;
      }
      this.rto = Math.min(this.rto * 2, RTO_MAX_MS);
      this.retransmit();
    }
    if (this.persistAt !== 0 && now >= this.persistAt) {
      // Zero window: an ACK just below sndUna makes the container answer with its window.
      this.wire.segment(this, TCP_ACK, seqAdd(this.sndUna, -1 >>> 0), this.rcvNxt, this.windowField(), 0, 0, false);
      this.persistAt = now + PERSIST_MS;
    }
  }

  private maybeDone(): void {
    if (this.containerFin && this.finSent && this.finAcked && this.state === FLOW_ESTABLISHED) {
      this.state = FLOW_TIME_WAIT;
      this.clearRto();
      this.persistAt = 0;
      this.queue.clear();
      this.closeReason = TcpCloseReason.Closed;
      this.wire.stateChanged(this);
    }
  }

  /** Ends the flow without further segments (after a reset, a refusal, a flush). */
  close(reason: string): void {
    if (this.state === FLOW_CLOSED) return;
    this.state = FLOW_CLOSED;
    this.closeReason = reason;
    this.rtoAt = 0;
    this.persistAt = 0;
    this.resetAt = 0;
    this.queue.clear();
    this.wire.stateChanged(this);
  }

  /** The conntrack state name of this flow. */
  conntrackState(): string {
    switch (this.state) {
      case FLOW_CONNECTING:
      case FLOW_SYN_SENT:
        return 'SYN_SENT';
      case FLOW_SYN_RCVD:
        return 'SYN_RECV';
      case FLOW_TIME_WAIT:
        return 'TIME_WAIT';
      case FLOW_CLOSED:
        return 'CLOSE';
      default: {
        const fins = (this.containerFin ? 1 : 0) + (this.finSent ? 1 : 0);
        if (fins === 0) return 'ESTABLISHED';
        if (fins === 2) return 'LAST_ACK';
        // One side closed: FIN_WAIT until that FIN is acknowledged, then CLOSE_WAIT.
        const acked = this.containerFin ? true : this.finAcked;
        return acked ? 'CLOSE_WAIT' : 'FIN_WAIT';
      }
    }
  }
}

export { seqLt, seqLe, seqAdd, seqDiff };
