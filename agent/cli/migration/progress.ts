/**
 * How a migration's progress is shown. On a terminal, one bar on stderr:
 * phase, bytes of the stream moved and its length, rate, ETA. Elsewhere
 * (a log, a pipe, a test) one line per phase change on stderr and no bar;
 * with --quiet, nothing.
 */
import { performance } from 'node:perf_hooks';
import { Presets, SingleBar } from 'cli-progress';
import type { Output } from '../output.ts';
import { bytesText } from '../output.ts';
import type { MigrationObserver } from './migrate.ts';
import type { Phase } from './migration-report.ts';

export function progressFor(out: Output): MigrationObserver {
  if (out.quiet) return { phase: () => undefined, bytes: () => undefined, close: () => undefined };
  return out.interactive ? new ProgressBar() : new PhaseLines(out);
}

class PhaseLines implements MigrationObserver {
  private readonly out: Output;
  constructor(out: Output) {
    this.out = out;
  }
  phase(phase: Phase, detail: string): void {
    this.out.note(`${phase}: ${detail}`);
  }
  bytes(): void {
    // A line per slice would drown a log: the phases say enough.
  }
  close(): void {
    // nothing drawn
  }
}

class ProgressBar implements MigrationObserver {
  private readonly bar = new SingleBar({
    format: '{phase} [{bar}] {moved} of {length}  {rate}  ETA {eta_formatted}',
    stream: process.stderr,
    hideCursor: true,
    etaBuffer: 20,
    fps: 10,
  }, Presets.shades_classic);
  private started = false;
  private phaseName: Phase = 'connect';
  private firstByteAt: number | undefined;
  private moved = 0;
  private total = 0;

  phase(phase: Phase): void {
    this.phaseName = phase;
    if (!this.started) {
      this.bar.start(1, 0, this.payload());
      this.started = true;
    }
    this.bar.update(this.payload());
  }

  bytes(moved: number, total: number): void {
    this.firstByteAt ??= performance.now();
    this.moved = moved;
    this.total = total;
    this.bar.setTotal(Math.max(total, moved, 1));
    this.bar.update(moved, this.payload());
  }

  close(): void {
    if (this.started) this.bar.stop();
  }

  private payload(): Record<string, string> {
    const { moved, total, firstByteAt } = this;
    const seconds = firstByteAt === undefined ? 0 : (performance.now() - firstByteAt) / 1000;
    return {
      phase: this.phaseName.padEnd(13),
      moved: bytesText(moved),
      length: total > 0 ? bytesText(total) : '?',
      rate: seconds > 0 ? `${bytesText(moved / seconds)}/s` : '-',
    };
  }
}
