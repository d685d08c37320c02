/**
 * A capture session: `usernet capture` streaming a port's frames as pcap over its API connection.
 * The writer is link/pcap-stream.ts (bounded staging, drops counted once, flush on end); this
 * wires the client's socket to it. The client asks for the end by half-closing its side (the CLI
 * does on Ctrl-C): the session then flushes what it staged and ends the stream, so the client's
 * file is complete; the client vanishing ends it too.
 */
import type { Socket } from 'node:net';
import type { Port } from '../link/port.js';
import { PcapStreamTap } from '../link/pcap-stream.js';

export { MAX_QUEUED, STAGING_SIZE } from '../link/pcap-stream.js';

export class CaptureSession extends PcapStreamTap {
  /**
   * @param limit stop after this many frames (0: until the client goes away)
   * @param onEnd called once when the session ends (limit reached, client done or gone, port removed)
   */
  constructor(port: Port, socket: Socket, limit: number, onEnd: (session: CaptureSession) => void) {
    super(port, socket, limit, (s) => onEnd(s as CaptureSession));
    // The client half-closing is its "stop": flush and end (before the socket's own auto-end,
    // which runs on the next tick). Bytes it sends are not requests any more: read and ignored,
    // so that its end is seen at all.
    socket.on('data', () => {});
    socket.on('end', () => this.end());
    socket.on('close', () => this.end());
    socket.on('error', () => this.end());
    socket.resume();
  }
}
