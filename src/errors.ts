/**
 * The one registry of usernet's error codes, in the style of Node's lib/internal/errors.js and
 * undici's lib/core/errors.js: callers branch on `err.code`, never on message text, so a code is
 * a promise — listed here once, with its meaning and the class that carries it; never renamed
 * without a line in docs/cli.md ("Error codes") naming the old one.
 *
 * Constructing an error with a code that is not registered here is a type error: the classes'
 * `code` parameters are typed from this table, and a unit test checks that every `ERR_` string in
 * src/ is registered here and documented in docs/cli.md.
 *
 * Two kinds of code are not usernet's and so not listed: errno names from the kernel (`EACCES`,
 * `EADDRINUSE`, …), carried by SystemError exactly as the system gave them, and codes Node.js
 * itself gives its errors, which usernet reads (parseArgs's) but never emits: a foreign error that
 * reaches an API response becomes ERR_INTERNAL (it is a bug), its code kept in the message.
 *
 * The data path never throws (it counts drops); these are for the control plane: bad flags, bad
 * API requests, failed attachments.
 */

import { constants } from 'node:os';

/** Which class carries a code: the category a caller can branch on without knowing every code. */
type ErrorKind = 'invalid-argument' | 'not-found' | 'conflict' | 'other';

function code<K extends ErrorKind>(kind: K, meaning: string): { readonly kind: K; readonly meaning: string } {
  return { kind, meaning };
}

