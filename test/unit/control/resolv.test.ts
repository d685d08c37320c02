import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_RESOLV_CONF, ResolvConf, formatUpstream, parseResolvConf, parseUpstream, sameUpstreams } from '../../../src/control/resolv.js';
import { InvalidArgumentError } from '../../../src/errors.js';

const ns = (address: string, family: 4 | 6 = 4, port = 53) => ({ address, port, family });

describe('parseResolvConf', () => {
  it('reads what systemd-resolved writes for its stub', () => {
    const text = [
      '# This is /run/systemd/resolve/stub-resolv.conf managed by man:systemd-resolved(8).',
      '# Do not edit.',
      '',
      'nameserver 127.0.0.53',
      'options edns0 trust-ad',
      'search corp.example.com lab.example.com',
      '',
    ].join('\n');
    expect(parseResolvConf(text)).toEqual({ nameservers: [ns('127.0.0.53')], search: ['corp.example.com', 'lab.example.com'], warnings: [] });
  });

  it('takes IPv4, IPv6 and scoped link-local nameservers, in order', () => {
    const r = parseResolvConf('nameserver 192.0.2.1\nnameserver 2001:db8::53\nnameserver fe80::1%eth0\n');
    expect(r.nameservers).toEqual([ns('192.0.2.1'), ns('2001:db8::53', 6), ns('fe80::1%eth0', 6)]);
    expect(r.warnings).toEqual([]);
  });

  it('ignores comments, options, sortlist, unknown keywords, blank lines and CRLF', () => {
    const text = '# nameserver 192.0.2.9\n; nameserver 192.0.2.8\n\noptions ndots:2 timeout:1\nsortlist 192.0.2.0/255.255.255.0\nlookup file bind\r\n   nameserver 192.0.2.7   # trailing comment\r\n\tnameserver\t192.0.2.6;x\n';
    const r = parseResolvConf(text);
    expect(r.nameservers).toEqual([ns('192.0.2.7')]);
    expect(r.warnings).toEqual(['line 8: nameserver "192.0.2.6;x" is not an IP address']);
  });

  it('keeps only the first three nameservers, as glibc does', () => {
    const r = parseResolvConf('nameserver 192.0.2.1\nnameserver 192.0.2.2\nnameserver 192.0.2.3\nnameserver 192.0.2.4\n');
    expect(r.nameservers.map((u) => u.address)).toEqual(['192.0.2.1', '192.0.2.2', '192.0.2.3']);
    expect(r.warnings).toEqual(['line 4: nameserver 192.0.2.4 ignored: only the first 3 count (as in glibc)']);
  });

  it('reports unusable nameserver lines and carries on', () => {
    const r = parseResolvConf('nameserver\nnameserver dns.example.com\nnameserver 192.0.2.300\nnameserver 192.0.02.1\nnameserver [::1]\nnameserver 192.0.2.1\n');
    expect(r.nameservers).toEqual([ns('192.0.2.1')]);
    expect(r.warnings).toEqual([
      'line 1: nameserver without an address',
      'line 2: nameserver "dns.example.com" is not an IP address',
      'line 3: nameserver "192.0.2.300" is not an IP address',
      'line 4: nameserver "192.0.02.1" is not an IP address',
      'line 5: nameserver "[::1]" is not an IP address',
    ]);
  });

  it('lets the last search or domain line win', () => {
    expect(parseResolvConf('search a.example b.example\ndomain c.example\n').search).toEqual(['c.example']);
    expect(parseResolvConf('domain c.example\nsearch a.example b.example\n').search).toEqual(['a.example', 'b.example']);
    expect(parseResolvConf('search a.example\nsearch b.example.\n').search).toEqual(['b.example']);
    expect(parseResolvConf('search a.example\nsearch\n').search).toEqual([]);
    expect(parseResolvConf('domain .\n').search).toEqual([]);
    expect(parseResolvConf('search x.example # comment\n').search).toEqual(['x.example']);
  });

  it('gives empty lists for an empty file', () => {
    expect(parseResolvConf('')).toEqual({ nameservers: [], search: [], warnings: [] });
  });
});

