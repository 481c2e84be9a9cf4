/**
 * An agent-to-agent migration of one VF, call by call as the README's
 * migration sections lay it out:
 *
 *   check       vf.get on both (the source runs, neither is in a migration);
 *               the format both agree on (compatibility.ts)
 *   prepare     destination vf.setState STOP
 *   pre-copy    where the source offers it: vf.setState PRE_COPY, then
 *               rounds of vf.save → vf.load while the VF runs, until what
 *               it has changed is small, stops shrinking, or the rounds run out
 *   stop        source vf.setState STOP_COPY (after pre-copy), else
 *               vf.quiesce: the downtime starts
 *   stop-copy   vf.save → vf.load to the end of the stream
 *   apply       destination vf.setState STOP naming its resume session:
 *               the driver checks and applies the whole state
 *   before-resume  the operator's command, if any, leases kept alive
 *   resume      destination vf.resume: the point of no return
 *   cleanup     source vf.setState STOP naming its session (STOP_COPY →
 *               STOP, as QEMU leaves it), and vf.reset with --reset-source
 *
 * Any failure, or an interrupt, before the destination's vf.resume was
 * sent cancels (cancel.ts): the source runs on, the destination drops what
 * it got. Once that vf.resume is sent the source is never run again: if it
 * has no clear answer the outcome is reported unresolved for the operator.
 */
import type { FormatRef, Transition, VfGetResult } from '../../../schemas/types.ts';
import type { AgentTarget } from '../agent-address.ts';
import { AgentRefusal, IncompatibleError, NotReadyError, asCliError } from '../cli-errors.ts';
import type { CommandContext } from '../command-context.ts';
import { runBeforeResume } from './before-resume.ts';
import { cancelMigration, type CancelPlan } from './cancel.ts';
import { formatName, judge } from './compatibility.ts';
import { LeaseKeeper } from './lease-keeper.ts';
import { causeText, Interrupted, MigrationFailure } from './migration-failure.ts';
import { emptyReport, PhaseClock, type MigrationReport, type Phase } from './migration-report.ts';
import { MigrationSide } from './migration-side.ts';
import { StateCopy } from './state-copy.ts';

export interface MigrateOptions {
  readonly sliceBytes: number;
  /** Most pre-copy rounds; 0: no pre-copy. */
  readonly precopyRounds: number;
  /** Pre-copy ends once what the VF has changed since it was read is no more than this. */
  readonly precopyThreshold: number;
  readonly leaseMs: number | undefined;
  readonly drainMs: number | undefined;
  readonly beforeResume: string | undefined;
  readonly resetSource: boolean;
}

export interface Endpoint {
  readonly target: AgentTarget;
  readonly vf: string;
}

/** What the migration tells whoever shows its progress. */
export interface MigrationObserver {
  phase(phase: Phase, detail: string): void;
  /** Stream bytes moved so far, and the stream's length as the source last said it. */
  bytes(moved: number, total: number): void;
  close(): void;
}

export function migrate(ctx: CommandContext, from: Endpoint, to: Endpoint, options: MigrateOptions, signal: AbortSignal, observer: MigrationObserver): Promise<MigrationReport> {
  return new MigrationRun(ctx, from, to, options, signal, observer).run();
}

interface Sides {
  readonly source: MigrationSide;
  readonly destination: MigrationSide;
}

/** One run of `migrate`: the phases in order, and what a failure must undo. */
class MigrationRun {
  private readonly ctx: CommandContext;
  private readonly from: Endpoint;
  private readonly to: Endpoint;
  private readonly options: MigrateOptions;
  private readonly signal: AbortSignal;
  private readonly observer: MigrationObserver;
  private readonly report: MigrationReport;
  private readonly clock: PhaseClock;
  /** What has been sent to each side: what a cancel undoes. */
  private readonly plan: CancelPlan = { sourceMoved: false, sourceSession: undefined, destinationTouched: 'none', destinationStartState: 'RUNNING' };
  /** Drain and lease params of the calls that change a state. */
  private readonly timeout: { timeoutMs?: number };
  private readonly lease: { leaseMs?: number };
  private sides: Sides | undefined;
  private copy: StateCopy | undefined;
  /** The destination's vf.resume went out: from here on the source is never run again. */
  private resumeSent = false;

