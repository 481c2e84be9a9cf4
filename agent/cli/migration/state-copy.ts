/**
 * Moves the state stream from the source's vf.save to the destination's
 * vf.load, slice by slice, as a VMM does. Each side's session is learnt
 * from its first slice and named in every later call, so a session that is
 * no longer the one open (another client's, or one the agent lost) is
 * refused instead of read or written as ours. Saves go one at a time (in
 * PRE_COPY the device says only then what it has); loads follow them with
 * a few in flight, so the two agents work at once.
 */
import type { FormatRef, VfLoadResult } from '../../../schemas/types.ts';
import { UnreachableError } from '../cli-errors.ts';
import type { MigrationSide } from './migration-side.ts';

/** Loads in flight behind the saves. */
const LOAD_DEPTH = 4;

export interface CopyOptions {
  readonly sliceBytes: number;
  /** The lease both sides' first calls ask for. */
  readonly leaseMs: number | undefined;
  readonly signal: AbortSignal;
  /** After every slice: stream bytes moved so far, and the stream's length as the source last said it. */
  readonly onSlice: (moved: number, totalBytes: number) => void;
}

export class StateCopy {
  /** Stream bytes handed out by the source so far: the next save's offset. */
  offset = 0;
  /** The stream's length, as the last slice said it (exact in STOP_COPY, an estimate in PRE_COPY). */
  totalBytes = 0;
  sourceSession: string | undefined;
  destinationSession: string | undefined;
  /** Set once a vf.load went out: the destination may be RESUMING now. */
  loadSent = false;
  private readonly source: MigrationSide;
  private readonly destination: MigrationSide;
  private readonly options: CopyOptions;
  private loads: Promise<void>[] = [];
  private loadFailure: unknown;
  private lastLoad: VfLoadResult | undefined;

  constructor(source: MigrationSide, destination: MigrationSide, options: CopyOptions) {
    this.source = source;
    this.destination = destination;
    this.options = options;
  }

  /**
   * Copies what the source hands out now. In PRE_COPY (`toEnd` false) that
   * is until a slice comes back short: the device has nothing more for the
   * moment. In STOP_COPY until the slice that ends the stream. `format`
   * goes with a first save that opens the save from STOP. Returns the bytes
   * moved.
   */
  async copyAvailable(toEnd: boolean, format?: FormatRef): Promise<number> {
    const { sliceBytes, signal } = this.options;
    let moved = 0;
    for (;;) {
      const first = this.sourceSession === undefined;
      const { result, bytes } = await this.source.connection.callForBytes('vf.save', {
        vf: this.source.vf,
        maxBytes: sliceBytes,
        offset: this.offset,
        ...(first ? {} : { session: this.sourceSession }),
        ...(first && format !== undefined ? { format } : {}),
        ...(first && this.options.leaseMs !== undefined ? { leaseMs: this.options.leaseMs } : {}),
      }, { signal });
      if (result.offset !== this.offset) throw this.broken(this.source, `vf.save answered the slice at ${result.offset}, not at ${this.offset}`);
      this.sourceSession = result.session;
      this.totalBytes = result.totalBytes;
      if (bytes.length > 0) {
        await this.load(bytes, this.offset);
        this.offset += bytes.length;
        moved += bytes.length;
      }
      this.options.onSlice(this.offset, this.totalBytes);
      if (result.eof) break;
      if (!toEnd && bytes.length < sliceBytes) break;
      if (toEnd && bytes.length === 0) throw this.broken(this.source, 'vf.save in STOP_COPY handed out an empty slice before the end of the stream');
    }
    await this.drain();
    return moved;
  }

  /** The destination has taken the whole stream: its last load said so. */
  checkComplete(): void {
    const last = this.lastLoad;
    if (last === undefined || !last.complete || last.received !== this.offset) {
      throw this.broken(this.destination, `the destination took ${last?.received ?? 0} of ${this.offset} bytes and does not say the state is complete`);
    }
  }

  private async load(bytes: Buffer, offset: number): Promise<void> {
    if (this.loadFailure !== undefined) throw this.loadFailure;
    const first = this.destinationSession === undefined;
    this.loadSent = true;
    const sent = this.destination.connection.callWithBytes('vf.load', {
      vf: this.destination.vf,
      offset,
      ...(first ? {} : { session: this.destinationSession }),
      ...(first && this.options.leaseMs !== undefined ? { leaseMs: this.options.leaseMs } : {}),
    }, bytes, { signal: this.options.signal }).then((progress) => {
      this.destinationSession = progress.session;
      if (progress.received !== offset + bytes.length) throw this.broken(this.destination, `the destination took ${progress.received} bytes after the slice ending at ${offset + bytes.length}`);
      this.lastLoad = progress;
    });
    // The first load opens the resume session: its id goes with every later one, so it is awaited alone.
    if (first) {
      await sent;
      return;
    }
    // Failures are kept, never left unhandled, and thrown at the next step.
    this.loads.push(sent.catch((error: unknown) => { this.loadFailure ??= error; }));
    if (this.loads.length >= LOAD_DEPTH) await this.loads.shift();
    if (this.loadFailure !== undefined) throw this.loadFailure;
  }

  private async drain(): Promise<void> {
    await Promise.all(this.loads.splice(0));
    if (this.loadFailure !== undefined) throw this.loadFailure;
  }

  private broken(side: MigrationSide, why: string): UnreachableError {
    return new UnreachableError(side.target.name, 'protocol', why);
  }
}
