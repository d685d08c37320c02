/**
 * DnsForwarder against real UDP servers this test starts on 127.0.0.1 and ::1 (ephemeral ports):
 * never a real resolver. The servers answer by echoing the question with a TXT record of the
 * name, or with fixed bytes (made once with scapy, see test/unit/packet/dns.test.ts), stay
 * silent, spoof, or are not there at all (a closed port, for ICMP port unreachable).
 * Tests wait for the reply callback, never sleep.
 */
import { describe, it, expect, afterEach } from 'vitest';
import dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import pino from 'pino';
import { DnsForwarder, type DnsForwarderOptions } from '../../../src/gateway/dns-forwarder.js';
import type { Upstream } from '../../../src/control/resolv.js';
import { buildServfail, sameQuestion } from '../../../src/packet/dns.js';
import { InvalidArgumentError } from '../../../src/errors.js';
import { hex } from '../helpers/frames.js';

// From test/unit/packet/dns.test.ts: dig's query for www.example.com A (EDNS, cookie) and
// scapy's answer (compressed name, OPT); dig's example.org TXT and a 667-byte TC answer to it.
const DIG_A = '2d6f0120000100000000000103777777076578616d706c6503636f6d000001000100002904d000000000000c000a0008a2fb4a8692036617';
const ANSWER_A = '2d6f8180000100010000000103777777076578616d706c6503636f6d0000010001c00c000100010000012c0004c000020100002904d0000080000000';
const DIG_TXT = '846c01200001000000000001076578616d706c65036f7267000010000100002904d000000000000c000a00080123456789abcdef';
const BIG_TC =
  '846c83800001000200000001076578616d706c65036f72670000100001c00c001000010000003c0192c8' +
  '78'.repeat(200) +
  'c8' +
  '79'.repeat(200) +
  'c00c001000010000003c00c9c8' +
  '7a'.repeat(200) +
  '00002904d0000080000000';

// ---- queries and answers built by the test, independently of src/packet/dns.ts ----

/** A query for `name` (uncompressed), type TXT (16), class IN, RD. */
function makeQuery(id: number, name: string, qtype = 16): Buffer {
  const labels = name.split('.').filter(Boolean);
  const parts: Buffer[] = [];
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100, 2);
  header.writeUInt16BE(1, 4);
  parts.push(header);
  for (const l of labels) parts.push(Buffer.from([l.length]), Buffer.from(l, 'ascii'));
  parts.push(Buffer.from([0, qtype >> 8, qtype & 255, 0, 1]));
  return Buffer.concat(parts);
}

/** End of the first (uncompressed) question of a message. */
function firstQuestionEnd(msg: Buffer): number {
  let p = 12;
  while (msg[p] !== 0) p += msg[p] + 1;
  return p + 5;
}

/** The first question's name, dotted, as it is in the message. */
function questionName(msg: Buffer): string {
  const labels: string[] = [];
  let p = 12;
  while (msg[p] !== 0) {
    labels.push(msg.subarray(p + 1, p + 1 + msg[p]).toString('ascii'));
    p += msg[p] + 1;
  }
  return labels.join('.');
}

/** The answer a well-behaved server gives: the question echoed, plus TXT "<name as asked>". */
function echoTxt(query: Buffer): Buffer {
  const qEnd = firstQuestionEnd(query);
  const text = Buffer.from(questionName(query), 'ascii');
  const header = Buffer.from(query.subarray(0, 12));
  header.writeUInt16BE(0x8180, 2); // QR RD RA
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(1, 6);
  header.writeUInt16BE(0, 8);
  header.writeUInt16BE(0, 10);
  const rr = Buffer.alloc(12);
  rr.writeUInt16BE(0xc00c, 0);
  rr.writeUInt16BE(16, 2);
  rr.writeUInt16BE(1, 4);
  rr.writeUInt32BE(60, 6);
  rr.writeUInt16BE(text.length + 1, 10);
  return Buffer.concat([header, query.subarray(12, qEnd), rr, Buffer.from([text.length]), text]);
}

/** The TXT text of an echoTxt answer. */
function txtOf(answer: Buffer): string {
  const p = firstQuestionEnd(answer) + 12;
  return answer.subarray(p + 1, p + 1 + answer[p]).toString('ascii');
}

