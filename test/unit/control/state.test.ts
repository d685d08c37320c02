import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { emptyState, StateFile, STATE_VERSION, type AttachmentRecord, type DaemonState } from '../../../src/control/state.js';

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'usernet-state-'));
});

afterEach(() => {
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
      attachment(),
      attachment({ name: 'c2', pid: undefined, netnsPath: '/run/netns/c2', usernsPath: '/proc/1/ns/user', netns: { dev: '4', ino: '18446744073709551615' }, configure: false, ip: undefined }),
    ],
    leases: [{ network: 'backend', mac: '02:00:00:00:00:99', ip: '10.0.3.100', expiresAt: 1_900_000_000_000 }],
  };
}

describe('StateFile', () => {
  it('loads an empty state when there is no file', () => {
    const r = new StateFile(dir).load();
    expect(r).toEqual({ state: emptyState() });
    expect(r.state).toEqual({ version: STATE_VERSION, networks: [], attachments: [], leases: [] });
  });

  it('round-trips save and load', () => {
    const f = new StateFile(dir);
    expect(f.path).toBe(join(dir, 'state.json'));
    const state = sample();
    f.save(state);
    const r = new StateFile(dir).load();
    expect(r.problem).toBeUndefined();
    expect(r.movedAside).toBeUndefined();
    expect(r.state).toEqual(JSON.parse(JSON.stringify(state)));
    expect(r.state.attachments[1].netns.ino).toBe('18446744073709551615');
  });

  it('writes the file with mode 0600 as readable JSON', () => {
    const f = new StateFile(dir);
    f.save(sample());
    expect(statSync(f.path).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(f.path, 'utf8')).version).toBe(STATE_VERSION);
  });

  it('replaces the file atomically, leaving no temporary file behind', () => {
    const f = new StateFile(dir);
    f.save(sample());
    f.save(emptyState());
    f.save({ version: STATE_VERSION, networks: [], attachments: [attachment({ name: 'c9' })], leases: [] });
    expect(readdirSync(dir)).toEqual(['state.json']);
    expect(f.load().state.attachments.map((a) => a.name)).toEqual(['c9']);
    expect(statSync(f.path).mode & 0o777).toBe(0o600);
  });

  function expectMovedAside(content: string, problem: RegExp): void {
    const f = new StateFile(dir);
    writeFileSync(f.path, content);
    const r = f.load();
    expect(r.state).toEqual(emptyState());
    expect(r.problem).toMatch(problem);
    expect(r.movedAside).toMatch(/\/state\.json\.corrupt-[0-9T-]+Z-\d+-[0-9a-z]+$/);
    expect(r.movedAside?.startsWith(join(dir, 'state.json.corrupt-'))).toBe(true);
    // The bad file is kept, byte for byte, and the original name is free again.
    expect(readFileSync(r.movedAside as string, 'utf8')).toBe(content);
    expect(existsSync(f.path)).toBe(false);
    expect(readdirSync(dir)).toHaveLength(1);
    // The next load starts clean.
    expect(f.load()).toEqual({ state: emptyState() });
  }

  it('moves a file that is not JSON aside', () => {
    expectMovedAside('{"version": 1, "attachments": [', /JSON/);
  });

  it('moves an empty file aside', () => {
    expectMovedAside('', /JSON/);
  });

  it.each([
    ['not an object', '42', /not a JSON object/],
    ['null', 'null', /not a JSON object/],
    ['an array', '[]', /version/],
    ['a wrong version', JSON.stringify({ version: 3, attachments: [] }), /version 3 is not 2/],
    ['a missing version', JSON.stringify({ attachments: [] }), /version undefined/],
    ['no attachments list', JSON.stringify({ version: 1 }), /attachments list/],
    ['attachments that are an object', JSON.stringify({ version: 1, attachments: {} }), /attachments list/],
    ['a null attachment', JSON.stringify({ version: 1, attachments: [null] }), /malformed attachment/],
    ['a number attachment', JSON.stringify({ version: 1, attachments: [7] }), /malformed attachment/],
    ['an attachment without name', JSON.stringify({ version: 1, attachments: [{ ...attachment(), name: undefined }] }), /malformed attachment/],
    ['an attachment without ifname', JSON.stringify({ version: 1, attachments: [{ ...attachment(), ifname: 3 }] }), /malformed attachment/],
    ['an attachment naming no container', JSON.stringify({ version: 1, attachments: [{ ...attachment(), pid: undefined }] }), /c1 names no container/],
    ['an attachment without namespace identity', JSON.stringify({ version: 1, attachments: [{ ...attachment(), netns: undefined }] }), /c1 has no namespace identity/],
    ['a numeric namespace identity', JSON.stringify({ version: 1, attachments: [{ ...attachment(), netns: { dev: 4, ino: 5 } }] }), /namespace identity/],
  ])('moves a file with %s aside', (_what, content, problem) => {
    expectMovedAside(content, problem);
  });

  it('accepts an attachment named by netnsPath instead of pid', () => {
    const f = new StateFile(dir);
    writeFileSync(f.path, JSON.stringify({ version: 1, attachments: [{ ...attachment(), pid: undefined, netnsPath: '/run/netns/x' }] }));
    const r = f.load();
    expect(r.problem).toBeUndefined();
    expect(r.state.attachments[0].netnsPath).toBe('/run/netns/x');
  });
});

describe('StateFile: version 1 (before networks)', () => {
  it('is read and upgraded: attachments on the default network, addresses without prefix', () => {
    const f = new StateFile(dir);
    writeFileSync(
      f.path,
      JSON.stringify({
        version: 1,
        attachments: [{ name: 'old', pid: 7, netns: { dev: '4', ino: '9' }, ifname: 'eth0', mac: '02:42:0a:00:02:0b', mtu: 1500, configure: true, ip: '10.0.2.11/24', gateway: '10.0.2.2', attachedAt: 'x' }],
      }),
    );
    const r = f.load();
    expect(r.problem).toBeUndefined();
    expect(r.state.version).toBe(STATE_VERSION);
    expect(r.state.networks).toEqual([]);
    expect(r.state.leases).toEqual([]);
    expect(r.state.attachments[0]).toMatchObject({ name: 'old', ip: '10.0.2.11' });
    expect(r.state.attachments[0]).not.toHaveProperty('gateway');
  });

  it('moves aside a file with a malformed network or lease', () => {
    for (const bad of [
      { version: STATE_VERSION, networks: [{ name: 1 }], attachments: [], leases: [] },
      { version: STATE_VERSION, networks: [], attachments: [], leases: [{ network: 'x', mac: 'y', ip: 'z' }] },
      { version: STATE_VERSION, attachments: [], leases: [] },
    ]) {
      const f = new StateFile(dir);
      writeFileSync(f.path, JSON.stringify(bad));
      const r = f.load();
      expect(r.movedAside).toBeDefined();
      expect(r.state).toEqual(emptyState());
    }
  });
});
