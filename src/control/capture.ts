/**
 * A pcap capture of one port, streamed to an API client.
 *
 * It is a FrameTap: the port hands it every frame it receives (rx) and sends (tx), lent. The
 * frame is copied at once into a staging buffer behind a pcap record header; partial checksums
 * (virtio-net NEEDS_CSUM) are completed in the copy, so the file reads like a capture on a wire.
 * GSO super-frames are recorded whole, as tcpdump on a host with TSO shows them. The staging
 * buffer is flushed to the socket when full and every 50 ms. A client that reads too slowly
 * loses frames (counted as capture_overrun on the port), never the daemon's memory.
 */
import type { Socket } from 'node:net';
import { DROP_CAPTURE } from '../link/counters.js';
import type { Frame } from '../link/frame.js';
import type { FrameTap, Port } from '../link/port.js';
import { completeChecksum } from '../packet/offload.js';
import { PCAP_RECORD_HEADER_LEN, writePcapGlobalHeader, writePcapRecordHeader, PCAP_GLOBAL_HEADER_LEN } from '../packet/pcap.js';
import { VNET_F_NEEDS_CSUM } from '../packet/virtio-net.js';

const STAGING_SIZE = 512 * 1024;
const FLUSH_INTERVAL_MS = 50;
/** Bytes queued on the socket beyond which frames are dropped rather than buffered. */
const MAX_QUEUED = 8 * 1024 * 1024;

export class CaptureSession implements FrameTap {
  private staging = Buffer.allocUnsafeSlow(STAGING_SIZE);
  private stagingDv = new DataView(this.staging.buffer, this.staging.byteOffset, STAGING_SIZE);
  private used = 0;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  frames = 0;
  dropped = 0;

  /**
   * @param limit stop after this many frames (0: until the client goes away)
   * @param onEnd called once when the session ends (limit reached, client gone, port removed)
   */
  constructor(
    private readonly port: Port,
    private readonly socket: Socket,
    private readonly limit: number,
    private readonly onEnd: (session: CaptureSession) => void,
  ) {
    const header = Buffer.alloc(PCAP_GLOBAL_HEADER_LEN);
    writePcapGlobalHeader(new DataView(header.buffer, header.byteOffset, header.length), 0);
    socket.write(header);
    this.timer = setInterval(() => this.flush(), FLUSH_INTERVAL_MS);
    this.timer.unref();
    socket.on('close', () => this.end());
    socket.on('error', () => this.end());
  }

  onFrame(port: Port, _direction: number, f: Frame): void {
    if (this.closed) return;
    const need = PCAP_RECORD_HEADER_LEN + f.len;
    if (need > STAGING_SIZE) {
      this.drop(port);
      return;
    }
    if (this.used + need > STAGING_SIZE) this.flush();
    if (this.socket.writableLength > MAX_QUEUED) {
      this.drop(port);
      return;
    }
    const t = performance.timeOrigin + performance.now();
    const sec = Math.floor(t / 1000);
    const usec = Math.floor((t - sec * 1000) * 1000);
    const at = writePcapRecordHeader(this.stagingDv, this.used, sec, usec, f.len, f.len);
    this.staging.set(f.buf.subarray(f.off, f.off + f.len), at);
    if (f.vnetOff >= 0 && (f.vnet.flags & VNET_F_NEEDS_CSUM) !== 0) {
      completeChecksum(this.stagingDv, at, f.len, f.vnet.csumStart, f.vnet.csumOffset);
    }
    this.used = at + f.len;
    this.frames++;
    if (this.limit > 0 && this.frames >= this.limit) this.end();
  }

  private drop(port: Port): void {
    this.dropped++;
    port.counters[DROP_CAPTURE]++;
  }

  private flush(): void {
    if (this.used === 0 || this.socket.destroyed) return;
    this.socket.write(Buffer.from(this.staging.subarray(0, this.used)));
    this.used = 0;
  }

  /** Flushes what is staged and ends the stream. Idempotent. */
  end(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.port.taps = this.port.taps.filter((t) => t !== this);
    if (!this.socket.destroyed) this.socket.end();
    this.onEnd(this);
  }
}
