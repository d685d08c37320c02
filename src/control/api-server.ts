/**
 * The control API server: newline-delimited JSON over a UNIX socket (see protocol.ts).
 *
 * Every request is answered, whatever it contains: bad JSON, an unknown method or a handler that
 * throws all become an error response with a stable code, and the daemon goes on. A request line
 * over the size limit closes that connection (after an error response), nothing else.
 *
 * Who may talk to it: the socket is mode 0600 in a 0700 directory, so only the daemon's user (and
 * root) can connect — unless someone put it where others can reach it (`--socket` in a shared
 * directory). So each connection's peer is also checked with SO_PEERCRED, and any uid but the
 * daemon's own and root gets one error line and is closed, before a request is read.
 */
import { chmodSync, existsSync, lstatSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { toUsernetError, UsernetError } from '../errors.js';
import { native } from '../native/addon.js';
import { BadRequestError, LineDecoder, LineTooLongError, parseRequest, type ApiResponse } from './protocol.js';

/** A handler's result that turns the connection into a stream after the response line. */
export class StreamingResult {
  constructor(
    readonly result: unknown,
    readonly start: (socket: Socket) => void,
  ) {}
}

export type Handler = (params: Record<string, unknown>) => unknown | Promise<unknown>;

/** The uid of a connected peer (SO_PEERCRED), or -1 when it cannot be told. */
export type PeerUid = (socket: Socket) => number;

/** SO_PEERCRED through the addon (loaded when the first connection comes, not at import). */
export function socketPeerUid(socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return -1;
  try {
    return native().peerCredentials(fd).uid;
  } catch {
    return -1;
  }
}

/** A refused peer is logged at most this often. */
const REFUSED_LOG_INTERVAL_MS = 10_000;

export class ApiServer {
  private server: Server | null = null;
  private socketIno = -1;
  private readonly sockets = new Set<Socket>();
  private readonly ownUid = process.getuid?.() ?? 0;
  private lastRefusedLog = -Infinity;
  /** Connections refused because their peer was another user. */
  refused = 0;

  constructor(
    readonly socketPath: string,
    private readonly handlers: Record<string, Handler>,
    private readonly log: Logger,
    private readonly peerUid: PeerUid = socketPeerUid,
  ) {}

  /** Listens on the socket path. A live daemon there is an error; a stale socket is replaced. */
  async listen(): Promise<void> {
    if (existsSync(this.socketPath)) {
      if (await isAlive(this.socketPath)) {
        throw new UsernetError('ERR_DAEMON_RUNNING', `another usernet daemon is already listening on ${this.socketPath}`);
      }
      // Only a stale socket is ours to replace; never delete a file someone pointed --socket at.
      if (!lstatSync(this.socketPath).isSocket()) {
        throw new UsernetError('ERR_NOT_A_SOCKET', `${this.socketPath} exists and is not a socket: refusing to replace it`);
      }
      unlinkSync(this.socketPath);
    }
    const server = createServer({ allowHalfOpen: false }, (socket) => this.onConnection(socket));
    this.server = server;
    // umask so the socket is never, even for a moment, reachable by others. The bind happens
    // synchronously inside listen(), so the process-wide umask is restored right after it.
    const listening = new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.once('listening', () => {
        server.off('error', reject);
        resolve();
      });
    });
    const oldMask = process.umask(0o177);
    try {
      server.listen(this.socketPath);
    } finally {
      process.umask(oldMask);
    }
    await listening;
    chmodSync(this.socketPath, 0o600);
    this.socketIno = lstatSync(this.socketPath).ino;
    server.on('error', (err) => this.log.error({ err }, 'control socket error'));
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    try {
      // Only our own socket: another daemon may have taken the path over meanwhile.
      if (lstatSync(this.socketPath).ino === this.socketIno) unlinkSync(this.socketPath);
    } catch {
      // already gone
    }
  }

  private onConnection(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    const uid = this.peerUid(socket);
    if (uid !== this.ownUid && uid !== 0) {
      this.refused++;
      const now = performance.now();
      if (now - this.lastRefusedLog >= REFUSED_LOG_INTERVAL_MS) {
        this.lastRefusedLog = now;
        this.log.warn({ peerUid: uid, refused: this.refused }, 'control connection from another user refused (logged at most every 10 s)');
      }
      const message = uid < 0 ? 'cannot tell who is connecting (SO_PEERCRED failed): refused' : `uid ${uid} may not use this daemon (it serves uid ${this.ownUid} and root)`;
      socket.end(`${JSON.stringify({ error: { code: 'ERR_PEER_REFUSED', message } } satisfies ApiResponse)}\n`);
      return;
    }
    const decoder = new LineDecoder();
    let queue = Promise.resolve();
    let streaming = false;
    const onData = (chunk: Buffer): void => {
      let lines: string[];
      let tooLong: LineTooLongError | null = null;
      try {
        lines = decoder.push(chunk);
      } catch (err) {
        tooLong = err as LineTooLongError;
        // The requests before the overlong one are answered first, in order, then the error.
        lines = tooLong.lines;
        socket.off('data', onData);
      }
      for (const line of lines) {
        if (line.trim() === '') continue;
        // Requests on one connection are answered in order.
        queue = queue
          .then(async () => {
            if (streaming || socket.destroyed) return;
            const { text, stream } = await this.dispatch(line);
            if (stream) {
              streaming = true;
              socket.off('data', onData);
              socket.write(`${text}\n`);
              stream.start(socket);
              return;
            }
            if (!socket.destroyed) socket.write(`${text}\n`);
          })
          .catch((err: unknown) => {
            // A failing stream start must not become an unhandled rejection (the daemon exits on those).
            this.log.error({ err }, 'API connection failed');
            socket.destroy();
          });
      }
      if (tooLong) {
        const e = tooLong;
        queue = queue.then(() => {
          if (!streaming && !socket.destroyed) socket.end(`${JSON.stringify({ error: { code: e.code, message: e.message } })}\n`);
        });
      }
    };
    socket.on('data', onData);
  }

  /** Runs one request line; returns the response line (serialized here, so a result JSON cannot hold is an error response too). */
  private async dispatch(line: string): Promise<{ text: string; stream?: StreamingResult }> {
    let id: unknown;
    try {
      const req = parseRequest(line);
      id = req.id;
      const handler = Object.hasOwn(this.handlers, req.method) ? this.handlers[req.method] : undefined;
      if (!handler) {
        throw new UsernetError('ERR_UNKNOWN_METHOD', `unknown method "${req.method}" (known: ${Object.keys(this.handlers).join(', ')})`);
      }
      const result = await handler(req.params ?? {});
      if (result instanceof StreamingResult) return { text: JSON.stringify({ id, result: result.result } satisfies ApiResponse), stream: result };
      return { text: JSON.stringify({ id, result: result ?? {} } satisfies ApiResponse) };
    } catch (err) {
      if (id === undefined && err instanceof BadRequestError) id = err.requestId;
      const e = toUsernetError(err);
      if (e.code === 'ERR_INTERNAL') this.log.error({ err }, 'API handler failed');
      return { text: JSON.stringify({ id, error: { code: e.code, message: e.message } } satisfies ApiResponse) };
    }
  }
}

/** True when something accepts connections on the socket path. */
function isAlive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
