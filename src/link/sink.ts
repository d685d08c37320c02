/**
 * What a port delivers its frames to: the switch, or anything else that speaks this interface —
 * a recorder, a test, another kind of bridge. Ports know only this, never the switch's type, so
 * the link layer does not depend on the layer above it (gVisor's NetworkDispatcher, which a
 * LinkEndpoint is `Attach`ed to, plays the same part).
 *
 *   port ──attach(sink)──▶ sink.addPort(port)
 *   frames read in one go: sink.beginBatch(); sink.input(port, frame) × n; sink.endBatch()
 *   port.close() ──▶ sink.removePort(port)
 *
 * `endBatch()` is the sink's chance to send what the frames of the batch caused (the switch
 * drains its egress queue there); a port must call it after every `beginBatch()`, even when
 * handling a frame threw.
 */
import type { Frame } from './frame.js';
import type { Port } from './port.js';

export interface FrameSink {
  /** Takes `port` in (it gets an id); throws if it cannot (a name taken). */
  addPort(port: Port): void;
  /** Lets `port` go; frames it sends afterwards are not delivered. */
  removePort(port: Port): void;
  /** The frames that follow, up to `endBatch()`, were read together (one clock reading serves them). */
  beginBatch(): void;
  /** One frame received on `port`. The frame is lent: valid only during the call. */
  input(port: Port, frame: Frame): void;
  /** The batch is over: whatever it produced may now be sent. */
  endBatch(): void;
}
