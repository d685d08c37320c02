/**
 * The host's resolver configuration (resolv.conf(5)), which the DNS forwarder follows the way
 * slirp4netns does: containers ask the gateway, the gateway asks whatever the host asks.
 *
 * The file changes under a running daemon (DHCP renewals, VPNs, NetworkManager, and
 * systemd-resolved, whose /etc/resolv.conf is a symlink to a file it replaces by rename), so
 * ResolvConf re-reads it — lazily: on use, at most once per second, it stat()s the path
 * (following symlinks) and re-reads only when device, inode, size, mtime or ctime differ. A
 * replaced symlink target or file has a new inode; an edit in place a new mtime. There is no
 * watcher: nothing to leak, nothing to re-arm after a rename, and no cost while nobody asks.
 *
 * Parsing follows glibc where it matters: `nameserver` takes one address (IPv4 or IPv6, a
 * scoped link-local `fe80::1%eth0` kept as written, port 53 — resolv.conf has no port syntax),
 * only the first three count (MAXNS); `search` and `domain` replace each other, the last line
 * wins; lines starting with `#` or `;` are comments; `options`, `sortlist` and unknown keywords
 * are ignored. A line that cannot be used is reported in `warnings`, never thrown: a broken
 * host file must not stop the daemon.
 */
import { readFileSync, statSync, type BigIntStats } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { addressFamily, parseUpstream, sameUpstreams, type Upstream } from '../gateway/upstream.js';

export { formatUpstream, parseUpstream, sameUpstreams, type Upstream } from '../gateway/upstream.js';

export const DEFAULT_RESOLV_CONF = '/etc/resolv.conf';
/** A file modified less than this before it was read is read again at the next check. */
const RACY_NS = 2_000_000_000n;
/** glibc's MAXNS: later nameserver lines are ignored, by glibc and so by us. */
export const MAX_NAMESERVERS = 3;

export interface ResolvConfData {
  nameservers: Upstream[];
  search: string[];
  /** Lines that were ignored, and why ("line 4: nameserver "foo" is not an IP address"). */
  warnings: string[];
}

/** Parses resolv.conf text. Never throws; see the theory at the top of the file. */
export function parseResolvConf(text: string): ResolvConfData {
  const nameservers: Upstream[] = [];
  let search: string[] = [];
  const warnings: string[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '' || line[0] === '#' || line[0] === ';') continue;
    const words = line.split(/[ \t]+/);
    // A word starting with # or ; begins a trailing comment (glibc ignores the rest of a
    // nameserver line anyway; for search lists it keeps comment text out of the list).
    const comment = words.findIndex((w) => w[0] === '#' || w[0] === ';');
    if (comment >= 0) words.length = comment;
    const [keyword, ...args] = words;
    const where = `line ${i + 1}`;
    switch (keyword) {
      case 'nameserver': {
        const address = args[0];
        if (address === undefined) {
          warnings.push(`${where}: nameserver without an address`);
          break;
        }
        const family = addressFamily(address);
        if (family === 0) {
          warnings.push(`${where}: nameserver "${address}" is not an IP address`);
          break;
        }
        if (nameservers.length >= MAX_NAMESERVERS) {
          warnings.push(`${where}: nameserver ${address} ignored: only the first ${MAX_NAMESERVERS} count (as in glibc)`);
          break;
        }
        nameservers.push({ address, port: 53, family });
        break;
      }
      case 'domain':
        // Replaces any earlier search list, as a later search line replaces it.
        search = args.length && args[0] !== '.' ? [stripDot(args[0])] : [];
        break;
      case 'search':
        search = args.filter((d) => d !== '.').map(stripDot);
        break;
      default:
        break; // options, sortlist, and anything unknown
    }
  }
  return { nameservers, search, warnings };
}

function stripDot(domain: string): string {
  return domain.length > 1 && domain.endsWith('.') ? domain.slice(0, -1) : domain;
}

export interface ResolvConfOptions {
  /** Re-check the file at most this often. Default 1000 ms. */
  minCheckIntervalMs?: number;
  /** Monotonic milliseconds (tests). Default performance.now. */
  now?: () => number;
}

/** The host's resolver configuration, kept current lazily (see the theory at the top). */
export class ResolvConf {
  private readonly minCheckIntervalMs: number;
  private readonly now: () => number;
  private checkedAt = -Infinity;
  private stat: BigIntStats | null = null;
  private data: ResolvConfData = { nameservers: [], search: [], warnings: [] };
  private problemText: string | null = null;
  private readsCount = 0;

  constructor(
    readonly path: string = DEFAULT_RESOLV_CONF,
    options: ResolvConfOptions = {},
  ) {
    this.minCheckIntervalMs = options.minCheckIntervalMs ?? 1000;
    this.now = options.now ?? (() => performance.now());
  }

  /**
   * The nameservers. The same array object is returned for as long as the list is unchanged
   * (even across re-reads of an edited file), so a caller can tell a change by identity.
   */
  nameservers(): Upstream[] {
    this.refresh();
    return this.data.nameservers;
  }

  search(): string[] {
    this.refresh();
    return this.data.search;
  }

  /** Everything parsed, with the warnings about ignored lines. */
  current(): ResolvConfData {
    this.refresh();
    return this.data;
  }

  /**
   * Why the nameserver list is empty, or null if it is not: the file is missing or unreadable
   * (with the error code), or it names no usable nameserver.
   */
  problem(): string | null {
    this.refresh();
    return this.problemText;
  }

  /** How many times the file was actually read (tests, diagnostics). */
  get reads(): number {
    return this.readsCount;
  }

  private refresh(): void {
    const now = this.now();
    if (now - this.checkedAt < this.minCheckIntervalMs) return;
    this.checkedAt = now;
    let st: BigIntStats;
    try {
      // stat, not lstat: a symlink (systemd-resolved's stub) is followed, so a replaced target
      // shows up as a new inode.
      st = statSync(this.path, { bigint: true });
    } catch (err) {
      this.fail(err);
      return;
    }
    if (this.stat && sameFile(this.stat, st)) return;
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      this.fail(err);
      return;
    }
    this.readsCount++;
    // The stat taken before the read, so a change racing the read shows up at the next check.
    // File times tick with the kernel's coarse clock (milliseconds), so a file modified in the
    // same tick right after the read would look unchanged; as git does with its index, a stat
    // that recent is not trusted, and the next check reads the file again.
    this.stat = BigInt(Date.now()) * 1_000_000n - st.mtimeNs < RACY_NS ? null : st;
    const parsed = parseResolvConf(text);
    if (sameUpstreams(parsed.nameservers, this.data.nameservers)) parsed.nameservers = this.data.nameservers;
    this.data = parsed;
    this.problemText = parsed.nameservers.length ? null : `${this.path} names no usable nameserver`;
  }

  private fail(err: unknown): void {
    const code = (err as NodeJS.ErrnoException).code;
    this.stat = null;
    // Keep the empty list's identity while the file stays missing, so callers see no change.
    if (this.data.nameservers.length || this.data.search.length) this.data = { nameservers: [], search: [], warnings: [] };
    this.problemText =
      code === 'ENOENT' || code === 'ENOTDIR'
        ? `${this.path} does not exist`
        : `cannot read ${this.path}: ${code ?? (err instanceof Error ? err.message : String(err))}`;
  }
}

function sameFile(a: BigIntStats, b: BigIntStats): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
}
