/**
 * Persistence: the daemon's state directory — the state file and the pid file that keeps a
 * second daemon off it.
 *
 * Writes are atomic (temp file, fsync, rename, fsync of the directory): a crash leaves the old
 * file or the new one, never half of one. A state-changing request writes the state it is about
 * to create *before* changing anything (the daemon builds the would-be state, saves it, then
 * applies it), so a write that fails leaves memory, the containers' TAPs and the file as they
 * were, and the caller gets one line: `cannot save state in DIR: permission denied`.
 *
 * Loading never discards what it cannot use (see `state.ts`): an unreadable file, one that is not
 * a usernet state, or one from a newer usernet stops the daemon with the reason and touches
 * nothing. Malformed entries are skipped with a warning; the original file is copied to
 * `state.json.bad-TIME` before the first rewrite, so what was skipped can still be read.
 */
import { closeSync, constants, copyFileSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { describeErrno, UsernetError } from '../errors.js';
import { emptyState, parseState, StateFileError, type DaemonState } from './state.js';

/** Debounced saves (DHCP lease changes) are written at most this often. */
const SAVE_LATER_DELAY_MS = 200;

export class StateStore {
  readonly path: string;
  readonly pidFile: string;
  /** Set after a load that skipped entries: the original is copied here before the first rewrite. */
  private backupBeforeWrite: string | null = null;
  private laterTimer: NodeJS.Timeout | null = null;
  private laterSnapshot: (() => DaemonState) | null = null;
  /** The last debounced save failed: retried on the next change, logged once until it works. */
  private laterFailing = false;

  constructor(
    readonly dir: string,
    private readonly log: Logger,
  ) {
    this.path = join(dir, 'state.json');
    this.pidFile = join(dir, 'daemon.pid');
  }

  /**
   * Reads the state file: empty if there is none. Throws a one-line `StateFileError` when the
   * file cannot be used as a whole; logs each skipped entry.
   */
  load(): DaemonState {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyState();
      throw new StateFileError('ERR_STATE_UNREADABLE', `cannot read the state file ${this.path}: ${describeErrno(err)} (nothing was changed; fix its permissions, or give another --state-dir)`);
    }
    let parsed;
    try {
      parsed = parseState(text);
    } catch (err) {
      if (!(err instanceof StateFileError)) throw err;
      const fix =
        err.code === 'ERR_STATE_NEWER'
          ? 'run that usernet, or move the file aside to start with no state'
          : 'repair it, or move it aside to start with no state';
      throw new StateFileError(err.code as 'ERR_STATE_CORRUPT', `the state file ${this.path} cannot be used: ${err.message} (nothing was changed; ${fix} — the containers' TAPs it records stay as they are)`);
    }
    if (parsed.skipped.length) {
      this.backupBeforeWrite = `${this.path}.bad-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      for (const why of parsed.skipped) this.log.warn({ file: this.path, skipped: why }, `state file entry skipped: ${why}`);
      this.log.warn({ file: this.path, skipped: parsed.skipped.length, copy: this.backupBeforeWrite }, 'state file had malformed entries: the rest is used; the original is kept as the copy before the first rewrite');
    }
    return parsed.state;
  }

  /** Writes the state atomically; throws `ERR_STATE_WRITE` with one line if it cannot. */
  save(state: DaemonState): void {
    try {
      this.write(state);
    } catch (err) {
      throw new UsernetError('ERR_STATE_WRITE', `cannot save state in ${this.dir}: ${describeErrno(err)}`, { cause: err });
    }
    // A successful write supersedes whatever a debounced save was retrying.
    this.laterFailing = false;
  }

  private write(state: DaemonState): void {
    if (this.backupBeforeWrite !== null) {
      // COPYFILE_EXCL: never overwrite an earlier copy.
      if (existsSync(this.path)) copyFileSync(this.path, this.backupBeforeWrite, constants.COPYFILE_EXCL);
      this.log.info({ copy: this.backupBeforeWrite }, 'original state file kept before rewriting it');
      this.backupBeforeWrite = null;
    }
    const tmp = `${this.path}.tmp-${process.pid}`;
    const data = `${JSON.stringify(state, null, 2)}\n`;
    try {
      const fd = openSync(tmp, 'w', 0o600);
      try {
        writeSync(fd, data);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, this.path);
    } catch (err) {
      // The original error is what the user needs; a failed cleanup must not replace it.
      try {
        unlinkSync(tmp);
      } catch {
        // never created, or not ours to remove
      }
      throw err;
    }
    const dfd = openSync(this.dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  }

  /**
   * Saves soon (debounced): for changes that are facts rather than requests (DHCP leases). A
   * failure is logged once and retried with the next change or on `flush()`.
   */
  saveLater(snapshot: () => DaemonState): void {
    this.laterSnapshot = snapshot;
    if (this.laterTimer) return;
    this.laterTimer = setTimeout(() => {
      this.laterTimer = null;
      this.flush();
    }, SAVE_LATER_DELAY_MS);
    this.laterTimer.unref();
  }

  /** Writes a pending debounced save now (on stop). */
  flush(): void {
    if (this.laterTimer) clearTimeout(this.laterTimer);
    this.laterTimer = null;
    const snapshot = this.laterSnapshot;
    if (!snapshot) return;
    this.laterSnapshot = null;
    if (this.trySave(snapshot())) this.log.info('leases saved');
  }

  /** Saves, logging a failure instead of throwing: for facts that must be applied anyway. */
  trySave(state: DaemonState): boolean {
    try {
      this.save(state);
      return true;
    } catch (err) {
      if (!this.laterFailing) this.log.error({ err: (err as Error).message }, 'cannot write the state file (retried with the next change)');
      this.laterFailing = true;
      return false;
    }
  }

  /** Takes the state directory: a pid file keeps a second daemon off it. */
  lock(): void {
    if (existsSync(this.pidFile)) {
      let other = NaN;
      try {
        other = Number(readFileSync(this.pidFile, 'utf8').trim());
      } catch (err) {
        throw new UsernetError('ERR_STATE_UNREADABLE', `cannot read ${this.pidFile}: ${describeErrno(err)}`);
      }
      if (Number.isInteger(other) && other > 0 && other !== process.pid && isUsernetProcess(other)) {
        throw new UsernetError('ERR_STATE_DIR_BUSY', `another usernet daemon (pid ${other}) is using the state directory ${this.dir}`);
      }
    }
    try {
      writeFileSync(this.pidFile, `${process.pid}\n`, { mode: 0o600 });
    } catch (err) {
      throw new UsernetError('ERR_STATE_WRITE', `cannot use the state directory ${this.dir}: ${describeErrno(err)}`);
    }
  }

  unlock(): void {
    try {
      if (readFileSync(this.pidFile, 'utf8').trim() === String(process.pid)) unlinkSync(this.pidFile);
    } catch {
      // gone already
    }
  }
}

function isUsernetProcess(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('usernet');
  } catch {
    return false;
  }
}
