import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkSocketPath, defaultSocketPath, defaultStateDir, ensureDir, ensurePrivateDir, socketDir } from '../../../src/control/paths.js';
import { InvalidArgumentError, UsernetError } from '../../../src/errors.js';

function thrown(fn: () => unknown): UsernetError {
  try {
    fn();
  } catch (err) {
    return err as UsernetError;
  }
  throw new Error('expected a throw');
}

describe('defaultSocketPath', () => {
  it('uses /run/usernet for root, whatever XDG_RUNTIME_DIR says', () => {
    expect(defaultSocketPath({}, 0)).toBe('/run/usernet/usernet.sock');
    expect(defaultSocketPath({ XDG_RUNTIME_DIR: '/run/user/0' }, 0)).toBe('/run/usernet/usernet.sock');
  });

  it('uses $XDG_RUNTIME_DIR/usernet for other users', () => {
    expect(defaultSocketPath({ XDG_RUNTIME_DIR: '/run/user/1000' }, 1000)).toBe('/run/user/1000/usernet/usernet.sock');
  });

  it('falls back to /tmp/usernet-UID without XDG_RUNTIME_DIR', () => {
    expect(defaultSocketPath({}, 1000)).toBe('/tmp/usernet-1000/usernet.sock');
    expect(defaultSocketPath({ XDG_RUNTIME_DIR: '' }, 1234)).toBe('/tmp/usernet-1234/usernet.sock');
  });

  it('lets USERNET_SOCKET override everything', () => {
    expect(defaultSocketPath({ USERNET_SOCKET: '/x/y.sock' }, 0)).toBe('/x/y.sock');
    expect(defaultSocketPath({ USERNET_SOCKET: '/x/y.sock', XDG_RUNTIME_DIR: '/run/user/1000' }, 1000)).toBe('/x/y.sock');
  });

  it('reads process.env and the real uid by default', () => {
    vi.stubEnv('USERNET_SOCKET', '/from/env.sock');
    try {
      expect(defaultSocketPath()).toBe('/from/env.sock');
    } finally {
      vi.unstubAllEnvs();
    }
  });
});

describe('defaultStateDir', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it('uses $XDG_STATE_HOME/usernet', () => {
    expect(defaultStateDir({ XDG_STATE_HOME: '/s', HOME: '/home/u' })).toBe('/s/usernet');
  });

  it('uses ~/.local/state/usernet from HOME', () => {
    expect(defaultStateDir({ HOME: '/home/u' })).toBe('/home/u/.local/state/usernet');
  });

  it('refuses a home of /nonexistent with an error naming the way out', () => {
    const e = thrown(() => defaultStateDir({ HOME: '/nonexistent' }));
    expect(e).toBeInstanceOf(InvalidArgumentError);
    expect(e.code).toBe('ERR_INVALID_ARGUMENT');
    expect(e.message).toContain('--state-dir');
    expect(e.message).toContain('XDG_STATE_HOME');
  });

  it('fails when the given environment has no home, and uses the process HOME by default', () => {
    const e = thrown(() => defaultStateDir({}));
    expect(e).toBeInstanceOf(InvalidArgumentError);
    vi.stubEnv('HOME', '/nonexistent');
    expect(thrown(() => defaultStateDir())).toBeInstanceOf(InvalidArgumentError);
    vi.stubEnv('HOME', '/home/from-os');
    expect(defaultStateDir()).toBe('/home/from-os/.local/state/usernet');
  });

  it('ignores relative XDG directories, as the XDG spec requires', () => {
    expect(defaultStateDir({ XDG_STATE_HOME: 'relative/dir', HOME: '/home/u' })).toBe('/home/u/.local/state/usernet');
  });
});

