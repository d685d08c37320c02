/** The CLI's side of the control API: one connection, one request, one response. */
import { connect, type Socket } from 'node:net';
import { errnoError, UsernetError, type ErrorCode } from '../errors.js';
import { LineDecoder, type ApiResponse } from './protocol.js';

/** The daemon answered with an error: carries its code and message. */
export class ApiError extends UsernetError {
  constructor(code: string, message: string) {
    // The daemon's code, as it sent it: one of ERROR_CODES or an errno name (not checked here,
    // so a newer daemon's code reaches the user as it is).
    super(code as ErrorCode, message);
    this.name = 'ApiError';
  }
}

function connectionError(socketPath: string, err: NodeJS.ErrnoException): UsernetError {
  if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
    return new UsernetError('ERR_NO_DAEMON', `no usernet daemon is listening on ${socketPath} (start one with "usernet daemon", or pass --socket)`);
  }
  if (err.code === 'EACCES') return new UsernetError('ERR_SOCKET_ACCESS', `permission denied on ${socketPath}: the daemon belongs to another user`);
  const message = `cannot reach the daemon on ${socketPath}: ${err.message}`;
  return err.code ? errnoError(err.code, err.syscall ?? 'connect', message) : new UsernetError('ERR_CONNECT', message);
}

/**
 * Opens a connection and sends one request. Resolves with the response line's `result` and the
 * still-open socket (for streaming methods) — callers of non-streaming methods use request().
 */
export function openRequest(socketPath: string, method: string, params: Record<string, unknown> = {}): Promise<{ result: unknown; socket: Socket; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    // Responses can be much larger than requests (a full MAC table): allow 256 MiB.
    const decoder = new LineDecoder(256 * 1024 * 1024);
    let done = false;
    const fail = (err: Error): void => {
      if (done) return;
      done = true;
      socket.destroy();
      reject(err);
    };
    socket.once('error', (err: NodeJS.ErrnoException) => fail(connectionError(socketPath, err)));
    socket.once('connect', () => socket.write(`${JSON.stringify({ id: 1, method, params })}\n`));
    const onData = (chunk: Buffer): void => {
      const nl = chunk.indexOf(0x0a);
      let lines: string[];
      try {
        lines = decoder.push(nl >= 0 ? chunk.subarray(0, nl + 1) : chunk);
      } catch (err) {
        fail(err as Error);
        return;
      }
      if (lines.length === 0) return;
      socket.off('data', onData);
      socket.pause();
      done = true;
      let response: ApiResponse;
      try {
        response = JSON.parse(lines[0]) as ApiResponse;
      } catch {
        socket.destroy();
        reject(new UsernetError('ERR_BAD_RESPONSE', 'the daemon sent a response that is not JSON'));
        return;
      }
      if (response.error) {
        socket.destroy();
        reject(new ApiError(response.error.code, response.error.message));
        return;
      }
      resolve({ result: response.result, socket, rest: nl >= 0 ? chunk.subarray(nl + 1) : Buffer.alloc(0) });
    };
    socket.on('data', onData);
    socket.once('end', () => fail(new UsernetError('ERR_NO_RESPONSE', 'the daemon closed the connection without answering')));
  });
}

/** Sends one request and returns its result. */
export async function request<T = unknown>(socketPath: string, method: string, params: Record<string, unknown> = {}): Promise<T> {
  const { result, socket } = await openRequest(socketPath, method, params);
  socket.destroy();
  return result as T;
}
