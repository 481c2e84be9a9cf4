/**
 * One VF's VFIO v2 state machine: routes a requested state through the
 * kernel's next-step table, carries out each arc with the VF's driver, and
 * owns the VF's save and resume streams. Every mutating call runs through
 * the VF's serial queue.
 *
 * A refused call changes nothing. Each call runs from an undo point (state,
 * save stream and its cursor, load buffer); when it is refused, whatever it
 * had done is put back, whichever step refused it, and the refusal says the
 * VF's state in `details.state`. Two outcomes are not undone: a driver
 * failure (the device may be anywhere, so the VF is in ERROR) and leaving
 * RESUMING, which ends the resume session whether the state was applied or
 * refused (see commitResume).
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { DeviceLoadStream, HostPort, RunLevel, StateFormat, VendorDriver, VfDescriptor } from '../../vendor-drivers/driver.ts';
import { DriverError } from '../../vendor-drivers/driver.ts';
import type { LeaseExpiredEvent, SessionEndedEvent } from '../../schemas/types.ts';
import { CoreEvents } from './core-events.ts';
import { Fault } from './faults.ts';
import { Lease, SYSTEM_CLOCK, type LeaseClock, type LeaseLimits } from './migration-lease.ts';
import type { JournalEntry, SessionJournal } from './session-journal.ts';
import { ResumeSession, SaveSession, streamBytes, type SaveSlice, type SessionInfo, type SliceSource } from './migration-session.ts';
import { SerialQueue } from './serial-queue.ts';
import type { StreamDescriptor, StreamFormat } from './state-records.ts';
import { RUNNING_STATES, SAVING_STATES, routeTo, type MigrationFeatures, type VfioStateName } from './vfio-states.ts';

type SessionOutcome = SessionEndedEvent['outcome'];

export interface VfMachineLimits extends LeaseLimits {
  /** Largest v1 state accepted by `load` (a v1 state is one envelope, read whole). */
  readonly maxStateBytes: number;
  /** Calls that may wait for a VF before further ones are refused as busy. */
  readonly maxQueuedCalls: number;
}

export interface TransitionResult {
  readonly from: VfioStateName;
  readonly state: VfioStateName;
  /** States entered, in order, ending with `state`. */
  readonly path: VfioStateName[];
  readonly drainedCommands: number;
  readonly elapsedMs: number;
}

export interface SessionSlice extends SaveSlice {
  readonly session: string;
}

export interface LoadProgress {
  readonly state: VfioStateName;
  readonly session: string;
  readonly received: number;
  readonly totalBytes: number | null;
  readonly complete: boolean;
}

export interface PendingReport {
  readonly state: VfioStateName;
  readonly streamOpen: boolean;
  readonly pendingBytes: number;
  readonly stopCopyBytes: number;
}

/** The driver run level each VFIO state needs. */
function runLevelOf(state: VfioStateName): RunLevel {
  switch (state) {
    case 'RUNNING':
    case 'PRE_COPY':
      return 'running';
    case 'RUNNING_P2P':
    case 'PRE_COPY_P2P':
      return 'p2p-quiesced';
    default:
      return 'stopped';
  }
}

/** The state a VF is in when the device, asked, says it is at `level` (at start, and after it did not answer). */
function stateAtRunLevel(level: RunLevel): VfioStateName {
  switch (level) {
    case 'running': return 'RUNNING';
    case 'p2p-quiesced': return 'RUNNING_P2P';
    case 'stopped': return 'STOP';
  }
}

const STOPPED_STATES: ReadonlySet<VfioStateName> = new Set(['STOP', 'STOP_COPY', 'RESUMING']);

/** Putting a refused call back only ever raises the run level, which does not wait; this bounds it all the same. */
const UNDO_TIMEOUT_MS = 5000;

/**
 * Who makes a call: the principal that a migration of this VF belongs to
 * once it starts, and whether it may act on another principal's migration.
 */
export interface Caller {
  readonly principal: string;
  readonly admin: boolean;
  /** Bound to the call (connection, principal, method); the VF's own logger otherwise. */
  readonly log?: Logger;
  /** The lease the call asks for on the VF's migration, from now on (checked against the maximum by the caller's layer). */
  readonly leaseMs?: number;
}

/**
 * A VF's migration, from the call that took it out of RUNNING until it
 * runs again: whose it is, what has happened to it so far (what a lease's
 * expiry must not undo), and its lease.
 */
interface Migration {
  readonly owner: string;
  /** Becomes `destination` when a resume session opens. */
  role: 'source' | 'destination';
  /** A save session handed out the stream's last byte: the VF may run on a destination. */
  readToEnd: boolean;
  /** A loaded state was applied: this may be the only running copy of the device. */
  applied: boolean;
  /** Undefined once the lease has ended (stranded, a dropped resume) or in ERROR. */
  lease: Lease | undefined;
  stranded: { readonly since: number; readonly reason: string } | undefined;
  /** Found out of RUNNING when the agent started: nobody's, so any caller allowed to migrate it may say what happens next. */
  readonly adopted?: boolean;
}

/** The migration a VF is in, as plain data (vf.get). */
export interface MigrationInfo {
  readonly owner: string;
  readonly role: 'source' | 'destination';
  readonly readToEnd: boolean;
  readonly applied: boolean;
  readonly lease: { readonly leaseMs: number; readonly expiresAt: string } | null;
  readonly stranded: { readonly since: string; readonly reason: string } | null;
}

export interface LeaseReport {
  readonly state: VfioStateName;
  readonly leaseMs: number;
  readonly expiresAt: string;
}

/** The agent acting on its own (and unit tests): holds every right. */
export const AGENT_CALLER: Caller = { principal: 'agent', admin: true };

type Session = SaveSession | ResumeSession;

/**
 * What a refused call puts back. Sessions need no copy: a refused slice
 * moves neither stream; a session the refused call opened is abandoned.
 */