export const ERROR_CODES = {
  // --- Requests on the control socket (protocol.ts, api-server.ts) ---
  ERR_BAD_JSON: code('other', 'A request line is not JSON.'),
  ERR_BAD_REQUEST: code('other', 'A request line is JSON but not a request: not an object, no "method" string, or "params" not an object.'),
  ERR_REQUEST_TOO_LARGE: code('other', 'A request line is longer than 1 MiB; that connection is closed after the answer.'),
  ERR_UNKNOWN_METHOD: code('other', 'The request names a method the daemon does not have.'),
  ERR_PEER_REFUSED: code('other', 'The connecting process belongs to another user (SO_PEERCRED); the daemon serves its own uid and root.'),
  ERR_INTERNAL: code('other', 'A bug: something failed that should not have; logged by the daemon.'),

  // --- Values given by a user ---
  ERR_INVALID_ARGUMENT: code('invalid-argument', 'A value given by a user (an API parameter, a flag value, a state-file entry) is malformed or out of range.'),
  ERR_USAGE: code('invalid-argument', 'A command line cannot be used as given (unknown option, missing value, wrong combination); usernet and usernet-slirp4netns print it with a pointer to --help.'),
  ERR_BAD_PUBLISH_SPEC: code('invalid-argument', 'A published-port spec (-p HOST_IP:HOST_PORT:CONTAINER_PORT/PROTO) cannot be parsed or names something unsupported.'),
  ERR_NOT_A_NETNS: code('invalid-argument', 'The --netns path is a namespace file of another type, not a network namespace.'),

  // --- Things named that do not exist ---
  ERR_NO_SUCH_PORT: code('not-found', 'No port (attachment) of that name, or not on the network given.'),
  ERR_NO_SUCH_NETWORK: code('not-found', 'No network of that name.'),
  ERR_NO_SUCH_PROCESS: code('not-found', 'No process with that PID (the container given with --pid, or an attachment\'s owner).'),
  ERR_NO_SUCH_NAMESPACE: code('not-found', 'The network namespace path does not exist, or cannot be read.'),
  ERR_NOT_PUBLISHED: code('not-found', 'The port has no published port matching the spec given to unpublish.'),

  // --- Requests that conflict with the current state ---
  ERR_NAME_IN_USE: code('conflict', 'A port of that name already exists.'),
  ERR_NAME_RESERVED: code('conflict', 'The port name is reserved ("gateway": every network\'s gateway port).'),
  ERR_ALREADY_ATTACHED: code('conflict', 'That interface of that container is already attached.'),
  ERR_GATEWAY_PORT: code('conflict', 'The request would detach a network\'s gateway port, which cannot be detached.'),
  ERR_NETWORK_EXISTS: code('conflict', 'A network of that name already exists (the default network always does).'),
  ERR_NETWORK_IN_USE: code('conflict', 'The network cannot be removed: ports are attached to it, or it is the default network.'),
  ERR_ADDRESS_UNAVAILABLE: code('conflict', 'The address asked for (--ip, or the one the interface already has) is taken or not usable on the network.'),
  ERR_NO_FREE_ADDRESS: code('conflict', 'The network has no free address left in its range. (Earlier, ERR_NO_ADDRESS.)'),
  ERR_MAC_IN_USE: code('conflict', 'The MAC address is already attached on the network, or holds a DHCP lease for another address.'),
  ERR_PORT_PUBLISHED: code('conflict', 'That host address and port are already published (to another port, or twice in one request).'),

  // --- Other failures of the control plane ---
  ERR_NO_ADDRESS: code('other', 'The port holds no address on its network, so nothing can be published to it.'),
  ERR_PORT_DOWN: code('other', 'The port is recorded but down (its TAP could not be re-opened); the message says why.'),
  ERR_PORT_UNPUBLISHED: code('other', 'A published port was unpublished while its listener was still opening.'),
  ERR_STATE_CORRUPT: code('other', 'The state file is not a usernet state (not JSON, not an object, no valid version); the daemon does not start and leaves it untouched.'),
  ERR_STATE_NEWER: code('other', 'The state file was written by a newer usernet (a downgrade); the daemon does not start and leaves it untouched.'),
  ERR_STATE_UNREADABLE: code('other', 'The state file or the daemon\'s pid file cannot be read (permissions, a directory in its place).'),
  ERR_STATE_WRITE: code('other', 'The state directory or the state file cannot be written; the change was not made.'),
  ERR_STATE_DIR_BUSY: code('other', 'Another daemon (its pid in the pid file) is using the state directory.'),
  ERR_DAEMON_RUNNING: code('other', 'Another daemon is already listening on the control socket.'),
  ERR_NOT_A_SOCKET: code('other', 'The control socket path exists and is not a socket; the daemon will not replace it.'),
  ERR_NOT_A_DIRECTORY: code('other', 'A directory usernet needs (socket or state directory) exists as something else.'),
  ERR_DIR_OWNER: code('other', 'usernet\'s socket directory belongs to another user.'),
  ERR_SOCKET_UNSAFE: code('other', 'The CLI refuses to talk to a socket another user could have planted (owner or mode wrong).'),
  ERR_NATIVE_NOT_BUILT: code('other', 'The native TAP addon is not built (run npm ci or npm rebuild).'),
  ERR_NATIVE_NOT_FOUND: code('other', 'The usernet package root (binding.gyp) cannot be found, so neither can the addon.'),
  ERR_BAD_PCAP: code('other', 'A capture file is not a pcap file, or is cut short.'),

  // --- The CLI's side of the socket (client.ts, main.ts) ---
  ERR_NO_DAEMON: code('other', 'No daemon is listening on the socket.'),
  ERR_SOCKET_ACCESS: code('other', 'Permission denied on the socket: the daemon belongs to another user.'),
  ERR_CONNECT: code('other', 'The daemon cannot be reached for another reason (the message says which).'),
  ERR_BAD_RESPONSE: code('other', 'The daemon answered with a line that is not JSON.'),
  ERR_NO_RESPONSE: code('other', 'The daemon closed the connection without answering.'),
  ERR_RESOLV_CONF: code('other', 'attach --resolv-conf: attached, but the container\'s resolv.conf cannot be written.'),

  // --- The library's lab (src/lab/): tests that drive a network in-process ---
  ERR_LAB_TIMEOUT: code('other', 'Lab.run: what it waited for had not happened after its limit of virtual time, or nothing was left to happen.'),
  ERR_LAB_CLOSED: code('other', 'A call on a Lab after close().'),
  ERR_VIRTUAL_CLOCK_NEEDED: code('other', 'A lab or probe call that runs the clock itself (run, advance, expect, expectNothing) was made on the system clock.'),
  ERR_PROBE_NO_MATCH: code('other', 'FrameProbe: no frame matching the test\'s predicate crossed the port in time; the message lists what did.'),
  ERR_PROBE_UNEXPECTED: code('other', 'FrameProbe.expectNothing: frames crossed the port that the test did not expect; the message lists them.'),
  ERR_HOST_SOCKET_FORBIDDEN: code('other', 'A real host socket was used while a HostSocketGuard forbids it (a test that must stay in memory).'),
  ERR_SCRIPTED_NO_ANSWER: code('other', 'A scripted host got no answer in time (DHCP, ping, UDP request, TCP connect).'),
  ERR_SCRIPTED_REFUSED: code('other', 'A scripted host was refused (a DHCP NAK, a TCP reset in answer to its SYN).'),
  ERR_SCRIPTED_RESET: code('other', 'A scripted host\'s TCP connection was reset before what it waited for.'),
  ERR_SCRIPTED_STATE: code('other', 'A scripted host cannot do that now (no address yet, no route, a packet above the MTU, a write after end, DHCP already running).'),
  ERR_SCRIPTED_BAD_RESPONSE: code('other', 'A scripted host\'s HTTP GET got something that is not an HTTP response.'),

  // --- usernet demo ---
  ERR_NO_TUN: code('other', 'The demo cannot open /dev/net/tun as this user.'),
  ERR_NO_USERNS: code('other', 'The demo cannot create a user namespace as this user.'),
  ERR_MISSING_TOOL: code('other', 'The demo needs a program that is not on PATH.'),
  ERR_DEMO: code('other', 'A step of the demo failed (a process did not start, or a command failed).'),
} as const;

