/**
 * slirp4netns's API, byte for byte: requests written into the protocol (SlirpApi) and through a real
 * UNIX socket (SlirpApiServer), as rootlesskit, Podman and `ncat -U` send them. The backend here
 * records what it is asked and refuses a port it is told is taken; the real listeners behind it
 * are tested end to end (test/e2e/slirp4netns.test.ts).
 */
import { mkdtempSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { API_MAX_REQUEST, SlirpApi, SlirpApiServer, type Hostfwd, type HostfwdBackend } from '../../../src/slirp/api.js';

const GUEST = 0x0a000264; // 10.0.2.100

class Backend implements HostfwdBackend {
  open = new Map<string, Hostfwd>();
  taken = new Set<number>();
  async add(f: Hostfwd): Promise<void> {
    const key = `${f.proto}/${f.hostPort}`;
    if (this.taken.has(f.hostPort) || this.open.has(key)) throw new Error(`${f.hostPort} is already in use on the host (EADDRINUSE)`);
    this.open.set(key, f);
  }
  async remove(f: Hostfwd): Promise<void> {
    this.open.delete(`${f.proto}/${f.hostPort}`);
  }
}

const ask = (api: SlirpApi, text: string) => api.handle(Buffer.from(text));

describe('SlirpApi', () => {
  it('adds, lists and removes forwards with ids that are never reused', async () => {
    const b = new Backend();
    const api = new SlirpApi(b, GUEST);
    expect(await ask(api, '{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":18080,"guest_addr":"10.0.2.100","guest_port":80}}')).toBe('{"return":{"id":1}}');
    // Podman's form: guest_addr "" means the default guest address; host_addr absent means 0.0.0.0.
    expect(await ask(api, '{"execute":"add_hostfwd","arguments":{"proto":"udp","host_port":5353,"guest_addr":"","guest_port":53}}')).toBe('{"return":{"id":2}}');
    expect(await ask(api, '{"execute": "list_hostfwd"}')).toBe(
      '{"entries":[{"id":1,"proto":"tcp","host_addr":"127.0.0.1","host_port":18080,"guest_addr":"10.0.2.100","guest_port":80},' +
        '{"id":2,"proto":"udp","host_addr":"0.0.0.0","host_port":5353,"guest_addr":"10.0.2.100","guest_port":53}]}',
    );
    expect(await ask(api, '{"execute":"remove_hostfwd","arguments":{"id":1}}')).toBe('{"return":{}}');
    expect(b.open.has('tcp/18080')).toBe(false);
    expect(await ask(api, '{"execute":"remove_hostfwd","arguments":{"id":1}}')).toBe('{"error":{"desc":"bad request: remove_hostfwd: bad arguments.id"}}');
    expect(await ask(api, '{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":18080,"guest_port":80}}')).toBe('{"return":{"id":3}}');
    expect(await ask(api, '{"execute":"list_hostfwd"}')).toMatch(/^\{"entries":\[\{"id":2,.*\{"id":3,/);
  });

  it('answers a port that cannot be opened with slirp4netns\'s error, and the id is not used up', async () => {
    const b = new Backend();
    b.taken.add(8080);
    const api = new SlirpApi(b, GUEST);
    expect(await ask(api, '{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8080,"guest_port":80}}')).toBe('{"error":{"desc":"bad request: add_hostfwd: slirp_add_hostfwd failed"}}');
    expect(await ask(api, '{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8081,"guest_port":80}}')).toBe('{"return":{"id":1}}');
    expect(await ask(api, '{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8081,"guest_port":81}}')).toBe('{"error":{"desc":"bad request: add_hostfwd: slirp_add_hostfwd failed"}}');
  });

  it.each([
    ['not json', 'bad request: cannot parse JSON'],
    ['[1,2]', 'bad request: json_object() failed'],
    ['{"arguments":{}}', 'bad request: no execute found'],
    ['{"execute":7}', 'bad request: no execute found'],
    ['{"execute":"reboot"}', 'bad request: unknown execute'],
    ['{"execute":"add_hostfwd","arguments":{"host_port":1,"guest_port":1}}', 'bad request: add_hostfwd: bad arguments.proto'],
    ['{"execute":"add_hostfwd","arguments":{"proto":"sctp","host_port":1,"guest_port":1}}', 'bad request: add_hostfwd: bad arguments.proto'],
    ['{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"::1","host_port":1,"guest_port":1}}', 'bad request: add_hostfwd: bad arguments.host_addr'],
    ['{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":0,"guest_port":1}}', 'bad request: add_hostfwd: bad arguments.host_port'],
    ['{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":"80","guest_port":1}}', 'bad request: add_hostfwd: bad arguments.host_port'],
    ['{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":70000,"guest_port":1}}', 'bad request: add_hostfwd: bad arguments.host_port'],
    ['{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":1,"guest_addr":"ten","guest_port":1}}', 'bad request: add_hostfwd: bad arguments.guest_addr'],
    ['{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":1}}', 'bad request: add_hostfwd: bad arguments.guest_port'],
    ['{"execute":"remove_hostfwd","arguments":{"id":"1"}}', 'bad request: remove_hostfwd: bad arguments.id'],
    ['{"execute":"remove_hostfwd"}', 'bad request: remove_hostfwd: bad arguments.id'],
  ])('%s → %s', async (request, desc) => {
    const api = new SlirpApi(new Backend(), GUEST);
    expect(await ask(api, request)).toBe(JSON.stringify({ error: { desc } }));
  });

  it('refuses a request of 4096 bytes or more', async () => {
    const api = new SlirpApi(new Backend(), GUEST);
    const big = `{"execute":"list_hostfwd","pad":"${'x'.repeat(API_MAX_REQUEST)}"}`;
    expect(await ask(api, big)).toBe('{"error":{"desc":"bad request: too large message"}}');
  });

  it('handles requests one at a time, in order', async () => {
    const api = new SlirpApi(new Backend(), GUEST);
    const replies = await Promise.all(
      [1, 2, 3].map((n) => ask(api, `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":${9000 + n},"guest_port":80}}`)),
    );
    expect(replies).toEqual(['{"return":{"id":1}}', '{"return":{"id":2}}', '{"return":{"id":3}}']);
  });
});

describe('SlirpApiServer', () => {
  let dir = '';
  let server: SlirpApiServer | null = null;
  afterEach(async () => {
    await server?.close();
    server = null;
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function start(): Promise<string> {
    dir = mkdtempSync(join(tmpdir(), 'usernet-slirp-api-'));
    const path = join(dir, 'api.sock');
    server = new SlirpApiServer(path, new SlirpApi(new Backend(), GUEST));
    await server.listen();
    return path;
  }

  /** Sends `parts` (one write each), optionally half-closes, and reads the reply until the server closes. */
  function request(path: string, parts: string[], halfClose = true): Promise<string> {
    return new Promise((resolve, reject) => {
      const s = connect(path);
      let reply = '';
      s.setEncoding('utf8');
      s.on('data', (d: string) => (reply += d));
      let ended = false;
      s.on('end', () => {
        ended = true;
        resolve(reply);
      });
      // The server closes once it has answered: a client still writing (an oversized request)
      // then gets EPIPE, as `cat /dev/zero | ncat -U` does; the reply already arrived.
      s.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code !== 'EPIPE' && err.code !== 'ECONNRESET') reject(err);
      });
      s.on('close', () => resolve(reply));
      s.on('connect', () => {
        let i = 0;
        const next = (): void => {
          if (ended || s.destroyed) return;
          if (i < parts.length) s.write(parts[i++] as string, () => setImmediate(next));
          else if (halfClose) s.end();
        };
        next();
      });
    });
  }

  it('answers one request per connection, with no trailing newline, then closes', async () => {
    const path = await start();
    expect(await request(path, ['{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8080,"guest_port":80}}'])).toBe('{"return":{"id":1}}');
    expect(await request(path, ['{"execute":"list_hostfwd"}'])).toMatch(/^\{"entries":\[\{"id":1,.*\}\]\}$/);
  });

  it('answers a client that does not shut down its side, and one whose request comes in pieces', async () => {
    const path = await start();
    expect(await request(path, ['{"execute":"list_hostfwd"}'], false)).toBe('{"entries":[]}');
    expect(await request(path, ['{"execute":', '"list_host', 'fwd"}'])).toBe('{"entries":[]}');
  });

  it('answers garbage and oversized requests with errors, and goes on serving', async () => {
    const path = await start();
    expect(await request(path, ['hello'])).toBe('{"error":{"desc":"bad request: cannot parse JSON"}}');
    expect(await request(path, ['{"x":"', 'y'.repeat(5000), '"}'], false)).toBe('{"error":{"desc":"bad request: too large message"}}');
    expect(await request(path, ['{"execute":"list_hostfwd"}'])).toBe('{"entries":[]}');
  });

  it('refuses a socket path longer than sun_path, a missing directory and a file that is not a socket; replaces a stale socket', async () => {
    dir = mkdtempSync(join(tmpdir(), 'usernet-slirp-api-'));
    const long = join(dir, 'x'.repeat(120));
    await expect(new SlirpApiServer(long, new SlirpApi(new Backend(), GUEST)).listen()).rejects.toThrow(/API socket path too long \(\d+ bytes, at most 107\)/);
    await expect(new SlirpApiServer(join(dir, 'nodir', 's.sock'), new SlirpApi(new Backend(), GUEST)).listen()).rejects.toThrow(/its directory does not exist/);
    writeFileSync(join(dir, 'plain'), 'x');
    await expect(new SlirpApiServer(join(dir, 'plain'), new SlirpApi(new Backend(), GUEST)).listen()).rejects.toThrow(/something that is not a socket is there/);
    // A socket left behind by a killed run: bound by a process that exits without removing it.
    const path = join(dir, 'api.sock');
    const made = spawnSync('/usr/bin/python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', path]);
    expect(made.status).toBe(0);
    expect(existsSync(path)).toBe(true);
    server = new SlirpApiServer(path, new SlirpApi(new Backend(), GUEST));
    await server.listen();
    expect(await request(path, ['{"execute":"list_hostfwd"}'])).toBe('{"entries":[]}');
    await server.close();
    server = null;
    expect(existsSync(path)).toBe(false);
  });
});
