/**
 * The container-facing TCP endpoint driven segment by segment: a fake host socket and a wire that
 * records every segment, an explicit clock. Each test is a little TCP conversation.
 */
import { describe, expect, it } from 'vitest';
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN } from '../../../src/packet/tcp.js';

import {
  FLOW_CLOSED,
  FLOW_ESTABLISHED,
  FLOW_SYN_RCVD,
  FLOW_SYN_SENT,
  FLOW_TIME_WAIT,
  MAX_SEGMENT_PAYLOAD,
  OUR_WSCALE,
  RECEIVE_LIMIT,
  RESET_DRAIN_MS,
  SEND_LIMIT,
  SYN_RETRIES,
  TcpFlow,
  type TcpFlowHost,
  type TcpFlowWire,
} from '../../../src/nat/tcp-flow.js';

/** Host data as a socket read hands it over: all of `data`. */
const hostData = (flow: TcpFlow, data: Uint8Array, now: number): void => flow.hostData(data, 0, data.length, now);

class FakeHost implements TcpFlowHost {
  /** What the flow did to the host, in order ('write N', 'end', 'reset'). */
  calls: string[] = [];
  written: Buffer[] = [];
  ended = false;
  wasReset = false;
  paused = false;
  writableLength = 0;
  write(data: Uint8Array, off: number, len: number): boolean {
    this.written.push(Buffer.from(data.subarray(off, off + len)));
    this.calls.push(`write ${len}`);
    this.writableLength += len;
    return true;
  }
  end(): void {
    this.ended = true;
    this.calls.push('end');
  }
  reset(): void {
    this.wasReset = true;
    this.calls.push('reset');
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  drained(): void {
    this.writableLength = 0;
  }
  get bytes(): Buffer {
    return Buffer.concat(this.written);
  }
}

interface Seg {
  flags: number;
  seq: number;
  ack: number;
  window: number;
  data: Buffer;
  syn: boolean;
}

class Wire implements TcpFlowWire {
  segs: Seg[] = [];
  states: string[] = [];
  segment(flow: TcpFlow, flags: number, seq: number, ack: number, window: number, off: number, len: number, synOptions: boolean): void {
    const data = Buffer.alloc(len);
    if (len) flow.copyPayload(off, len, data, 0);
    this.segs.push({ flags, seq, ack, window, data, syn: synOptions });
  }
  stateChanged(flow: TcpFlow): void {
    this.states.push(flow.conntrackState());
  }
  take(): Seg[] {
    const s = this.segs;
    this.segs = [];
    return s;
  }
}

const ISS = 1000;
const IRS = 5000;
const EMPTY = new Uint8Array(0);

function handshake(opts: { mss?: number; wscale?: number; window?: number } = {}) {
  const host = new FakeHost();
  const wire = new Wire();
  let now = 0;
  const flow = new TcpFlow(host, wire, { seq: IRS, window: opts.window ?? 64240, mss: opts.mss ?? 1460, wscale: opts.wscale ?? 7 }, ISS, now);
  flow.hostConnected(now);
  const synack = wire.take();
  // The container's ACK of our SYN-ACK, with a big scaled window.
  flow.segment(TCP_ACK, IRS + 1, ISS + 1, 65535, EMPTY, 0, 0, now);
  wire.take();
  return {
    host,
    wire,
    flow,
    synack,
    at(t: number) {
      now = t;
      return now;
    },
    get now() {
      return now;
    },
    /** A data segment from the container. */
    send(seq: number, text: string | Buffer, flags = TCP_ACK | TCP_PSH) {
      const b = typeof text === 'string' ? Buffer.from(text) : text;
      flow.segment(flags, seq, flow.sndNxt, 65535, b, 0, b.length, now);
    },
    ack(ackNo: number, window = 65535) {
      flow.segment(TCP_ACK, flow.rcvNxt, ackNo, window, EMPTY, 0, 0, now);
    },
  };
}

describe('TcpFlow: handshake', () => {
  it('answers the SYN only once the host connected, with MSS and window scale', () => {
    const host = new FakeHost();
    const wire = new Wire();
    const flow = new TcpFlow(host, wire, { seq: IRS, window: 64240, mss: 1460, wscale: 7 }, ISS, 0);
    // A retransmitted SYN while connecting sends nothing (and would open nothing).
    flow.segment(TCP_SYN, IRS, 0, 64240, EMPTY, 0, 0, 100);
    expect(wire.segs).toEqual([]);
    flow.hostConnected(150);
    const [synack] = wire.take();
    expect(synack).toMatchObject({ flags: TCP_SYN | TCP_ACK, seq: ISS, ack: IRS + 1, syn: true });
    expect(flow.state).toBe(FLOW_SYN_RCVD);
    expect(flow.rcvWscale).toBe(OUR_WSCALE);
    expect(host.paused).toBe(true); // no host data before the handshake completes
    // The SYN again (our SYN-ACK was lost): the SYN-ACK again.
    flow.segment(TCP_SYN, IRS, 0, 64240, EMPTY, 0, 0, 160);
    expect(wire.take()[0]).toMatchObject({ flags: TCP_SYN | TCP_ACK, seq: ISS });
    flow.segment(TCP_ACK, IRS + 1, ISS + 1, 502, EMPTY, 0, 0, 170);
    expect(flow.state).toBe(FLOW_ESTABLISHED);
    expect(host.paused).toBe(false);
    expect(flow.sndWnd).toBe(502 << 7);
    expect(wire.states).toEqual(['SYN_RECV', 'ESTABLISHED']);
  });

  it('retransmits the SYN-ACK on RTO', () => {
    const host = new FakeHost();
    const wire = new Wire();
    const flow = new TcpFlow(host, wire, { seq: IRS, window: 64240, mss: 1460, wscale: -1 }, ISS, 0);
    flow.hostConnected(0);
    wire.take();
    expect(flow.rcvWscale).toBe(0); // no scaling without the container's option
    flow.tick(199);
    expect(wire.segs).toEqual([]);
    flow.tick(200);
    expect(wire.take()[0]).toMatchObject({ flags: TCP_SYN | TCP_ACK, seq: ISS });
  });

  it('resets an ACK that does not acknowledge our SYN', () => {
    const host = new FakeHost();
    const wire = new Wire();
    const flow = new TcpFlow(host, wire, { seq: IRS, window: 64240, mss: 1460, wscale: 7 }, ISS, 0);
    flow.hostConnected(0);
    wire.take();
    flow.segment(TCP_ACK, IRS + 1, 12345, 100, EMPTY, 0, 0, 1);
    expect(wire.take()[0]).toMatchObject({ flags: TCP_RST, seq: 12345 });
    expect(flow.state).toBe(FLOW_SYN_RCVD);
  });
});

describe('TcpFlow: container → host', () => {
  it('writes in-order data to the host and acknowledges it', () => {
    const t = handshake();
    t.send(IRS + 1, 'hello ');
    t.send(IRS + 7, 'world');
    expect(t.host.bytes.toString()).toBe('hello world');
    const acks = t.wire.take();
    expect(acks.map((s) => s.ack)).toEqual([IRS + 7, IRS + 12]);
    expect(acks.every((s) => s.flags === TCP_ACK)).toBe(true);
  });

  it('answers a gap with a duplicate ACK and writes nothing out of order', () => {
    const t = handshake();
    t.send(IRS + 1, 'abc');
    t.wire.take();
    t.send(IRS + 10, 'later'); // bytes 4..9 missing
    expect(t.host.bytes.toString()).toBe('abc');
    expect(t.wire.take()[0].ack).toBe(IRS + 4);
    // The retransmission that overlaps what we have: only the new part goes to the host.
    t.send(IRS + 2, 'bcdefghi');
    expect(t.host.bytes.toString()).toBe('abcdefghi');
    expect(t.wire.take()[0].ack).toBe(IRS + 10);
    // An exact duplicate: ACKed again, not written again.
    t.send(IRS + 2, 'bcd');
    expect(t.host.bytes.toString()).toBe('abcdefghi');
    expect(t.wire.take()[0].ack).toBe(IRS + 10);
  });

  it('advertises what the host socket can still buffer, and reopens the window on drain', () => {
    const t = handshake();
    const big = Buffer.alloc(RECEIVE_LIMIT - 1000, 1);
    t.send(IRS + 1, big);
    const [ack] = t.wire.take();
    expect(ack.window << OUR_WSCALE).toBeLessThanOrEqual(1000);
    t.host.drained();
    t.flow.hostDrain(t.now);
    const [update] = t.wire.take();
    expect(update.window << OUR_WSCALE).toBeGreaterThan(RECEIVE_LIMIT - 200);
  });

  it('never buffers without bound for a container that ignores the window', () => {
    const t = handshake();
    const chunk = Buffer.alloc(60_000, 2);
    let seq = IRS + 1;
    for (let i = 0; i < 400; i++) {
      t.send(seq, chunk);
      seq += chunk.length;
    }
    expect(t.host.writableLength).toBeLessThanOrEqual(2 * RECEIVE_LIMIT + chunk.length);
  });

  it('half-closes on the container FIN: host end(), FIN acknowledged, data still flows back', () => {
    const t = handshake();
    t.send(IRS + 1, 'bye', TCP_ACK | TCP_FIN);
    expect(t.host.bytes.toString()).toBe('bye');
    expect(t.host.ended).toBe(true);
    expect(t.wire.take().at(-1)).toMatchObject({ flags: TCP_ACK, ack: IRS + 5 });
    expect(t.flow.conntrackState()).toBe('CLOSE_WAIT');
    hostData(t.flow, Buffer.from('still here'), t.now);
    const [seg] = t.wire.take();
    expect(seg.data.toString()).toBe('still here');
  });

  it('ignores a FIN that arrives ahead of missing data', () => {
    const t = handshake();
    t.send(IRS + 5, '', TCP_ACK | TCP_FIN);
    expect(t.host.ended).toBe(false);
    expect(t.wire.take()[0].ack).toBe(IRS + 1);
  });
});

describe('TcpFlow: host → container', () => {
  it('sends host data within the window, in MSS multiples up to 64 KiB per segment', () => {
    const t = handshake({ mss: 1448 });
    const data = Buffer.alloc(200_000);
    for (let i = 0; i < data.length; i++) data[i] = i & 255;
    hostData(t.flow, data, t.now);
    const segs = t.wire.take();
    expect(segs.length).toBeGreaterThan(1);
    let seq = ISS + 1;
    for (const s of segs) {
      expect(s.seq).toBe(seq);
      expect(s.data.length).toBeLessThanOrEqual(MAX_SEGMENT_PAYLOAD);
      seq += s.data.length;
    }
    for (const s of segs.slice(0, -1)) expect(s.data.length % 1448).toBe(0);
    expect(Buffer.concat(segs.map((s) => s.data)).equals(data)).toBe(true);
    expect(segs.at(-1)?.flags).toBe(TCP_ACK | TCP_PSH);
  });

  it('respects the container window and continues as it acknowledges', () => {
    const t = handshake();
    t.ack(ISS + 1, 10); // window 10 << 7 = 1280 bytes
    const data = Buffer.alloc(5000, 7);
    hostData(t.flow, data, t.now);
    let segs = t.wire.take();
    expect(segs.reduce((n, s) => n + s.data.length, 0)).toBe(1280);
    t.ack(ISS + 1 + 1280, 10);
    segs = t.wire.take();
    expect(segs.reduce((n, s) => n + s.data.length, 0)).toBe(1280);
  });

  it('pauses the host socket beyond the send limit and resumes as the container acknowledges', () => {
    const t = handshake();
    t.ack(ISS + 1, 0); // a closed window: nothing goes out
    hostData(t.flow, Buffer.alloc(SEND_LIMIT, 1), t.now);
    expect(t.host.paused).toBe(true);
    t.ack(ISS + 1, 65535);
    const sent = t.wire.take().reduce((n, s) => n + s.data.length, 0);
    t.ack(ISS + 1 + sent, 65535);
    expect(t.host.paused).toBe(false);
  });

  it('probes a zero window on the persist timer', () => {
    const t = handshake();
    t.ack(ISS + 1, 0);
    hostData(t.flow, Buffer.from('waiting'), t.at(10));
    expect(t.wire.take()).toEqual([]);
    t.flow.tick(t.at(600));
    const [probe] = t.wire.take();
    expect(probe).toMatchObject({ flags: TCP_ACK, seq: ISS }); // sndUna - 1
    t.ack(ISS + 1, 100);
    expect(t.wire.take()[0].data.toString()).toBe('waiting');
  });

  it('retransmits from the oldest unacknowledged byte on RTO, backing off', () => {
    const t = handshake();
    hostData(t.flow, Buffer.from('0123456789'), t.at(0));
    t.wire.take();
    t.flow.tick(t.at(199));
    expect(t.wire.segs).toEqual([]);
    t.flow.tick(t.at(200));
    expect(t.wire.take()[0]).toMatchObject({ seq: ISS + 1 });
    t.flow.tick(t.at(500)); // next RTO is 400 ms after the retransmission
    expect(t.wire.segs).toEqual([]);
    t.flow.tick(t.at(600));
    expect(t.wire.take()[0].data.toString()).toBe('0123456789');
    t.ack(ISS + 11);
    expect(t.flow.rtoAt).toBe(0);
  });

  it('fast-retransmits on three duplicate ACKs', () => {
    const t = handshake({ mss: 1000 });
    hostData(t.flow, Buffer.alloc(5000, 3), t.now);
    t.wire.take();
    t.ack(ISS + 1 + 1000);
    t.ack(ISS + 1 + 1000);
    t.ack(ISS + 1 + 1000);
    expect(t.wire.segs).toEqual([]);
    t.ack(ISS + 1 + 1000);
    expect(t.wire.take()[0].seq).toBe(ISS + 1 + 1000);
  });

  it('gives up after many retransmissions: both sides reset', () => {
    const t = handshake();
    hostData(t.flow, Buffer.from('x'), t.at(0));
    let now = 0;
    for (let i = 0; i < 30 && t.flow.state !== FLOW_CLOSED; i++) {
      now += 20_000;
      t.flow.tick(t.at(now));
    }
    expect(t.flow.state).toBe(FLOW_CLOSED);
    expect(t.host.wasReset).toBe(true);
    expect(t.wire.segs.at(-1)?.flags).toBe(TCP_RST | TCP_ACK);
  });

  it('sends FIN after the queued data when the host ends, and reaches TIME_WAIT', () => {
    const t = handshake();
    hostData(t.flow, Buffer.from('last words'), t.now);
    t.flow.hostEnd(t.now);
    const segs = t.wire.take();
    expect(segs.map((s) => s.flags)).toEqual([TCP_ACK | TCP_PSH, TCP_FIN | TCP_ACK]);
    expect(segs[1].seq).toBe(ISS + 11);
    expect(t.flow.conntrackState()).toBe('FIN_WAIT');
    t.ack(ISS + 12);
    expect(t.flow.conntrackState()).toBe('CLOSE_WAIT');
    expect(t.wire.take()).toEqual([]); // nothing after the FIN, ever
    t.send(IRS + 1, '', TCP_ACK | TCP_FIN);
    expect(t.flow.state).toBe(FLOW_TIME_WAIT);
    expect(t.host.ended).toBe(true);
    expect(t.wire.take()).toMatchObject([{ flags: TCP_ACK, seq: ISS + 12, ack: IRS + 2, data: Buffer.alloc(0) }]);
    // A retransmitted FIN in TIME_WAIT is acknowledged again.
    t.send(IRS + 1, '', TCP_ACK | TCP_FIN);
    expect(t.wire.take()[0]).toMatchObject({ flags: TCP_ACK, ack: IRS + 2 });
  });

  it('answers a FIN that also acknowledges ours with one ACK and nothing more (TIME_WAIT, not a reset)', () => {
    const t = handshake();
    hostData(t.flow, Buffer.from('GET / HTTP/1.1\r\n\r\n'), t.now);
    t.flow.hostEnd(t.now);
    expect(t.wire.take().map((s) => s.flags)).toEqual([TCP_ACK | TCP_PSH, TCP_FIN | TCP_ACK]);
    // The container answers, then acknowledges our FIN together with its own.
    t.send(IRS + 1, 'HTTP/1.1 200 OK\r\n\r\n');
    expect(t.wire.take()).toMatchObject([{ flags: TCP_ACK }]);
    t.flow.segment(TCP_ACK | TCP_FIN, IRS + 20, ISS + 20, 65535, EMPTY, 0, 0, t.now);
    expect(t.wire.take()).toMatchObject([{ flags: TCP_ACK, seq: ISS + 20, ack: IRS + 21, data: Buffer.alloc(0) }]);
    expect(t.flow.state).toBe(FLOW_TIME_WAIT);
    expect(t.flow.conntrackState()).toBe('TIME_WAIT');
  });

  it('retransmits a lost FIN', () => {
    const t = handshake();
    t.flow.hostEnd(t.at(0));
    expect(t.wire.take()[0].flags).toBe(TCP_FIN | TCP_ACK);
    t.flow.tick(t.at(200));
    expect(t.wire.take()[0]).toMatchObject({ flags: TCP_FIN | TCP_ACK, seq: ISS + 1 });
  });
});

describe('TcpFlow: resets', () => {
  it('a container RST resets the host socket and closes the flow', () => {
    const t = handshake();
    t.flow.segment(TCP_RST, IRS + 1, 0, 0, EMPTY, 0, 0, t.now);
    expect(t.host.wasReset).toBe(true);
    expect(t.flow.state).toBe(FLOW_CLOSED);
    expect(t.wire.states.at(-1)).toBe('CLOSE');
  });

  it('a RST far outside the window is ignored', () => {
    const t = handshake();
    t.flow.segment(TCP_RST, IRS + 50_000_000, 0, 0, EMPTY, 0, 0, t.now);
    expect(t.host.wasReset).toBe(false);
    expect(t.flow.state).toBe(FLOW_ESTABLISHED);
  });

  it('a host reset sends RST to the container', () => {
    const t = handshake();
    t.flow.hostReset(t.now, 'peer reset');
    expect(t.wire.take()[0]).toMatchObject({ flags: TCP_RST | TCP_ACK, seq: ISS + 1 });
    expect(t.flow.state).toBe(FLOW_CLOSED);
    expect(t.flow.closeReason).toBe('peer reset');
  });

  it('a container RST after data: the host gets every byte, then the reset (TcpNat holds the reset until the peer has them)', () => {
    const t = handshake();
    t.send(IRS + 1, 'last words');
    t.flow.segment(TCP_RST | TCP_ACK, IRS + 11, ISS + 1, 0, EMPTY, 0, 0, t.now);
    expect(t.host.calls).toEqual(['write 10', 'reset']);
    expect(t.flow.state).toBe(FLOW_CLOSED);
  });

  it('a host reset with data still queued: the data is delivered and acknowledged first, then RST|ACK right after it', () => {
    const t = handshake();
    t.ack(ISS + 1, 10); // window 10 << 7 = 1280 bytes
    const data = Buffer.alloc(5000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 255;
    hostData(t.flow, data, t.at(10));
    let got = Buffer.concat(t.wire.take().map((s) => s.data));
    expect(got.length).toBe(1280);
    t.flow.hostReset(t.at(20), 'host socket: ECONNRESET');
    expect(t.wire.segs.filter((s) => s.flags & TCP_RST), 'no RST while data is unacknowledged').toEqual([]);
    expect(t.flow.state).toBe(FLOW_ESTABLISHED);
    // The container's own data meanwhile has nowhere to go: not written, not acknowledged.
    const late = Buffer.from('too late');
    t.flow.segment(TCP_ACK | TCP_PSH, IRS + 1, ISS + 1, 10, late, 0, late.length, t.now);
    expect(t.host.bytes.length).toBe(0);
    expect(t.wire.take()).toMatchObject([{ flags: TCP_ACK, ack: IRS + 1, data: Buffer.alloc(0) }]);
    // A second report of the same end (the socket's 'close' after its 'error') changes nothing.
    t.flow.hostReset(t.at(30), 'host socket closed');
    while (got.length < data.length) {
      t.ack(ISS + 1 + got.length, 10);
      const segs = t.wire.take();
      const rst = segs.filter((s) => s.flags & TCP_RST);
      expect(rst, 'no RST before the last byte is acknowledged').toEqual([]);
      got = Buffer.concat([got, ...segs.map((s) => s.data)]);
    }
    expect(got.equals(data)).toBe(true);
    t.ack(ISS + 1 + data.length, 10);
    const [rst] = t.wire.take();
    expect(rst).toMatchObject({ flags: TCP_RST | TCP_ACK, seq: ISS + 1 + data.length, ack: IRS + 1 });
    expect(t.flow.state).toBe(FLOW_CLOSED);
    expect(t.flow.closeReason).toBe('host socket: ECONNRESET');
    expect(t.flow.resetDrainTimedOut).toBe(false);
  });

  it('a host FIN then reset: data and FIN first, then RST — not TIME_WAIT, even when the container closes too', () => {
    const t = handshake();
    t.ack(ISS + 1, 10);
    hostData(t.flow, Buffer.alloc(2000, 1), t.now);
    t.flow.hostEnd(t.now);
    t.flow.hostReset(t.now, 'host socket: ECONNRESET');
    t.flow.segment(TCP_FIN | TCP_ACK, IRS + 1, ISS + 1 + 1280, 10, EMPTY, 0, 0, t.now);
    const segs = t.wire.take();
    expect(segs.reduce((n, s) => n + s.data.length, 0)).toBe(2000);
    const fin = segs.find((s) => s.flags & TCP_FIN);
    expect(fin?.seq).toBe(ISS + 1 + 2000);
    expect(segs.some((s) => s.flags & TCP_RST)).toBe(false);
    t.flow.segment(TCP_ACK, IRS + 1, ISS + 1 + 2001, 10, EMPTY, 0, 0, t.now);
    expect(t.wire.take()).toMatchObject([{ flags: TCP_RST | TCP_ACK, seq: ISS + 2002 }]);
    expect(t.flow.state).toBe(FLOW_CLOSED);
  });

  it(`a pending host reset goes at RESET_DRAIN_MS (${RESET_DRAIN_MS} ms) when the container does not take the data`, () => {
    const t = handshake();
    t.ack(ISS + 1, 0); // a closed window
    hostData(t.flow, Buffer.alloc(3000, 2), t.at(100));
    t.flow.hostReset(t.at(100), 'host socket: ECONNRESET');
    expect(t.flow.resetAt).toBe(100 + RESET_DRAIN_MS);
    t.flow.tick(t.at(100 + RESET_DRAIN_MS - 1));
    expect(t.wire.take().some((s) => s.flags & TCP_RST)).toBe(false);
    t.flow.tick(t.at(100 + RESET_DRAIN_MS));
    expect(t.wire.take()).toMatchObject([{ flags: TCP_RST | TCP_ACK, seq: ISS + 1 }]);
    expect(t.flow.state).toBe(FLOW_CLOSED);
    expect(t.flow.resetDrainTimedOut).toBe(true);
  });

  it('a container RST during a pending host reset ends the flow at once', () => {
    const t = handshake();
    t.ack(ISS + 1, 0);
    hostData(t.flow, Buffer.alloc(3000, 2), t.now);
    t.flow.hostReset(t.now, 'host socket: ECONNRESET');
    t.flow.segment(TCP_RST, IRS + 1, 0, 0, EMPTY, 0, 0, t.now);
    expect(t.wire.take()).toEqual([]);
    expect(t.flow.state).toBe(FLOW_CLOSED);
    expect(t.flow.closeReason).toBe('reset by the container');
  });

  it('abort() (a flush, a timeout) resets at once, queued data or not', () => {
    const t = handshake();
    t.ack(ISS + 1, 0);
    hostData(t.flow, Buffer.alloc(3000, 2), t.now);
    t.flow.abort(t.now, 'flushed');
    expect(t.wire.take()).toMatchObject([{ flags: TCP_RST | TCP_ACK, seq: ISS + 1 }]);
    expect(t.flow.state).toBe(FLOW_CLOSED);
    expect(t.flow.queued).toBe(0);
  });

  it('a segment without ACK after the handshake is ignored', () => {
    const t = handshake();
    t.flow.segment(TCP_PSH, IRS + 1, 0, 100, Buffer.from('x'), 0, 1, t.now);
    expect(t.host.bytes.length).toBe(0);
  });
});

describe('TcpFlow: sequence wrap-around', () => {
  it('carries data across 2^32', () => {
    const host = new FakeHost();
    const wire = new Wire();
    const irs = 0xffffffff - 3;
    const flow = new TcpFlow(host, wire, { seq: irs, window: 64240, mss: 1460, wscale: 7 }, 0xfffffff0, 0);
    flow.hostConnected(0);
    flow.segment(TCP_ACK, (irs + 1) >>> 0, 0xfffffff1, 1000, EMPTY, 0, 0, 0);
    flow.segment(TCP_ACK, (irs + 1) >>> 0, 0xfffffff1, 1000, Buffer.from('wrapping'), 0, 8, 0);
    expect(host.bytes.toString()).toBe('wrapping');
    expect(flow.rcvNxt).toBe((irs + 9) >>> 0);
    hostData(flow, Buffer.alloc(100, 1), 0);
    flow.segment(TCP_ACK, flow.rcvNxt, (0xfffffff1 + 100) >>> 0, 1000, EMPTY, 0, 0, 0);
    expect(flow.sndUna).toBe((0xfffffff1 + 100) >>> 0);
    expect(flow.queued).toBe(0);
  });
});

describe('TcpFlow: active open (published ports)', () => {
  function open() {
    const host = new FakeHost();
    const wire = new Wire();
    const flow = TcpFlow.activeOpen(host, wire, ISS, 0);
    return { host, wire, flow };
  }

  it('sends a SYN with options and keeps the host paused until the SYN-ACK', () => {
    const { host, wire, flow } = open();
    const [syn] = wire.take();
    expect(syn).toMatchObject({ flags: TCP_SYN, seq: ISS, syn: true });
    expect(flow.state).toBe(FLOW_SYN_SENT);
    expect(flow.conntrackState()).toBe('SYN_SENT');
    expect(host.paused).toBe(true);
    flow.peerSyn(1400, 9);
    flow.segment(TCP_SYN | TCP_ACK, IRS, ISS + 1, 29200, EMPTY, 0, 0, 1);
    expect(flow.state).toBe(FLOW_ESTABLISHED);
    expect(host.paused).toBe(false);
    expect(flow.mss).toBe(1400);
    expect(flow.sndWscale).toBe(9);
    expect(flow.rcvWscale).toBe(OUR_WSCALE);
    expect(flow.sndWnd).toBe(29200); // a SYN's window is not scaled
    expect(wire.take()).toMatchObject([{ flags: TCP_ACK, seq: ISS + 1, ack: IRS + 1 }]);
    // Host data now flows to the container, its window scaled by 9 from the next segment on.
    flow.segment(TCP_ACK, IRS + 1, ISS + 1, 100, EMPTY, 0, 0, 2);
    expect(flow.sndWnd).toBe(100 << 9);
  });

  it('turns window scaling off when the SYN-ACK has none', () => {
    const { wire, flow } = open();
    wire.take();
    flow.peerSyn(1460, -1);
    flow.segment(TCP_SYN | TCP_ACK, IRS, ISS + 1, 5000, EMPTY, 0, 0, 1);
    expect(flow.rcvWscale).toBe(0);
    expect(flow.sndWscale).toBe(-1);
    flow.segment(TCP_ACK, IRS + 1, ISS + 1, 5000, EMPTY, 0, 0, 2);
    expect(flow.sndWnd).toBe(5000);
  });

  it('resets the host on a RST that acknowledges the SYN, ignores one that does not', () => {
    const { host, wire, flow } = open();
    wire.take();
    flow.segment(TCP_RST | TCP_ACK, 0, ISS + 7, 0, EMPTY, 0, 0, 1);
    expect(flow.state).toBe(FLOW_SYN_SENT);
    flow.segment(TCP_RST | TCP_ACK, 0, ISS + 1, 0, EMPTY, 0, 0, 1);
    expect(flow.state).toBe(FLOW_CLOSED);
    expect(host.wasReset).toBe(true);
    expect(flow.closeReason).toBe('refused by the container');
  });

  it('answers an ACK of something never sent with a RST, and stays', () => {
    const { wire, flow } = open();
    wire.take();
    flow.segment(TCP_SYN | TCP_ACK, IRS, ISS + 99, 1000, EMPTY, 0, 0, 1);
    expect(wire.take()[0]).toMatchObject({ flags: TCP_RST, seq: ISS + 99 });
    expect(flow.state).toBe(FLOW_SYN_SENT);
  });

  it("resets a TIME_WAIT's challenge ACK and sends the SYN again at once, but only once", () => {
    const { host, wire, flow } = open();
    wire.take();
    // The container still holds an earlier connection on these ports in TIME_WAIT: it answers
    // our SYN with an ACK of that connection.
    flow.segment(TCP_ACK, 777, 123456, 1000, EMPTY, 0, 0, 1);
    expect(wire.take()).toMatchObject([
      { flags: TCP_RST, seq: 123456 },
      { flags: TCP_SYN, seq: ISS, syn: true },
    ]);
    // A peer that keeps doing it gets RSTs only; the SYN then waits for its timer.
    flow.segment(TCP_ACK, 777, 123456, 1000, EMPTY, 0, 0, 2);
    expect(wire.take()).toMatchObject([{ flags: TCP_RST, seq: 123456 }]);
    // The TIME_WAIT is gone: the container answers the SYN.
    flow.peerSyn(1460, 7);
    flow.segment(TCP_SYN | TCP_ACK, IRS, ISS + 1, 29200, EMPTY, 0, 0, 3);
    expect(flow.state).toBe(FLOW_ESTABLISHED);
    expect(host.paused).toBe(false);
  });

  it(`retransmits the SYN on RTO and gives up after ${SYN_RETRIES} SYNs in about 3 s, resetting the host`, () => {
    const { host, wire, flow } = open();
    let t = 0;
    let syns = wire.take().length;
    while (flow.state === FLOW_SYN_SENT && t < 60_000) {
      t = flow.rtoAt;
      flow.tick(t);
      syns += wire.take().filter((s) => s.flags === TCP_SYN).length;
    }
    expect(syns).toBe(SYN_RETRIES);
    expect(t).toBe(3000);
    expect(flow.state).toBe(FLOW_CLOSED);
    expect(host.wasReset).toBe(true);
    expect(flow.closeReason).toBe('the container did not answer');
  });
});

describe('TcpFlow: a wire that answers before segment() returns', () => {
  it('sends every byte once, in order, when the container acknowledges from inside segment()', () => {
    const host = new FakeHost();
    let flow!: TcpFlow;
    const sent: Array<{ seq: number; len: number }> = [];
    const wire: TcpFlowWire = {
      segment(f, flags, seq, ack, window, off, len) {
        if (len > 0) {
          sent.push({ seq, len });
          // The container's kernel acknowledges at once, re-entering the flow.
          flow.segment(TCP_ACK, flow.rcvNxt, (seq + len) >>> 0, 65535, EMPTY, 0, 0, 0);
        }
        void [f, flags, ack, window, off];
      },
      stateChanged() {},
    };
    flow = new TcpFlow(host, wire, { seq: IRS, window: 65535, mss: 1460, wscale: 7 }, ISS, 0);
    flow.hostConnected(0);
    flow.segment(TCP_ACK, IRS + 1, ISS + 1, 65535, EMPTY, 0, 0, 0);
    hostData(flow, Buffer.alloc(300_000, 1), 0);
    hostData(flow, Buffer.alloc(200_000, 2), 0);
    let next = ISS + 1;
    for (const s of sent) {
      expect(s.seq).toBe(next);
      next += s.len;
    }
    expect(next - (ISS + 1)).toBe(500_000);
    expect(flow.sndUna).toBe(flow.sndNxt);
    expect(flow.rtoAt).toBe(0);
  });
});
