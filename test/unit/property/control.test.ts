/**
 * Properties of the parsers outside src/packet that take untrusted bytes: the JSON API's
 * LineDecoder and parseRequest, slirp4netns's API request handling, and the state-file loader.
 * Any input gives a value or the documented, coded error — never another exception — and how
 * bytes are split into chunks never changes what is decoded.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LineDecoder, LineTooLongError, parseRequest } from '../../../src/control/protocol.js';
import { parseState, StateFileError, STATE_VERSION } from '../../../src/control/state.js';
import { ipv4ToString } from '../../../src/packet/ip-address.js';
import { SlirpApi, type Hostfwd } from '../../../src/slirp/api.js';
import { check, checkAsync, throwsOnly } from './fc.js';

/** Bytes with many newlines and multi-byte UTF-8, cut into chunks at arbitrary points. */
const text = fc.string({ unit: fc.oneof(fc.constantFrom('\n', 'a', '{', '"', 'é', '€', '😀'), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 })), maxLength: 60 });
const chunked = fc.tuple(text, fc.array(fc.nat(), { maxLength: 8 })).map(([s, cuts]) => {
  const bytes = Buffer.from(s, 'utf8');
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let at = 0;
  for (const p of points) {
    chunks.push(bytes.subarray(at, p));
    at = p;
  }
  chunks.push(bytes.subarray(at));
  return { bytes, chunks };
});

/** What a decoder with `max` must make of `bytes`: the lines before any over the limit, and whether one was. */
function model(bytes: Buffer, max: number): { lines: string[]; tooLong: boolean } {
  const lines: string[] = [];
  let start = 0;
  for (;;) {
    const nl = bytes.indexOf(0x0a, start);
    const end = nl < 0 ? bytes.length : nl;
    if (end - start > max) return { lines, tooLong: true };
    if (nl < 0) return { lines, tooLong: false };
    lines.push(bytes.subarray(start, nl).toString('utf8'));
    start = nl + 1;
  }
}

describe('LineDecoder', () => {
  it('decodes the same lines however the bytes are chunked, and refuses a line over the limit at the same place', () => {
    check(
      fc.property(chunked, fc.integer({ min: 0, max: 40 }), ({ bytes, chunks }, max) => {
        const d = new LineDecoder(max);
        const lines: string[] = [];
        let tooLong = false;
        for (const c of chunks) {
          try {
            lines.push(...d.push(c));
          } catch (err) {
            expect(err).toBeInstanceOf(LineTooLongError);
            expect((err as LineTooLongError).code).toBe('ERR_REQUEST_TOO_LARGE');
            lines.push(...(err as LineTooLongError).lines);
            tooLong = true;
            break;
          }
        }
        expect({ lines, tooLong }).toEqual(model(bytes, max));
      }),
      500,
    );
  });

  it('regression: the lines before an overlong one in the same chunk are not lost', () => {
    const d = new LineDecoder(8);
    let err: unknown;
    try {
      d.push(Buffer.from('a\nb\nccccccccc\nd\n'));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LineTooLongError);
    expect((err as LineTooLongError).lines).toEqual(['a', 'b']);
  });
});

describe('parseRequest', () => {
  const json = fc.oneof(
    fc.json(),
    fc.record({ id: fc.jsonValue(), method: fc.oneof(fc.string(), fc.jsonValue()), params: fc.oneof(fc.object(), fc.jsonValue()) }, { requiredKeys: [] }).map((o) => JSON.stringify(o)),
    fc.string(),
  );

  it('any line is a request (method a non-empty string, params an object) or ERR_BAD_JSON / ERR_BAD_REQUEST', () => {
    check(
      fc.property(json, (line) => {
        throwsOnly(() => {
          const r = parseRequest(line);
          expect(typeof r.method === 'string' && r.method !== '').toBe(true);
          expect(typeof r.params === 'object' && r.params !== null && !Array.isArray(r.params)).toBe(true);
        }, ['ERR_BAD_JSON', 'ERR_BAD_REQUEST']);
      }),
      400,
    );
  });
});

