/**
 * What a migration did, as the final report (and --json) says it: bytes
 * per phase, the downtime (from the source leaving RUNNING or PRE_COPY for
 * STOP_COPY until the destination runs), the time of each phase, and, when
 * it failed, where, why, and what the cancel left on each side.
 */
import { performance } from 'node:perf_hooks';
import type { FormatRef, VfioState } from '../../../schemas/types.ts';
import type { JsonError } from '../cli-errors.ts';
import type { Transport } from './migration-side.ts';

export type Phase = 'connect' | 'check' | 'prepare' | 'pre-copy' | 'stop' | 'stop-copy' | 'apply' | 'before-resume' | 'resume' | 'cleanup';

export interface SideReport {
  readonly agent: string;
  readonly vf: string;
  transport: Transport | null;
  /** Its VFIO state at the end, as its agent last said it; null when unknown. */
  state: VfioState | null;
}

/** What the cancel did on one side. */
export interface CancelStep {
  readonly action: string;
  readonly ok: boolean;
  readonly state: VfioState | null;
  readonly error?: JsonError;
}

export interface MigrationReport {
  outcome: 'migrated' | 'cancelled' | 'unresolved';
  readonly source: SideReport;
  readonly destination: SideReport;
  format: FormatRef | null;
  readonly bytes: { total: number; preCopy: number; stopCopy: number };
  preCopyRounds: number;
  drainedCommands: number;
  downtimeMs: number | null;
  readonly phases: { name: Phase; ms: number }[];
  totalMs: number;
  readonly warnings: string[];
  /** When it failed: the phase it failed in, and what the cancel did. */
  failedIn?: Phase;
  interrupted?: boolean;
  cancel?: { source: CancelStep | null; destination: CancelStep | null };
}

export function emptyReport(source: { agent: string; vf: string }, destination: { agent: string; vf: string }): MigrationReport {
  return {
    outcome: 'migrated',
    source: { ...source, transport: null, state: null },
    destination: { ...destination, transport: null, state: null },
    format: null,
    bytes: { total: 0, preCopy: 0, stopCopy: 0 },
    preCopyRounds: 0,
    drainedCommands: 0,
    downtimeMs: null,
    phases: [],
    totalMs: 0,
    warnings: [],
  };
}

/** Times the phases into a report; the current phase is where a failure happened. */
export class PhaseClock {
  private readonly report: MigrationReport;
  private readonly started = performance.now();
  private current: { name: Phase; at: number } | undefined;
  private stoppedAt: number | undefined;

  constructor(report: MigrationReport) {
    this.report = report;
  }

  get phase(): Phase | undefined {
    return this.current?.name;
  }

  enter(name: Phase): void {
    this.end();
    this.current = { name, at: performance.now() };
  }

  /** The source is about to leave RUNNING or PRE_COPY for good: the downtime starts. */
  sourceStopping(): void {
    this.stoppedAt = performance.now();
  }

  /** The destination runs: the downtime ends. */
  destinationRunning(): void {
    if (this.stoppedAt !== undefined) this.report.downtimeMs = performance.now() - this.stoppedAt;
  }

  /** Closes the current phase and the whole. */
  end(): void {
    if (this.current !== undefined) this.report.phases.push({ name: this.current.name, ms: performance.now() - this.current.at });
    this.current = undefined;
    this.report.totalMs = performance.now() - this.started;
  }
}