interface UndoPoint {
  readonly state: VfioStateName;
  readonly session: Session | undefined;
  /** What the migration had come to (a refused resume does not make a destination). */
  readonly progress: Pick<Migration, 'role' | 'readToEnd' | 'applied'> | undefined;
}

/** The largest record a resume holds at once; writers use 1 MiB. */
const MAX_RECORD_BYTES = 16 * 1024 * 1024;

export class VfMachine {
  readonly vf: VfDescriptor;
  readonly driver: VendorDriver;
  readonly features: MigrationFeatures;
  private currentState: VfioStateName = 'RUNNING';
  /** The save or resume session open on the VF. */
  private session: Session | undefined;
  /** Where the running call goes back to if it is refused. */
  private undoPoint: UndoPoint | undefined;
  /** The format a save being opened by the running call was asked to be in. */
  private saveFormatWanted: StateFormat | undefined;
  /** The migration this VF is in, from its first step away from RUNNING until it runs again. */
  private migration: Migration | undefined;
  private readonly queue: SerialQueue;
  private readonly limits: VfMachineLimits;
  private readonly log: Logger;
  private readonly clock: LeaseClock;
  /** The device did not answer a call: what it did is not known until it is asked. */
  private resyncNeeded = false;
  private readonly journal: SessionJournal | undefined;
  private readonly events: CoreEvents;
  /** When the VF last stopped running (monotonic ms); undefined while it runs. A save's share of the downtime starts here. */
  private stoppedAt: number | undefined;
  /** When the open save handed out its last byte (monotonic ms). */
  private readToEndAt: number | undefined;
  /**
   * When the open resume took its last bytes (monotonic ms): its share of
   * the downtime starts here. Not at its first byte: with a pre-copy those
   * came while the source ran, and the guest was not down.
   */
  private lastLoadAt: number | undefined;
  /** What the journal last says of this VF, so that a call that changed nothing writes nothing. */
  private journaled = '';

  constructor(vf: VfDescriptor, driver: VendorDriver, limits: VfMachineLimits, log: Logger, clock: LeaseClock = SYSTEM_CLOCK, journal?: SessionJournal, events: CoreEvents = new CoreEvents()) {
    this.journal = journal;
    this.events = events;
    this.vf = vf;
    this.driver = driver;
    this.features = { p2p: driver.capabilities.p2p, preCopy: driver.capabilities.preCopy };
    this.limits = limits;
    this.log = log;
    this.clock = clock;
    this.queue = new SerialQueue(`VF ${vf.id}`, limits.maxQueuedCalls, () => ({ state: this.currentState }));
  }

  /** Reads need no queue: a state is one field, read atomically. */
  get state(): VfioStateName {
    return this.currentState;
  }

  /** The principal whose migration the VF is in, if any. */
  get owner(): string | undefined {
    return this.migration?.owner;
  }

  /** The longest lease a call may ask for. */
  get maxLeaseMs(): number {
    return this.limits.maxLeaseMs;
  }

  /** Its lease expired and it stays stopped until a call says which side runs. */
  get stranded(): boolean {
    return this.migration?.stranded !== undefined;
  }

  /** The migration the VF is in, as plain data. */
  get migrationInfo(): MigrationInfo | undefined {
    const m = this.migration;
    if (m === undefined) return undefined;
    const iso = (ms: number): string => new Date(ms).toISOString();
    return {
      owner: m.owner,
      role: m.role,
      readToEnd: m.readToEnd,
      applied: m.applied,
      lease: m.lease === undefined ? null : { leaseMs: m.lease.durationMs, expiresAt: iso(m.lease.expiresAt) },
      stranded: m.stranded === undefined ? null : { since: iso(m.stranded.since), reason: m.stranded.reason },
    };
  }

  /**
   * A call of the owner that changes nothing (vf.pending, a poll): it is
   * alive, so its lease goes on. Not queued: it only moves a deadline.
   */
  touch(principal: string): void {
    if (this.migration?.owner === principal) this.migration.lease?.extend();
  }

  /** vf.renewLease: the lease from now on, changing nothing else. */
  renewLease(caller: Caller, session?: string): Promise<LeaseReport> {
    return this.call(caller, async () => {
      this.requireSession(session);
      const lease = this.migration?.lease;
      if (lease === undefined) {
        const why = this.migration?.stranded !== undefined ? 'it is stranded: its lease expired; vf.resume or vf.reset says which side runs'
          : this.migration !== undefined ? 'its lease has ended' : this.currentState === 'ERROR' ? 'it is in ERROR' : 'it is in no migration';
        throw new Fault('NO_MIGRATION', `VF ${this.vf.id} has no lease to renew: ${why}`, { stranded: this.stranded });
      }
      lease.extend(caller.leaseMs);
      return { state: this.currentState, leaseMs: lease.durationMs, expiresAt: new Date(lease.expiresAt).toISOString() };
    });
  }

  /** The session open on the VF, as plain data. */
  get sessionInfo(): SessionInfo | undefined {
    return this.session?.info();
  }

  /** `session`, when given, must be the one open: refused with SESSION_UNKNOWN otherwise, before anything changes. */
  setState(target: VfioStateName, timeoutMs: number, caller: Caller = AGENT_CALLER, session?: string): Promise<TransitionResult> {
    return this.call(caller, (log) => {
      this.requireSession(session);
      return this.transition(target, timeoutMs, caller, log);
    });
  }

  /** → STOP (through RUNNING_P2P where supported); a no-op on a VF that is already stopped. */
  quiesce(timeoutMs: number, caller: Caller = AGENT_CALLER): Promise<TransitionResult> {
    return this.call(caller, async (log) => {
      if (STOPPED_STATES.has(this.currentState)) return this.unchanged();
      return this.transition('STOP', timeoutMs, caller, log);
    });
  }

  /** → RUNNING; leaving RESUMING commits the loaded state first. A no-op on a running VF. */
  resume(timeoutMs: number, caller: Caller = AGENT_CALLER, session?: string): Promise<TransitionResult> {
    return this.call(caller, (log) => {
      this.requireSession(session);
      return this.transition('RUNNING', timeoutMs, caller, log);
    });
  }

