/**
 * A migration that began and did not finish: cancelled (exit 4, the
 * source runs on and the destination dropped what it got) or unresolved
 * (exit 5, a side the CLI could not bring back, or a destination that may
 * have run). It carries the cause and the report so far.
 */
import { asCliError, CliError, type JsonError } from '../cli-errors.ts';
import { EXIT } from '../exit-codes.ts';
import { CommandFailed } from './before-resume.ts';
import type { MigrationReport } from './migration-report.ts';

/** Ctrl-C (SIGINT) or SIGTERM. */
export class Interrupted extends Error {
  constructor(signal: string) {
    super(`interrupted (${signal})`);
    this.name = 'Interrupted';
  }
}

export class MigrationFailure extends CliError {
  readonly exitCode: typeof EXIT.CANCELLED | typeof EXIT.UNRESOLVED;
  readonly report: MigrationReport;
  override readonly cause: unknown;
  private readonly advice: string;

  constructor(report: MigrationReport, cause: unknown, advice: string) {
    const cancelled = report.outcome === 'cancelled';
    super(`migration ${cancelled ? 'cancelled' : 'NOT cancelled cleanly'}${report.failedIn === undefined ? '' : ` in ${report.failedIn}`}: ${causeText(cause)}`);
    this.name = 'MigrationFailure';
    this.exitCode = cancelled ? EXIT.CANCELLED : EXIT.UNRESOLVED;
    this.report = report;
    this.cause = cause;
    this.advice = advice;
  }

  override line(): string {
    return `${this.message}\n  ${this.advice}`;
  }

  toJson(): JsonError {
    const cancelled = this.exitCode === EXIT.CANCELLED;
    return {
      code: this.exitCode,
      message: cancelled ? 'Migration cancelled' : 'Migration not cancelled cleanly',
      data: { code: cancelled ? 'MIGRATION_CANCELLED' : 'MIGRATION_UNRESOLVED', detail: `${this.message}. ${this.advice}`, cause: causeJson(this.cause), report: this.report },
    };
  }
}

export function causeText(cause: unknown): string {
  if (cause instanceof Interrupted) return cause.message;
  if (cause instanceof CliError) return cause.message;
  return cause instanceof Error ? cause.message : String(cause);
}

export function causeJson(cause: unknown): JsonError {
  if (cause instanceof Interrupted) return { code: EXIT.CANCELLED, message: 'Interrupted', data: { code: 'INTERRUPTED', detail: cause.message } };
  if (cause instanceof CommandFailed) {
    return { code: EXIT.CANCELLED, message: 'Command failed', data: { code: 'BEFORE_RESUME_FAILED', detail: cause.message } };
  }
  return asCliError(cause).toJson();
}
