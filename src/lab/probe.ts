/**
 * Assertions on what crosses a port, in the style of smoltcp's `recv!` / `recv_nothing!`: a
 * FrameProbe watches a port (a FrameTap: any port, memory, TAP or gateway), queues each frame
 * decoded (frame-info.ts), and lets a test take the frames it expects and then check that
 * nothing else was sent. With a VirtualClock, `expect` and `expectNothing` run the clock
 * themselves (synchronously); with the system clock, `waitFor` waits in real time.
 *
 * Failures say what was seen instead, one line per frame.
 */
import type { Clock } from '../platform/clock.js';
import { VirtualClock } from '../platform/clock.js';
import { copyWireFrame, type Frame } from '../link/frame.js';
import { DIRECTION_TX, type FrameTap, type Port } from '../link/port.js';
import type { MemoryPort } from '../link/memory-port.js';
import { readCapture } from '../packet/pcapng.js';
import { UsernetError } from '../errors.js';
import { decodeFrame, type FrameInfo } from './frame-info.js';

export type FrameMatch = (f: FrameInfo) => boolean;

export interface ProbeOptions {
  /**
   * Which way: 'out' (default) — frames the switch sends out of the port, i.e. what the container
   * behind it receives; 'in' — what the container sends; 'both'. Frames are seen as they cross
   * the port, before its software offloads: towards a port without offloads, a 64 KiB GSO frame
   * from the NAT shows whole here (as tcpdump shows it on a host with TSO) though the container
   * gets it as MSS-sized segments.
   */
  direction?: 'out' | 'in' | 'both';
}

export interface ProbedFrame extends FrameInfo {
  /** Clock time (ms) when the frame crossed the port. */
  at: number;
  direction: 'in' | 'out';
  /** The frame's bytes (a copy). */
  bytes: Buffer;
}

/** A frame did not come, or one came that should not have. */
export class ProbeError extends UsernetError {}

export class FrameProbe implements FrameTap {
  /** Every frame seen, in order (taken or not). */
  readonly seen: ProbedFrame[] = [];
  private readonly pending: ProbedFrame[] = [];
  private readonly ignored: FrameMatch[] = [];
  private readonly waiters = new Set<{ match: FrameMatch; resolve: (f: ProbedFrame) => void }>();
  private readonly direction: 'out' | 'in' | 'both';

  constructor(
    readonly port: Port,
    private readonly clock: Clock,
    options: ProbeOptions = {},
  ) {
    this.direction = options.direction ?? 'out';
    port.taps = [...port.taps, this];
  }

  onFrame(_port: Port, direction: number, f: Frame): boolean {
    const dir = direction === DIRECTION_TX ? 'out' : 'in';
    if (this.direction !== 'both' && dir !== this.direction) return true;
    const bytes = Buffer.allocUnsafe(f.len);
    copyWireFrame(f, bytes, new DataView(bytes.buffer, bytes.byteOffset, bytes.length), 0);
    const info: ProbedFrame = { ...decodeFrame(bytes), at: this.clock.now(), direction: dir, bytes };
    this.seen.push(info);
    if (this.ignored.some((m) => m(info))) return true;
    for (const w of this.waiters) {
      if (w.match(info)) {
        this.waiters.delete(w);
        w.resolve(info);
        return true;
      }
    }
    this.pending.push(info);
    return true;
  }

  /** Frames matching `match` are not queued, from now on and already queued (ARP chatter, say); they stay in `seen`. */
  ignore(match: FrameMatch): this {
    this.ignored.push(match);
    for (let i = this.pending.length - 1; i >= 0; i--) if (match(this.pending[i])) this.pending.splice(i, 1);
    return this;
  }

  /** Frames seen and not yet taken. */
  get queued(): readonly ProbedFrame[] {
    return this.pending;
  }

  /**
   * Takes the first queued frame that matches, running the (virtual) clock up to `withinMs` for
   * it to come. Frames before it stay queued. Throws a ProbeError listing what was queued.
   */
  expect(match: FrameMatch, options: { withinMs?: number; what?: string } = {}): ProbedFrame {
    const clock = this.virtual('expect');
    const deadline = clock.now() + (options.withinMs ?? 1000);
    for (;;) {
      const i = this.pending.findIndex(match);
      if (i >= 0) return this.pending.splice(i, 1)[0];
      if (clock.nextDue > deadline) break;
      clock.step();
    }
    clock.advanceTo(deadline);
    const i = this.pending.findIndex(match);
    if (i >= 0) return this.pending.splice(i, 1)[0];
    throw new ProbeError('ERR_PROBE_NO_MATCH', `${this.port.name}: ${options.what !== undefined ? `${options.what}: none` : 'no matching frame'} within ${options.withinMs ?? 1000} ms; ${this.describeQueue()}`);
  }