  /**
   * The next slice of the save stream; from STOP, opens a save session
   * (STOP → STOP_COPY) first. `session`, when given, must be the open one.
   */
  save(maxBytes: number, offset: number | undefined, timeoutMs: number, caller: Caller = AGENT_CALLER, session?: string, format?: StreamFormat): Promise<SessionSlice> {
    return this.call(caller, async (log) => {
      this.requireSession(session);
      if (this.currentState === 'STOP') {
        this.saveFormatWanted = format === undefined ? undefined : this.saveableFormat(format);
        try {
          await this.transition('STOP_COPY', timeoutMs, caller, log);
        } finally {
          this.saveFormatWanted = undefined;
        }
      }
      const open = this.session;
      if (!SAVING_STATES.has(this.currentState) || !(open instanceof SaveSession)) {
        throw new Fault('NO_SAVE_STREAM', `VF ${this.vf.id} is ${this.currentState}: quiesce it (STOP) before saving${this.features.preCopy ? ', or save while it runs in PRE_COPY' : ''}`);
      }
      if (format !== undefined && !sameFormat(format, open.descriptor.format)) {
        throw new Fault('STATE_INCOMPATIBLE', `VF ${this.vf.id} is saving in ${formatName(open.descriptor.format)}, not ${formatName(format)}`);
      }
      open.continueAs(session);
      try {
        const slice = await open.slice(maxBytes, offset);
        if (slice.eof) {
          if (this.migration !== undefined) this.migration.readToEnd = true;
          this.readToEndAt ??= this.clock.monotonic();
        }
        this.progress(open);
        return { ...slice, session: open.id };
      } catch (error) {
        throw this.asFault(error, 'save');
      }
    });
  }

  /**
   * Writes the next slice of a state; from STOP, opens a resume session
   * (STOP → RESUMING) first. `session`, when given, must be the open one.
   */
  load(offset: number, data: SliceSource, timeoutMs: number, caller: Caller = AGENT_CALLER, session?: string): Promise<LoadProgress> {
    return this.call(caller, async (log) => {
      this.requireSession(session);
      if (this.currentState === 'STOP') await this.transition('RESUMING', timeoutMs, caller, log);
      const open = this.session;
      if (this.currentState !== 'RESUMING' || !(open instanceof ResumeSession)) {
        throw new Fault('ILLEGAL_TRANSITION', `VF ${this.vf.id} is ${this.currentState}: a state can only be loaded into a stopped VF (STOP or RESUMING)`);
      }
      open.continueAs(session);
      // Bytes that do not decode are the caller's fault (invalid params), not the driver's.
      const pieces = data.pieces();
      try {
        const written = await open.write(offset, pieces);
        this.lastLoadAt = this.clock.monotonic();
        this.progress(open);
        return { state: this.currentState, session: open.id, ...written };
      } catch (error) {
        throw this.asFault(error, 'load');
      }
    });
  }

  /** Every format the VF saves or loads, the default save format first among those it saves. */
  formats(): { name: string; version: number; vendor?: string; save: boolean; load: boolean }[] {
    const saves = this.saveFormats();
    const all = [...saves, ...this.driver.stateFormats.filter((f) => !saves.some((s) => sameFormat(s, f)))];
    return all.map((f) => ({ ...f, save: saves.some((s) => sameFormat(s, f)), load: this.driver.stateFormats.some((l) => sameFormat(l, f)) }));
  }

  /** What a save in `format` (default: the default) would say it is, without stopping or opening anything. */
  async stateDescriptor(format?: StreamFormat): Promise<StreamDescriptor> {
    const chosen = format === undefined ? undefined : this.saveableFormat(format);
    try {
      return await this.saveDescriptor(chosen);
    } catch (error) {
      throw readFault(error, 'vf.stateDescriptor');
    }
  }

  /**
   * Whether a state that says this could be loaded here, and why not, as a
   * load would decide it (the same checks), touching nothing.
   */
  async checkCompatibility(descriptor: StreamDescriptor): Promise<{ compatible: boolean; reason: string | null; format: StateFormat | null }> {
    try {
      const format = this.loadableFormat(descriptor.format);
      await this.driver.checkIdentity(this.vf.id, descriptor.identity);
      return { compatible: true, reason: null, format: { ...format } };
    } catch (error) {
      if ((error instanceof Fault && error.fault === 'STATE_INCOMPATIBLE') || (error instanceof DriverError && error.kind === 'incompatible-state')) {
        return { compatible: false, reason: error.message, format: null };
      }
      throw readFault(error, 'vf.checkCompatibility');
    }
  }

  /** PRE_COPY's information (VFIO_MIG_GET_PRECOPY_INFO); refused in any other state. */
  async precopyInfo(): Promise<{ state: VfioStateName; initialBytes: number; dirtyBytes: number; reinit: boolean }> {
    const open = this.session;
    const state = this.currentState;
    if ((state !== 'PRE_COPY' && state !== 'PRE_COPY_P2P') || !(open instanceof SaveSession)) {
      throw new Fault('NO_SAVE_STREAM', `VF ${this.vf.id} is ${state}: pre-copy information is for PRE_COPY and PRE_COPY_P2P`, { state });
    }
    try {
      return { state, ...(await open.precopyInfo()) };
    } catch (error) {
      throw this.asFault(error, 'precopyInfo');
    }
  }

  /** Not queued (a poll): the state is the one it had when asked, the counts are the device's answer. */
  async pending(): Promise<PendingReport> {
    try {
      return await this.pendingNow();
    } catch (error) {
      throw readFault(error, 'vf.pending');
    }
  }