describe('parseUpstream', () => {
  it('parses IP, IP:PORT, bare IPv6, [IPv6] and [IPv6]:PORT', () => {
    expect(parseUpstream('192.0.2.53')).toEqual(ns('192.0.2.53'));
    expect(parseUpstream(' 192.0.2.53:5353 ')).toEqual(ns('192.0.2.53', 4, 5353));
    expect(parseUpstream('2001:db8::53')).toEqual(ns('2001:db8::53', 6));
    expect(parseUpstream('[2001:db8::53]')).toEqual(ns('2001:db8::53', 6));
    expect(parseUpstream('[::1]:1053')).toEqual(ns('::1', 6, 1053));
    expect(parseUpstream('[fe80::1%eth0]:53')).toEqual(ns('fe80::1%eth0', 6));
    expect(parseUpstream('127.0.0.1:65535').port).toBe(65535);
  });

  it('refuses anything else, naming the input', () => {
    const bad = ['', ':53', 'dns.example.com', '192.0.2.1:', '192.0.2.1:0', '192.0.2.1:65536', '192.0.2.1:53x', '192.0.2.999', '[192.0.2.1]:53', '[::1', '[::1]53', '[::1]:', '[]:53', '192.0.2.4:5:6'];
    for (const text of bad) {
      let caught: unknown;
      try {
        parseUpstream(text);
      } catch (err) {
        caught = err;
      }
      expect(caught, text).toBeInstanceOf(InvalidArgumentError);
      expect((caught as InvalidArgumentError).code).toBe('ERR_INVALID_ARGUMENT');
      expect((caught as Error).message).toContain(`"${text}"`);
      expect((caught as Error).message).toContain('expected IP, IP:PORT or [IPv6]:PORT');
    }
  });

  it('round-trips through formatUpstream', () => {
    for (const text of ['192.0.2.53:53', '[2001:db8::53]:5353', '[fe80::1%eth0]:53']) {
      expect(formatUpstream(parseUpstream(text))).toBe(text);
    }
  });

  it('sameUpstreams compares element-wise', () => {
    expect(sameUpstreams([ns('192.0.2.1')], [ns('192.0.2.1')])).toBe(true);
    expect(sameUpstreams([ns('192.0.2.1')], [ns('192.0.2.1', 4, 54)])).toBe(false);
    expect(sameUpstreams([ns('192.0.2.1')], [])).toBe(false);
  });
});