describe('slirp4netns API', () => {
  class Backend {
    readonly open = new Map<number, Hostfwd>();
    fail = false;
    add(f: Hostfwd): Promise<void> {
      if (this.fail) return Promise.reject(new Error('EADDRINUSE'));
      this.open.set(f.id, f);
      return Promise.resolve();
    }
    remove(f: Hostfwd): Promise<void> {
      this.open.delete(f.id);
      return Promise.resolve();
    }
  }
  const GUEST = 0x0a000264;

  it('any request bytes get a JSON reply — an error, a return or the entries — never a rejection', async () => {
    const requests = fc.oneof(
      fc.uint8Array({ maxLength: 200 }),
      fc.json().map((j) => Buffer.from(j)),
      fc
        .record(
          {
            execute: fc.oneof(fc.constantFrom('add_hostfwd', 'remove_hostfwd', 'list_hostfwd'), fc.jsonValue()),
            arguments: fc.oneof(
              fc.record(
                {
                  proto: fc.oneof(fc.constantFrom('tcp', 'udp'), fc.jsonValue()),
                  host_addr: fc.oneof(fc.ipV4(), fc.jsonValue()),
                  host_port: fc.oneof(fc.integer({ min: -2, max: 70000 }), fc.double(), fc.jsonValue()),
                  guest_addr: fc.oneof(fc.ipV4(), fc.constant(''), fc.jsonValue()),
                  guest_port: fc.oneof(fc.integer({ min: -2, max: 70000 }), fc.jsonValue()),
                  id: fc.oneof(fc.integer({ min: 0, max: 5 }), fc.double(), fc.jsonValue()),
                },
                { requiredKeys: [] },
              ),
              fc.jsonValue(),
            ),
          },
          { requiredKeys: [] },
        )
        .map((o) => Buffer.from(JSON.stringify(o))),
    );
    await checkAsync(
      fc.asyncProperty(fc.array(fc.tuple(requests, fc.boolean()), { maxLength: 6 }), async (reqs) => {
        const backend = new Backend();
        const api = new SlirpApi(backend, GUEST);
        for (const [req, fail] of reqs) {
          backend.fail = fail;
          const reply = JSON.parse(await api.handle(req)) as Record<string, unknown>;
          expect(Object.keys(reply).length).toBe(1);
          expect(['error', 'return', 'entries']).toContain(Object.keys(reply)[0]);
        }
        // What the API lists is exactly what the backend has open.
        expect(api.list.map((f) => f.id).sort()).toEqual([...backend.open.keys()].sort());
      }),
      200,
    );
  });

  it('ids count up and are never reused; remove_hostfwd removes exactly the id given', async () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('add' as const), port: fc.integer({ min: 1, max: 65535 }), fail: fc.boolean() }),
      fc.record({ kind: fc.constant('remove' as const), id: fc.integer({ min: 0, max: 8 }) }),
    );
    await checkAsync(
      fc.asyncProperty(fc.array(op, { maxLength: 12 }), async (ops) => {
        const backend = new Backend();
        const api = new SlirpApi(backend, GUEST);
        const live = new Set<number>();
        let next = 1;
        for (const o of ops) {
          if (o.kind === 'add') {
            backend.fail = o.fail;
            const r = JSON.parse(await api.handle(Buffer.from(JSON.stringify({ execute: 'add_hostfwd', arguments: { proto: 'tcp', host_port: o.port, guest_port: 80 } })))) as { return?: { id: number } };
            if (o.fail) expect(r.return).toBeUndefined();
            else {
              expect(r.return?.id).toBe(next);
              live.add(next++);
            }
          } else {
            const r = JSON.parse(await api.handle(Buffer.from(JSON.stringify({ execute: 'remove_hostfwd', arguments: { id: o.id } })))) as { return?: object };
            expect(r.return !== undefined).toBe(live.has(o.id));
            live.delete(o.id);
          }
        }
        const listed = JSON.parse(await api.handle(Buffer.from('{"execute":"list_hostfwd"}'))) as { entries: Array<{ id: number; guest_addr: string }> };
        expect(listed.entries.map((e) => e.id)).toEqual([...live].sort((a, b) => a - b));
        for (const e of listed.entries) expect(e.guest_addr).toBe(ipv4ToString(GUEST));
      }),
      200,
    );
  });
});

