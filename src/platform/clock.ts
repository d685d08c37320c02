/**
 * Time, as one injectable thing. Every timer and every reading of "now" in the data path goes
 * through a Clock: the daemon runs on the system's (performance.now, Date.now, Node's timers),
 * a test on a VirtualClock, where time moves only when the test says so — so an FDB ages, a lease
 * expires, a retransmission fires and a TCP flow reaches its 2 h 4 min established timeout in
 * microseconds of real time, and two runs see exactly the same times.
 *
 * Timers from a Clock never keep the process alive (the daemon's control socket does that), so
 * the system clock's are unref'd.
 */
import { InvalidArgumentError } from '../errors.js';

/** A pending timer; give it back to `Clock.clear` to cancel it. */
export interface Timer {
  /** Milliseconds on the clock at which it fires next (Infinity once cancelled or fired). */
  readonly dueAt: number;
}

export interface Clock {
  /** Monotonic milliseconds (fractional allowed), never going backwards. */
  now(): number;
  /** Wall-clock milliseconds since the epoch: lease expiry times kept across restarts, pcap timestamps. */
  wallTime(): number;
  setTimeout(fn: () => void, ms: number): Timer;
  setInterval(fn: () => void, ms: number): Timer;
  /** Cancels a timer; null, undefined and timers that already fired are ignored. */
  clear(timer: Timer | null | undefined): void;
}

class SystemTimer implements Timer {
  dueAt: number;
  handle: NodeJS.Timeout | null;
  constructor(handle: NodeJS.Timeout, dueAt: number) {
    this.handle = handle;
    this.dueAt = dueAt;
  }
}

/** The system's clock: performance.now(), Date.now() and Node's timers (unref'd). */
export class SystemClock implements Clock {
  now(): number {
    return performance.now();
  }
  wallTime(): number {
    return Date.now();
  }
  setTimeout(fn: () => void, ms: number): Timer {
    const due = performance.now() + ms;
    const t = new SystemTimer(null as unknown as NodeJS.Timeout, due);
    t.handle = setTimeout(() => {
      t.dueAt = Infinity;
      t.handle = null;
      fn();
    }, ms);
    t.handle.unref();
    return t;
  }
  setInterval(fn: () => void, ms: number): Timer {
    const t = new SystemTimer(null as unknown as NodeJS.Timeout, performance.now() + ms);
    t.handle = setInterval(() => {
      t.dueAt = performance.now() + ms;
      fn();
    }, ms);
    t.handle.unref();
    return t;
  }
  clear(timer: Timer | null | undefined): void {
    if (!(timer instanceof SystemTimer) || timer.handle === null) return;
    clearTimeout(timer.handle);
    timer.handle = null;
    timer.dueAt = Infinity;
  }
}

/** The clock every component uses when it is given none. */
export const systemClock: Clock = new SystemClock();

class VirtualTimer implements Timer {
  constructor(
    public dueAt: number,
    /** Creation order: timers due at the same time fire in the order they were set. */
    public seq: number,
    readonly fn: () => void,
    /** 0 for a one-shot timer. */
    readonly interval: number,
    public heapIndex: number,
  ) {}
}

export interface VirtualClockOptions {
  /** Wall-clock time at virtual time 0, ms since the epoch. Default 2026-01-01T00:00:00Z, so runs are identical. */
  wallTimeAtZero?: number;
  /** Virtual time to start at (ms). Default 0. */
  start?: number;
}

/**
 * A clock that moves only when told to. `advance(ms)` runs every timer due within the next `ms`
 * in order of due time (then of creation), each seeing `now()` equal to its due time; timers set
 * by a timer run in the same advance when they fall inside it. An exception from a timer stops
 * the advance there (now stays at that timer's time) and is thrown to the caller.
 */
export class VirtualClock implements Clock {
  private time: number;
  private readonly wallAtZero: number;
  private heap: VirtualTimer[] = [];
  private seq = 0;

