/**
 * A pcap capture of one port, streamed to a byte sink (the daemon's capture API gives it the
 * client's socket; control/capture.ts wires the socket's events).
 *
 * It is a FrameTap: the port hands it every frame it receives (rx) and sends (tx), lent. The
 * frame is copied at once into a staging buffer behind a pcap record header; partial checksums
 * (virtio-net NEEDS_CSUM) are completed in the copy, so the file reads like a capture on a wire.
 * GSO super-frames are recorded whole, as tcpdump on a host with TSO shows them. The staging
 * buffer is flushed to the socket when full and every 50 ms.
 *
 * Memory is bounded per session: staging (STAGING_SIZE) plus what the socket has queued, which
 * is written to only while below MAX_QUEUED. A client that reads too slowly (or never) loses
 * frames, never the daemon's memory: the session counts them (`dropped`, reported when it ends)
 * and tells the port, which counts each such frame once in capture_overrun however many
 * sessions missed it.
 *
 * Ending: end() flushes what is staged — every frame that crossed the port until that moment —
 * and ends the sink, so the client's file is complete. The count limit ends it too; the control
 * plane calls end() when the client half-closes (the CLI does on Ctrl-C), vanishes, or the port
 * goes away.
 */
import { copyWireFrame, type Frame } from './frame.js';
import type { FrameTap, Port } from './port.js';
import { systemClock, type Clock, type Timer } from '../platform/clock.js';
import { PCAP_RECORD_HEADER_LEN, writePcapGlobalHeader, writePcapRecordHeader, PCAP_GLOBAL_HEADER_LEN } from '../packet/pcap.js';

/** Room for four 64 KiB GSO frames, or ~170 full-size frames, between flushes. */
export const STAGING_SIZE = 256 * 1024;
const FLUSH_INTERVAL_MS = 50;
/**
 * Bytes the socket may have queued (writableLength) before the session stops writing and drops
 * frames instead: the most a session's client can make the daemon hold besides the staging
 * buffer (a flush is at most STAGING_SIZE on top).
 */
export const MAX_QUEUED = 1024 * 1024;

/** Where a capture's bytes go: the part of a net.Socket (or any writable stream) it uses. */
export interface PcapSink {
  write(chunk: Buffer): unknown;
  end(): unknown;
  readonly writableLength: number;
  readonly destroyed: boolean;
}

export class PcapStreamTap implements FrameTap {
  private staging = Buffer.allocUnsafeSlow(STAGING_SIZE);
  private stagingDv = new DataView(this.staging.buffer, this.staging.byteOffset, STAGING_SIZE);
  private used = 0;
  private timer: Timer | null = null;
  private closed = false;
  /** Frames recorded. */
  frames = 0;
  /** Frames this session had to drop (its client too slow, or a frame larger than staging). */
  dropped = 0;

  /**
   * @param limit stop after this many frames (0: until the client goes away)
   * @param onEnd called once when the session ends (limit reached, client done or gone, port removed)
   */
  constructor(
    private readonly port: Port,
    private readonly socket: PcapSink,
    private readonly limit: number,
    private readonly onEnd: (session: PcapStreamTap) => void,
    private readonly clock: Clock = systemClock,
  ) {
    const header = Buffer.alloc(PCAP_GLOBAL_HEADER_LEN);
    writePcapGlobalHeader(new DataView(header.buffer, header.byteOffset, header.length), 0);
    socket.write(header);
    this.timer = clock.setInterval(() => this.flush(false), FLUSH_INTERVAL_MS);
  }

  onFrame(_port: Port, _direction: number, f: Frame): boolean {
    if (this.closed) return true;
    const need = PCAP_RECORD_HEADER_LEN + f.len;
    if (need > STAGING_SIZE) return this.drop();
    if (this.used + need > STAGING_SIZE && !this.flush(false)) return this.drop();
    const t = this.clock.wallTime();
    const sec = Math.floor(t / 1000);
    const usec = Math.floor((t - sec * 1000) * 1000);
    const at = writePcapRecordHeader(this.stagingDv, this.used, sec, usec, f.len, f.len);
    copyWireFrame(f, this.staging, this.stagingDv, at);
    this.used = at + f.len;
    this.frames++;
    if (this.limit > 0 && this.frames >= this.limit) this.end();
    return true;
  }

  private drop(): false {
    this.dropped++;
    return false;
  }

  /**
   * Writes what is staged, unless the socket already holds MAX_QUEUED (then it stays staged and
   * the caller drops new frames) — `force` writes anyway (the end: staging is bounded). Returns
   * whether the staging buffer is empty now.
   */
  private flush(force: boolean): boolean {
    if (this.used === 0) return true;
    if (this.socket.destroyed) {
      this.used = 0;
      return true;
    }
    if (!force && this.socket.writableLength >= MAX_QUEUED) return false;
    // A copy of exactly the staged bytes: the staging buffer is reused at once, and a queued
    // write holds only what it will send.
    this.socket.write(Buffer.from(this.staging.subarray(0, this.used)));
    this.used = 0;
    return true;
  }

  /** Flushes what is staged and ends the stream. Idempotent. */
  end(): void {
    if (this.closed) return;
    this.flush(true);
    this.closed = true;
    this.clock.clear(this.timer);
    this.timer = null;
    this.port.taps = this.port.taps.filter((t) => t !== this);
    if (!this.socket.destroyed) this.socket.end();
    this.onEnd(this);
  }
}