/** Every code usernet emits. */
export type ErrorCode = keyof typeof ERROR_CODES;
/** The codes carried by one kind of error. */
export type ErrorCodeOf<K extends ErrorKind> = { [C in ErrorCode]: (typeof ERROR_CODES)[C]['kind'] extends K ? C : never }[ErrorCode];

/** True when `code` is one of usernet's registered codes. */
export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_CODES, code);
}

export class UsernetError extends Error {
  /** A registered ErrorCode; an errno name for a SystemError; whatever the daemon sent for an ApiError. */
  readonly code: string;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UsernetError';
    this.code = code;
  }
}

/** A value given by a user (flag, API field, state file entry) is malformed or out of range. */
export class InvalidArgumentError extends UsernetError {
  constructor(message: string, code: ErrorCodeOf<'invalid-argument'> = 'ERR_INVALID_ARGUMENT') {
    super(code, message);
    this.name = 'InvalidArgumentError';
  }
}

/** The thing named does not exist (port, network, process, namespace, published port). */
export class NotFoundError extends UsernetError {
  constructor(message: string, code: ErrorCodeOf<'not-found'>) {
    super(code, message);
    this.name = 'NotFoundError';
  }
}

/** The request conflicts with current state (a name in use, a namespace already attached). */
export class ConflictError extends UsernetError {
  constructor(message: string, code: ErrorCodeOf<'conflict'>) {
    super(code, message);
    this.name = 'ConflictError';
  }
}

/**
 * A system call failed; carries the errno name as `code` (the kernel's registry, not ours: EACCES,
 * EADDRINUSE, …) and the failing step as `syscall`.
 */
export class SystemError extends UsernetError {
  readonly errno: number;
  readonly syscall: string;
  constructor(code: string, errno: number, syscall: string, message: string) {
    // The one place a code that is not in ERROR_CODES is carried: errno names are the system's.
    super(code as ErrorCode, message);
    this.name = 'SystemError';
    this.errno = errno;
    this.syscall = syscall;
  }
}

/** An errno name (EACCES, EADDRINUSE, …): E and capitals or digits, no underscore (usernet's codes have one). */
export function isErrnoName(code: string): boolean {
  return /^E[A-Z0-9]+$/.test(code);
}

/** A SystemError for an errno name, its number looked up (0 if this system has no such errno). */
export function errnoError(code: string, syscall: string, message: string): SystemError {
  const errno = (constants.errno as Record<string, number | undefined>)[code] ?? 0;
  return new SystemError(code, errno, syscall, message);
}

/**
 * Turns whatever was thrown into an Error with a code, for API responses and logs. An errno error
 * (code and errno) is a SystemError; anything else that is not ours is a bug: ERR_INTERNAL, with
 * the foreign code (a Node.js one, say) kept in the message.
 */
export function toUsernetError(err: unknown): UsernetError {
  if (err instanceof UsernetError) return err;
  if (err instanceof Error) {
    const e = err as NodeJS.ErrnoException;
    if (typeof e.code === 'string' && typeof e.errno === 'number') {
      return new SystemError(e.code, e.errno, e.syscall ?? '', e.message);
    }
    if (typeof e.code === 'string' && isErrnoName(e.code)) return errnoError(e.code, e.syscall ?? '', e.message);
    return new UsernetError('ERR_INTERNAL', typeof e.code === 'string' ? `${e.message} (${e.code})` : e.message, { cause: err });
  }
  return new UsernetError('ERR_INTERNAL', String(err));
}

/** What a file-system errno means, in the words `strerror` uses (lower case, for a message). */
const ERRNO_WORDS: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOENT: 'no such file or directory',
  ENOTDIR: 'not a directory',
  EISDIR: 'is a directory',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'read-only file system',
  EIO: 'input/output error',
  EEXIST: 'file exists',
  ELOOP: 'too many levels of symbolic links',
  ENAMETOOLONG: 'file name too long',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files in system',
};

/** A short reason for a failed system call: "permission denied", not "EACCES: permission denied, open '…'". */
export function describeErrno(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (typeof code === 'string' && ERRNO_WORDS[code]) return ERRNO_WORDS[code];
  return err instanceof Error ? err.message : String(err);
}
