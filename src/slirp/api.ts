/**
 * slirp4netns's API socket, byte for byte: one JSON request per connection, one reply without a
 * trailing newline, then the connection closes.
 *
 *   {"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,
 *                                         "guest_addr":"10.0.2.100","guest_port":80}}
 *                                → {"return":{"id":1}}        (ids count up, never reused)
 *   {"execute":"list_hostfwd"}   → {"entries":[{"id":1,"proto":"tcp","host_addr":"0.0.0.0",
 *                                   "host_port":8080,"guest_addr":"10.0.2.100","guest_port":80}]}
 *   {"execute":"remove_hostfwd","arguments":{"id":1}} → {"return":{}}
 *   errors                       → {"error":{"desc":"bad request: …"}}, slirp4netns's texts
 *
 * `SlirpApi` is the protocol (request bytes in, reply text out) over a `HostfwdBackend` that opens
 * and closes the listeners; `SlirpApiServer` is the UNIX socket.
 */
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { ipv4ToString, tryParseIpv4 } from '../packet/ip-address.js';

/** slirp4netns reads a request with one read(2) into a 4096-byte buffer; a full buffer is refused. */
export const API_MAX_REQUEST = 4096;
/** sockaddr_un.sun_path holds 108 bytes with the terminating NUL. */
export const MAX_SOCKET_PATH_BYTES = 107;
/** A client that connects and never completes its request is closed after this. */
export const API_REQUEST_TIMEOUT_MS = 10_000;

export interface Hostfwd {
  id: number;
  proto: 'tcp' | 'udp';
  hostAddr: number;
  hostPort: number;
  guestAddr: number;
  guestPort: number;
}

export interface HostfwdBackend {
  /** Opens the listener; rejects (with the reason, for the log) when it cannot. */
  add(fwd: Hostfwd): Promise<void>;
  remove(fwd: Hostfwd): Promise<void>;
}

const error = (desc: string): string => JSON.stringify({ error: { desc: `bad request: ${desc}` } });

export const TOO_LARGE = error('too large message');

export class SlirpApi {
  private nextId = 1;
  private readonly forwards: Hostfwd[] = [];
  /** Requests are handled one at a time, in arrival order, as slirp4netns's loop does. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly backend: HostfwdBackend,
    /** guest_addr "" or absent: the address slirp4netns recommends to its guest (cidr + 100). */
    private readonly defaultGuest: number,
    private readonly log?: Logger,
  ) {}

  get list(): readonly Hostfwd[] {
    return this.forwards;
  }

  /** One request's bytes in, the reply out. */
  handle(request: Uint8Array): Promise<string> {
    const run = this.queue.then(() => this.handleNow(request));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Removes every forward (shutdown). */
  async removeAll(): Promise<void> {
    await this.queue;
    const all = this.forwards.splice(0);
    await Promise.all(all.map((f) => this.backend.remove(f).catch(() => undefined)));
  }

  private async handleNow(request: Uint8Array): Promise<string> {
    if (request.length >= API_MAX_REQUEST) return TOO_LARGE;
    let jv: unknown;
    try {
      jv = JSON.parse(Buffer.from(request.buffer, request.byteOffset, request.length).toString('utf8'));
    } catch {
      return error('cannot parse JSON');
    }
    if (typeof jv !== 'object' || jv === null || Array.isArray(jv)) return error('json_object() failed');
    const jo = jv as Record<string, unknown>;
    const execute = jo.execute;
    if (typeof execute !== 'string') return error('no execute found');
    const args = typeof jo.arguments === 'object' && jo.arguments !== null && !Array.isArray(jo.arguments) ? (jo.arguments as Record<string, unknown>) : {};
    switch (execute) {
      case 'add_hostfwd':
        return this.add(args);
      case 'list_hostfwd':
        return JSON.stringify({
          entries: this.forwards.map((f) => ({
            id: f.id,
            proto: f.proto,
            host_addr: ipv4ToString(f.hostAddr),
            host_port: f.hostPort,
            guest_addr: ipv4ToString(f.guestAddr),
            guest_port: f.guestPort,
          })),
        });
      case 'remove_hostfwd':
        return this.remove(args);
      default:
        return error('unknown execute');
    }
  }

  private async add(args: Record<string, unknown>): Promise<string> {
    const proto = args.proto;
    if (proto !== 'tcp' && proto !== 'udp') return error('add_hostfwd: bad arguments.proto');
    const hostAddrText = typeof args.host_addr === 'string' && args.host_addr !== '' ? args.host_addr : '0.0.0.0';
    const hostAddr = tryParseIpv4(hostAddrText);
    if (hostAddr < 0 || (args.host_addr !== undefined && typeof args.host_addr !== 'string')) return error('add_hostfwd: bad arguments.host_addr');
    const hostPort = port(args.host_port);
    if (hostPort === 0) return error('add_hostfwd: bad arguments.host_port');
    let guestAddr = this.defaultGuest;
    if (typeof args.guest_addr === 'string' && args.guest_addr !== '') {
      guestAddr = tryParseIpv4(args.guest_addr);
      if (guestAddr < 0) return error('add_hostfwd: bad arguments.guest_addr');
    } else if (args.guest_addr !== undefined && args.guest_addr !== null && typeof args.guest_addr !== 'string') {
      return error('add_hostfwd: bad arguments.guest_addr');
    }
    const guestPort = port(args.guest_port);
    if (guestPort === 0) return error('add_hostfwd: bad arguments.guest_port');
    const fwd: Hostfwd = { id: this.nextId, proto, hostAddr, hostPort, guestAddr, guestPort };
    try {
      await this.backend.add(fwd);
    } catch (err) {
      // The reply is slirp4netns's; the reason goes to the log.
      this.log?.warn({ proto, host: `${ipv4ToString(hostAddr)}:${hostPort}`, guest: `${ipv4ToString(guestAddr)}:${guestPort}`, err: (err as Error).message }, 'add_hostfwd failed');
      return error('add_hostfwd: slirp_add_hostfwd failed');
    }
    this.nextId++;
    this.forwards.push(fwd);
    return JSON.stringify({ return: { id: fwd.id } });
  }

  private async remove(args: Record<string, unknown>): Promise<string> {
    const id = typeof args.id === 'number' ? Math.trunc(args.id) : NaN;
    const i = this.forwards.findIndex((f) => f.id === id);
    if (i < 0) return error('remove_hostfwd: bad arguments.id');
    const fwd = this.forwards[i] as Hostfwd;
    try {
      await this.backend.remove(fwd);
    } catch (err) {
      this.log?.warn({ id, err: (err as Error).message }, 'remove_hostfwd failed');
      return error('remove_hostfwd: slirp_remove_hostfwd failed');
    }
    this.forwards.splice(this.forwards.indexOf(fwd), 1);
    return JSON.stringify({ return: {} });
  }
}