function withId(msg: Buffer | string, id: number): Buffer {
  const b = typeof msg === 'string' ? hex(msg) : Buffer.from(msg);
  b.writeUInt16BE(id, 0);
  return b;
}

// ---- fake upstreams ----

type Responder = (query: Buffer) => Buffer | Buffer[] | null;

interface FakeUpstream {
  upstream: Upstream;
  received: Buffer[];
  /** Sends `msg` from the server's socket to whoever sent it the last query. */
  send(msg: Buffer): Promise<void>;
  close(): Promise<void>;
}

const servers: FakeUpstream[] = [];
const forwarders: DnsForwarder[] = [];

async function startUpstream(respond: Responder, opts: { family?: 4 | 6; delayMs?: number } = {}): Promise<FakeUpstream> {
  const family = opts.family ?? 4;
  const address = family === 6 ? '::1' : '127.0.0.1';
  const socket = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, address, () => resolve());
  });
  const received: Buffer[] = [];
  const pending = new Set<NodeJS.Timeout>();
  let closed = false;
  let peer: dgram.RemoteInfo | null = null;
  socket.on('message', (msg, rinfo) => {
    received.push(msg);
    peer = rinfo;
    const out = respond(msg);
    if (out === null) return;
    const send = (): void => {
      if (closed) return;
      for (const b of Array.isArray(out) ? out : [out]) socket.send(b, rinfo.port, rinfo.address);
    };
    if (opts.delayMs) {
      const t = setTimeout(() => {
        pending.delete(t);
        send();
      }, opts.delayMs);
      pending.add(t);
    } else send();
  });
  const server: FakeUpstream = {
    upstream: { address, port: socket.address().port, family },
    received,
    send: (msg) =>
      new Promise<void>((resolve, reject) => {
        if (!peer) throw new Error('no query seen yet');
        socket.send(msg, peer.port, peer.address, (err) => (err ? reject(err) : resolve()));
      }),
    close: () => {
      closed = true;
      for (const t of pending) clearTimeout(t);
      return new Promise<void>((resolve) => socket.close(() => resolve()));
    },
  };
  servers.push(server);
  return server;
}

/** A port nothing listens on: bound once to get it from the kernel, then closed. */
async function closedPort(family: 4 | 6 = 4): Promise<Upstream> {
  const s = await startUpstream(() => null, { family });
  servers.splice(servers.indexOf(s), 1);
  await s.close();
  return s.upstream;
}

afterEach(async () => {
  await Promise.all(forwarders.splice(0).map((f) => f.close()));
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

// ---- the forwarder ----

function logSink(): { log: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level: 'debug' }, stream), lines };
}

function forwarder(upstreams: Upstream[] | (() => Upstream[]), options: Partial<DnsForwarderOptions> = {}): DnsForwarder {
  const f = new DnsForwarder({
    upstreams: typeof upstreams === 'function' ? upstreams : () => upstreams,
    log: options.log ?? logSink().log,
    ...options,
  });
  forwarders.push(f);
  return f;
}

interface Reply {
  answer: Buffer;
  ms: number;
}

/** Sends a query and resolves with the reply; checks reply is called once and never synchronously. */
function ask(f: DnsForwarder, payload: Uint8Array): Promise<Reply> {
  const start = performance.now();
  let returned = false;
  let calls = 0;
  return new Promise<Reply>((resolve, reject) => {
    const accepted = f.query(payload, (answer) => {
      calls++;
      if (!returned) reject(new Error('reply called before query() returned'));
      if (calls > 1) reject(new Error('reply called twice'));
      resolve({ answer, ms: performance.now() - start });
    });
    returned = true;
    if (!accepted) reject(new Error('query refused as malformed'));
  });
}

function rcode(answer: Buffer): number {
  return answer.readUInt16BE(2) & 0xf;
}

