/**
 * Initial sequence numbers as RFC 6528 asks: ISN = M + F(4-tuple, secret), M a clock ticking
 * every 4 µs, F a keyed hash of the connection's addresses and ports.
 *
 * Why not just random: a container that was the active closer of an earlier connection on the
 * same four ports still holds it in TIME_WAIT (60 s on Linux) — with published ports, when many
 * clients are shown as the gateway, ports come round again within that time. Linux lets a new
 * SYN through a TIME_WAIT only if its sequence number is beyond the old connection's; otherwise it
 * answers with an ACK of the old connection and the new one waits for a retransmission. With a
 * clock-driven ISN per tuple, a later connection on the same tuple starts further on than the
 * earlier one, as RFC 6528 intends, and is accepted at once.
 */
import { createHash } from 'node:crypto';
import { systemClock } from '../platform/clock.js';
import { systemRandom, type Random } from '../platform/random.js';

/** 4 µs per tick: 250 000 per second, RFC 793's clock. */
const TICKS_PER_MS = 250;

export class IsnGenerator {
  private readonly secret: Buffer;
  private readonly input = Buffer.alloc(12 + 16);
  private readonly clockMs: () => number;

  /**
   * `clockMs`: a monotonic clock in ms (default the system clock's); `secret`: 16 bytes (default
   * drawn from `random`, itself by default the system's cryptographic source).
   */
  constructor(options: { clockMs?: () => number; secret?: Uint8Array; random?: Random } = {}) {
    this.clockMs = options.clockMs ?? (() => systemClock.now());
    this.secret = Buffer.from(options.secret ?? (options.random ?? systemRandom).fill(new Uint8Array(16)));
    if (this.secret.length !== 16) throw new RangeError('the ISN secret must be 16 bytes');
    this.secret.copy(this.input, 12);
  }

  /** The ISN for a connection from localIp:localPort to remoteIp:remotePort (IPv4 as uint32). */
  next(localIp: number, localPort: number, remoteIp: number, remotePort: number): number {
    const b = this.input;
    b.writeUInt32BE(localIp >>> 0, 0);
    b.writeUInt32BE(remoteIp >>> 0, 4);
    b.writeUInt16BE(localPort & 0xffff, 8);
    b.writeUInt16BE(remotePort & 0xffff, 10);
    // Once per connection, not per packet: a real PRF is affordable here.
    const f = createHash('sha256').update(b).digest().readUInt32BE(0);
    const m = Math.floor(this.clockMs() * TICKS_PER_MS) >>> 0;
    return (m + f) >>> 0;
  }
}