describe('ensurePrivateDir', () => {
  let base: string;
  beforeEach(() => {
    base = mkdtempSync(join(tmpdir(), 'usernet-paths-'));
  });
  afterEach(() => {
    rmSync(base, { recursive: true, force: true });
  });

  it('creates a missing directory with mode 0700 (its parents with the default mode)', () => {
    const d = join(base, 'a', 'b');
    ensurePrivateDir(d);
    expect(statSync(d).isDirectory()).toBe(true);
    expect(statSync(d).mode & 0o777).toBe(0o700);
    expect(statSync(join(base, 'a')).isDirectory()).toBe(true);
  });

  it('creates 0700 even under a permissive umask', () => {
    const old = process.umask(0);
    try {
      ensurePrivateDir(join(base, 'u'));
    } finally {
      process.umask(old);
    }
    expect(statSync(join(base, 'u')).mode & 0o777).toBe(0o700);
  });

  it('tightens an existing directory to 0700 and keeps its contents', () => {
    const d = join(base, 'open');
    mkdirSync(d);
    chmodSync(d, 0o1777);
    writeFileSync(join(d, 'keep'), 'x');
    ensurePrivateDir(d);
    expect(statSync(d).mode & 0o7777).toBe(0o700);
    expect(statSync(join(d, 'keep')).isFile()).toBe(true);
  });

  it('accepts an existing 0700 directory unchanged', () => {
    const d = join(base, 'ok');
    mkdirSync(d, { mode: 0o700 });
    ensurePrivateDir(d);
    expect(statSync(d).mode & 0o777).toBe(0o700);
  });

  it('refuses a file', () => {
    const f = join(base, 'file');
    writeFileSync(f, '');
    const e = thrown(() => ensurePrivateDir(f));
    expect(e).toBeInstanceOf(Error);
    expect(statSync(f).isFile()).toBe(true);
  });

  it('refuses a symbolic link to a directory (ERR_NOT_A_DIRECTORY)', () => {
    const target = join(base, 'target');
    mkdirSync(target, { mode: 0o755 });
    const link = join(base, 'link');
    symlinkSync(target, link);
    const e = thrown(() => ensurePrivateDir(link));
    expect(e.code).toBe('ERR_NOT_A_DIRECTORY');
    expect(e.message).toContain(link);
    expect(statSync(target).mode & 0o777).toBe(0o755);
  });

  it.skipIf(process.getuid?.() !== 0)('refuses a directory owned by someone else (ERR_DIR_OWNER)', () => {
    const d = join(base, 'theirs');
    mkdirSync(d, { mode: 0o755 });
    chownSync(d, 12345, 12345);
    const e = thrown(() => ensurePrivateDir(d));
    expect(e.code).toBe('ERR_DIR_OWNER');
    expect(e.message).toContain('12345');
    expect(statSync(d).mode & 0o777).toBe(0o755);
  });
});

describe('checkSocketPath / socketDir', () => {
  it('accepts paths up to 107 bytes', () => {
    expect(() => checkSocketPath(`/${'a'.repeat(106)}`)).not.toThrow();
    expect(() => checkSocketPath('/run/usernet/usernet.sock')).not.toThrow();
  });

  it('rejects a path over 107 bytes with the length in the message', () => {
    const p = `/${'a'.repeat(107)}`;
    const e = thrown(() => checkSocketPath(p));
    expect(e).toBeInstanceOf(InvalidArgumentError);
    expect(e.message).toContain('108 bytes');
    expect(e.message).toContain(p);
  });

  it('counts bytes, not characters', () => {
    // A slash and 54 two-byte characters: 55 characters, 109 bytes.
    const p = `/${'é'.repeat(54)}`;
    expect(p.length).toBe(55);
    expect(() => checkSocketPath(p)).toThrow(InvalidArgumentError);
    expect(() => checkSocketPath(`/${'é'.repeat(53)}`)).not.toThrow();
  });

  it('socketDir is the directory of the socket', () => {
    expect(socketDir('/tmp/usernet-1000/usernet.sock')).toBe('/tmp/usernet-1000');
  });
});

describe('ensureDir (directories the user named)', () => {
  let base: string;
  beforeEach(() => {
    base = mkdtempSync(join(tmpdir(), 'usernet-paths-'));
  });
  afterEach(() => {
    chmodSync(base, 0o700);
    rmSync(base, { recursive: true, force: true });
  });

  it('never changes the mode of an existing directory', () => {
    chmodSync(base, 0o1777);
    ensureDir(base);
    expect(statSync(base).mode & 0o7777).toBe(0o1777);
    chmodSync(base, 0o500);
    ensureDir(base);
    expect(statSync(base).mode & 0o777).toBe(0o500);
  });

  it('creates a missing one with mode 0700', () => {
    const d = join(base, 'x', 'y');
    ensureDir(d);
    expect(statSync(d).mode & 0o777).toBe(0o700);
  });

  it('refuses a path that is a file, with ERR_NOT_A_DIRECTORY', () => {
    const f = join(base, 'file');
    writeFileSync(f, '');
    expect(() => ensureDir(f)).toThrow(expect.objectContaining({ code: 'ERR_NOT_A_DIRECTORY' }));
  });
});