  constructor(ctx: CommandContext, from: Endpoint, to: Endpoint, options: MigrateOptions, signal: AbortSignal, observer: MigrationObserver) {
    this.ctx = ctx;
    this.from = from;
    this.to = to;
    this.options = options;
    this.signal = signal;
    this.observer = observer;
    this.report = emptyReport({ agent: from.target.name, vf: from.vf }, { agent: to.target.name, vf: to.vf });
    this.clock = new PhaseClock(this.report);
    this.timeout = options.drainMs === undefined ? {} : { timeoutMs: options.drainMs };
    this.lease = options.leaseMs === undefined ? {} : { leaseMs: options.leaseMs };
  }

  async run(): Promise<MigrationReport> {
    try {
      this.enter('connect', `${this.from.target.name} and ${this.to.target.name}`);
      const sides = await openBoth(this.ctx, this.from, this.to, this.signal);
      this.sides = sides;
      this.report.source.transport = sides.source.transport;
      this.report.destination.transport = sides.destination.transport;
      const { format, preCopy } = await this.check(sides);
      const copy = new StateCopy(sides.source, sides.destination, {
        sliceBytes: this.options.sliceBytes, leaseMs: this.options.leaseMs, signal: this.signal, onSlice: (moved, total) => this.observer.bytes(moved, total),
      });
      this.copy = copy;
      await this.prepare(sides);
      if (preCopy) await this.preCopy(sides, copy);
      await this.stop(sides, copy, preCopy);
      await this.stopCopy(sides, copy, preCopy ? undefined : format);
      await this.apply(sides, copy);
      if (this.options.beforeResume !== undefined) await this.beforeResume(sides, copy, this.options.beforeResume);
      await this.resume(sides);
      await this.cleanUp(sides, copy);
      this.clock.end();
      return this.report;
    } catch (error) {
      throw await this.fail(error);
    } finally {
      this.observer.close();
      this.sides?.source.close();
      this.sides?.destination.close();
    }
  }

  private enter(phase: Phase, detail: string): void {
    this.clock.enter(phase);
    this.observer.phase(phase, detail);
  }

  /** Both VFs ready, and the format the destination can load; whether the source pre-copies in it. */
  private async check({ source, destination }: Sides): Promise<{ format: FormatRef; preCopy: boolean }> {
    const { signal } = this;
    this.enter('check', `can ${destination.label} load the state of ${source.label}?`);
    const [sourceVf, destinationVf] = await Promise.all([
      source.connection.call('vf.get', { vf: source.vf }, { signal }),
      destination.connection.call('vf.get', { vf: destination.vf }, { signal }),
    ]);
    checkReady(source, sourceVf, destination, destinationVf);
    this.plan.destinationStartState = destinationVf.state === 'STOP' ? 'STOP' : 'RUNNING';
    const verdict = await judge({ agent: source.connection, vf: source.vf }, { agent: destination.connection, vf: destination.vf }, signal);
    if (!verdict.compatible || verdict.format === null) {
      throw new IncompatibleError(`${destination.label} cannot load the state of ${source.label}: ${verdict.reason ?? 'refused'}`, { verdict });
    }
    this.report.format = verdict.format;
    // A PRE_COPY save is in the source's default format: another one is saved from STOP, where vf.save names it.
    return { format: verdict.format, preCopy: sourceVf.capabilities.preCopy && verdict.defaultFormat && this.options.precopyRounds > 0 };
  }

  private async prepare({ destination }: Sides): Promise<void> {
    this.enter('prepare', `${destination.label}: STOP`);
    this.plan.destinationTouched = 'stopped';
    noteState(this.report.destination, await firstChange(() => { this.plan.destinationTouched = 'none'; },
      () => destination.connection.call('vf.setState', { vf: destination.vf, state: 'STOP', ...this.timeout, ...this.lease }, { signal: this.signal })));
  }

