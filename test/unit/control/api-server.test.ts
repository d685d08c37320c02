import { afterEach, beforeEach, describe, expect, it, onTestFinished, vi } from 'vitest';
import { existsSync, linkSync, lstatSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { ApiServer, StreamingResult, type Handler } from '../../../src/control/api-server.js';
import { ApiError, openRequest, request } from '../../../src/control/client.js';
import { UsernetError, InvalidArgumentError } from '../../../src/errors.js';
import { LineDecoder, MAX_REQUEST_LINE } from '../../../src/control/protocol.js';

const log = pino({ level: 'silent' });

let dir: string;
let sock: string;
const servers: ApiServer[] = [];
const rawServers: Server[] = [];
const sockets: Socket[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'usernet-api-'));
  sock = join(dir, 'api.sock');
});

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) await s.close();
  for (const s of rawServers.splice(0)) await new Promise<void>((r) => s.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});

async function start(handlers: Record<string, Handler>, path = sock): Promise<ApiServer> {
  const s = new ApiServer(path, handlers, log);
  servers.push(s);
  await s.listen();
  return s;
}

/** A raw connection that collects response lines and the end of the stream. */
class Raw {
  readonly socket: Socket;
  private buf = '';
  private lines: string[] = [];
  private waiters: Array<() => void> = [];
  ended = false;
  readonly connected: Promise<void>;
  readonly closed: Promise<void>;