describe('ResolvConf', () => {
  let dir: string;
  let clock: number;
  const now = (): number => clock;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'usernet-resolv-'));
    clock = 0;
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** Writes a file with an mtime `ageSec` in the past (an old file is trusted by its stat). */
  function write(path: string, text: string, ageSec = 60): void {
    writeFileSync(path, text);
    const t = Date.now() / 1000 - ageSec;
    utimesSync(path, t, t);
  }

  it('defaults to /etc/resolv.conf', () => {
    expect(new ResolvConf().path).toBe(DEFAULT_RESOLV_CONF);
  });

  it('reads lazily, re-checks at most once per interval, and re-reads only a changed file', () => {
    const path = join(dir, 'resolv.conf');
    write(path, 'nameserver 192.0.2.1\nsearch a.example\n', 120);
    const rc = new ResolvConf(path, { now });
    expect(rc.reads).toBe(0); // nothing until used
    const first = rc.nameservers();
    expect(first).toEqual([ns('192.0.2.1')]);
    expect(rc.search()).toEqual(['a.example']);
    expect(rc.problem()).toBeNull();
    expect(rc.reads).toBe(1);

    // Changed on disk, but within the interval: not even looked at.
    write(path, 'nameserver 192.0.2.2\n', 60);
    clock = 999;
    expect(rc.nameservers()).toBe(first);
    expect(rc.reads).toBe(1);

    // After the interval: seen.
    clock = 1000;
    const second = rc.nameservers();
    expect(second).toEqual([ns('192.0.2.2')]);
    expect(rc.search()).toEqual([]);
    expect(rc.reads).toBe(2);

    // Unchanged: stat only, no read, same array.
    for (let i = 1; i <= 5; i++) {
      clock = 1000 + i * 1000;
      expect(rc.nameservers()).toBe(second);
    }
    expect(rc.reads).toBe(2);
  });

  it('keeps the nameserver array when only other lines change', () => {
    const path = join(dir, 'resolv.conf');
    write(path, 'nameserver 192.0.2.1\n', 120);
    const rc = new ResolvConf(path, { now, minCheckIntervalMs: 0 });
    const list = rc.nameservers();
    write(path, 'nameserver 192.0.2.1\nsearch b.example\n', 60);
    expect(rc.search()).toEqual(['b.example']);
    expect(rc.nameservers()).toBe(list);
    expect(rc.reads).toBe(2);
  });

  it('notices an edit in place that keeps the size (mtime)', () => {
    const path = join(dir, 'resolv.conf');
    write(path, 'nameserver 192.0.2.1\n', 120);
    const rc = new ResolvConf(path, { now, minCheckIntervalMs: 0 });
    expect(rc.nameservers()).toEqual([ns('192.0.2.1')]);
    write(path, 'nameserver 192.0.2.2\n', 60);
    expect(rc.nameservers()).toEqual([ns('192.0.2.2')]);
  });

  it('does not trust the stat of a file modified just now (same timestamp tick)', () => {
    const path = join(dir, 'resolv.conf');
    writeFileSync(path, 'nameserver 192.0.2.1\n');
    const rc = new ResolvConf(path, { now, minCheckIntervalMs: 0 });
    expect(rc.nameservers()).toEqual([ns('192.0.2.1')]);
    expect(rc.nameservers()).toEqual([ns('192.0.2.1')]);
    expect(rc.reads).toBe(2); // read again, since the first stat was racy
  });

  it('follows a symlink and notices when it is replaced (systemd-resolved)', () => {
    const a = join(dir, 'stub-a.conf');
    const b = join(dir, 'stub-b.conf');
    const link = join(dir, 'resolv.conf');
    write(a, 'nameserver 127.0.0.53\n', 120);
    write(b, 'nameserver 192.0.2.9\n', 120); // same size, same mtime: only the inode differs
    symlinkSync(a, link);
    const rc = new ResolvConf(link, { now });
    expect(rc.nameservers()).toEqual([ns('127.0.0.53')]);
    // Replace the symlink atomically, as a package manager or resolvconf does.
    symlinkSync(b, `${link}.tmp`);
    renameSync(`${link}.tmp`, link);
    clock = 1000;
    expect(rc.nameservers()).toEqual([ns('192.0.2.9')]);
    // The target replaced by rename (systemd-resolved rewriting its stub file)
    write(`${b}.new`, 'nameserver 192.0.2.10\n', 120);
    renameSync(`${b}.new`, b);
    clock = 2000;
    expect(rc.nameservers()).toEqual([ns('192.0.2.10')]);
  });

  it('gives an empty list and a reason for a missing file, and picks the file up when it appears', () => {
    const path = join(dir, 'resolv.conf');
    const rc = new ResolvConf(path, { now, minCheckIntervalMs: 0 });
    const empty = rc.nameservers();
    expect(empty).toEqual([]);
    expect(rc.problem()).toBe(`${path} does not exist`);
    expect(rc.nameservers()).toBe(empty);
    write(path, 'nameserver 192.0.2.1\n');
    expect(rc.nameservers()).toEqual([ns('192.0.2.1')]);
    expect(rc.problem()).toBeNull();
    unlinkSync(path);
    expect(rc.nameservers()).toEqual([]);
    expect(rc.problem()).toBe(`${path} does not exist`);
  });

  it('explains a file without nameservers, a dangling symlink and an unreadable path', () => {
    const path = join(dir, 'resolv.conf');
    write(path, '# nothing here\noptions ndots:1\nnameserver bogus\n');
    const rc = new ResolvConf(path, { now, minCheckIntervalMs: 0 });
    expect(rc.nameservers()).toEqual([]);
    expect(rc.problem()).toBe(`${path} names no usable nameserver`);
    expect(rc.current().warnings).toEqual(['line 3: nameserver "bogus" is not an IP address']);

    const dangling = join(dir, 'dangling.conf');
    symlinkSync(join(dir, 'nowhere'), dangling);
    const rc2 = new ResolvConf(dangling, { now });
    expect(rc2.nameservers()).toEqual([]);
    expect(rc2.problem()).toBe(`${dangling} does not exist`);

    const sub = join(dir, 'a-directory');
    mkdirSync(sub);
    const rc3 = new ResolvConf(sub, { now });
    expect(rc3.nameservers()).toEqual([]);
    expect(rc3.problem()).toBe(`cannot read ${sub}: EISDIR`);
  });
});