  /** The next queued frame, whatever it is (running the clock up to `withinMs` for one). */
  next(options: { withinMs?: number } = {}): ProbedFrame {
    return this.expect(() => true, { ...options, what: 'any frame' });
  }

  /** Runs the clock `withinMs` (default 0) and throws if any frame is queued: "nothing else was sent". */
  expectNothing(options: { withinMs?: number } = {}): void {
    const clock = this.virtual('expectNothing');
    clock.advance(options.withinMs ?? 0);
    if (this.pending.length > 0) throw new ProbeError('ERR_PROBE_UNEXPECTED', `${this.port.name}: expected nothing more, ${this.describeQueue()}`);
  }

  /** Resolves with the first frame (queued or to come) that matches; for any clock. */
  waitFor(match: FrameMatch, options: { timeoutMs?: number; what?: string } = {}): Promise<ProbedFrame> {
    const i = this.pending.findIndex(match);
    if (i >= 0) return Promise.resolve(this.pending.splice(i, 1)[0]);
    return new Promise((resolve, reject) => {
      const timeoutMs = options.timeoutMs ?? 5000;
      const w = {
        match,
        resolve: (f: ProbedFrame) => {
          this.clock.clear(timer);
          resolve(f);
        },
      };
      const timer = this.clock.setTimeout(() => {
        this.waiters.delete(w);
        reject(new ProbeError('ERR_PROBE_NO_MATCH', `${this.port.name}: ${options.what !== undefined ? `${options.what}: none` : 'no matching frame'} within ${timeoutMs} ms; ${this.describeQueue()}`));
      }, timeoutMs);
      this.waiters.add(w);
    });
  }

  /** Stops watching the port. */
  stop(): void {
    this.port.taps = this.port.taps.filter((t) => t !== this);
  }

  private virtual(what: string): VirtualClock {
    if (!(this.clock instanceof VirtualClock)) throw new ProbeError('ERR_VIRTUAL_CLOCK_NEEDED', `FrameProbe.${what} runs the clock itself and needs a VirtualClock; with the system clock use waitFor()`);
    return this.clock;
  }

  private describeQueue(): string {
    if (this.pending.length === 0) return `nothing queued (${this.seen.length} frame${this.seen.length === 1 ? '' : 's'} seen in all)`;
    const lines = this.pending.slice(0, 20).map((f) => `  ${f.at.toFixed(3)} ms ${f.direction}: ${f.summary}`);
    if (this.pending.length > 20) lines.push(`  … and ${this.pending.length - 20} more`);
    return `queued instead:\n${lines.join('\n')}`;
  }
}

export interface ReplayOptions {
  /** 'recorded' keeps the capture's gaps between frames (on the clock); 'asap' sends them back to back. Default 'recorded'. */
  timing?: 'recorded' | 'asap';
  /** Of a pcapng with several interfaces: replay only the frames of this interface (its name or index). */
  interface?: string | number;
  /**
   * Which frames of a pcapng that records directions: 'inbound' (default) — those the port
   * received from its link, i.e. what the recorded container sent; 'all'.
   */
  direction?: 'inbound' | 'all';
}

/**
 * Replays a pcap or pcapng capture into a memory port, as if its container sent those frames.
 * Resolves with the number of frames once the last is injected ('asap': at once).
 */
export function replayCapture(port: MemoryPort, capture: Buffer, clock: Clock, options: ReplayOptions = {}): Promise<number> {
  const file = readCapture(capture);
  let records = file.records;
  if (options.interface !== undefined) {
    const want = typeof options.interface === 'number' ? options.interface : file.interfaces.findIndex((i) => i.name === options.interface);
    if (want < 0 || want >= file.interfaces.length) {
      return Promise.reject(new UsernetError('ERR_BAD_PCAP', `the capture has no interface ${JSON.stringify(options.interface)} (it has ${file.interfaces.map((i) => JSON.stringify(i.name)).join(', ')})`));
    }
    records = records.filter((r) => r.interfaceId === want);
  }
  if ((options.direction ?? 'inbound') === 'inbound') records = records.filter((r) => r.direction !== 'outbound');
  if ((options.timing ?? 'recorded') === 'asap' || records.length === 0) {
    for (const r of records) port.inject(r.data);
    return Promise.resolve(records.length);
  }
  const t0 = records[0].timestampUs;
  return new Promise((resolve) => {
    let left = records.length;
    for (const r of records) {
      clock.setTimeout(() => {
        port.inject(r.data);
        if (--left === 0) resolve(records.length);
      }, (r.timestampUs - t0) / 1000);
    }
  });
}