describe('state file', () => {
  const attachment = fc.record(
    {
      name: fc.oneof(fc.string(), fc.jsonValue()),
      ifname: fc.oneof(fc.constant('eth0'), fc.jsonValue()),
      pid: fc.oneof(fc.nat(), fc.jsonValue()),
      mtu: fc.oneof(fc.nat(), fc.jsonValue()),
      mac: fc.oneof(fc.constant('02:42:0a:00:02:64'), fc.jsonValue()),
      configure: fc.oneof(fc.boolean(), fc.jsonValue()),
      netns: fc.oneof(fc.record({ dev: fc.string(), ino: fc.string() }), fc.jsonValue()),
      ports: fc.oneof(fc.array(fc.record({ proto: fc.constantFrom('tcp', 'udp', 'x'), hostIp: fc.string(), hostPort: fc.jsonValue(), containerPort: fc.integer() })), fc.jsonValue()),
    },
    { requiredKeys: [] },
  );
  const stateLike = fc
    .record(
      {
        version: fc.oneof(fc.constantFrom(1, 2), fc.jsonValue()),
        attachments: fc.oneof(fc.array(fc.oneof(attachment, fc.jsonValue()), { maxLength: 3 }), fc.jsonValue()),
        networks: fc.oneof(fc.array(fc.jsonValue(), { maxLength: 2 }), fc.jsonValue()),
        leases: fc.oneof(fc.array(fc.jsonValue(), { maxLength: 2 }), fc.jsonValue()),
      },
      { requiredKeys: [] },
    )
    .map((o) => JSON.stringify(o));

  it('any text parses to a state (entries skipped and named) or a StateFileError, never another exception', () => {
    check(
      fc.property(fc.oneof(stateLike, fc.json(), fc.string()), (content) => {
        let r;
        try {
          r = parseState(content);
        } catch (err) {
          expect(err).toBeInstanceOf(StateFileError);
          expect(['ERR_STATE_CORRUPT', 'ERR_STATE_NEWER']).toContain((err as StateFileError).code);
          return;
        }
        expect(r.state.version).toBe(STATE_VERSION);
        for (const list of [r.state.attachments, r.state.networks, r.state.leases]) expect(Array.isArray(list)).toBe(true);
        for (const a of r.state.attachments) {
          expect(typeof a.name).toBe('string');
          expect(typeof a.netns.dev).toBe('string');
          for (const m of a.ports ?? []) expect(m.hostPort >= 1 && m.hostPort <= 65535).toBe(true);
        }
        for (const why of r.skipped) expect(typeof why).toBe('string');
      }),
      300,
    );
  });

  it('a state the daemon writes reads back as itself, nothing skipped', () => {
    const mapping = fc.record({ proto: fc.constantFrom('tcp' as const, 'udp' as const), hostIp: fc.constantFrom('0.0.0.0', '127.0.0.1', '::1'), hostPort: fc.integer({ min: 1, max: 65535 }), containerPort: fc.integer({ min: 1, max: 65535 }) });
    const record = fc.record(
      {
        name: fc.stringMatching(/^[a-z][a-z0-9-]{0,8}$/),
        network: fc.constant('default'),
        pid: fc.integer({ min: 1, max: 4_000_000 }),
        netns: fc.record({ dev: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String), ino: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String) }),
        ifname: fc.constant('eth0'),
        mac: fc.constant('02:42:0a:00:02:64'),
        mtu: fc.integer({ min: 68, max: 65521 }),
        configure: fc.boolean(),
        ip: fc.constant('10.0.2.100'),
        ownsDevice: fc.boolean(),
        ports: fc.array(mapping, { minLength: 1, maxLength: 3 }),
        attachedAt: fc.constant('2026-01-01T00:00:00.000Z'),
      },
      { requiredKeys: ['name', 'network', 'pid', 'netns', 'ifname', 'mac', 'mtu', 'configure', 'attachedAt'] },
    );
    check(
      fc.property(fc.uniqueArray(record, { selector: (r) => r.name, maxLength: 4 }), (attachments) => {
        const state = { version: STATE_VERSION, networks: [{ name: 'back', subnet: '10.0.3.0/24', mtu: 9000 }], attachments, leases: [{ network: 'back', mac: '02:00:00:00:00:99', ip: '10.0.3.100', expiresAt: 1_900_000_000_000 }] };
        const r = parseState(JSON.stringify(state));
        expect(r.skipped).toEqual([]);
        expect(r.state).toEqual(JSON.parse(JSON.stringify(state)));
      }),
      200,
    );
  });
});

