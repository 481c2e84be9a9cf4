/**
 * Undoing a migration that failed before the destination was asked to
 * run, as the README's Failure modes say a VMM must:
 *  - the source runs again: vf.setState RUNNING naming its save session,
 *    as QEMU's cancel does (a session that is no longer open is refused,
 *    so another client's new migration is not cancelled by mistake);
 *  - the destination drops whatever it received or applied: vf.reset, the
 *    one call that leaves RESUMING without applying and forgets an applied
 *    state; a destination that only stopped runs again as it was.
 * The source goes first: the guest waits on it, and the destination cannot
 * run what it got without a vf.resume, which was never sent. Each call goes
 * on a new connection where the old one was abandoned.
 */
import type { VfioState } from '../../../schemas/types.ts';
import { AgentRefusal, asCliError } from '../cli-errors.ts';
import type { CancelStep } from './migration-report.ts';
import type { MigrationSide } from './migration-side.ts';

export interface CancelPlan {
  /** A call that takes the source out of RUNNING was sent (and not refused). */
  sourceMoved: boolean;
  /** The save session the source's slices named, once one was. */
  sourceSession: string | undefined;
  /** What was sent to the destination: nothing, a STOP, or state bytes (loaded, maybe applied). */
  destinationTouched: 'none' | 'stopped' | 'loaded';
  /** Where the destination was before: what it goes back to. */
  destinationStartState: 'RUNNING' | 'STOP';
}

export interface CancelOutcome {
  readonly source: CancelStep | null;
  readonly destination: CancelStep | null;
  /** Both sides are back where they should be. */
  readonly clean: boolean;
}

export async function cancelMigration(source: MigrationSide, destination: MigrationSide, plan: CancelPlan, drainMs: number | undefined): Promise<CancelOutcome> {
  const timeout = drainMs === undefined ? {} : { timeoutMs: drainMs };
  const sourceStep = plan.sourceMoved ? await runSource(source, plan.sourceSession, timeout) : null;
  const destinationStep = await cleanDestination(destination, plan, timeout);
  return { source: sourceStep, destination: destinationStep, clean: (sourceStep?.ok ?? true) && (destinationStep?.ok ?? true) };
}

async function runSource(source: MigrationSide, session: string | undefined, timeout: { timeoutMs?: number }): Promise<CancelStep> {
  const action = `vf.setState RUNNING${session === undefined ? '' : ` (session ${session})`}`;
  try {
    const agent = await source.usable();
    const done = await agent.call('vf.setState', { vf: source.vf, state: 'RUNNING', ...timeout, ...(session === undefined ? {} : { session }) });
    return { action, ok: done.state === 'RUNNING', state: done.state };
  } catch (error) {
    // Our session is gone: the lease, or the agent's restart, may have run the VF already. Whether it runs is what matters.
    if (error instanceof AgentRefusal && error.errorName === 'SESSION_UNKNOWN') {
      const now = await stateOf(source);
      return { action, ok: now === 'RUNNING', state: now, error: error.toJson() };
    }
    return failed(action, error, await stateOf(source));
  }
}

async function cleanDestination(destination: MigrationSide, plan: CancelPlan, timeout: { timeoutMs?: number }): Promise<CancelStep | null> {
  if (plan.destinationTouched === 'none') return null;
  const stopAgain = plan.destinationStartState === 'STOP';
  if (plan.destinationTouched === 'stopped' && stopAgain) return { action: 'none: it was in STOP before, and got no state', ok: true, state: await stateOf(destination) };
  const action = plan.destinationTouched === 'stopped' ? 'vf.resume (it got no state: it runs as it was)' : `vf.reset (drops what it received)${stopAgain ? ', then vf.setState STOP (as it was)' : ''}`;
  try {
    const agent = await destination.usable();
    let done = plan.destinationTouched === 'stopped'
      ? await agent.call('vf.resume', { vf: destination.vf, ...timeout })
      : await agent.call('vf.reset', { vf: destination.vf });
    if (plan.destinationTouched === 'loaded' && stopAgain) done = await agent.call('vf.setState', { vf: destination.vf, state: 'STOP', ...timeout });
    return { action, ok: true, state: done.state };
  } catch (error) {
    return failed(action, error, await stateOf(destination));
  }
}

function failed(action: string, error: unknown, state: VfioState | null): CancelStep {
  return { action, ok: false, state, error: asCliError(error).toJson() };
}

/** The side's state now, or null if its agent does not say. */
async function stateOf(side: MigrationSide): Promise<VfioState | null> {
  try {
    return (await (await side.usable()).call('vf.getState', { vf: side.vf })).state;
  } catch {
    return null;
  }
}