  private async pendingNow(): Promise<PendingReport> {
    const open = this.session;
    const state = this.currentState;
    if (open instanceof SaveSession && open.phase === 'pre-copy') {
      // While the VF runs: what the device has to hand out now, and what STOP_COPY would still have.
      const info = await open.precopyInfo();
      return { state, streamOpen: true, pendingBytes: info.initialBytes + info.dirtyBytes, stopCopyBytes: await open.pendingBytes() };
    }
    if (open instanceof SaveSession) {
      return { state, streamOpen: true, pendingBytes: await open.pendingBytes(), stopCopyBytes: await open.totalBytes() };
    }
    return { state, streamOpen: false, pendingBytes: 0, stopCopyBytes: streamBytes(await this.saveDescriptor(), await this.driver.stopCopyBytes(this.vf.id)) };
  }

  /** Function-level reset: the only way out of ERROR; drops any stream. */
  reset(caller: Caller = AGENT_CALLER): Promise<TransitionResult> {
    return this.call(caller, async (log) => {
      const from = this.currentState;
      const started = performance.now();
      this.dropSession('cancelled');
      try {
        await this.driver.reset(this.vf.id);
      } catch (error) {
        this.enter('ERROR');
        throw this.asFault(error, 'reset');
      }
      this.enter('RUNNING');
      log.info({ phase: 'reset', from }, 'VF reset');
      return { from, state: 'RUNNING', path: ['RUNNING'], drainedCommands: 0, elapsedMs: performance.now() - started };
    });
  }

  /**
   * At start: where the device is, for a driver whose devices outlive the
   * agent, checked against the journal's entry for the VF (`recover`). A VF
   * found out of RUNNING that the journal knows nothing of was in a
   * migration nobody can tell about: whether its state left is unknown, so
   * it is stranded, as a source read to the end is, until a call says which
   * side runs.
   */
  async adoptDeviceState(journaled?: JournalEntry): Promise<void> {
    const log = this.log.child({ phase: 'start' });
    // Only a device that outlives the agent can be in a migration when it starts.
    const level = this.driver.runLevel === undefined ? 'running' : await this.driver.runLevel(this.vf.id);
    const was = journaled?.migration ?? null;
    if (level === 'running') {
      if (was !== null) log.warn({ journaled: was.state }, 'the journal has the VF in a migration, but the device runs: the device wins, the migration is over');
    } else if (was === null) {
      this.enter(stateAtRunLevel(level));
      this.migration = {
        owner: 'agent', role: 'source', readToEnd: false, applied: false, lease: undefined, adopted: true,
        stranded: { since: this.clock.wall(), reason: 'found stopped when the agent started: the migration it was in, and whether its state left, are not known' },
      };
      log.warn({ state: this.currentState, level }, 'VF found out of RUNNING at start: stranded until a call says which side runs');
    } else {
      await this.recover(was, level, log);
    }
    this.journalNow(log);
  }

  /**
   * The journal's migration, on a device that is out of RUNNING: its owner,
   * what it had come to, and its lease (a whole one, from the restart), come back. A
   * stopped source that was saving opens its save again under the same
   * session id: the VF has not changed, so the stream is byte for byte the
   * one the VMM was reading, and the VMM goes on from its offset. A resume
   * in progress is lost (its bytes were in this process): the VF is in STOP
   * and the VMM's next call naming that session gets SESSION_UNKNOWN.
   */
  private async recover(was: JournalEntry['migration'] & object, level: RunLevel, log: Logger): Promise<void> {
    const stopped = level === 'stopped';
    this.enter(stateAtRunLevel(level));
    // A whole lease from the restart: the journal is not written for every extension, and the owner needs time to reconnect.
    this.migration = {
      owner: was.owner, role: was.role, readToEnd: was.readToEnd, applied: was.applied, stranded: was.stranded ?? undefined,
      lease: was.leaseMs === null ? undefined : this.newLease({ principal: was.owner, admin: false, leaseMs: was.leaseMs }),
    };
    const saving = was.session?.kind === 'save' && was.state === 'STOP_COPY' && stopped ? was.session : undefined;
    if (saving !== undefined && saving.format !== null) {
      try {
        const descriptor = await this.saveDescriptor(saving.format);
        this.session = new SaveSession(this.vf.id, was.owner, descriptor, await this.driver.openSave(this.vf.id, descriptor.format), 'stop-copy', Date.now, saving.id);
        this.enter('STOP_COPY');
      } catch (error) {
        log.error({ session: saving.id, err: error instanceof Error ? error.message : String(error) }, 'the save could not be opened again: the VF stays in STOP');
      }
    }
    log.warn({
      state: this.currentState, journaled: was.state, owner: was.owner, session: this.session?.id ?? null, lostSession: this.session === undefined ? (was.session?.id ?? null) : null,
      leaseMs: was.leaseMs, stranded: was.stranded !== null,
    }, 'migration recovered from the journal');
  }

  /** After the device did not answer: its run level decides the state (a session it had is gone with the link). */
  private async resync(log: Logger): Promise<void> {
    if (this.driver.runLevel === undefined) {
      this.resyncNeeded = false;
      return;
    }
    let level: RunLevel;
    try {
      level = await this.driver.runLevel(this.vf.id);
    } catch (error) {
      const fault = this.asFault(error, 'reading the state of the device');
      fault.details.state = this.currentState;
      throw fault;
    }
    this.resyncNeeded = false;
    if (runLevelOf(this.currentState) === level && this.currentState !== 'ERROR') return;
    const from = this.currentState;
    this.dropSession('failed');
    this.enter(stateAtRunLevel(level));
    log.warn({ phase: 'resync', from, state: this.currentState, level }, 'state read again from the device after it did not answer');
  }

  /**
   * A host-port access (emu.*). Not queued: a guest keeps posting work (ringing doorbells)
   * while a quiesce is in progress, as it would on real hardware. A refused
   * access carries the VF's state like every other refusal.
   */
  hostAccess<T>(access: (port: HostPort) => T): T {
    if (!this.driver.capabilities.hostPort || this.driver.hostPort === undefined) {
      throw new Fault('FEATURE_DISABLED', `VF ${this.vf.id} has no host port (driver ${this.driver.name}; set hostPort in its options)`, { state: this.currentState });
    }
    try {
      return access(this.driver.hostPort(this.vf.id));
    } catch (error) {
      // A refused access is the caller's fault, not a driver failure.
      if (error instanceof DriverError && error.kind === 'invalid-access') {
        throw new Fault('DEVICE_ACCESS', error.message, { state: this.currentState }, { cause: error });
      }
      throw error;
    }
  }