  /** Rounds while the VF runs, until what it changed is small, stops shrinking, or the rounds run out. */
  private async preCopy({ source }: Sides, copy: StateCopy): Promise<void> {
    this.enter('pre-copy', `${source.label}: PRE_COPY, the VF runs while its state is read`);
    this.plan.sourceMoved = true;
    noteState(this.report.source, await firstChange(() => { this.plan.sourceMoved = false; },
      () => source.connection.call('vf.setState', { vf: source.vf, state: 'PRE_COPY', ...this.lease }, { signal: this.signal })));
    let lastDirty = Number.POSITIVE_INFINITY;
    for (let round = 1; round <= this.options.precopyRounds; round += 1) {
      const moved = await copy.copyAvailable(false);
      this.plan.sourceSession = copy.sourceSession;
      this.report.bytes.preCopy += moved;
      this.report.preCopyRounds = round;
      const info = await source.connection.call('vf.precopyInfo', { vf: source.vf }, { signal: this.signal });
      this.observer.phase('pre-copy', `round ${round}: ${moved} bytes moved; the VF has ${info.initialBytes} initial and ${info.dirtyBytes} changed bytes left`);
      if (info.initialBytes > 0) continue;
      // Small enough to stop now, or not getting smaller: more rounds would not shorten the downtime.
      if (info.dirtyBytes <= this.options.precopyThreshold || info.dirtyBytes >= lastDirty) break;
      lastDirty = info.dirtyBytes;
    }
  }

  /** The source stops for good: STOP_COPY after a pre-copy, else a quiesce. The downtime starts. */
  private async stop({ source }: Sides, copy: StateCopy, preCopy: boolean): Promise<void> {
    this.enter('stop', `${source.label}: ${preCopy ? 'STOP_COPY' : 'quiesce'}, the downtime starts`);
    this.clock.sourceStopping();
    this.plan.sourceMoved = true;
    const { signal } = this;
    const stopped = preCopy
      ? await source.connection.call('vf.setState', { vf: source.vf, state: 'STOP_COPY', ...this.timeout, ...sessionOf(copy.sourceSession) }, { signal })
      : await firstChange(() => { this.plan.sourceMoved = false; }, () => source.connection.call('vf.quiesce', { vf: source.vf, ...this.timeout, ...this.lease }, { signal }));
    noteState(this.report.source, stopped);
    this.report.drainedCommands = stopped.drainedCommands;
  }

  /** The rest of the stream; `format` opens the save from STOP when there was no pre-copy. */
  private async stopCopy({ source }: Sides, copy: StateCopy, format: FormatRef | undefined): Promise<void> {
    this.enter('stop-copy', `copying the state of ${source.label}${this.report.format === null ? '' : ` in ${formatName(this.report.format)}`}`);
    this.report.bytes.stopCopy = await copy.copyAvailable(true, format);
    this.plan.sourceSession = copy.sourceSession;
    copy.checkComplete();
    this.report.bytes.total = copy.offset;
    this.report.source.state = 'STOP_COPY';
  }

  private async apply({ destination }: Sides, copy: StateCopy): Promise<void> {
    this.enter('apply', `${destination.label}: RESUMING → STOP applies the state`);
    noteState(this.report.destination, await destination.connection.call('vf.setState', { vf: destination.vf, state: 'STOP', ...this.timeout, ...sessionOf(copy.destinationSession) }, { signal: this.signal }));
  }

  private async beforeResume(sides: Sides, copy: StateCopy, command: string): Promise<void> {
    this.enter('before-resume', `running: ${command}`);
    const keeper = new LeaseKeeper([{ side: sides.source, session: copy.sourceSession }, { side: sides.destination, session: undefined }]);
    await keepingLeases(keeper, () => runBeforeResume(command, sides.source, sides.destination, this.signal));
  }

  /** The point of no return; an interrupt until now cancels, from now on it is too late. */
  private async resume({ destination }: Sides): Promise<void> {
    this.signal.throwIfAborted();
    this.enter('resume', `${destination.label}: RUNNING`);
    this.resumeSent = true;
    try {
      noteState(this.report.destination, await resumeDestination(destination, this.timeout));
    } catch (error) {
      if (error instanceof RefusedWhileStopped) this.resumeSent = false;
      throw error;
    }
    this.clock.destinationRunning();
  }