  constructor(options: VirtualClockOptions = {}) {
    this.time = options.start ?? 0;
    this.wallAtZero = options.wallTimeAtZero ?? Date.UTC(2026, 0, 1);
  }

  now(): number {
    return this.time;
  }
  wallTime(): number {
    return this.wallAtZero + this.time;
  }
  setTimeout(fn: () => void, ms: number): Timer {
    return this.push(fn, Math.max(0, ms), 0);
  }
  setInterval(fn: () => void, ms: number): Timer {
    // A zero interval would never let time move on.
    return this.push(fn, Math.max(1, ms), Math.max(1, ms));
  }
  clear(timer: Timer | null | undefined): void {
    if (!(timer instanceof VirtualTimer) || timer.heapIndex < 0) return;
    this.removeAt(timer.heapIndex);
    timer.dueAt = Infinity;
  }

  /** Timers waiting to fire. */
  get pending(): number {
    return this.heap.length;
  }

  /** When the next timer fires (Infinity if none). */
  get nextDue(): number {
    return this.heap.length > 0 ? this.heap[0].dueAt : Infinity;
  }

  /** Moves time forward by `ms`, firing what falls due on the way. Returns how many timers fired. */
  advance(ms: number): number {
    if (!(ms >= 0) || ms === Infinity) throw new InvalidArgumentError(`VirtualClock.advance: ${ms} is not a finite, non-negative number of milliseconds`);
    return this.advanceTo(this.time + ms);
  }

  /** Moves time forward to `t` (no-op if `t` is in the past), firing what falls due on the way. */
  advanceTo(t: number): number {
    let fired = 0;
    while (this.heap.length > 0 && this.heap[0].dueAt <= t) {
      const timer = this.heap[0];
      if (timer.dueAt > this.time) this.time = timer.dueAt;
      if (timer.interval > 0) {
        timer.dueAt += timer.interval;
        timer.seq = this.seq++;
        this.siftDown(0);
      } else {
        this.removeAt(0);
        timer.dueAt = Infinity;
      }
      fired++;
      timer.fn();
    }
    if (t > this.time) this.time = t;
    return fired;
  }

  /** Fires the next timer, moving time to it. False if there is none. */
  step(): boolean {
    if (this.heap.length === 0) return false;
    this.advanceTo(this.heap[0].dueAt);
    return true;
  }

  /**
   * Fires timers until none is due before `now + maxMs` (intervals keep firing, so the bound is
   * what stops a clock with an interval timer). Returns how many fired.
   */
  runFor(maxMs: number): number {
    return this.advance(maxMs);
  }

  private push(fn: () => void, delay: number, interval: number): VirtualTimer {
    const t = new VirtualTimer(this.time + delay, this.seq++, fn, interval, this.heap.length);
    this.heap.push(t);
    this.siftUp(t.heapIndex);
    return t;
  }

  private less(a: VirtualTimer, b: VirtualTimer): boolean {
    return a.dueAt < b.dueAt || (a.dueAt === b.dueAt && a.seq < b.seq);
  }

  private removeAt(i: number): void {
    const h = this.heap;
    const removed = h[i];
    const last = h.pop()!;
    removed.heapIndex = -1;
    if (i < h.length) {
      h[i] = last;
      last.heapIndex = i;
      this.siftDown(i);
      this.siftUp(last.heapIndex);
    }
  }

  private siftUp(i: number): void {
    const h = this.heap;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(h[i], h[p])) break;
      this.swap(i, p);
      i = p;
    }
  }

  private siftDown(i: number): void {
    const h = this.heap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && this.less(h[l], h[m])) m = l;
      if (r < h.length && this.less(h[r], h[m])) m = r;
      if (m === i) return;
      this.swap(i, m);
      i = m;
    }
  }

  private swap(i: number, j: number): void {
    const h = this.heap;
    const a = h[i];
    h[i] = h[j];
    h[j] = a;
    a.heapIndex = j;
    h[i].heapIndex = i;
  }
}