  /**
   * Runs one call of this VF through its queue, from an undo point: if the
   * call is refused, everything it changed is put back, and a refusal
   * (a Fault) says the state the VF is in after it.
   */
  private call<T>(caller: Caller, body: (log: Logger) => Promise<T>): Promise<T> {
    const log = caller.log ?? this.log;
    return this.queue.run(async () => {
      this.checkOwner(caller);
      if (this.resyncNeeded) await this.resync(log);
      const before = this.currentState;
      this.undoPoint = this.here();
      try {
        return await body(log);
      } catch (error) {
        await this.undo(log);
        if (error instanceof Fault) error.details.state = this.currentState;
        throw error;
      } finally {
        this.undoPoint = undefined;
        this.settleMigration(caller, log, before);
        this.journalNow(log);
      }
    });
  }

  /** The migration as the journal keeps it. */
  private journalEntry(): JournalEntry {
    const m = this.migration;
    if (m === undefined) return { vf: this.vf.id, migration: null };
    const session = this.session;
    return {
      vf: this.vf.id,
      migration: {
        owner: m.owner, role: m.role, readToEnd: m.readToEnd, applied: m.applied, state: this.currentState,
        leaseMs: m.lease?.durationMs ?? null, leaseExpiresAt: m.lease?.expiresAt ?? null,
        stranded: m.stranded ?? null,
        session: session === undefined ? null : { id: session.id, kind: session.kind, format: session instanceof SaveSession ? session.descriptor.format : null },
      },
    };
  }

  /**
   * Writes the VF's migration to the journal if it changed (not for a lease
   * extension alone: a restart gives a journaled lease its whole length
   * again, from when it was last written). A journal that cannot be written
   * is logged: the migration goes on, and a restart then knows less.
   */
  private journalNow(log: Logger): void {
    if (this.journal === undefined) return;
    const entry = this.journalEntry();
    const key = JSON.stringify({ ...entry, migration: entry.migration === null ? null : { ...entry.migration, leaseExpiresAt: null } });
    if (key === this.journaled) return;
    try {
      this.journal.write(entry);
      this.journaled = key;
    } catch (error) {
      log.error({ phase: 'journal', err: error instanceof Error ? error.message : String(error) }, 'could not write the journal');
    }
  }

  /**
   * Session ownership: once a principal has taken the VF away from RUNNING
   * (a migration has begun, on either side), only it, or a principal with
   * admin, may change the VF until it runs again. The owner may reconnect
   * and go on: ownership is the principal's, not the connection's.
   */
  private checkOwner(caller: Caller): void {
    const owner = this.migration?.owner;
    if (owner === undefined || owner === caller.principal || caller.admin || this.migration?.adopted === true) return;
    throw new Fault('NOT_SESSION_OWNER', `VF ${this.vf.id} is in a migration (${this.currentState}) begun by principal "${owner}"; only it, or a principal granted admin, may change the VF until it runs again`, { state: this.currentState });
  }

  /**
   * After a call: a VF that runs belongs to no migration; one that left
   * RUNNING belongs to whoever took it away, under a lease that this call
   * (any call of the migration) extends. A VF in ERROR keeps its owner but
   * no lease: only a reset leaves ERROR. A VF whose lease has ended
   * (stranded, or a dropped resume) gets a new one only from a call that
   * moves it: looking at it keeps nothing going.
   */
  private settleMigration(caller: Caller, log: Logger, before: VfioStateName): void {
    const m = this.migration;
    if (this.currentState === 'RUNNING') {
      if (m !== undefined) log.debug({ phase: 'ownership', owner: m.owner }, 'migration ended; VF owned by nobody');
      m?.lease?.end();
      this.migration = undefined;
      return;
    }
    if (m === undefined) {
      const role = this.session instanceof ResumeSession ? 'destination' : 'source';
      this.migration = { owner: caller.principal, role, readToEnd: false, applied: false, lease: this.newLease(caller), stranded: undefined };
      log.debug({ phase: 'ownership', owner: caller.principal, leaseMs: this.migration.lease?.durationMs }, 'migration begun; VF owned by its principal, under a lease');
      return;
    }
    if (this.currentState === 'ERROR') {
      m.lease?.end();
      m.lease = undefined;
      return;
    }
    if (m.lease !== undefined) {
      m.lease.extend(caller.leaseMs);
    } else if (this.currentState !== before) {
      if (m.stranded !== undefined) log.info({ phase: 'lease', from: before, state: this.currentState }, 'stranded VF moved by a call; under a lease again');
      m.stranded = undefined;
      m.lease = this.newLease(caller);
    }
  }

  /** A lease of the caller's length, or the default; its expiry runs through the VF's queue. */
  private newLease(caller: Caller): Lease {
    return new Lease(caller.leaseMs ?? this.limits.defaultLeaseMs, this.clock, (lease) => {
      this.queue.runAlways(() => this.expire(lease)).catch((error: unknown) => {
        this.log.error({ phase: 'lease', err: error instanceof Error ? error.message : String(error) }, 'lease expiry failed');
      });
    });
  }

  /**
   * The owner has made no call for the lease's length: end the migration
   * without making anything worse (issue: a VMM gone after a quiesce must
   * not leave the guest's I/O hung, and a resume must never run a device
   * on both sides):
   *  - a resume in progress drops what it received: the VF is back in STOP;
   *  - a VF whose state was read to the end, or that applied a migrated
   *    state, may be (or have been made) the running copy elsewhere: it
   *    stays stopped and is reported stranded;
   *  - a destination whose resume was dropped stays in STOP;
   *  - any other source runs again, as VFIO's cancel: every fetched command
   *    completes once, unfetched ones are fetched then.
   */
  private async expire(lease: Lease): Promise<void> {
    const m = this.migration;
    if (m === undefined || m.lease !== lease) return;
    if (!lease.expired()) {
      // A call queued before this expiry extended the lease.
      lease.rearm();
      return;
    }
    lease.end();
    m.lease = undefined;
    const from = this.currentState;
    const log = this.log.child({ phase: 'lease' });
    try {
      await this.endExpired(m, lease, from, log);
    } finally {
      this.journalNow(log);
    }
  }