  /** STOP_COPY → STOP ends the source's save, as QEMU does; the device runs on the destination whatever this says. */
  private async cleanUp({ source }: Sides, copy: StateCopy): Promise<void> {
    this.enter('cleanup', `${source.label}: STOP ends its save`);
    const { report, options } = this;
    try {
      noteState(report.source, await source.connection.call('vf.setState', { vf: source.vf, state: 'STOP', ...sessionOf(copy.sourceSession) }));
      if (options.resetSource) noteState(report.source, await source.connection.call('vf.reset', { vf: source.vf }));
    } catch (error) {
      report.warnings.push(`${source.label}: cleanup failed: ${asCliError(error).message}; it stays stopped, and \`vfmigctl reset\` frees it`);
    }
    if (!options.resetSource && report.source.state === 'STOP') {
      report.warnings.push(`${source.label} stays in STOP, as QEMU leaves a migrated source; once its lease ends it shows as stranded until \`vfmigctl --agent ${source.target.name} reset ${source.vf}\` frees it (or use --reset-source)`);
    }
    if (this.signal.aborted) report.warnings.push('interrupted after the destination was asked to run: the migration was completed, not cancelled');
  }

  /** The error `run` ends with: the cause itself when nothing was changed, else a MigrationFailure after the cancel. */
  private async fail(error: unknown): Promise<unknown> {
    const { report, plan, sides, copy, signal } = this;
    const failedIn = this.clock.phase;
    if (failedIn !== undefined) report.failedIn = failedIn;
    this.clock.end();
    if (copy !== undefined) {
      plan.sourceSession ??= copy.sourceSession;
      if (copy.loadSent) plan.destinationTouched = 'loaded';
    }
    // An interrupt is the cause of whatever the abandoned calls then threw, until the resume was sent (it takes no signal).
    const cause = signal.aborted && !this.resumeSent ? signal.reason : error;
    report.interrupted = signal.aborted;
    if (sides === undefined || (!plan.sourceMoved && plan.destinationTouched === 'none')) {
      if (!(cause instanceof Interrupted)) return cause;
      report.outcome = 'cancelled';
      return new MigrationFailure(report, cause, 'Nothing had been changed yet: the source runs on.');
    }
    if (this.resumeSent) {
      report.outcome = 'unresolved';
      return new MigrationFailure(report, cause, unresolvedResumeAdvice(sides));
    }
    this.observer.phase(failedIn ?? 'connect', `cancelling: ${causeText(cause)}`);
    const outcome = await cancelMigration(sides.source, sides.destination, plan, this.options.drainMs);
    report.cancel = { source: outcome.source, destination: outcome.destination };
    report.source.state = outcome.source?.state ?? report.source.state;
    report.destination.state = outcome.destination?.state ?? report.destination.state;
    report.outcome = outcome.clean ? 'cancelled' : 'unresolved';
    return new MigrationFailure(report, cause, outcome.clean ? cancelledAdvice(sides) : unresolvedAdvice(sides, report));
  }
}

/** Both connections, or neither (the other one closed). */
async function openBoth(ctx: CommandContext, from: Endpoint, to: Endpoint, signal: AbortSignal): Promise<Sides> {
  const [source, destination] = await Promise.allSettled([
    MigrationSide.open(ctx, 'source', from.target, from.vf, signal),
    MigrationSide.open(ctx, 'destination', to.target, to.vf, signal),
  ]);
  if (source.status === 'fulfilled' && destination.status === 'fulfilled') return { source: source.value, destination: destination.value };
  if (source.status === 'fulfilled') source.value.close();
  if (destination.status === 'fulfilled') destination.value.close();
  throw source.status === 'rejected' ? source.reason : (destination as PromiseRejectedResult).reason;
}

