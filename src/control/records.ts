/**
 * The daemon's record of itself: the state as it is (or as it would be after a change), built
 * from the networks and the attachments, and written through the StateStore.
 *
 * Record first, then apply: a state-changing request builds the state as it would be after the
 * change (`snapshot({drop, replace})`: records are never modified in place before they are
 * saved), commits it, and only then changes memory, TAPs and listeners. An ephemeral daemon (the
 * slirp4netns front end) records nothing.
 */
import type { NetworkSpec } from '../gateway/network.js';
import type { StateStore } from './persistence.js';
import { STATE_VERSION, type AttachmentRecord, type DaemonState, type LeaseRecord } from './state.js';

/** Where the recorded facts come from (read when a snapshot is taken, never cached). */
export interface RecordSources {
  /** The user networks' specs, valid or not (the default network is never recorded). */
  networks(): NetworkSpec[];
  /** Bound DHCP leases. */
  leases(): LeaseRecord[];
  /** Every attachment's record, up or down. */
  attachments(): AttachmentRecord[];
}

export interface StateChange {
  /** Without the attachment of this name. */
  drop?: string;
  /** With this record in place of the one of the same name. */
  replace?: AttachmentRecord;
}

export class StateRecorder {
  /** Set when the daemon stops: lease changes are no longer scheduled for a write. */
  private stopped = false;

  constructor(
    private readonly store: StateStore,
    private readonly ephemeral: boolean,
    private readonly sources: RecordSources,
  ) {}

  /**
   * The state as it is, or as it would be after a change: without the attachment `drop`, or with
   * `replace` in place of the record of the same name. Records are shared, not copied: a change
   * goes into a new record, which the caller puts in place only once it is saved.
   */
  snapshot(change: StateChange = {}): DaemonState {
    const attachments: AttachmentRecord[] = [];
    for (const record of this.sources.attachments()) {
      if (record.name === change.drop) continue;
      attachments.push(change.replace && record.name === change.replace.name ? change.replace : record);
    }
    return {
      version: STATE_VERSION,
      networks: this.sources.networks(),
      attachments,
      leases: this.sources.leases(),
    };
  }

  /** Writes a state the caller is about to apply; throws ERR_STATE_WRITE (one line) if it cannot. */
  commit(state: DaemonState): void {
    if (!this.ephemeral) this.store.save(state);
  }

  /** Records a fact that happened anyway (a container ended): a failed write is logged. */
  trySave(): void {
    if (!this.ephemeral) this.store.trySave(this.snapshot());
  }

  /** DHCP leases changed: written a little later, several changes in one write. */
  scheduleLeaseSave(): void {
    if (this.stopped || this.ephemeral) return;
    this.store.saveLater(() => this.snapshot());
  }

  /** The daemon is stopping: lease changes from now on are not scheduled (flush() writes a pending one). */
  stop(): void {
    this.stopped = true;
  }

  /** Writes a scheduled save now (on stop). */
  flush(): void {
    if (!this.ephemeral) this.store.flush();
  }
}
