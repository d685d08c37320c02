import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { emptyState, parseState, StateFileError, STATE_VERSION, type AttachmentRecord, type DaemonState } from '../../../src/control/state.js';
import { StateStore } from '../../../src/control/persistence.js';

let dir: string;
let logged: Array<Record<string, unknown>>;
let log: pino.Logger;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'usernet-state-'));
  logged = [];
  log = pino({ level: 'debug' }, { write: (line: string) => void logged.push(JSON.parse(line)) });
});

afterEach(() => {
  chmodSync(dir, 0o700);
  rmSync(dir, { recursive: true, force: true });
});

function attachment(over: Partial<AttachmentRecord> = {}): AttachmentRecord {
  return {
    name: 'c1',
    pid: 4242,
    netns: { dev: '4', ino: '4026532281' },
    ifname: 'eth0',
    mac: '02:00:00:00:00:0a',
    mtu: 1500,
    configure: true,
    network: 'default',
    ip: '10.0.2.100',
    attachedAt: '2024-01-01T00:00:00.000Z',
    ...over,
  };
}

function sample(): DaemonState {
  return {
    version: STATE_VERSION,
    networks: [{ name: 'backend', subnet: '10.0.3.0/24', mtu: 9000, dnsSearch: ['example.test'] }],
    attachments: [
      attachment({ ports: [{ proto: 'tcp', hostIp: '0.0.0.0', hostPort: 8080, containerPort: 80 }] }),
      attachment({ name: 'c2', pid: undefined, netnsPath: '/run/netns/c2', usernsPath: '/proc/1/ns/user', netns: { dev: '4', ino: '18446744073709551615' }, configure: false, ip: undefined }),
    ],
    leases: [{ network: 'backend', mac: '02:00:00:00:00:99', ip: '10.0.3.100', expiresAt: 1_900_000_000_000 }],
  };
}

const store = (): StateStore => new StateStore(dir, log);

describe('StateStore: saving and loading', () => {
  it('loads an empty state when there is no file', () => {
    expect(store().load()).toEqual(emptyState());
  });

  it('round-trips save and load', () => {
    const f = store();
    expect(f.path).toBe(join(dir, 'state.json'));
    const state = sample();
    f.save(state);
    const loaded = store().load();
    expect(loaded).toEqual(JSON.parse(JSON.stringify(state)));
    expect(loaded.attachments[1].netns.ino).toBe('18446744073709551615');
    expect(logged.filter((l) => (l.level as number) >= 40)).toEqual([]);
  });

  it('writes the file with mode 0600 as readable JSON', () => {
    const f = store();
    f.save(sample());
    expect(statSync(f.path).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(f.path, 'utf8')).version).toBe(STATE_VERSION);
  });

  it('replaces the file atomically, leaving no temporary file behind', () => {
    const f = store();
    f.save(sample());
    f.save(emptyState());
    f.save({ version: STATE_VERSION, networks: [], attachments: [attachment({ name: 'c9' })], leases: [] });
    expect(readdirSync(dir)).toEqual(['state.json']);
    expect(f.load().attachments.map((a) => a.name)).toEqual(['c9']);
    expect(statSync(f.path).mode & 0o777).toBe(0o600);
  });

  it('a failed write throws one line naming the directory, and leaves the old file and no temporary', () => {
    const f = store();
    f.save(sample());
    const before = readFileSync(f.path, 'utf8');
    // The temporary file's name taken by a directory: the write fails for root too.
    mkdirSync(`${f.path}.tmp-${process.pid}`);
    let err: unknown;
    try {
      f.save(emptyState());
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'ERR_STATE_WRITE' });
    expect((err as Error).message).toBe(`cannot save state in ${dir}: is a directory`);
    expect(readFileSync(f.path, 'utf8')).toBe(before);
  });
});