describe('DnsForwarder', () => {
  it('relays the answer with the original ID restored and every other byte untouched (EDNS OPT)', async () => {
    const up = await startUpstream((q) => withId(ANSWER_A, q.readUInt16BE(0)));
    const f = forwarder([up.upstream]);
    const query = hex(DIG_A);
    const lent = Buffer.from(query);
    const p = ask(f, lent);
    lent.fill(0); // the payload is lent: the forwarder must have copied it
    const { answer } = await p;
    expect(answer.toString('hex')).toBe(ANSWER_A);
    // The upstream saw the query unchanged but for the ID.
    expect(up.received).toHaveLength(1);
    expect(up.received[0].subarray(2).toString('hex')).toBe(DIG_A.slice(4));
    expect(f.stats).toMatchObject({ queries: 1, answers: 1, servfail: 0, inFlight: 0, spoofed: 0, late: 0 });
  });

  it('relays a large (> 512 bytes) truncated answer untouched, over IPv6', async () => {
    const up = await startUpstream((q) => withId(BIG_TC, q.readUInt16BE(0)), { family: 6 });
    const f = forwarder([up.upstream]);
    const { answer } = await ask(f, hex(DIG_TXT));
    expect(answer.length).toBe(667);
    expect(answer.toString('hex')).toBe(BIG_TC);
  });

  it('gives 1000 concurrent queries with colliding IDs from two containers each their own answer', async () => {
    // The server holds every query until it has all 1000, then answers in reverse order, so all
    // are in flight at once and answers come back out of order. An ID seen again with another
    // question would be two queries sharing an ID on the upstream socket.
    const held = new Map<number, Buffer>();
    let collisions = 0;
    let flush: (() => void) | null = null;
    const up = await startUpstream((q) => {
      const id = q.readUInt16BE(0);
      const seen = held.get(id);
      if (seen && questionName(seen) !== questionName(q)) collisions++;
      if (!seen) held.set(id, q);
      if (held.size === 1000) flush?.();
      return null;
    });
    const f = forwarder([up.upstream]);
    const replies: Array<Promise<Reply>> = [];
    const asked: Array<{ id: number; name: string }> = [];
    for (let i = 0; i < 500; i++) {
      for (const container of ['a', 'b']) {
        const name = `${container}${i}.example`;
        asked.push({ id: i, name });
        replies.push(ask(f, makeQuery(i, name)));
      }
      // Let the server catch up now and then: it reads 32 datagrams per event-loop turn, and
      // 1000 at once would overflow its receive buffer.
      if (i % 50 === 49) await waitFor(() => held.size === 2 * (i + 1));
    }
    expect(f.stats.inFlight).toBe(1000);
    await new Promise<void>((resolve) => {
      flush = resolve;
      if (held.size === 1000) resolve();
    });
    expect(collisions).toBe(0);
    // Answers in batches the forwarder can read without overflowing its own receive buffer
    // (send callbacks come on process.nextTick, so awaiting them alone never yields to I/O).
    const order = [...held.values()].reverse();
    for (let i = 0; i < order.length; i++) {
      await up.send(echoTxt(order[i]));
      if (i % 25 === 24) await waitFor(() => f.stats.answers === i + 1);
    }
    const got = await Promise.all(replies);
    for (let i = 0; i < asked.length; i++) {
      const { answer } = got[i];
      expect(answer.readUInt16BE(0)).toBe(asked[i].id);
      expect(questionName(answer)).toBe(asked[i].name);
      expect(txtOf(answer)).toBe(asked[i].name);
    }
    expect(f.stats).toMatchObject({ queries: 1000, answers: 1000, servfail: 0, inFlight: 0, spoofed: 0, late: 0 });
  });

  it('answers SERVFAIL at timeoutMs when the upstream stays silent', async () => {
    const up = await startUpstream(() => null);
    const f = forwarder([up.upstream], { timeoutMs: 200, tryTimeoutMs: 100 });
    const query = makeQuery(0x4242, 'silent.example');
    const { answer, ms } = await ask(f, query);
    expect(rcode(answer)).toBe(2);
    expect(answer.toString('hex')).toBe(buildServfail(query).toString('hex'));
    expect(ms).toBeGreaterThanOrEqual(195);
    expect(ms).toBeLessThan(600);
    // The only upstream was asked again after tryTimeoutMs (a lost datagram gets a second chance).
    expect(up.received.length).toBe(2);
    expect(up.received[0].readUInt16BE(0)).toBe(up.received[1].readUInt16BE(0));
    expect(f.stats).toMatchObject({ queries: 1, answers: 0, servfail: 1, timeouts: 1, inFlight: 0 });
  });

  it('fails over to the second upstream when the first is silent, then prefers the second', async () => {
    const silent = await startUpstream(() => null);
    const good = await startUpstream(echoTxt);
    const { log, lines } = logSink();
    const f = forwarder([silent.upstream, good.upstream], { timeoutMs: 2000, tryTimeoutMs: 100, log });
    const first = await ask(f, makeQuery(1, 'one.example'));
    expect(txtOf(first.answer)).toBe('one.example');
    expect(first.ms).toBeGreaterThanOrEqual(95);
    expect(silent.received).toHaveLength(1);
    // The failed upstream is no longer tried first: no wait this time.
    const second = await ask(f, makeQuery(2, 'two.example'));
    expect(txtOf(second.answer)).toBe('two.example');
    expect(second.ms).toBeLessThan(95);
    expect(silent.received).toHaveLength(1);
    expect(lines.filter((l) => l.level === 40)).toEqual([
      expect.objectContaining({ upstream: `127.0.0.1:${silent.upstream.port}`, reason: 'no answer' }),
    ]);
  });

  it('still accepts an answer from a slow first upstream after failing over; a second one is late', async () => {
    const slow = await startUpstream(echoTxt, { delayMs: 150 });
    const silent = await startUpstream(() => null);
    const f = forwarder([silent.upstream, slow.upstream], { timeoutMs: 2000, tryTimeoutMs: 50 });
    // silent at 0 ms, slow at 50 ms (answers at ~200 ms), silent again at 100 ms ...
    const r = await ask(f, makeQuery(7, 'slow.example'));
    expect(txtOf(r.answer)).toBe('slow.example');
    expect(f.stats.answers).toBe(1);
    // A duplicate answer after the query is done is counted as late, not relayed.
    const dup = withId(echoTxt(makeQuery(0, 'slow.example')), slow.received[0].readUInt16BE(0));
    await slow.send(dup);
    await waitFor(() => f.stats.late === 1);
  });

  it('fails fast on ECONNREFUSED: SERVFAIL when it was the only upstream, failover otherwise', async () => {
    const closed = await closedPort();
    const { log, lines } = logSink();
    const f = forwarder([closed], { timeoutMs: 10_000, tryTimeoutMs: 5000, log });
    const r = await ask(f, makeQuery(9, 'refused.example'));
    expect(rcode(r.answer)).toBe(2);
    expect(r.answer.readUInt16BE(0)).toBe(9);
    expect(r.ms).toBeLessThan(1000);
    expect(f.stats).toMatchObject({ servfail: 1, timeouts: 0, inFlight: 0 });
    expect(lines.filter((l) => l.level === 40)).toEqual([expect.objectContaining({ upstream: `127.0.0.1:${closed.port}`, reason: 'ECONNREFUSED' })]);
    // Again: each query tries (an upstream may come back), and fails as fast.
    const again = await ask(f, makeQuery(10, 'refused.example'));
    expect(rcode(again.answer)).toBe(2);
    expect(again.ms).toBeLessThan(1000);
    expect(lines.filter((l) => l.level === 40)).toHaveLength(1); // rate-limited

    const closed6 = await closedPort(6);
    const good = await startUpstream(echoTxt);
    const g = forwarder([closed6, good.upstream], { timeoutMs: 10_000, tryTimeoutMs: 5000 });
    const ok = await ask(g, makeQuery(11, 'failover.example'));
    expect(txtOf(ok.answer)).toBe('failover.example');
    expect(ok.ms).toBeLessThan(1000);
  });

  it('moves every query on a refusing upstream at once, and they all get answers', async () => {
    const closed = await closedPort();
    const good = await startUpstream(echoTxt);
    const f = forwarder([closed, good.upstream], { timeoutMs: 10_000, tryTimeoutMs: 5000 });
    const names = Array.from({ length: 50 }, (_, i) => `q${i}.example`);
    const got = await Promise.all(names.map((n) => ask(f, makeQuery(1, n))));
    expect(got.map((r) => txtOf(r.answer))).toEqual(names);
    expect(Math.max(...got.map((r) => r.ms))).toBeLessThan(2000);
  });

  it('drops spoofed answers (wrong ID, other question, not a response) and waits for the real one', async () => {
    const up = await startUpstream((q) => {
      const real = echoTxt(q);
      const wrongId = withId(real, q.readUInt16BE(0) ^ 0x8000);
      const otherQuestion = withId(echoTxt(makeQuery(0, 'evil.example')), q.readUInt16BE(0));
      const notResponse = Buffer.from(real);
      notResponse.writeUInt16BE(0x0100, 2);
      const short = Buffer.from(real.subarray(0, 11));
      return [wrongId, otherQuestion, notResponse, short, real];
    });
    const f = forwarder([up.upstream]);
    const r = await ask(f, makeQuery(0x1234, 'real.example'));
    expect(r.answer.readUInt16BE(0)).toBe(0x1234);
    expect(txtOf(r.answer)).toBe('real.example');
    expect(f.stats).toMatchObject({ answers: 1, spoofed: 3, late: 1 });
  });

  it('never accepts only-spoofed answers: SERVFAIL at the timeout', async () => {
    const up = await startUpstream((q) => withId(echoTxt(makeQuery(0, 'evil.example')), q.readUInt16BE(0)));
    const f = forwarder([up.upstream], { timeoutMs: 150, tryTimeoutMs: 150 });
    const r = await ask(f, makeQuery(5, 'victim.example'));
    expect(rcode(r.answer)).toBe(2);
    expect(f.stats).toMatchObject({ answers: 0, timeouts: 1, spoofed: 1 });
  });

  it('accepts an answer whose question differs only in case (0x20)', async () => {
    const up = await startUpstream((q) => {
      const a = echoTxt(q);
      const qEnd = firstQuestionEnd(a);
      for (let i = 12; i < qEnd - 4; i++) if (a[i] >= 0x41 && a[i] <= 0x5a) a[i] |= 0x20;
      return a;
    });
    const f = forwarder([up.upstream]);
    const query = makeQuery(3, 'MiXeD.ExAmPlE');
    const r = await ask(f, query);
    expect(questionName(r.answer)).toBe('mixed.example');
    expect(sameQuestion(query, r.answer)).toBe(true);
  });

  it('answers SERVFAIL at once beyond maxInFlight, and the rest at close', async () => {
    const up = await startUpstream(() => null);
    const f = forwarder([up.upstream], { maxInFlight: 10, timeoutMs: 60_000, tryTimeoutMs: 60_000 });
    const pending = Array.from({ length: 10 }, (_, i) => ask(f, makeQuery(i, `p${i}.example`)));
    const over = await ask(f, makeQuery(99, 'over.example'));
    expect(rcode(over.answer)).toBe(2);
    expect(over.answer.readUInt16BE(0)).toBe(99);
    expect(over.ms).toBeLessThan(100);
    expect(f.stats).toMatchObject({ queries: 11, overload: 1, servfail: 1, inFlight: 10 });
    await f.close();
    const rest = await Promise.all(pending);
    expect(rest.map((r) => rcode(r.answer))).toEqual(Array(10).fill(2));
    expect(rest.map((r) => r.answer.readUInt16BE(0))).toEqual([...Array(10).keys()]);
    expect(f.stats).toMatchObject({ servfail: 11, inFlight: 0 });
    // After close: still exactly one reply, a SERVFAIL.
    const late = await ask(f, makeQuery(100, 'after.example'));
    expect(rcode(late.answer)).toBe(2);
  });

  it('refuses malformed queries without replying', async () => {
    const f = forwarder([]);
    let replies = 0;
    const bad = [
      Buffer.alloc(0),
      hex('0001010000010000'), // short header
      hex(ANSWER_A), // a response
      hex('000101000000000000000000'), // no question
      hex('000101000001000000000000c00c00010001'), // pointer loop
      hex('000101000001000000000000037777'), // truncated name
    ];
    for (const b of bad) expect(f.query(b, () => replies++)).toBe(false);
    await new Promise((r) => setImmediate(r));
    expect(replies).toBe(0);
    expect(f.stats).toMatchObject({ malformed: bad.length, queries: 0 });
  });

  it('answers SERVFAIL when there is no upstream', async () => {
    const f = forwarder([]);
    const r = await ask(f, makeQuery(8, 'nowhere.example'));
    expect(rcode(r.answer)).toBe(2);
    expect(f.stats).toMatchObject({ queries: 1, noUpstream: 1, servfail: 1, inFlight: 0 });
    expect(f.openSockets).toBe(0);
  });

  it('follows a changing upstream list, and closes a dropped upstream once its queries are done', async () => {
    const one = await startUpstream(echoTxt, { delayMs: 100 });
    const two = await startUpstream(echoTxt);
    let list: Upstream[] = [one.upstream];
    const f = forwarder(() => list, { timeoutMs: 5000, tryTimeoutMs: 5000 });
    const slow = ask(f, makeQuery(1, 'first.example'));
    expect(f.openSockets).toBe(1);
    list = [{ ...two.upstream }];
    const fast = await ask(f, makeQuery(2, 'second.example'));
    expect(txtOf(fast.answer)).toBe('second.example');
    expect(two.received).toHaveLength(1);
    expect(f.openSockets).toBe(2); // the first still has a query in flight
    const r = await slow;
    expect(txtOf(r.answer)).toBe('first.example');
    expect(f.openSockets).toBe(1);
    // The same list in a new array is no change.
    list = [{ ...two.upstream }];
    await ask(f, makeQuery(3, 'third.example'));
    expect(two.received).toHaveLength(2);
    // Back to the first: a new socket.
    list = [one.upstream];
    const back = await ask(f, makeQuery(4, 'fourth.example'));
    expect(txtOf(back.answer)).toBe('fourth.example');
    expect(one.received).toHaveLength(2);
    expect(f.openSockets).toBe(1);
  });

  it('survives a reply callback that throws', async () => {
    const up = await startUpstream(echoTxt);
    const { log, lines } = logSink();
    const f = forwarder([up.upstream], { log });
    await new Promise<void>((resolve) => {
      f.query(makeQuery(1, 'throw.example'), () => {
        resolve();
        throw new Error('boom');
      });
    });
    expect(lines.some((l) => l.level === 50)).toBe(true);
    const r = await ask(f, makeQuery(2, 'after.example'));
    expect(txtOf(r.answer)).toBe('after.example');
  });

  it('keeps nothing alive: sockets and timer are unref\'d, and close() releases them', async () => {
    const up = await startUpstream(() => null);
    // Handles closed by earlier tests go away on the loop's next turns.
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    const count = (type: string): number => process.getActiveResourcesInfo().filter((r) => r === type).length;
    const sockets = count('UDPWrap');
    const timers = count('Timeout');
    const f = forwarder([up.upstream], { timeoutMs: 60_000, tryTimeoutMs: 60_000 });
    const p = ask(f, makeQuery(1, 'pending.example'));
    await waitFor(() => up.received.length === 1);
    expect(f.openSockets).toBe(1);
    // In flight, with a socket and a timer, but neither holds the process.
    expect(count('UDPWrap')).toBe(sockets);
    expect(count('Timeout')).toBeLessThanOrEqual(timers);
    await f.close();
    expect(rcode((await p).answer)).toBe(2);
    expect(f.openSockets).toBe(0);
    await f.close(); // twice is fine
  });

  it('refuses bad options', () => {
    const log = logSink().log;
    const make = (o: Partial<DnsForwarderOptions>) => () => new DnsForwarder({ upstreams: () => [], log, ...o });
    expect(make({ timeoutMs: 0 })).toThrow(InvalidArgumentError);
    expect(make({ tryTimeoutMs: -1 })).toThrow(InvalidArgumentError);
    expect(make({ maxInFlight: 0 })).toThrow(InvalidArgumentError);
    expect(make({ maxInFlight: 40000 })).toThrow(/1-32768/);
    expect(make({ maxInFlight: 4096 })).not.toThrow();
  });
});

/** Polls a condition on the event loop's own turns (setImmediate), not on a clock. */
async function waitFor(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setImmediate(r));
}
