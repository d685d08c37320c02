/**
 * Telling containers apart and explaining why a TAP cannot be opened in one: a network
 * namespace's identity (dev + inode, which outlives any PID or path), a process's start time
 * (which tells a PID's process from a later one with the same number), and the addon's errno
 * errors turned into one line with the likely cause and the fix.
 */
import { readFileSync, readlinkSync, statSync } from 'node:fs';
import { InvalidArgumentError, SystemError, toUsernetError } from '../errors.js';
import type { AttachmentRecord, NamespaceIdentity } from './state.js';

/** The network namespace identity behind a path, or null if the path does not resolve. */
export function namespaceIdentity(path: string): NamespaceIdentity | null {
  try {
    const st = statSync(path, { bigint: true });
    return { dev: st.dev.toString(), ino: st.ino.toString() };
  } catch {
    return null;
  }
}

export function netnsPathOf(r: AttachmentRecord): string {
  return r.pid !== undefined ? `/proc/${r.pid}/ns/net` : (r.netnsPath as string);
}

export function sameIdentity(a: NamespaceIdentity | null, b: NamespaceIdentity): boolean {
  return a !== null && a.dev === b.dev && a.ino === b.ino;
}

/** A process's start time (clock ticks after boot, /proc/PID/stat field 22), or -1 if there is none. */
export function processStartTime(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const start = Number(fields[19]);
    return Number.isFinite(start) ? start : -1;
  } catch {
    return -1;
  }
}

/** The errno code of stat(path), or '' when it succeeds. */
export function statError(path: string): string {
  try {
    statSync(path);
    return '';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? 'EIO';
  }
}

/** The type of a /proc/PID/ns/* link ("user", "net", ...), or '' for another kind of path. */
function namespaceKind(path: string): string {
  try {
    return /^(\w+):\[\d+\]$/.exec(readlinkSync(path))?.[1] ?? '';
  } catch {
    return '';
  }
}

/** Adds the likely cause and the fix to the addon's errno errors. */
export function explainTapError(err: unknown, r: AttachmentRecord): Error {
  const e = err as NodeJS.ErrnoException;
  const what = r.pid !== undefined ? `the container of PID ${r.pid}` : `the namespace ${r.netnsPath}`;
  let hint = '';
  if (e.syscall === 'open(/dev/net/tun)' && (e.code === 'EACCES' || e.code === 'EPERM')) {
    hint = ' — /dev/net/tun is not open to this user; distributions ship it mode 0666: sudo chmod 0666 /dev/net/tun';
  } else if (e.syscall === 'open(/dev/net/tun)' && e.code === 'ENOENT') {
    hint = ' — the tun module is missing: sudo modprobe tun';
  } else if (e.syscall === 'setns(CLONE_NEWUSER)' && e.code === 'EPERM') {
    hint = ` — not allowed to enter the user namespace of ${what}: it must belong to the user running the daemon`;
  } else if (e.syscall === 'setns(CLONE_NEWNET)' && e.code === 'EINVAL' && r.netnsPath !== undefined) {
    // setns() refuses a namespace file of another type with EINVAL: say what was given instead.
    const kind = namespaceKind(r.netnsPath);
    const what = kind ? `a ${kind} namespace, not a network namespace` : 'not a network namespace';
    return new InvalidArgumentError(`${r.netnsPath} is ${what}: give /proc/PID/ns/net or a file made by ip netns (/run/netns/NAME)`, 'ERR_NOT_A_NETNS');
  } else if (e.syscall === 'setns(CLONE_NEWNET)' && e.code === 'EPERM') {
    hint = ` — not allowed to enter the network namespace of ${what}`;
  } else if (e.syscall === 'ioctl(TUNSETIFF)' && e.code === 'EBUSY') {
    hint = ` — ${r.ifname} in ${what} is already in use by another process (another usernet daemon?)`;
  } else if (e.syscall === 'ioctl(TUNSETIFF)' && e.code === 'EPERM') {
    hint = ` — no right to create or attach ${r.ifname} in ${what}`;
  } else if (e.code === 'ENOENT' && e.syscall?.startsWith('open(/proc')) {
    hint = ` — ${what} no longer exists`;
  }
  // The addon prefixes its own context ("tapOpen(pid N): "); say it in the user's terms.
  const detail = (e.message ?? String(err)).replace(/^tapOpen\([^)]*\): /, '');
  const message = `cannot open ${r.ifname} in ${what}: ${detail}${hint}`;
  if (typeof e.code === 'string' && typeof e.errno === 'number') return new SystemError(e.code, e.errno, e.syscall ?? '', message);
  if (typeof e.code === 'string') return toUsernetError(Object.assign(new Error(message), { code: e.code }));
  return err instanceof Error ? err : new Error(String(err));
}