  private async endExpired(m: Migration, lease: Lease, from: VfioStateName, log: Logger): Promise<void> {
    log.warn({ owner: m.owner, state: from, leaseMs: lease.durationMs, role: m.role, readToEnd: m.readToEnd, applied: m.applied }, 'migration lease expired');
    const expired = (action: LeaseExpiredEvent['action']): void => {
      this.events.emit('lease.expired', { vf: this.vf.id, owner: m.owner, state: from, action, at: this.now() });
    };
    const dropped = this.session instanceof ResumeSession;
    if (this.session instanceof ResumeSession) {
      log.warn({ session: this.session.id, bytes: this.session.bytes }, 'resume dropped: the state received so far is discarded');
      this.dropSession('expired');
      this.enter('STOP');
    }
    if (m.readToEnd || m.applied) {
      if (this.session !== undefined) this.endSession(log);
      if (SAVING_STATES.has(this.currentState)) this.enter('STOP');
      const reason = m.applied
        ? 'its lease expired after it applied a migrated state: it may be the only copy of the device, or the source may run it again'
        : 'its lease expired after its whole state was read: it may already run on the destination';
      expired('stranded');
      this.strand(reason);
      log.error({ state: this.currentState, reason }, 'VF stranded: stays stopped until vf.resume or vf.reset');
      return;
    }
    if (m.role === 'destination') {
      expired(dropped ? 'dropped' : 'left-stopped');
      log.warn({ state: this.currentState }, 'destination left stopped, as it was before its resume');
      return;
    }
    try {
      const done = await this.transition('RUNNING', UNDO_TIMEOUT_MS, AGENT_CALLER, log);
      expired('cancelled');
      log.warn({ from, state: done.state, path: done.path }, 'migration cancelled: the VF runs again');
    } catch (error) {
      // Not left stopped for good (a device that did not answer may answer later): tried again after another lease.
      const retry = this.currentState !== 'ERROR' && this.currentState !== 'RUNNING';
      log.error({ from, state: this.currentState, err: error instanceof Error ? error.message : String(error), retryInMs: retry ? lease.durationMs : null }, 'migration could not be cancelled');
      if (retry) m.lease = this.newLease({ ...AGENT_CALLER, leaseMs: lease.durationMs });
      expired(retry ? 'retry' : this.currentState === 'ERROR' ? 'failed' : 'cancelled');
    } finally {
      this.settleMigration(AGENT_CALLER, log, from);
    }
  }

  /** The VF is in `state` now: the one place its state changes, so every change is an event. */
  private enter(state: VfioStateName): void {
    const from = this.currentState;
    if (state === from) return;
    this.currentState = state;
    if (RUNNING_STATES.has(state)) this.stoppedAt = undefined;
    else if (RUNNING_STATES.has(from)) this.stoppedAt = this.clock.monotonic();
    if (this.events.heard) this.events.emit('vf.stateChanged', { vf: this.vf.id, from, to: state, stranded: this.stranded, at: this.now() });
  }

  private now(): string {
    return new Date(this.clock.wall()).toISOString();
  }

  private strand(reason: string): void {
    if (this.migration === undefined) return;
    this.migration.stranded = { since: this.clock.wall(), reason };
    this.events.emit('vf.stranded', { vf: this.vf.id, state: this.currentState, reason, at: this.now() });
  }

  private progress(session: SaveSession | ResumeSession): void {
    if (this.events.heard) this.events.emit('session.progress', { vf: this.vf.id, session: session.id, kind: session.kind, phase: session.phase, bytes: session.bytes, at: this.now() });
  }

  private here(): UndoPoint {
    const m = this.migration;
    return { state: this.currentState, session: this.session, progress: m === undefined ? undefined : { role: m.role, readToEnd: m.readToEnd, applied: m.applied } };
  }

  /** A call that names a session continues that one: refused, before anything happens, if it is not open. */
  private requireSession(named: string | undefined): void {
    if (named === undefined || named === this.session?.id) return;
    const open = this.session?.id ?? null;
    throw new Fault('SESSION_UNKNOWN', `VF ${this.vf.id} has no session ${named}; ${open === null ? 'none is open' : `the open one is ${open}`}`, { session: open });
  }

  /** What the running call has done so far stays, even if a later step of it is refused. */
  private keepSoFar(): void {
    if (this.undoPoint !== undefined) this.undoPoint = this.here();
  }

  /**
   * Puts back the undo point of a refused call. Nothing to put back after a
   * driver failure: ERROR is where the VF is. The driver's run level is put
   * back too when the call had changed it (a quiesce refused after its
   * first step); if even that fails, the VF is in ERROR.
   */
  private async undo(log: Logger): Promise<void> {
    const to = this.undoPoint;
    if (to === undefined || this.currentState === 'ERROR') return;
    const at = this.currentState;
    const level = runLevelOf(to.state);
    // A device that does not answer cannot be put back: the next call reads where it is.
    if (runLevelOf(at) !== level && !this.resyncNeeded) {
      try {
        await this.driver.setRunLevel(this.vf.id, level, { deadline: performance.now() + UNDO_TIMEOUT_MS });
      } catch (error) {
        const fault = this.asFault(error, `undo ${at}→${to.state}`);
        log.error({ phase: 'undo', from: at, to: to.state, fault: fault.fault, err: fault.message }, 'could not put a refused call back');
        this.enter('ERROR');
        this.dropSession('failed');
        return;
      }
    }
    this.enter(to.state);
    if (this.session !== to.session) this.dropSession('cancelled');
    this.session = to.session;
    if (this.migration !== undefined && to.progress !== undefined) Object.assign(this.migration, to.progress);
    if (at !== to.state) log.info({ phase: 'undo', from: at, state: to.state }, 'refused call put back');
  }