describe('StateStore: a file that cannot be used stops the daemon and is left as it is', () => {
  function expectRefused(content: string, code: string, problem: RegExp): void {
    const f = store();
    writeFileSync(f.path, content);
    let err: unknown;
    try {
      f.load();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StateFileError);
    expect(err).toMatchObject({ code });
    expect((err as Error).message).toMatch(problem);
    expect((err as Error).message).toContain(f.path);
    expect((err as Error).message).not.toContain('\n');
    // Nothing moved, nothing rewritten.
    expect(readdirSync(dir)).toEqual(['state.json']);
    expect(readFileSync(f.path, 'utf8')).toBe(content);
  }

  it.each([
    ['not JSON', '{"version": 2, "attachments": [', 'ERR_STATE_CORRUPT', /not JSON/],
    ['empty', '', 'ERR_STATE_CORRUPT', /it is empty/],
    ['not an object', '42', 'ERR_STATE_CORRUPT', /not a JSON object/],
    ['null', 'null', 'ERR_STATE_CORRUPT', /not a JSON object/],
    ['an array', '[]', 'ERR_STATE_CORRUPT', /not a JSON object/],
    ['without a version', JSON.stringify({ attachments: [] }), 'ERR_STATE_CORRUPT', /version is missing/],
    ['a string version', JSON.stringify({ version: '2', attachments: [] }), 'ERR_STATE_CORRUPT', /version "2" is not/],
    ['no attachments list', JSON.stringify({ version: 2, networks: [], leases: [] }), 'ERR_STATE_CORRUPT', /"attachments" is not a list/],
    ['attachments that are an object', JSON.stringify({ version: 1, attachments: {} }), 'ERR_STATE_CORRUPT', /"attachments" is not a list/],
    ['a newer version (a downgrade)', JSON.stringify({ version: STATE_VERSION + 1, attachments: [], networks: [], leases: [], future: true }), 'ERR_STATE_NEWER', /newer usernet \(state version 3; this one reads up to 2\).*run that usernet/],
  ])('refuses a file that is %s', (_what, content, code, problem) => {
    expectRefused(content, code, problem);
  });

  it('refuses a state file it cannot read (a directory in its place)', () => {
    const f = store();
    mkdirSync(f.path);
    expect(() => f.load()).toThrow(expect.objectContaining({ code: 'ERR_STATE_UNREADABLE', message: expect.stringMatching(/^cannot read the state file .*state\.json: is a directory/) }));
    expect(statSync(f.path).isDirectory()).toBe(true);
  });

  it.runIf(process.getuid?.() !== 0)('refuses a state file without read permission (EACCES)', () => {
    const f = store();
    writeFileSync(f.path, JSON.stringify(sample()), { mode: 0o200 });
    expect(() => f.load()).toThrow(/cannot read the state file .*: permission denied/);
  });
});