/** A JSON number that is a port (1-65535, truncated as slirp4netns's (int) cast does); else 0. */
function port(v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) return 0;
  const n = Math.trunc(v);
  return n >= 1 && n <= 65535 ? n : 0;
}

/**
 * The socket: a request ends when the client shuts down its write side, or as soon as the bytes
 * so far are a complete JSON value (for clients that wait for the reply without shutting down).
 */
export class SlirpApiServer {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();

  constructor(
    readonly path: string,
    private readonly api: SlirpApi,
    private readonly log?: Logger,
  ) {}

  async listen(): Promise<void> {
    const bytes = Buffer.byteLength(this.path);
    if (bytes > MAX_SOCKET_PATH_BYTES) {
      throw new Error(`API socket path too long (${bytes} bytes, at most ${MAX_SOCKET_PATH_BYTES}): ${this.path}`);
    }
    // allowHalfOpen: a client that shuts down its side after the request still gets the reply.
    // A socket file left by an earlier run (killed, or sandboxed and unable to remove it) would
    // make the bind fail: slirp4netns unlinks the path first too. Only a socket is removed; any
    // other file there is an error, and so is a directory that does not exist.
    let st;
    try {
      st = lstatSync(this.path);
    } catch {
      st = null;
    }
    if (st?.isSocket()) unlinkSync(this.path);
    else if (st) throw new Error(`cannot listen on the API socket ${this.path}: something that is not a socket is there`);
    if (!existsSync(dirname(this.path))) throw new Error(`cannot listen on the API socket ${this.path}: its directory does not exist`);
    const server = createServer({ allowHalfOpen: true }, (s) => this.serve(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        const why = err.code === 'EADDRINUSE' ? 'the path is in use' : err.code === 'EACCES' ? 'permission denied' : err.message;
        reject(new Error(`cannot listen on the API socket ${this.path}: ${why} (${err.code ?? 'EIO'})`));
      });
      server.listen(this.path, () => resolve());
    });
    server.on('error', (err) => this.log?.error({ err: err.message }, 'API socket error'));
    this.server = server;
  }

  private serve(s: Socket): void {
    this.sockets.add(s);
    const chunks: Buffer[] = [];
    let size = 0;
    let answered = false;
    const timer = setTimeout(() => s.destroy(), API_REQUEST_TIMEOUT_MS);
    const answer = (request: Buffer | null): void => {
      if (answered) return;
      answered = true;
      clearTimeout(timer);
      const reply = request === null ? Promise.resolve(TOO_LARGE) : this.api.handle(request);
      void reply.then(
        (text) => {
          // One request per connection: the reply, then our side closes. A client still writing
          // (a request too large, from `cat /dev/zero`) sees the end and stops; what it sends
          // meanwhile is read and dropped, so it never loses the reply to a reset. One that
          // keeps the connection open anyway is closed after a while.
          if (s.destroyed) return;
          s.end(text);
          const linger = setTimeout(() => s.destroy(), API_REQUEST_TIMEOUT_MS);
          s.once('close', () => clearTimeout(linger));
        },
        (err: unknown) => {
          this.log?.error({ err: (err as Error).message }, 'API request failed');
          s.destroy();
        },
      );
    };
    s.on('data', (d: Buffer) => {
      if (answered) return;
      chunks.push(d);
      size += d.length;
      if (size >= API_MAX_REQUEST) {
        answer(null);
        return;
      }
      const all = Buffer.concat(chunks, size);
      if (completeJson(all)) answer(all);
    });
    s.on('end', () => answer(Buffer.concat(chunks, size)));
    s.on('error', () => s.destroy());
    s.on('close', () => {
      clearTimeout(timer);
      this.sockets.delete(s);
    });
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    // net.Server unlinks its path on close; a leftover (a crash before) is removed too.
    try {
      if (existsSync(this.path) && lstatSync(this.path).isSocket()) unlinkSync(this.path);
    } catch {
      // gone
    }
  }
}

function completeJson(b: Buffer): boolean {
  try {
    JSON.parse(b.toString('utf8'));
    return true;
  } catch {
    return false;
  }
}
