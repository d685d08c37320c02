/**
 * Recording ports to pcap or pcapng, in memory, timed by the Lab's clock: with a VirtualClock
 * the timestamps — and so the whole file — are the same on every run with the same seed.
 *
 * A Recorder is a FrameTap (link/port.ts): each frame crossing a recorded port is copied at once
 * (partial checksums completed, as on a wire). pcapng gives each port its own interface, named
 * after it, and records both directions; classic pcap has one interface, so it records only
 * what each port receives from its link (rx) unless told otherwise — otherwise a frame
 * forwarded from port A to port B would appear twice.
 */
import { writeFileSync } from 'node:fs';
import type { Clock } from '../platform/clock.js';
import { copyWireFrame, type Frame } from '../link/frame.js';
import { DIRECTION_RX, DIRECTION_TX, type FrameTap, type Port } from '../link/port.js';
import { PCAP_GLOBAL_HEADER_LEN, PCAP_RECORD_HEADER_LEN, writePcapGlobalHeader, writePcapRecordHeader } from '../packet/pcap.js';
import {
  finishPcapngPacket,
  pcapngInterfaceLength,
  pcapngPacketLength,
  PCAPNG_INBOUND,
  PCAPNG_OUTBOUND,
  PCAPNG_SHB_LEN,
  writePcapngInterface,
  writePcapngPacketHeader,
  writePcapngSectionHeader,
} from '../packet/pcapng.js';

export type CaptureFormat = 'pcap' | 'pcapng';
export type CaptureDirection = 'rx' | 'tx' | 'both';

export interface RecorderOptions {
  format?: CaptureFormat;
  /** Which crossings to record (default: both for pcapng, rx for pcap). */
  direction?: CaptureDirection;
  /** A name for each port's pcapng interface (default the port's name). */
  interfaceName?: (port: Port) => string;
}

export class Recorder implements FrameTap {
  readonly format: CaptureFormat;
  readonly direction: CaptureDirection;
  /** Frames recorded. */
  frames = 0;
  private readonly chunks: Buffer[] = [];
  private readonly ports: Port[] = [];
  private readonly interfaceOf = new Map<Port, number>();
  private readonly nameOf: (port: Port) => string;
  /** True once stop() ran. */
  stopped = false;

  constructor(
    private readonly clock: Clock,
    options: RecorderOptions = {},
  ) {
    this.format = options.format ?? 'pcapng';
    this.direction = options.direction ?? (this.format === 'pcapng' ? 'both' : 'rx');
    this.nameOf = options.interfaceName ?? ((p) => p.name);
    if (this.format === 'pcap') {
      const h = Buffer.alloc(PCAP_GLOBAL_HEADER_LEN);
      writePcapGlobalHeader(new DataView(h.buffer, h.byteOffset, h.length), 0);
      this.chunks.push(h);
    } else {
      const h = Buffer.alloc(PCAPNG_SHB_LEN);
      writePcapngSectionHeader(new DataView(h.buffer, h.byteOffset, h.length), 0);
      this.chunks.push(h);
    }
  }

  /** Starts recording `port` (idempotent). */
  add(port: Port): this {
    if (this.stopped) throw new Error('this recorder has stopped');
    if (this.interfaceOf.has(port)) return this;
    this.interfaceOf.set(port, this.ports.length);
    this.ports.push(port);
    if (this.format === 'pcapng') {
      const name = this.nameOf(port);
      const b = Buffer.alloc(pcapngInterfaceLength(name));
      writePcapngInterface(b, new DataView(b.buffer, b.byteOffset, b.length), 0, name);
      this.chunks.push(b);
    }
    port.taps = [...port.taps, this];
    return this;
  }

  onFrame(port: Port, direction: number, f: Frame): boolean {
    if (this.stopped) return true;
    if (this.direction === 'rx' && direction !== DIRECTION_RX) return true;
    if (this.direction === 'tx' && direction !== DIRECTION_TX) return true;
    const us = Math.round(this.clock.wallTime() * 1000);
    let rec: Buffer;
    let at: number;
    let dv: DataView;
    if (this.format === 'pcap') {
      rec = Buffer.alloc(PCAP_RECORD_HEADER_LEN + f.len);
      dv = new DataView(rec.buffer, rec.byteOffset, rec.length);
      at = writePcapRecordHeader(dv, 0, Math.floor(us / 1e6), us % 1e6, f.len, f.len);
    } else {
      rec = Buffer.alloc(pcapngPacketLength(f.len));
      dv = new DataView(rec.buffer, rec.byteOffset, rec.length);
      at = writePcapngPacketHeader(dv, 0, this.interfaceOf.get(port) ?? 0, us, f.len, f.len);
    }
    copyWireFrame(f, rec, dv, at);
    if (this.format === 'pcapng') finishPcapngPacket(rec, dv, at, f.len, direction === DIRECTION_RX ? PCAPNG_INBOUND : PCAPNG_OUTBOUND);
    this.chunks.push(rec);
    this.frames++;
    return true;
  }

  /** The file so far. */
  toBuffer(): Buffer {
    return Buffer.concat(this.chunks);
  }

  /** Writes the file so far to `path`. */
  writeFile(path: string): void {
    writeFileSync(path, this.toBuffer());
  }

  /** Stops recording (the ports forget this tap); the file stays readable. */
  stop(): Buffer {
    if (!this.stopped) {
      this.stopped = true;
      for (const p of this.ports) p.taps = p.taps.filter((t) => t !== this);
    }
    return this.toBuffer();
  }
}