  private unchanged(): TransitionResult {
    return { from: this.currentState, state: this.currentState, path: [], drainedCommands: 0, elapsedMs: 0 };
  }

  private async transition(target: VfioStateName, timeoutMs: number, caller: Caller, log: Logger): Promise<TransitionResult> {
    const from = this.currentState;
    const path = routeTo(from, target, this.features);
    if (path === undefined) {
      throw new Fault('ILLEGAL_TRANSITION', describeRefusal(from, target, this.features), { state: from, target });
    }
    const started = performance.now();
    const deadline = started + timeoutMs;
    const entered: VfioStateName[] = [];
    let drainedCommands = 0;
    for (const next of path) {
      const cur = this.currentState;
      try {
        drainedCommands += await this.arc(cur, next, deadline, caller, log);
      } catch (error) {
        const fault = this.asFault(error, `${cur}→${next}`);
        log.warn({ phase: 'transition', from, target, at: cur, next, entered, fault: fault.fault, err: fault.message }, 'transition failed');
        throw fault;
      }
      this.enter(next);
      entered.push(next);
      // A loaded state, once applied, is not taken back if a later step is refused.
      if (cur === 'RESUMING') this.keepSoFar();
    }
    const elapsedMs = performance.now() - started;
    if (path.length > 0) log.info({ phase: 'transition', from, state: target, path: entered, drainedCommands, elapsedMs }, 'state changed');
    return { from, state: this.currentState, path: entered, drainedCommands, elapsedMs };
  }

  /** Carries out one direct arc; returns commands drained. A session opened here is the caller's. */
  private async arc(cur: VfioStateName, next: VfioStateName, deadline: number, caller: Caller, log: Logger): Promise<number> {
    let drained = 0;
    if (cur === 'RESUMING' && next === 'STOP') await this.commitResume(log);
    if (SAVING_STATES.has(cur) && !SAVING_STATES.has(next)) this.endSession(log);
    const level = runLevelOf(next);
    if (runLevelOf(cur) !== level) {
      drained = (await this.driver.setRunLevel(this.vf.id, level, { deadline })).drainedCommands;
    }
    // The arcs that open a save (VFIO's: a new saving data fd), and the one that stops a pre-copy save's VF.
    if ((cur === 'STOP' && next === 'STOP_COPY') || (cur === 'RUNNING' && next === 'PRE_COPY') || (cur === 'RUNNING_P2P' && next === 'PRE_COPY_P2P')) {
      const descriptor = await this.saveDescriptor();
      const session = new SaveSession(this.vf.id, caller.principal, descriptor, await this.driver.openSave(this.vf.id, descriptor.format), next === 'STOP_COPY' ? 'stop-copy' : 'pre-copy');
      this.session = session;
      log.info({ phase: 'save', session: session.id, saving: session.phase, format: descriptor.format.name }, 'save session opened');
    } else if (next === 'STOP_COPY' && this.session instanceof SaveSession) {
      this.session.stopped();
    }
    if (cur === 'STOP' && next === 'RESUMING') {
      const limits = { maxRecordBytes: MAX_RECORD_BYTES, maxV1StateBytes: this.limits.maxStateBytes };
      const session = new ResumeSession(this.vf.id, caller.principal, limits, (descriptor) => this.openLoad(descriptor, log));
      this.session = session;
      this.lastLoadAt = undefined;
      if (this.migration !== undefined) this.migration.role = 'destination';
      log.info({ phase: 'load', session: session.id }, 'resume session opened');
    }
    return drained;
  }

  /** What a save of this VF says it is: its format (the one asked for, else the default), and the VF's identity. */
  private async saveDescriptor(format: StateFormat | undefined = this.saveFormatWanted): Promise<StreamDescriptor> {
    const chosen = format ?? this.saveFormats()[0];
    if (chosen === undefined) throw new Fault('DRIVER_FAILURE', `driver ${this.driver.name} names no state format`);
    return { format: { ...chosen }, identity: (await this.driver.describe(this.vf.id)).identity };
  }

  private saveFormats(): readonly StateFormat[] {
    return this.driver.saveFormats ?? this.driver.stateFormats.slice(0, 1);
  }

  /** The driver's save format `wanted` names; refused as incompatible if the VF does not save in it. */
  private saveableFormat(wanted: StreamFormat): StateFormat {
    const match = this.saveFormats().find((f) => sameFormat(wanted, f));
    if (match !== undefined) return match;
    throw new Fault('STATE_INCOMPATIBLE', `VF ${this.vf.id} does not save in ${formatName(wanted)}; it saves in ${this.saveFormats().map(formatName).join(', ')}`);
  }

  /**
   * A resume's stream has said what it carries: the one place a state's
   * format is checked, then the identity (the driver's), and only then the
   * driver's resume opens.
   */
  private async openLoad(descriptor: StreamDescriptor, log: Logger): Promise<DeviceLoadStream> {
    const format = this.loadableFormat(descriptor.format);
    try {
      await this.driver.checkIdentity(this.vf.id, descriptor.identity);
      return await this.driver.openLoad(this.vf.id, format);
    } catch (error) {
      throw this.asFault(error, 'opening the resume');
    } finally {
      log.debug({ phase: 'load', format: descriptor.format.name, version: descriptor.format.version }, 'state descriptor read');
    }
  }

  /** The driver's format a stream's format names; a stream without a vendor (v1) matches on name and version. */
  private loadableFormat(wanted: StreamFormat): StateFormat {
    const match = this.driver.stateFormats.find((f) => sameFormat(wanted, f));
    if (match !== undefined) return match;
    const known = this.driver.stateFormats.map(formatName).join(', ');
    throw new Fault('STATE_INCOMPATIBLE', `state format ${formatName(wanted)} is not one VF ${this.vf.id} loads (${known})`);
  }

