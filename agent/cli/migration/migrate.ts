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
import type { Transition, VfGetResult } from '../../../schemas/types.ts';
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

export async function migrate(ctx: CommandContext, from: Endpoint, to: Endpoint, options: MigrateOptions, signal: AbortSignal, observer: MigrationObserver): Promise<MigrationReport> {
  const report = emptyReport({ agent: from.target.name, vf: from.vf }, { agent: to.target.name, vf: to.vf });
  const clock = new PhaseClock(report);
  const plan: CancelPlan = { sourceMoved: false, sourceSession: undefined, destinationTouched: 'none', destinationStartState: 'RUNNING' };
  const enter = (phase: Phase, detail: string): void => {
    clock.enter(phase);
    observer.phase(phase, detail);
  };
  let sides: { source: MigrationSide; destination: MigrationSide } | undefined;
  let copy: StateCopy | undefined;
  let resumeSent = false;
  try {
    enter('connect', `${from.target.name} and ${to.target.name}`);
    sides = await openBoth(ctx, from, to, signal);
    const { source, destination } = sides;
    report.source.transport = source.transport;
    report.destination.transport = destination.transport;

    enter('check', `can ${destination.label} load the state of ${source.label}?`);
    const [sourceVf, destinationVf] = await Promise.all([
      source.connection.call('vf.get', { vf: source.vf }, { signal }),
      destination.connection.call('vf.get', { vf: destination.vf }, { signal }),
    ]);
    checkReady(source, sourceVf, destination, destinationVf);
    plan.destinationStartState = destinationVf.state === 'STOP' ? 'STOP' : 'RUNNING';
    const verdict = await judge({ agent: source.connection, vf: source.vf }, { agent: destination.connection, vf: destination.vf }, signal);
    if (!verdict.compatible || verdict.format === null) {
      throw new IncompatibleError(`${destination.label} cannot load the state of ${source.label}: ${verdict.reason ?? 'refused'}`, { verdict });
    }
    report.format = verdict.format;
    const preCopy = sourceVf.capabilities.preCopy && verdict.defaultFormat && options.precopyRounds > 0;
    const timeout = options.drainMs === undefined ? {} : { timeoutMs: options.drainMs };
    const lease = options.leaseMs === undefined ? {} : { leaseMs: options.leaseMs };
    copy = new StateCopy(source, destination, { sliceBytes: options.sliceBytes, leaseMs: options.leaseMs, signal, onSlice: (moved, total) => observer.bytes(moved, total) });
    const stateCopy = copy;

    enter('prepare', `${destination.label}: STOP`);
    plan.destinationTouched = 'stopped';
    noteState(report.destination, await firstChange(() => { plan.destinationTouched = 'none'; },
      () => destination.connection.call('vf.setState', { vf: destination.vf, state: 'STOP', ...timeout, ...lease }, { signal })));

    if (preCopy) {
      enter('pre-copy', `${source.label}: PRE_COPY, the VF runs while its state is read`);
      plan.sourceMoved = true;
      noteState(report.source, await firstChange(() => { plan.sourceMoved = false; },
        () => source.connection.call('vf.setState', { vf: source.vf, state: 'PRE_COPY', ...lease }, { signal })));
      let lastDirty = Number.POSITIVE_INFINITY;
      for (let round = 1; round <= options.precopyRounds; round += 1) {
        const moved = await stateCopy.copyAvailable(false);
        plan.sourceSession = stateCopy.sourceSession;
        report.bytes.preCopy += moved;
        report.preCopyRounds = round;
        const info = await source.connection.call('vf.precopyInfo', { vf: source.vf }, { signal });
        observer.phase('pre-copy', `round ${round}: ${moved} bytes moved; the VF has ${info.initialBytes} initial and ${info.dirtyBytes} changed bytes left`);
        if (info.initialBytes > 0) continue;
        // Small enough to stop now, or not getting smaller: more rounds would not shorten the downtime.
        if (info.dirtyBytes <= options.precopyThreshold || info.dirtyBytes >= lastDirty) break;
        lastDirty = info.dirtyBytes;
      }
    }

    enter('stop', `${source.label}: ${preCopy ? 'STOP_COPY' : 'quiesce'}, the downtime starts`);
    clock.sourceStopping();
    plan.sourceMoved = true;
    const stopped: Transition = preCopy
      ? await source.connection.call('vf.setState', { vf: source.vf, state: 'STOP_COPY', ...timeout, ...(stateCopy.sourceSession === undefined ? {} : { session: stateCopy.sourceSession }) }, { signal })
      : await firstChange(() => { plan.sourceMoved = false; }, () => source.connection.call('vf.quiesce', { vf: source.vf, ...timeout, ...lease }, { signal }));
    noteState(report.source, stopped);
    report.drainedCommands = stopped.drainedCommands;

    enter('stop-copy', `copying the state of ${source.label} in ${formatName(verdict.format)}`);
    report.bytes.stopCopy = await stateCopy.copyAvailable(true, preCopy ? undefined : verdict.format);
    plan.sourceSession = stateCopy.sourceSession;
    stateCopy.checkComplete();
    report.bytes.total = stateCopy.offset;
    report.source.state = 'STOP_COPY';

    enter('apply', `${destination.label}: RESUMING → STOP applies the state`);
    noteState(report.destination, await destination.connection.call('vf.setState', { vf: destination.vf, state: 'STOP', ...timeout, ...sessionOf(stateCopy.destinationSession) }, { signal }));

    if (options.beforeResume !== undefined) {
      enter('before-resume', `running: ${options.beforeResume}`);
      await keepingLeases(new LeaseKeeper([{ side: source, session: stateCopy.sourceSession }, { side: destination, session: undefined }]),
        () => runBeforeResume(options.beforeResume as string, source, destination, signal));
    }

    // The last moment a cancel is possible.
    signal.throwIfAborted();
    enter('resume', `${destination.label}: RUNNING`);
    resumeSent = true;
    let resumed: Transition;
    try {
      resumed = await resumeDestination(destination, timeout);
    } catch (error) {
      if (error instanceof RefusedWhileStopped) resumeSent = false;
      throw error;
    }
    clock.destinationRunning();
    noteState(report.destination, resumed);

    enter('cleanup', `${source.label}: STOP ends its save`);
    await cleanUpSource(source, stateCopy.sourceSession, options, report);
    if (signal.aborted) report.warnings.push('interrupted after the destination was asked to run: the migration was completed, not cancelled');
    clock.end();
    return report;
  } catch (error) {
    const failedIn = clock.phase;
    if (failedIn !== undefined) report.failedIn = failedIn;
    clock.end();
    if (copy !== undefined) {
      plan.sourceSession ??= copy.sourceSession;
      if (copy.loadSent) plan.destinationTouched = 'loaded';
    }
    report.interrupted = signal.aborted;
    const cause = signal.aborted ? signal.reason : error;
    if (sides === undefined || (!plan.sourceMoved && plan.destinationTouched === 'none')) {
      if (!(cause instanceof Interrupted)) throw cause;
      report.outcome = 'cancelled';
      throw new MigrationFailure(report, cause, 'Nothing had been changed yet: the source runs on.');
    }
    if (resumeSent) throw unresolvedResume(report, sides, cause);
    observer.phase(report.failedIn ?? 'connect', `cancelling: ${causeText(cause)}`);
    const outcome = await cancelMigration(sides.source, sides.destination, plan, options.drainMs);
    report.cancel = { source: outcome.source, destination: outcome.destination };
    report.source.state = outcome.source?.state ?? report.source.state;
    report.destination.state = outcome.destination?.state ?? report.destination.state;
    report.outcome = outcome.clean ? 'cancelled' : 'unresolved';
    throw new MigrationFailure(report, cause, outcome.clean ? cancelledAdvice(sides) : unresolvedAdvice(sides, report));
  } finally {
    observer.close();
    sides?.source.close();
    sides?.destination.close();
  }
}

