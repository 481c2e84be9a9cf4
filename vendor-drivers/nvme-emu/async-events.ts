/**
 * Asynchronous Event Request bookkeeping.
 *
 * AER commands are parked, not executed: they stay outstanding (up to
 * AERL+1) until the controller has an event to report, do not count as in
 * flight when the VF drains, and travel in the saved state. Once an event of
 * a type has been reported, further events of that type are held back until
 * the host reads the log page named in the event (with RAE cleared).
 */
import { AERL, MAX_QUEUED_EVENTS } from './nvme-defs.ts';

export interface AsyncEvent {
  readonly type: number;
  readonly info: number;
  readonly logPage: number;
}

/** An event type awaiting the read of its log page. */
export interface EventMask {
  readonly type: number;
  readonly logPage: number;
}

export interface AsyncEventSnapshot {
  readonly outstanding: readonly number[];
  readonly queued: readonly AsyncEvent[];
  readonly masked: readonly EventMask[];
}

export interface EventDelivery {
  readonly cid: number;
  /** AER completion dword 0: type in bits 2:0, info in 15:8, log page in 23:16. */
  readonly dw0: number;
}

export const MAX_OUTSTANDING_AERS = AERL + 1;

export class AsyncEventState {
  #outstanding: number[] = [];
  #queued: AsyncEvent[] = [];
  #masked: EventMask[] = [];

  get outstanding(): readonly number[] {
    return this.#outstanding;
  }

  get isFull(): boolean {
    return this.#outstanding.length >= MAX_OUTSTANDING_AERS;
  }

  park(cid: number): void {
    this.#outstanding.push(cid);
  }

  /** Abort of an outstanding AER: true if `cid` was one. */
  withdraw(cid: number): boolean {
    const index = this.#outstanding.indexOf(cid);
    if (index < 0) return false;
    this.#outstanding.splice(index, 1);
    return true;
  }

  /** Records an event; identical pending events collapse into one, and the queue is bounded. */
  raise(event: AsyncEvent): void {
    if (this.#queued.some((e) => e.type === event.type && e.info === event.info && e.logPage === event.logPage)) return;
    if (this.#queued.length >= MAX_QUEUED_EVENTS) return;
    this.#queued.push(event);
  }

  /** The next event that can be reported now, paired with the AER that reports it. */
  takeDelivery(): EventDelivery | undefined {
    if (this.#outstanding.length === 0) return undefined;
    const index = this.#queued.findIndex((event) => !this.#masked.some((mask) => mask.type === event.type));
    if (index < 0) return undefined;
    const [event] = this.#queued.splice(index, 1);
    const cid = this.#outstanding.shift();
    if (!event || cid === undefined) return undefined;
    this.#masked.push({ type: event.type, logPage: event.logPage });
    return { cid, dw0: (event.type & 0x7) | ((event.info & 0xff) << 8) | ((event.logPage & 0xff) << 16) };
  }

  /** Get Log Page with RAE cleared re-arms the event types that pointed at it. */
  logPageRead(logPage: number): void {
    this.#masked = this.#masked.filter((mask) => mask.logPage !== logPage);
  }

  clear(): void {
    this.#outstanding = [];
    this.#queued = [];
    this.#masked = [];
  }

  snapshot(): AsyncEventSnapshot {
    return { outstanding: [...this.#outstanding], queued: [...this.#queued], masked: [...this.#masked] };
  }

  restore(snapshot: AsyncEventSnapshot): void {
    this.#outstanding = [...snapshot.outstanding];
    this.#queued = [...snapshot.queued];
    this.#masked = [...snapshot.masked];
  }
}
