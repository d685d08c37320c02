/**
 * Where the daemon listens and keeps its state, by default:
 *   socket: /run/usernet/usernet.sock for root; $XDG_RUNTIME_DIR/usernet/usernet.sock; else
 *           /tmp/usernet-$UID/usernet.sock (directory mode 0700, refused if someone else owns it)
 *   state:  $XDG_STATE_HOME/usernet, else ~/.local/state/usernet
 * `--socket` / USERNET_SOCKET and `--state-dir` override them.
 */
import { lstatSync, mkdirSync, chmodSync, statSync, type Stats } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { errnoError, InvalidArgumentError, UsernetError } from '../errors.js';

export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env, uid = process.getuid?.() ?? 0): string {
  if (env.USERNET_SOCKET) return env.USERNET_SOCKET;
  if (uid === 0) return '/run/usernet/usernet.sock';
  // The XDG spec says relative paths in these variables are invalid and must be ignored.
  if (env.XDG_RUNTIME_DIR?.startsWith('/')) return join(env.XDG_RUNTIME_DIR, 'usernet', 'usernet.sock');
  return join('/tmp', `usernet-${uid}`, 'usernet.sock');
}

export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.XDG_STATE_HOME?.startsWith('/')) return join(env.XDG_STATE_HOME, 'usernet');
  let home = env.HOME;
  if (!home && env === process.env) {
    try {
      home = homedir();
    } catch {
      home = '';
    }
  }
  if (!home || home === '/nonexistent') {
    throw new InvalidArgumentError('no home directory for the default state directory: give --state-dir DIR or set XDG_STATE_HOME');
  }
  return join(home, '.local', 'state', 'usernet');
}

/**
 * For usernet's own default directories (/tmp/usernet-$UID, $XDG_RUNTIME_DIR/usernet,
 * /run/usernet): creates `dir` with mode 0700, or checks an existing one — it must be a
 * directory owned by us, and it is tightened to 0700 (a shared /tmp must not let others reach
 * the socket). Never use it on a directory the user named: that one is not ours to chmod.
 */
export function ensurePrivateDir(dir: string): void {
  ensureDir(dir);
  const st = lstatSync(dir);
  const uid = process.getuid?.() ?? 0;
  if (st.uid !== uid) throw new UsernetError('ERR_DIR_OWNER', `${dir} belongs to uid ${st.uid}, not to us (uid ${uid}): refusing to use it`);
  if ((st.mode & 0o777) !== 0o700) chmodSync(dir, 0o700);
}

/**
 * Makes sure `dir` exists: missing parents are created with the default mode, a missing `dir`
 * itself with mode 0700. An existing directory is left exactly as it is.
 */
export function ensureDir(dir: string): void {
  let st;
  try {
    st = lstatSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (st === undefined) {
    try {
      mkdirSync(dirname(dir), { recursive: true });
      mkdirSync(dir, { mode: 0o700 });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' || code === 'ENOTDIR') throw new UsernetError('ERR_NOT_A_DIRECTORY', `${dir} (or a parent) exists and is not a directory`);
      if (code === 'EACCES' || code === 'EPERM') throw errnoError('EACCES', 'mkdir', `cannot create ${dir}: permission denied`);
      throw err;
    }
    return;
  }
  if (!st.isDirectory()) throw new UsernetError('ERR_NOT_A_DIRECTORY', `${dir} exists and is not a directory`);
}

/** Unix socket paths are limited to 107 bytes by sockaddr_un. */
export function checkSocketPath(path: string): void {
  if (Buffer.byteLength(path) > 107) {
    throw new InvalidArgumentError(`socket path too long (${Buffer.byteLength(path)} bytes, the limit is 107): ${path}`);
  }
}

export function socketDir(path: string): string {
  return dirname(path);
}

/**
 * The client's side of the daemon's directory check: before talking to a daemon, make sure the
 * socket is one another user could not have planted. In usernet's own default directory
 * (`ownDefault`) the directory must be ours with mode 0700 and the socket ours — what the daemon
 * makes and insists on. A path the user named (--socket, USERNET_SOCKET) must be owned by us or
 * by root. A path that does not exist is left to connect(), which says no daemon listens there.
 */
export function checkDaemonSocket(path: string, ownDefault: boolean, uid = process.getuid?.() ?? 0): void {
  const refuse = (why: string): never => {
    throw new UsernetError('ERR_SOCKET_UNSAFE', `refusing to talk to ${path}: ${why}`);
  };
  const statOrNull = (p: string, follow: boolean): Stats | null => {
    try {
      return follow ? statSync(p) : lstatSync(p);
    } catch {
      // Missing or out of reach: connect() will say so in its own words.
      return null;
    }
  };
  if (ownDefault) {
    const dir = dirname(path);
    const d = statOrNull(dir, false);
    if (d === null) return;
    if (!d.isDirectory()) refuse(`${dir} is not a directory`);
    if (d.uid !== uid) refuse(`${dir} belongs to uid ${d.uid}, not to you (uid ${uid}); another user may have made it`);
    if ((d.mode & 0o777) !== 0o700) refuse(`${dir} has mode ${(d.mode & 0o777).toString(8).padStart(4, '0')}, not 0700, so others could have put the socket there`);
    const s = statOrNull(path, false);
    if (s === null) return;
    if (!s.isSocket()) refuse('it is not a socket');
    if (s.uid !== uid) refuse(`it belongs to uid ${s.uid}, not to you (uid ${uid})`);
    return;
  }
  const s = statOrNull(path, true);
  if (s === null) return;
  if (s.uid !== uid && s.uid !== 0) refuse(`it belongs to uid ${s.uid}; a --socket must be owned by you (uid ${uid}) or root`);
}