/** Both connections, or neither (the other one closed). */
async function openBoth(ctx: CommandContext, from: Endpoint, to: Endpoint, signal: AbortSignal): Promise<{ source: MigrationSide; destination: MigrationSide }> {
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

async function cleanUpSource(source: MigrationSide, session: string | undefined, options: MigrateOptions, report: MigrationReport): Promise<void> {
  try {
    noteState(report.source, await source.connection.call('vf.setState', { vf: source.vf, state: 'STOP', ...sessionOf(session) }));
    if (options.resetSource) noteState(report.source, await source.connection.call('vf.reset', { vf: source.vf }));
  } catch (error) {
    // The device runs on the destination: the migration is done whatever the source's cleanup says.
    report.warnings.push(`${source.label}: cleanup failed: ${asCliError(error).message}; it stays stopped, and \`vfmigctl reset\` frees it`);
  }
  if (!options.resetSource && report.source.state === 'STOP') {
    report.warnings.push(`${source.label} stays in STOP, as QEMU leaves a migrated source; once its lease ends it shows as stranded until \`vfmigctl --agent ${source.target.name} reset ${source.vf}\` frees it (or use --reset-source)`);
  }
}

function noteState(side: MigrationReport['source'], transition: Transition): void {
  side.state = transition.state;
}

function sessionOf(session: string | undefined): { session?: string } {
  return session === undefined ? {} : { session };
}

function unresolvedResume(report: MigrationReport, sides: { source: MigrationSide; destination: MigrationSide }, cause: unknown): MigrationFailure {
  report.outcome = 'unresolved';
  const { source, destination } = sides;
  return new MigrationFailure(report, cause,
    `The destination's vf.resume has no clear answer: it may be running. The source is left stopped and is not run again by vfmigctl. `
    + `Look at the destination (\`vfmigctl --agent ${destination.target.name} get ${destination.vf}\`): if it is RUNNING the migration is done; `
    + `if it is not, run the source again (\`vfmigctl --agent ${source.target.name} resume ${source.vf}\`).`);
}

function cancelledAdvice(sides: { source: MigrationSide; destination: MigrationSide }): string {
  return `The ${sides.source.label} runs on; the ${sides.destination.label} dropped what it received.`;
}

function unresolvedAdvice(sides: { source: MigrationSide; destination: MigrationSide }, report: MigrationReport): string {
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