function checkReady(source: MigrationSide, s: VfGetResult, destination: MigrationSide, d: VfGetResult): void {
  if (s.state !== 'RUNNING' || s.migration !== null || s.session !== null) {
    throw new NotReadyError(`${source.label} is ${s.state}${s.migration === null ? '' : ` in a migration of ${s.migration.owner}`}: a migration starts from a VF that runs and is in no migration`, { vf: s.id, state: s.state });
  }
  if ((d.state !== 'RUNNING' && d.state !== 'STOP') || d.migration !== null || d.session !== null) {
    throw new NotReadyError(`${destination.label} is ${d.state}${d.migration === null ? '' : ` in a migration of ${d.migration.owner}`}: it must be RUNNING or STOP and in no migration (\`vfmigctl reset\` frees it)`, { vf: d.id, state: d.state });
  }
  if (source.target.name === destination.target.name && s.id === d.id) throw new NotReadyError(`the source and the destination are the same VF (${s.id} on ${source.target.name})`);
}

/**
 * A side's first state-changing call: refused by the agent, it changed
 * nothing (the agent's rule), so the side is untouched again (`untouched`).
 */
async function firstChange<T>(untouched: () => void, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof AgentRefusal) untouched();
    throw error;
  }
}

/**
 * vf.resume on the destination, with no signal: once sent it is not
 * abandoned. A refusal that says the VF is still in STOP did not run it
 * (RefusedWhileStopped: the migration can still be cancelled); any other
 * failure may have, and takes the unresolved path.
 */
async function resumeDestination(destination: MigrationSide, timeout: { timeoutMs?: number }): Promise<Transition> {
  try {
    return await destination.connection.call('vf.resume', { vf: destination.vf, ...timeout });
  } catch (error) {
    if (error instanceof AgentRefusal && error.error.data?.state === 'STOP') throw new RefusedWhileStopped(error);
    throw error;
  }
}

/** The destination refused to run and stayed in STOP: a cancel is still safe. */
class RefusedWhileStopped extends AgentRefusal {
  constructor(refusal: AgentRefusal) {
    super(refusal.agent, refusal.method, refusal.error);
  }
}

async function keepingLeases(keeper: LeaseKeeper, work: () => Promise<void>): Promise<void> {
  keeper.start();
  let failed = false;
  try {
    await work();
  } catch (error) {
    failed = true;
    throw error;
  } finally {
    try {
      keeper.stop();
    } catch (error) {
      // A renewal that failed fails the migration, unless the work failed first (its error says more).
      if (!failed) throw error;
    }
  }
}

function noteState(side: MigrationReport['source'], transition: Transition): void {
  side.state = transition.state;
}

function sessionOf(session: string | undefined): { session?: string } {
  return session === undefined ? {} : { session };
}

function unresolvedResumeAdvice({ source, destination }: Sides): string {
  return `The destination's vf.resume has no clear answer: it may be running. The source is left stopped and is not run again by vfmigctl. `
    + `Look at the destination (\`vfmigctl --agent ${destination.target.name} get ${destination.vf}\`): if it is RUNNING the migration is done; `
    + `if it is not, run the source again (\`vfmigctl --agent ${source.target.name} resume ${source.vf}\`).`;
}

function cancelledAdvice(sides: Sides): string {
  return `The ${sides.source.label} runs on; the ${sides.destination.label} dropped what it received.`;
}

function unresolvedAdvice(sides: Sides, report: MigrationReport): string {
  const parts: string[] = [];
  const { source, destination } = sides;
  if (report.cancel?.source?.ok === false) {
    parts.push(`The ${source.label} could not be run again (${report.cancel.source.state ?? 'state unknown'}): once its agent answers, \`vfmigctl --agent ${source.target.name} resume ${source.vf}\`; the destination never ran, so this is safe.`);
  }
  if (report.cancel?.destination?.ok === false) {
    parts.push(`The ${destination.label} could not be reset (${report.cancel.destination.state ?? 'state unknown'}): it never ran and stays stopped; \`vfmigctl --agent ${destination.target.name} reset ${destination.vf}\` frees it.`);
  }
  return parts.join(' ');
}
