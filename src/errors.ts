/**
 * Error classes with stable codes, in the style of undici and Node core: callers branch on
 * `err.code`, never on message text. The data path never throws (it counts drops); these are
 * for the control plane: bad flags, bad API requests, failed attachments.
 */
export class UsernetError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UsernetError';
    this.code = code;
  }
}

/** A value given by a user (flag, API field, state file entry) is malformed or out of range. */
export class InvalidArgumentError extends UsernetError {
  constructor(message: string, code = 'ERR_INVALID_ARGUMENT') {
    super(code, message);
    this.name = 'InvalidArgumentError';
  }
}

/** The thing named does not exist (port, attachment, process). */
export class NotFoundError extends UsernetError {
  constructor(message: string, code = 'ERR_NOT_FOUND') {
    super(code, message);
    this.name = 'NotFoundError';
  }
}

/** The request conflicts with current state (a name in use, a namespace already attached). */
export class ConflictError extends UsernetError {
  constructor(message: string, code = 'ERR_CONFLICT') {
    super(code, message);
    this.name = 'ConflictError';
  }
}

/** A system call failed; carries the errno name as `code` and the failing step as `syscall`. */
export class SystemError extends UsernetError {
  readonly errno: number;
  readonly syscall: string;
  constructor(code: string, errno: number, syscall: string, message: string) {
    super(code, message);
    this.name = 'SystemError';
    this.errno = errno;
    this.syscall = syscall;
  }
}

/** Turns whatever was thrown into an Error with a code, for API responses and logs. */
export function toUsernetError(err: unknown): UsernetError {
  if (err instanceof UsernetError) return err;
  if (err instanceof Error) {
    const e = err as NodeJS.ErrnoException;
    if (typeof e.code === 'string' && typeof e.errno === 'number') {
      return new SystemError(e.code, e.errno, e.syscall ?? '', e.message);
    }
    return new UsernetError(typeof e.code === 'string' ? e.code : 'ERR_INTERNAL', e.message);
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