  constructor(path: string) {
    this.socket = connect(path);
    sockets.push(this.socket);
    this.socket.setEncoding('utf8');
    this.socket.on('error', () => {});
    this.connected = new Promise((resolve) => this.socket.once('connect', () => resolve()));
    this.closed = new Promise((resolve) => this.socket.once('close', () => resolve()));
    this.socket.on('data', (s: string) => {
      this.buf += s;
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        this.lines.push(this.buf.slice(0, nl));
        this.buf = this.buf.slice(nl + 1);
      }
      this.wake();
    });
    this.socket.on('end', () => {
      this.ended = true;
      this.wake();
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  send(text: string): void {
    this.socket.write(text);
  }

  /** Resolves with the next `n` response lines, parsed; rejects if the stream ends first. */
  async next(n = 1): Promise<Array<Record<string, unknown>>> {
    while (this.lines.length < n) {
      if (this.ended) throw new Error(`stream ended after ${this.lines.length} of ${n} lines`);
      await new Promise<void>((r) => this.waiters.push(r));
    }
    return this.lines.splice(0, n).map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  /** Resolves when the server has ended the stream; returns what was left unread. */
  async end(): Promise<string> {
    while (!this.ended) await new Promise<void>((r) => this.waiters.push(r));
    return this.lines.join('\n') + this.buf;
  }
}

async function rejection(p: Promise<unknown>): Promise<UsernetError> {
  try {
    await p;
  } catch (err) {
    return err as UsernetError;
  }
  throw new Error('expected a rejection');
}

const ticks = async (n: number): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
};

describe('ApiServer + client', () => {
  it('answers a request with the handler\'s value and passes params', async () => {
    await start({
      echo: (p) => ({ got: p }),
      nothing: () => undefined,
      later: async () => {
        await ticks(2);
        return { n: 3 };
      },
    });
    expect(await request(sock, 'echo', { a: 1, b: ['x'] })).toEqual({ got: { a: 1, b: ['x'] } });
    expect(await request(sock, 'echo')).toEqual({ got: {} });
    expect(await request(sock, 'nothing')).toEqual({});
    expect(await request(sock, 'later')).toEqual({ n: 3 });
  });

  it('turns a thrown UsernetError into an ApiError with its code and message', async () => {
    await start({
      fail: () => {
        throw new InvalidArgumentError('"pid" must be an integer');
      },
      conflict: async () => {
        throw new UsernetError('ERR_NAME_IN_USE', 'name "c1" is in use');
      },
    });
    const e = await rejection(request(sock, 'fail'));
    expect(e).toBeInstanceOf(ApiError);
    expect(e.code).toBe('ERR_INVALID_ARGUMENT');
    expect(e.message).toBe('"pid" must be an integer');
    const e2 = await rejection(request(sock, 'conflict'));
    expect(e2).toBeInstanceOf(ApiError);
    expect(e2.code).toBe('ERR_NAME_IN_USE');
    expect(e2.message).toBe('name "c1" is in use');
  });

  it('turns a plain Error into ERR_INTERNAL and keeps serving', async () => {
    let calls = 0;
    await start({
      boom: () => {
        calls++;
        throw new Error('kaboom');
      },
      ok: () => ({ ok: true }),
    });
    const e = await rejection(request(sock, 'boom'));
    expect(e).toBeInstanceOf(ApiError);
    expect(e.code).toBe('ERR_INTERNAL');
    expect(e.message).toBe('kaboom');
    expect(await request(sock, 'ok')).toEqual({ ok: true });
    await rejection(request(sock, 'boom'));
    expect(calls).toBe(2);
    expect(await request(sock, 'ok')).toEqual({ ok: true });
  });

  it('answers a result it cannot serialize with an error, and keeps serving', async () => {
    await start({ big: () => ({ n: 10n }), ok: () => ({ ok: true }) });
    const raw = new Raw(sock);
    raw.send('{"id":1,"method":"big"}\n{"id":2,"method":"ok"}\n');
    const [r1, r2] = await raw.next(2);
    expect(r1.id).toBe(1);
    expect((r1.error as { code: string }).code).toBe('ERR_INTERNAL');
    expect(r2).toEqual({ id: 2, result: { ok: true } });
  });

  it('rejects an unknown method with ERR_UNKNOWN_METHOD, also for Object.prototype names', async () => {
    await start({ ports: () => ({ ports: [] }) });
    for (const m of ['nope', 'toString', '__proto__', 'constructor', 'hasOwnProperty']) {
      const e = await rejection(request(sock, m));
      expect(e).toBeInstanceOf(ApiError);
      expect(e.code).toBe('ERR_UNKNOWN_METHOD');
      expect(e.message).toContain(`"${m}"`);
    }
  });

  it('answers bad JSON and bad requests with error responses and serves the next connection', async () => {
    await start({ ok: () => ({ ok: true }) });
    const raw = new Raw(sock);
    raw.send('this is not json\n');
    const [r1] = await raw.next();
    expect(r1.id).toBeUndefined();
    expect((r1.error as { code: string }).code).toBe('ERR_BAD_JSON');
    raw.send('[1,2]\n{"id":5}\n{"id":6,"method":"ok","params":[]}\n');
    const rs = await raw.next(3);
    expect(rs.map((r) => (r.error as { code: string }).code)).toEqual(['ERR_BAD_REQUEST', 'ERR_BAD_REQUEST', 'ERR_BAD_REQUEST']);
    // The same connection still works.
    raw.send('{"id":7,"method":"ok"}\n');
    expect(await raw.next()).toEqual([{ id: 7, result: { ok: true } }]);
    // And so does a new one.
    expect(await request(sock, 'ok')).toEqual({ ok: true });
  });

  it('ignores blank lines', async () => {
    await start({ ok: () => ({ ok: true }) });
    const raw = new Raw(sock);
    raw.send('\n   \n{"id":1,"method":"ok"}\n\n');
    expect(await raw.next()).toEqual([{ id: 1, result: { ok: true } }]);
  });

  it('answers several requests on one connection in order, even when an earlier one is slower', async () => {
    const order: string[] = [];
    await start({
      slow: async (p) => {
        order.push(`start slow ${String(p.n)}`);
        await ticks(5);
        order.push(`end slow ${String(p.n)}`);
        return { slow: p.n };
      },
      fast: (p) => {
        order.push(`fast ${String(p.n)}`);
        return { fast: p.n };
      },
    });
    const raw = new Raw(sock);
    raw.send(
      '{"id":1,"method":"slow","params":{"n":1}}\n{"id":2,"method":"fast","params":{"n":2}}\n' +
        '{"id":"three","method":"nope"}\n{"id":4,"method":"slow","params":{"n":4}}\n{"id":5,"method":"fast","params":{"n":5}}\n',
    );
    const rs = await raw.next(5);
    expect(rs.map((r) => r.id)).toEqual([1, 2, 'three', 4, 5]);
    expect(rs[0].result).toEqual({ slow: 1 });
    expect(rs[1].result).toEqual({ fast: 2 });
    expect((rs[2].error as { code: string }).code).toBe('ERR_UNKNOWN_METHOD');
    expect(rs[3].result).toEqual({ slow: 4 });
    expect(rs[4].result).toEqual({ fast: 5 });
    expect(order).toEqual(['start slow 1', 'end slow 1', 'fast 2', 'start slow 4', 'end slow 4', 'fast 5']);
  });

  it('answers requests that arrive one byte at a time', async () => {
    await start({ echo: (p) => p });
    const raw = new Raw(sock);
    await raw.connected;
    const text = '{"id":1,"method":"echo","params":{"s":"héllo"}}\n';
    for (const byte of Buffer.from(text)) raw.socket.write(Buffer.from([byte]));
    expect(await raw.next()).toEqual([{ id: 1, result: { s: 'héllo' } }]);
  });

  it('closes only the connection that sends a too-long line, after an error response', async () => {
    await start({ ok: () => ({ ok: true }) });
    const other = new Raw(sock);
    other.send('{"id":1,"method":"ok"}\n');
    expect(await other.next()).toEqual([{ id: 1, result: { ok: true } }]);

    const bad = new Raw(sock);
    bad.send('{"id":1,"method":"ok"}\n');
    expect(await bad.next()).toEqual([{ id: 1, result: { ok: true } }]);
    bad.send('x'.repeat(MAX_REQUEST_LINE + 1)); // no newline: the excess alone is enough
    const [r] = await bad.next();
    expect((r.error as { code: string }).code).toBe('ERR_REQUEST_TOO_LARGE');
    await bad.end();
    await bad.closed;

    other.send('{"id":2,"method":"ok"}\n');
    expect(await other.next()).toEqual([{ id: 2, result: { ok: true } }]);
    expect(await request(sock, 'ok')).toEqual({ ok: true });
  });

  it('answers the requests sent before a too-long line, in order, before the error (regression: the error ended the connection first)', async () => {
    let release = (): void => {};
    const slow = new Promise<void>((r) => (release = r));
    // Resolves when the server's decoder has refused the overlong line.
    const push = LineDecoder.prototype.push;
    const refused = new Promise<void>((resolve) => {
      vi.spyOn(LineDecoder.prototype, 'push').mockImplementation(function (this: LineDecoder, chunk: Buffer) {
        try {
          return push.call(this, chunk);
        } catch (err) {
          resolve();
          throw err;
        }
      });
    });
    onTestFinished(() => {
      vi.restoreAllMocks();
    });
    await start({ slow: async () => (await slow, { slow: true }), ok: () => ({ ok: true }) });
    const raw = new Raw(sock);
    await raw.connected;
    raw.send('{"id":1,"method":"slow"}\n{"id":2,"method":"ok"}\n');
    raw.send('x'.repeat(MAX_REQUEST_LINE + 1));
    // The overlong line is refused while request 1 is still being answered.
    await refused;
    release();
    const [a, b, c] = await raw.next(3);
    expect([a, b]).toEqual([{ id: 1, result: { slow: true } }, { id: 2, result: { ok: true } }]);
    expect((c.error as { code: string }).code).toBe('ERR_REQUEST_TOO_LARGE');
    await raw.closed;
  });

  it('creates the socket with mode 0600', async () => {
    await start({});
    const st = lstatSync(sock);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
  });

  it('restores the process umask after listening', async () => {
    const before = process.umask();
    await start({});
    expect(process.umask()).toBe(before);
  });

  it('refuses to start a second server on a path where one listens (ERR_DAEMON_RUNNING)', async () => {
    await start({ who: () => ({ first: true }) });
    const e = await rejection(start({ who: () => ({ second: true }) }));
    expect(e.code).toBe('ERR_DAEMON_RUNNING');
    expect(e.message).toContain(sock);
    expect(await request(sock, 'who')).toEqual({ first: true });
    expect(lstatSync(sock).isSocket()).toBe(true);
  });

  it('replaces a stale socket file that nobody listens on', async () => {
    // A socket file left behind by a dead process: a hard link to a socket whose server is gone.
    const tmpSock = join(dir, 'old.sock');
    const old = createServer();
    await new Promise<void>((r) => old.listen(tmpSock, () => r()));
    linkSync(tmpSock, sock);
    await new Promise<void>((r) => old.close(() => r()));
    expect(lstatSync(sock).isSocket()).toBe(true);
    const e = await rejection(request(sock, 'who'));
    expect(e.code).toBe('ERR_NO_DAEMON');

    await start({ who: () => ({ fresh: true }) });
    expect(await request(sock, 'who')).toEqual({ fresh: true });
  });

  it('never deletes a file at the socket path that is not a socket', async () => {
    writeFileSync(sock, 'precious');
    const e = await rejection(start({}));
    expect(e).toBeInstanceOf(UsernetError);
    expect(e.message).toContain(sock);
    expect(readFileSync(sock, 'utf8')).toBe('precious');
  });

  it('removes the socket file on close() and drops open connections; close() twice is fine', async () => {
    const s = await start({ ok: () => ({ ok: true }) });
    const raw = new Raw(sock);
    raw.send('{"id":1,"method":"ok"}\n');
    await raw.next();
    await s.close();
    expect(existsSync(sock)).toBe(false);
    await raw.closed;
    await s.close();
    const e = await rejection(request(sock, 'ok'));
    expect(e.code).toBe('ERR_NO_DAEMON');
  });

  it('close() on a server that never listened does nothing', async () => {
    const s = new ApiServer(sock, {}, log);
    await s.close();
    expect(existsSync(sock)).toBe(false);
  });

  it('streams raw bytes after the response line of a StreamingResult', async () => {
    const payload = Buffer.concat([Buffer.from([0, 1, 2, 0x0a, 0x0a, 0xff]), Buffer.alloc(100_000, 0x5a), Buffer.from('tail\n')]);
    let streamedParams: Record<string, unknown> | undefined;
    await start({
      stream: (p) => {
        streamedParams = p;
        return new StreamingResult({ streaming: true, port: p.port }, (socket) => {
          socket.write(payload.subarray(0, 10));
          socket.end(payload.subarray(10));
        });
      },
    });
    const { result, socket, rest } = await openRequest(sock, 'stream', { port: 'c1' });
    sockets.push(socket);
    expect(result).toEqual({ streaming: true, port: 'c1' });
    expect(streamedParams).toEqual({ port: 'c1' });
    const chunks: Buffer[] = [rest];
    socket.on('data', (c: Buffer) => chunks.push(c));
    await new Promise<void>((r) => {
      socket.once('end', () => r());
      socket.resume();
    });
    expect(Buffer.concat(chunks).equals(payload)).toBe(true);
  });

  it('echoes the request id on a streaming response and ignores requests after it', async () => {
    let calls = 0;
    await start({
      stream: () => {
        calls++;
        return new StreamingResult({ s: 1 }, (socket) => socket.end('RAW'));
      },
    });
    const raw = new Raw(sock);
    raw.send('{"id":42,"method":"stream"}\n{"id":43,"method":"stream"}\n');
    const [r] = await raw.next();
    expect(r).toEqual({ id: 42, result: { s: 1 } });
    expect(await raw.end()).toBe('RAW');
    expect(calls).toBe(1);
  });
});

describe('ApiServer robustness', () => {
  it('drops only the connection whose stream fails to start, and keeps serving', async () => {
    await start({
      broken: () =>
        new StreamingResult({}, () => {
          throw new Error('cannot start');
        }),
      ok: () => ({ ok: true }),
    });
    const raw = new Raw(sock);
    raw.send('{"id":1,"method":"broken"}\n');
    await raw.closed;
    expect(await request(sock, 'ok')).toEqual({ ok: true });
  });
});

describe('client errors', () => {
  it('reports ERR_NO_DAEMON with the path when nothing is there', async () => {
    const e = await rejection(request(sock, 'ports'));
    expect(e).toBeInstanceOf(UsernetError);
    expect(e).not.toBeInstanceOf(ApiError);
    expect(e.code).toBe('ERR_NO_DAEMON');
    expect(e.message).toContain(sock);
  });

  it('reports ERR_NO_RESPONSE when the daemon closes without answering', async () => {
    const srv = createServer((s) => {
      s.resume();
      s.end();
    });
    rawServers.push(srv);
    await new Promise<void>((r) => srv.listen(sock, () => r()));
    const e = await rejection(request(sock, 'ports'));
    expect(e.code).toBe('ERR_NO_RESPONSE');
  });

  it('reports ERR_BAD_RESPONSE when the answer is not JSON', async () => {
    const srv = createServer((s) => {
      s.resume();
      s.end('<html>\n');
    });
    rawServers.push(srv);
    await new Promise<void>((r) => srv.listen(sock, () => r()));
    const e = await rejection(request(sock, 'ports'));
    expect(e.code).toBe('ERR_BAD_RESPONSE');
  });

  it('reads a response split over several writes, and sends one request line', async () => {
    const received: string[] = [];
    const srv = createServer((s) => {
      s.setEncoding('utf8');
      s.on('data', (d: string) => {
        received.push(d);
        s.write('{"id":1,');
        setImmediate(() => s.write('"result":{"x":'));
        setImmediate(() => setImmediate(() => s.end('1}}\n')));
      });
    });
    rawServers.push(srv);
    await new Promise<void>((r) => srv.listen(sock, () => r()));
    expect(await request(sock, 'm', { a: 1 })).toEqual({ x: 1 });
    expect(JSON.parse(received.join(''))).toEqual({ id: 1, method: 'm', params: { a: 1 } });
  });
});