describe('StateStore: a bad entry is skipped, the rest kept, the original copied before the first rewrite', () => {
  it('skips one malformed lease and keeps everything else', () => {
    const good = sample();
    const raw = JSON.parse(JSON.stringify(good));
    raw.leases.push({ network: 'backend', mac: '02:00:00:00:00:98', ip: '10.0.3.101' }); // no expiresAt
    const f = store();
    const text = JSON.stringify(raw);
    writeFileSync(f.path, text);
    const loaded = f.load();
    expect(loaded).toEqual(JSON.parse(JSON.stringify(good)));
    const warnings = logged.filter((l) => l.level === 40).map((l) => l.msg);
    expect(warnings).toContain('state file entry skipped: lease #2: no expiry time');
    // Not copied yet: nothing is rewritten by reading.
    expect(readdirSync(dir)).toEqual(['state.json']);
    f.save(loaded);
    const copies = readdirSync(dir).filter((n) => n.startsWith('state.json.bad-'));
    expect(copies).toHaveLength(1);
    expect(readFileSync(join(dir, copies[0]), 'utf8')).toBe(text);
    // Only before the first rewrite.
    f.save(loaded);
    expect(readdirSync(dir).filter((n) => n.startsWith('state.json.bad-'))).toHaveLength(1);
  });

  it.each([
    ['a null attachment', (r: Record<string, unknown[]>) => r.attachments.push(null), /attachment #3: not an object/],
    ['an attachment naming no container', (r: Record<string, unknown[]>) => r.attachments.push({ ...attachment({ name: 'c7' }), pid: undefined }), /attachment #3 \(c7\): names no container/],
    ['an attachment without namespace identity', (r: Record<string, unknown[]>) => r.attachments.push({ ...attachment({ name: 'c7' }), netns: { dev: 4, ino: 5 } }), /attachment #3 \(c7\): no namespace identity/],
    ['a second attachment of the same name', (r: Record<string, unknown[]>) => r.attachments.push(attachment()), /attachment #3 \(c1\): a second attachment of that name/],
    ['a network without a subnet', (r: Record<string, unknown[]>) => r.networks.push({ name: 'x' }), /network #2 \(x\): no subnet/],
    ['a lease that is a string', (r: Record<string, unknown[]>) => r.leases.push('x'), /lease #2: not an object/],
  ])('skips %s', (_what, spoil, why) => {
    const raw = JSON.parse(JSON.stringify(sample()));
    spoil(raw);
    const r = parseState(JSON.stringify(raw));
    expect(r.skipped).toHaveLength(1);
    expect(r.skipped[0]).toMatch(why);
    expect(r.state).toEqual(JSON.parse(JSON.stringify(sample())));
  });

  it('drops a malformed published port but keeps its attachment', () => {
    const raw = JSON.parse(JSON.stringify(sample()));
    raw.attachments[0].ports.push({ proto: 'sctp', hostIp: '0.0.0.0', hostPort: 1, containerPort: 1 }, { proto: 'udp', hostIp: '0.0.0.0', hostPort: 70000, containerPort: 53 });
    const r = parseState(JSON.stringify(raw));
    expect(r.skipped).toEqual(['published port #2 of attachment c1: no protocol', 'published port #3 of attachment c1: a port out of range']);
    expect(r.state.attachments[0].ports).toEqual(sample().attachments[0].ports);
  });

  it('accepts an attachment named by netnsPath instead of pid', () => {
    const r = parseState(JSON.stringify({ version: 1, attachments: [{ ...attachment(), pid: undefined, netnsPath: '/run/netns/x' }] }));
    expect(r.skipped).toEqual([]);
    expect(r.state.attachments[0].netnsPath).toBe('/run/netns/x');
  });
});

describe('state version 1 (before networks)', () => {
  it('is read and upgraded: attachments on the default network, addresses without prefix', () => {
    const r = parseState(
      JSON.stringify({
        version: 1,
        attachments: [{ name: 'old', pid: 7, netns: { dev: '4', ino: '9' }, ifname: 'eth0', mac: '02:42:0a:00:02:0b', mtu: 1500, configure: true, ip: '10.0.2.11/24', gateway: '10.0.2.2', attachedAt: 'x' }],
      }),
    );
    expect(r.skipped).toEqual([]);
    expect(r.state.version).toBe(STATE_VERSION);
    expect(r.state.networks).toEqual([]);
    expect(r.state.leases).toEqual([]);
    expect(r.state.attachments[0]).toMatchObject({ name: 'old', ip: '10.0.2.11' });
    expect(r.state.attachments[0]).not.toHaveProperty('gateway');
  });
});

describe('StateStore: the pid file', () => {
  it('takes the directory and gives it back', () => {
    const f = store();
    f.lock();
    expect(readFileSync(f.pidFile, 'utf8')).toBe(`${process.pid}\n`);
    f.unlock();
    expect(existsSync(f.pidFile)).toBe(false);
  });

  it('a directory it cannot write is one line, not a raw errno', () => {
    const f = new StateStore(join(dir, 'missing', 'deeper'), log);
    expect(() => f.lock()).toThrow(expect.objectContaining({ code: 'ERR_STATE_WRITE', message: `cannot use the state directory ${join(dir, 'missing', 'deeper')}: no such file or directory` }));
  });
});
