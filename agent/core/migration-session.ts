/**
 * A save or a resume of one VF, as an object of its own: the call that
 * opens it returns its id, the calls that continue it may name it, and it
 * knows its owner, its phase and its times. What a session is, is plain
 * data (`SessionInfo`), so that it can be journaled, leased and recovered
 * without reaching into the state machine; the state machine decides when
 * one opens and ends.
 */
import { randomUUID } from 'node:crypto';
import { Fault } from './faults.ts';
import { LoadBuffer, type SliceSource } from './load-buffer.ts';

export type SessionKind = 'save' | 'resume';
/** Where a session is: saving in STOP_COPY, or resuming. */
export type SessionPhase = 'stop-copy' | 'resuming';

export interface SessionInfo {
  readonly id: string;
  readonly kind: SessionKind;
  readonly vf: string;
  /** The principal whose migration it is. */
  readonly owner: string;
  readonly phase: SessionPhase;
  /** ISO 8601 times. */
  readonly createdAt: string;
  readonly lastActivityAt: string;
  /** Stream bytes handed out (save) or taken in (resume) so far. */
  readonly bytes: number;
}

abstract class MigrationSession {
  readonly id = randomUUID();
  readonly vf: string;
  readonly owner: string;
  readonly createdAt: number;
  #lastActivityAt: number;
  readonly #now: () => number;

  constructor(vf: string, owner: string, now: () => number) {
    this.vf = vf;
    this.owner = owner;
    this.#now = now;
    this.createdAt = now();
    this.#lastActivityAt = this.createdAt;
  }

  abstract readonly kind: SessionKind;
  abstract readonly phase: SessionPhase;
  abstract readonly bytes: number;

  get lastActivityAt(): number {
    return this.#lastActivityAt;
  }

  /**
   * A call continuing this session: it must name this session, if it names
   * one. A name that is not this one is a session that ended (or one of an
   * agent that has since restarted): going on would mix two streams.
   */
  continueAs(named: string | undefined): void {
    if (named !== undefined && named !== this.id) {
      throw new Fault('SESSION_UNKNOWN', `VF ${this.vf} has no session ${named}; its open ${this.kind} session is ${this.id}`, { session: this.id });
    }
    this.#lastActivityAt = this.#now();
  }

  info(): SessionInfo {
    return {
      id: this.id,
      kind: this.kind,
      vf: this.vf,
      owner: this.owner,
      phase: this.phase,
      createdAt: new Date(this.createdAt).toISOString(),
      lastActivityAt: new Date(this.#lastActivityAt).toISOString(),
      bytes: this.bytes,
    };
  }
}

export interface SaveSlice {
  readonly data: Buffer;
  readonly offset: number;
  readonly remaining: number;
  readonly totalBytes: number;
  readonly eof: boolean;
}

/** The saving side: the state stream, handed out in slices. */
export class SaveSession extends MigrationSession {
  readonly kind = 'save';
  readonly phase = 'stop-copy';
  readonly #stream: Buffer;
  #cursor = 0;

  constructor(vf: string, owner: string, stream: Buffer, now: () => number = Date.now) {
    super(vf, owner, now);
    this.#stream = stream;
  }

  get bytes(): number {
    return this.#cursor;
  }

  get totalBytes(): number {
    return this.#stream.length;
  }

  get pendingBytes(): number {
    return this.#stream.length - this.#cursor;
  }

  /** The next `maxBytes` from `offset` (default: where the last slice ended). */
  slice(maxBytes: number, offset: number | undefined): SaveSlice {
    const start = offset ?? this.#cursor;
    if (start > this.#stream.length) {
      throw new Fault('STREAM_OFFSET', `offset ${start} is past the end of the ${this.#stream.length}-byte save stream`, { expected: this.#cursor, totalBytes: this.#stream.length });
    }
    const end = Math.min(this.#stream.length, start + maxBytes);
    this.#cursor = end;
    return { data: this.#stream.subarray(start, end), offset: start, remaining: this.#stream.length - end, totalBytes: this.#stream.length, eof: end === this.#stream.length };
  }

  /** Where the stream is, for a refused call to come back to. */
  mark(): number {
    return this.#cursor;
  }

  rewind(mark: number): void {
    this.#cursor = mark;
  }
}

export interface LoadProgress {
  readonly received: number;
  readonly totalBytes: number | null;
  readonly complete: boolean;
}

/** The resuming side: the state stream, taken in slices, applied when the session commits. */
export class ResumeSession extends MigrationSession {
  readonly kind = 'resume';
  readonly phase = 'resuming';
  readonly #buffer: LoadBuffer;

  constructor(vf: string, owner: string, maxStateBytes: number, now: () => number = Date.now) {
    super(vf, owner, now);
    this.#buffer = new LoadBuffer(maxStateBytes);
  }

  get bytes(): number {
    return this.#buffer.received;
  }

  /** Takes the slice at `offset`; a refused slice leaves the session as it was. */
  write(offset: number, data: SliceSource): LoadProgress {
    this.#buffer.write(offset, data);
    return { received: this.#buffer.received, totalBytes: this.#buffer.totalBytes, complete: this.#buffer.complete };
  }

  /** Everything received, for the commit. */
  contents(): Buffer {
    return this.#buffer.contents();
  }
}
