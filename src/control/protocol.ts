/**
 * The control API: JSON over a UNIX socket (mode 0600), one request per line, one response per
 * line, several requests per connection allowed.
 *
 *   request:  {"id": 1, "method": "attach", "params": {...}}
 *   response: {"id": 1, "result": {...}}   or   {"id": 1, "error": {"code": "ERR_...", "message": "..."}}
 *
 * `capture` is the one streaming method: after its success response line, the connection
 * carries a pcap file (global header, then records) until either side closes it.
 *
 * LineDecoder is the sans-I/O part: fed bytes, it returns complete lines, and refuses lines
 * longer than a limit (a client cannot make the daemon buffer without end).
 */
import { UsernetError } from '../errors.js';
import type { PortCountersSnapshot } from '../link/counters.js';
import type { FdbEntrySnapshot } from '../switch/fdb.js';

/** usernet's version, as `usernet --version` and the daemon's `status` report it. */
export const VERSION = '0.1.0';

export const MAX_REQUEST_LINE = 1024 * 1024;

export interface ApiRequest {
  id?: unknown;
  method: string;
  params?: Record<string, unknown>;
}

export interface ApiErrorBody {
  code: string;
  message: string;
}

export interface ApiResponse {
  id?: unknown;
  result?: unknown;
  error?: ApiErrorBody;
}

// ------------------------------------------------------------------------------------------
// Results on the wire: what the daemon answers and the CLI reads (shared, so neither can drift)
// ------------------------------------------------------------------------------------------

/** One port of `ports`: a container's attachment or a network's gateway port. */
export interface PortInfo {
  name: string;
  network: string;
  kind: string;
  ifname: string;
  /** The port's IPv4 address on its network (the gateway's own for the gateway port), or null. */
  ip: string | null;
  container: string;
  mac: string;
  mtu: number;
  offloads: boolean;
  state: 'up' | 'down';
  error?: string;
  counters: PortCountersSnapshot | null;
}

/** The result of `attach`. */
export interface AttachResult {
  name: string;
  network: string;
  ifname: string;
  mac: string;
  mtu: number;
  /** The container's address and prefix, its gateway and DNS server, the search list. */
  ip: string | null;
  prefix: number;
  gateway: string;
  dns: string | null;
  dnsSearch: string[];
  offloads: boolean;
  existed: boolean;
  /** Published ports, as HOST_IP:HOST_PORT:CONTAINER_PORT/PROTO (host ports resolved). */
  ports: string[];
}

/** One published port, as `usernet publish --list` shows it. */
export interface PublishedPortInfo {
  /** The attachment (container port name). */
  name: string;
  network: string;
  proto: 'tcp' | 'udp';
  hostIp: string;
  hostPort: number;
  containerIp: string;
  containerPort: number;
  spec: string;
  state: 'listening' | 'down';
  error?: string;
  /** Connections / client flows so far, and those refused. */
  flows: number;
  refused: number;
}

/** One MAC table entry of `fdb`. */
export interface FdbEntryInfo extends FdbEntrySnapshot {
  network: string;
}

/**
 * A line over the decoder's limit. `lines` are the complete lines that came before it in the same
 * chunk: they were sent before the offending one and deserve their answers, so how the bytes
 * happened to be split into chunks never changes which requests are answered.
 */
export class LineTooLongError extends UsernetError {
  constructor(
    message: string,
    readonly lines: string[] = [],
  ) {
    super('ERR_REQUEST_TOO_LARGE', message);
    this.name = 'LineTooLongError';
  }
}

/** A line that is not a request; carries the request's id when it had one, so the answer can be matched. */
export class BadRequestError extends UsernetError {
  constructor(
    code: 'ERR_BAD_JSON' | 'ERR_BAD_REQUEST',
    message: string,
    readonly requestId?: unknown,
  ) {
    super(code, message);
    this.name = 'BadRequestError';
  }
}

export class LineDecoder {
  private pending: Buffer[] = [];
  private pendingLength = 0;

  constructor(private readonly maxLine = MAX_REQUEST_LINE) {}

  /**
   * Feeds bytes; returns the complete lines they finish (without the newline). Throws
   * LineTooLongError, carrying the lines completed before it, when a line exceeds the limit;
   * the decoder is of no further use then (the connection is to be closed).
   */
  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl < 0) break;
      const piece = chunk.subarray(start, nl);
      if (this.pendingLength + piece.length > this.maxLine) throw this.tooLong(lines);
      if (this.pending.length) {
        this.pending.push(piece);
        lines.push(Buffer.concat(this.pending).toString('utf8'));
        this.pending = [];
        this.pendingLength = 0;
      } else {
        lines.push(piece.toString('utf8'));
      }
      start = nl + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      if (this.pendingLength + rest.length > this.maxLine) throw this.tooLong(lines);
      this.pending.push(Buffer.from(rest));
      this.pendingLength += rest.length;
    }
    return lines;
  }

  private tooLong(lines: string[]): LineTooLongError {
    this.pending = [];
    this.pendingLength = 0;
    return new LineTooLongError(`request line longer than ${this.maxLine} bytes`, lines);
  }
}

/** Parses one request line; throws an error with a stable code when it is not a request. */
export function parseRequest(line: string): ApiRequest {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    throw new BadRequestError('ERR_BAD_JSON', `request is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BadRequestError('ERR_BAD_REQUEST', 'request must be a JSON object with a "method"');
  }
  const v = value as Record<string, unknown>;
  // The id goes back with the error too, so a client can match it.
  if (typeof v.method !== 'string' || v.method === '') {
    throw new BadRequestError('ERR_BAD_REQUEST', 'request has no "method" string', v.id);
  }
  if (v.params !== undefined && (typeof v.params !== 'object' || v.params === null || Array.isArray(v.params))) {
    throw new BadRequestError('ERR_BAD_REQUEST', '"params" must be a JSON object', v.id);
  }
  return { id: v.id, method: v.method, params: (v.params as Record<string, unknown> | undefined) ?? {} };
}