  /** The session is over: a save's driver stream is closed, a resume not committed is dropped. */
  private endSession(log: Logger, outcome?: SessionOutcome): void {
    if (this.session === undefined) return;
    log.info({ phase: this.session.kind === 'save' ? 'save' : 'load', session: this.session.id, bytes: this.session.bytes }, `${this.session.kind} session ended`);
    this.dropSession(outcome);
  }

  /**
   * The session is gone, with `outcome` (by default: a save read to its end
   * completed, anything else cancelled). Its session.ended event carries
   * this agent's share of the downtime when it completed.
   */
  private dropSession(outcome?: SessionOutcome): void {
    const session = this.session;
    if (session === undefined) return;
    session.abandon();
    this.session = undefined;
    const readToEndAt = this.readToEndAt;
    this.readToEndAt = undefined;
    if (!this.events.heard) return;
    const ended = outcome ?? (session.kind === 'save' && readToEndAt !== undefined ? 'completed' : 'cancelled');
    let downtimeMs: number | null = null;
    if (ended === 'completed') {
      const from = session.kind === 'save' ? this.stoppedAt : this.lastLoadAt;
      const to = session.kind === 'save' ? readToEndAt : this.clock.monotonic();
      if (from !== undefined && to !== undefined) downtimeMs = Math.max(0, Math.round((to - from) * 1000) / 1000);
    }
    this.events.emit('session.ended', { vf: this.vf.id, session: session.id, kind: session.kind, outcome: ended, bytes: session.bytes, downtimeMs, at: this.now() });
  }

  /**
   * RESUMING → STOP: validate the whole stream, then hand it to the driver,
   * which validates the payload before applying anything. On refusal the
   * resume session ends and the VF stays stopped exactly as it was.
   *
   * That refusal is not undone back to RESUMING: committing is the only way
   * out of RESUMING, so a VF left there with bytes that can never apply
   * could only leave it by a reset, which would throw away the device state
   * the refusal has just protected.
   */
  private async commitResume(log: Logger): Promise<void> {
    const session = this.session instanceof ResumeSession ? this.session : undefined;
    let outcome: SessionOutcome = 'refused';
    try {
      if (session === undefined) throw new Fault('STATE_CORRUPT', 'no state was loaded');
      await session.commit();
      if (this.migration !== undefined) this.migration.applied = true;
      outcome = 'completed';
      log.info({ phase: 'load', session: session.id, totalBytes: session.bytes }, 'state applied');
    } catch (error) {
      const fault = this.asFault(error, 'RESUMING→STOP');
      if (this.currentState !== 'ERROR') {
        this.enter('STOP');
        this.keepSoFar();
      }
      log.warn({ phase: 'load', fault: fault.fault, err: fault.message }, 'state refused; VF left as it was');
      throw fault;
    } finally {
      // Applied or refused, the resume session is over (a refused one is dropped whole).
      this.endSession(log, this.currentState === 'ERROR' ? 'failed' : outcome);
    }
  }

  /** Maps what a driver threw onto a domain fault; an unexplained failure leaves the VF in ERROR. */
  private asFault(error: unknown, during: string): Fault {
    if (error instanceof Fault) return error;
    if (error instanceof DriverError) {
      switch (error.kind) {
        case 'quiesce-timeout': return new Fault('QUIESCE_TIMEOUT', error.message, {}, { cause: error });
        case 'corrupt-state': return new Fault('STATE_CORRUPT', error.message, {}, { cause: error });
        case 'incompatible-state': return new Fault('STATE_INCOMPATIBLE', error.message, {}, { cause: error });
        case 'invalid-access': return new Fault('DEVICE_ACCESS', error.message, {}, { cause: error });
        // Nothing is known to have changed: refused, and the state is read from the device again before the next call.
        case 'device-unreachable':
          this.resyncNeeded = true;
          return new Fault('DEVICE_UNREACHABLE', error.message, {}, { cause: error });
        case 'driver-failure': break;
      }
    }
    // The device may be anywhere now: ERROR says so, and only a reset leaves it.
    this.enter('ERROR');
    this.dropSession('failed');
    const message = error instanceof Error ? error.message : String(error);
    return new Fault('DRIVER_FAILURE', `driver ${this.driver.name} failed during ${during}: ${message}`, {}, { cause: error });
  }
}

/**
 * What a read of the device (not queued, changing nothing) throws when the
 * driver fails it: the VF's state is not touched, whatever went wrong.
 */
export function readFault(error: unknown, what: string): unknown {
  if (!(error instanceof DriverError)) return error;
  if (error.kind === 'device-unreachable') return new Fault('DEVICE_UNREACHABLE', error.message, {}, { cause: error });
  return new Fault('DRIVER_FAILURE', `${what}: ${error.message}`, {}, { cause: error });
}

/** `wanted` names `format`: the same name and version, and vendor where `wanted` says one (v1 streams do not). */
function sameFormat(wanted: StreamFormat, format: StreamFormat): boolean {
  return wanted.name === format.name && wanted.version === format.version && (wanted.vendor === undefined || wanted.vendor === format.vendor);
}

function formatName(format: StreamFormat): string {
  return `${format.name} v${format.version}${format.vendor === undefined ? '' : ` (vendor ${format.vendor})`}`;
}

function describeRefusal(from: VfioStateName, target: VfioStateName, features: MigrationFeatures): string {
  if (from === 'ERROR') return 'the VF is in ERROR; only vf.reset leaves it';
  if (target === 'ERROR') return 'ERROR cannot be requested';
  if ((target === 'RUNNING_P2P' || target === 'PRE_COPY_P2P') && !features.p2p) return `${target} needs P2P support, which this VF lacks`;
  if ((target === 'PRE_COPY' || target === 'PRE_COPY_P2P') && !features.preCopy) return `${target} needs pre-copy support, which this VF lacks`;
  return `${from} → ${target} is a blocked transition`;
}
