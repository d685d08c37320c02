/**
 * The container-facing TCP endpoint per segment (src/nat/tcp-flow.ts), without sockets or
 * frames: a host that takes every byte and a wire that only counts. Container → host is one
 * in-order 1448-byte data segment (written to the host, acknowledged); host → container is 64 KiB
 * of host data sent as one segment and acknowledged by the container. This is the per-segment
 * work TcpNat adds on top of the frame codecs.
 */
import { TcpFlow, type TcpFlowHost, type TcpFlowWire } from '../../src/nat/tcp-flow.js';
import { TCP_ACK, TCP_PSH } from '../../src/packet/tcp.js';
import { consume, runSuite } from './common.js';

class NullHost implements TcpFlowHost {
  bytes = 0;
  writableLength = 0;
  write(_d: Uint8Array, _o: number, len: number): boolean {
    this.bytes += len;
    return true;
  }
  end(): void {}
  reset(): void {}
  pause(): void {}
  resume(): void {}
}

class NullWire implements TcpFlowWire {
  segments = 0;
  lastSeq = 0;
  lastLen = 0;
  segment(_f: TcpFlow, _flags: number, seq: number, _ack: number, _w: number, _po: number, len: number): void {
    this.segments++;
    this.lastSeq = seq;
    this.lastLen = len;
  }
  stateChanged(): void {}
}

function established(): { flow: TcpFlow; host: NullHost; wire: NullWire } {
  const host = new NullHost();
  const wire = new NullWire();
  const flow = new TcpFlow(host, wire, { seq: 5000, window: 64240, mss: 1460, wscale: 7 }, 1000, 0);
  flow.hostConnected(0);
  flow.segment(TCP_ACK, 5001, 1001, 65535, new Uint8Array(0), 0, 0, 0);
  return { flow, host, wire };
}

const payload = Buffer.alloc(1448, 7);
const up = established();
let seq = 5001;

const down = established();
const chunk = Buffer.alloc(65536 - 40, 3);
const empty = new Uint8Array(0);

runSuite('TcpFlow, per segment', {
  'container → host: 1448-byte data segment, written and acknowledged': () => {
    up.flow.segment(TCP_ACK | TCP_PSH, seq, up.flow.sndNxt, 65535, payload, 0, payload.length, 0);
    seq = (seq + payload.length) >>> 0;
    consume(up.wire.segments);
  },
  'host → container: 64 KiB of host data sent, then acknowledged': () => {
    down.flow.hostData(chunk, 0, chunk.length, 0);
    down.flow.segment(TCP_ACK, down.flow.rcvNxt, down.flow.sndNxt, 65535, empty, 0, 0, 0);
    consume(down.wire.segments);
  },
});
