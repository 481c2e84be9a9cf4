/**
 * A guest I/O workload that proves no data was lost, duplicated or
 * misplaced: it writes self-describing blocks, keeps a model of what every
 * LBA must hold, checks each read against that model, accounts for every
 * command exactly once, and at the end re-reads everything it touched.
 *
 * Every 512-byte sector it writes carries a magic, its LBA, the write
 * generation, its sector index, the seed, seeded noise and a CRC-32, so a
 * mismatch says what was found instead (stale generation, another LBA's
 * data, zeros). Commands in flight never overlap in LBAs, so the expected
 * content of a range is fixed while a command on it is outstanding.
 *
 * Deterministic: the command stream and all data derive from `seed` (and
 * the order in which the device completes commands).
 */
import {
  completionSucceeded, encodeDsmRanges, nvmDatasetManagement, nvmFlush, nvmRead, nvmWrite, nvmWriteZeroes,
  type NvmeCommand, type NvmeCompletion,
} from './guest-nvme-commands.ts';
import { NvmeProtocolError, type ProtocolViolation } from './guest-nvme-errors.ts';
import { ONCS, deallocatedReadsZero } from './guest-nvme-identify.ts';
import { PAGE_BYTES, type GuestAllocation } from './guest-nvme-memory.ts';
import { yieldToDevice, type GuestNvme } from './guest-nvme.ts';
import { blockPattern, describeSector, firstDifference, firstNonZero, mulberry32 } from './guest-nvme-data-pattern.ts';

export type WorkloadCommandKind = 'write' | 'read' | 'write-zeroes' | 'deallocate' | 'flush';
export type CommandMix = Readonly<Record<WorkloadCommandKind, number>>;

export interface VerifyingWorkloadOptions {
  readonly nsid: number;
  /** Existing I/O queue pairs to spread commands over. */
  readonly queueIds: readonly number[];
  readonly seed: number;
  /** LBAs the workload may touch: [firstLba, firstLba + lbaCount). Default: the first 16384 (or the namespace). */
  readonly firstLba?: number;
  readonly lbaCount?: number;
  /** Largest command, in blocks. Default: 64 KiB worth, capped by MDTS. */
  readonly maxBlocksPerCommand?: number;
  /** Commands `runFor`/`runUntil` keep in flight. Default 64. */
  readonly queueDepth?: number;
  /** Relative weights; kinds the namespace does not support (ONCS) are dropped. */
  readonly mix?: Partial<CommandMix>;
  /** What untouched LBAs hold: 'zeroes' for a fresh sparse namespace, else 'unknown' (not checked). */
  readonly initialContent?: 'zeroes' | 'unknown';
  /** Give a quarter of the data buffers a dword-aligned offset into their first page (exercises PRP1 offsets). Default true. */
  readonly unalignedBuffers?: boolean;
  /** How long `finish` waits for outstanding commands. Default 10 s. */
  readonly completionTimeoutMs?: number;
}

export interface CommandSummary {
  readonly id: number;
  readonly kind: WorkloadCommandKind;
  readonly qid: number;
  readonly cid: number;
  readonly slba: number;
  readonly blocks: number;
  readonly generation: number;
  readonly phase: 'workload' | 'final-verify';
}

export type WorkloadFailureKind = 'protocol-violation' | 'duplicate-completion' | 'missing-completion' | 'failed-status' | 'content-mismatch';

export interface WorkloadFailure {
  readonly kind: WorkloadFailureKind;
  readonly message: string;
  readonly command?: CommandSummary;
  readonly lba?: number;
  /** Offset of the first differing byte within the LBA. */
  readonly byteOffset?: number;
  readonly violation?: ProtocolViolation;
}

export interface QueueCounts {
  submitted: number;
  completed: number;
}

export interface WorkloadStats {
  readonly submitted: number;
  readonly completed: number;
  readonly bytesWritten: number;
  readonly bytesRead: number;
  readonly byKind: Readonly<Record<WorkloadCommandKind, number>>;
  readonly perQueue: Readonly<Record<number, Readonly<QueueCounts>>>;
  readonly inFlight: number;
  readonly maxInFlight: number;
  /** LBAs whose content a read has checked against the model, during the run and in the final pass. */
  readonly verifiedLbas: number;
  readonly finalVerifiedLbas: number;
}

export interface WorkloadReport {
  readonly ok: boolean;
  readonly seed: number;
  readonly failures: readonly WorkloadFailure[];
  /** Failures beyond the first 100 are counted, not kept. */
  readonly failureCount: number;
  readonly stats: WorkloadStats;
}

/** What an LBA must read as. `deallocated`: zeros or what it held before (DSM deallocate is advisory). */
type LbaContent =
  | { readonly kind: 'data'; readonly generation: number }
  | { readonly kind: 'zero' }
  | { readonly kind: 'unknown' }
  | { readonly kind: 'deallocated'; readonly before: LbaContent };

interface InFlightCommand {
  readonly summary: CommandSummary;
  readonly buffer: GuestAllocation | undefined;
  readonly dataAddress: number;
  completions: number;
  reportedMissing: boolean;
}

interface NamespaceGeometry {
  readonly lbaBytes: number;
  readonly maxBlocks: number;
  readonly deallocatedReadsZero: boolean;
  readonly supported: ReadonlySet<WorkloadCommandKind>;
}

const MAX_KEPT_FAILURES = 100;
const DEFAULT_MIX: CommandMix = { write: 50, read: 35, 'write-zeroes': 5, deallocate: 5, flush: 5 };

export class VerifyingWorkload {
  readonly nvme: GuestNvme;
  readonly seed: number;
  readonly #nsid: number;
  readonly #queues: readonly number[];
  readonly #geometry: NamespaceGeometry;
  readonly #firstLba: number;
  readonly #lbaCount: number;
  readonly #queueDepth: number;
  readonly #mix: readonly [WorkloadCommandKind, number][];
  readonly #unaligned: boolean;
  readonly #timeoutMs: number;
  readonly #initial: LbaContent;
  readonly #random: () => number;
  readonly #model = new Map<number, LbaContent>();
  /** LBAs (relative to firstLba) held by a command in flight. */
  readonly #busy: Uint8Array;
  readonly #inFlight = new Map<number, InFlightCommand>();
  readonly #settling = new Set<Promise<void>>();
  readonly #freeBuffers: GuestAllocation[] = [];
  readonly #failures: WorkloadFailure[] = [];
  #failureCount = 0;
  #nextId = 0;
  #generation = 0;
  #queueCursor = 0;
  #quiesced = false;
  readonly #stats = {
    submitted: 0, completed: 0, bytesWritten: 0, bytesRead: 0, maxInFlight: 0, verifiedLbas: 0, finalVerifiedLbas: 0,
    byKind: { write: 0, read: 0, 'write-zeroes': 0, deallocate: 0, flush: 0 } as Record<WorkloadCommandKind, number>,
    perQueue: {} as Record<number, QueueCounts>,
  };

  /** Reads the controller's and namespace's limits, then builds the workload. */
  static async create(nvme: GuestNvme, options: VerifyingWorkloadOptions): Promise<VerifyingWorkload> {
    const controller = await nvme.identifyController();
    const namespace = await nvme.identifyNamespace(options.nsid);
    const maxTransfer = controller.mdts === 0 ? Infinity : 2 ** controller.mdts * nvme.capabilities.minPageBytes;
    const supported = new Set<WorkloadCommandKind>(['write', 'read', 'flush']);
    if ((controller.oncs & ONCS.WRITE_ZEROES) !== 0) supported.add('write-zeroes');
    if ((controller.oncs & ONCS.DATASET_MANAGEMENT) !== 0) supported.add('deallocate');
    const lbaCount = options.lbaCount ?? Math.min(16384, namespace.nsze - (options.firstLba ?? 0));
    if ((options.firstLba ?? 0) + lbaCount > namespace.nsze) throw new RangeError(`LBA window exceeds the namespace (${namespace.nsze} blocks)`);
    const wantedBlocks = options.maxBlocksPerCommand ?? Math.floor(65536 / namespace.lbaBytes);
    const geometry: NamespaceGeometry = {
      lbaBytes: namespace.lbaBytes,
      maxBlocks: Math.max(1, Math.min(wantedBlocks, Math.floor(maxTransfer / namespace.lbaBytes), lbaCount, 0x1_0000)),
      deallocatedReadsZero: deallocatedReadsZero(namespace),
      supported,
    };
    return new VerifyingWorkload(nvme, options, geometry, lbaCount);
  }

  private constructor(nvme: GuestNvme, options: VerifyingWorkloadOptions, geometry: NamespaceGeometry, lbaCount: number) {
    if (options.queueIds.length === 0) throw new RangeError('the workload needs at least one I/O queue');
    this.nvme = nvme;
    this.seed = options.seed >>> 0;
    this.#nsid = options.nsid;
    this.#queues = [...options.queueIds];
    this.#geometry = geometry;
    this.#firstLba = options.firstLba ?? 0;
    this.#lbaCount = lbaCount;
    this.#queueDepth = options.queueDepth ?? 64;
    this.#mix = Object.entries({ ...DEFAULT_MIX, ...options.mix }).filter(
      ([kind, weight]) => weight > 0 && geometry.supported.has(kind as WorkloadCommandKind),
    ) as [WorkloadCommandKind, number][];
    this.#unaligned = options.unalignedBuffers ?? true;
    this.#timeoutMs = options.completionTimeoutMs ?? 10_000;
    this.#initial = options.initialContent === 'zeroes' ? { kind: 'zero' } : { kind: 'unknown' };
    this.#random = mulberry32(this.seed);
    this.#busy = new Uint8Array(lbaCount);
    for (const qid of this.#queues) this.#stats.perQueue[qid] = { submitted: 0, completed: 0 };
  }

  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Put up to `count` new commands in flight, spread over the queues, one doorbell per queue. Returns how many. */
  async submitBurst(count: number): Promise<number> {
    if (this.#quiesced) throw new Error('guest side is quiesced: no new submissions');
    const perQueue = new Map<number, InFlightCommand[]>();
    const room = new Map(this.#queues.map((qid) => [qid, this.nvme.freeSlots(qid)]));
    for (let made = 0; made < count; made++) {
      const qid = this.#nextQueueWithRoom(room);
      if (qid === undefined) break;
      const command = this.#plan(qid, this.#pickKind(), 'workload');
      if (command === undefined) continue;
      room.set(qid, (room.get(qid) ?? 0) - 1);
      appendTo(perQueue, qid, command);
    }
    return this.#submitPlanned(perQueue);
  }

  /** Poll every queue once and settle what completed. Returns the number of completions. */
  async pump(): Promise<number> {
    const before = this.#stats.completed;
    for (const qid of this.#queues) {
      try {
        await this.nvme.poll(qid);
      } catch (error) {
        if (!(error instanceof NvmeProtocolError)) throw error;
        for (const violation of error.violations) {
          this.#fail({ kind: 'protocol-violation', message: `${violation.kind}: ${violation.detail}`, violation });
        }
      }
    }
    while (this.#settling.size > 0) await Promise.all([...this.#settling]);
    return this.#stats.completed - before;
  }

  /** Keep `queueDepth` commands in flight for `ms` milliseconds. */
  async runFor(ms: number): Promise<void> {
    const end = performance.now() + ms;
    await this.#run(() => performance.now() >= end, Infinity);
  }

  /** Keep `queueDepth` commands in flight until `completed` commands have completed in total. */
  async runUntil(completed: number, timeoutMs = 60_000): Promise<void> {
    await this.#run(() => this.#stats.completed >= completed, timeoutMs);
  }

  /** The guest stops submitting (as when its vCPUs pause); commands in flight stay in flight. */
  quiesceGuestSide(): void {
    this.#quiesced = true;
  }
  resumeGuestSide(): void {
    this.#quiesced = false;
  }

  /** Wait for every outstanding command, then re-read and verify every LBA touched. */
  async finish(): Promise<WorkloadReport> {
    this.#quiesced = true;
    await this.#drain();
    const touched = [...this.#model.keys()].filter((lba) => this.#busy[lba - this.#firstLba] === 0).sort((a, b) => a - b);
    const runs: { slba: number; blocks: number }[] = [];
    for (const lba of touched) {
      const last = runs.at(-1);
      if (last !== undefined && last.slba + last.blocks === lba && last.blocks < this.#geometry.maxBlocks) last.blocks += 1;
      else runs.push({ slba: lba, blocks: 1 });
    }
    while (runs.length > 0) {
      const perQueue = new Map<number, InFlightCommand[]>();
      const room = new Map(this.#queues.map((qid) => [qid, this.nvme.freeSlots(qid)]));
      for (let made = 0; made < this.#queueDepth && runs.length > 0; made++) {
        const qid = this.#nextQueueWithRoom(room);
        if (qid === undefined) break;
        const run = runs.shift() as { slba: number; blocks: number };
        room.set(qid, (room.get(qid) ?? 0) - 1);
        appendTo(perQueue, qid, this.#track(qid, 'read', run.slba, run.blocks, 'final-verify'));
      }
      if (perQueue.size === 0) {
        this.#fail({ kind: 'missing-completion', message: `final verification skipped for ${runs.length} ranges: every queue is full of missing commands` });
        break;
      }
      await this.#submitPlanned(perQueue);
      await this.#drain();
    }
    return this.report();
  }

  report(): WorkloadReport {
    return { ok: this.#failureCount === 0, seed: this.seed, failures: [...this.#failures], failureCount: this.#failureCount, stats: this.stats() };
  }

  stats(): WorkloadStats {
    const s = this.#stats;
    const perQueue: Record<number, QueueCounts> = {};
    for (const [qid, counts] of Object.entries(s.perQueue)) perQueue[Number(qid)] = { ...counts };
    return { ...s, byKind: { ...s.byKind }, perQueue, inFlight: this.#inFlight.size };
  }

  // ---- planning -----------------------------------------------------------

  #pickKind(): WorkloadCommandKind {
    const total = this.#mix.reduce((sum, [, weight]) => sum + weight, 0);
    let pick = this.#random() * total;
    for (const [kind, weight] of this.#mix) {
      pick -= weight;
      if (pick < 0) return kind;
    }
    return this.#mix[0]?.[0] ?? 'write';
  }

  /** A command on a random free LBA range (a few tries), or undefined if the window is too busy. */
  #plan(qid: number, kind: WorkloadCommandKind, phase: CommandSummary['phase']): InFlightCommand | undefined {
    if (kind === 'flush') return this.#track(qid, kind, 0, 0, phase);
    for (let attempt = 0; attempt < 8; attempt++) {
      const blocks = 1 + Math.floor(this.#random() * this.#geometry.maxBlocks);
      const slba = this.#firstLba + Math.floor(this.#random() * (this.#lbaCount - blocks + 1));
      if (this.#rangeFree(slba, blocks)) return this.#track(qid, kind, slba, blocks, phase);
    }
    return undefined;
  }

  #rangeFree(slba: number, blocks: number): boolean {
    for (let lba = slba; lba < slba + blocks; lba++) if (this.#busy[lba - this.#firstLba] !== 0) return false;
    return true;
  }

  /** Claims the LBAs and a buffer for a command, so planning the next one sees them taken. */
  #track(qid: number, kind: WorkloadCommandKind, slba: number, blocks: number, phase: CommandSummary['phase']): InFlightCommand {
    for (let lba = slba; lba < slba + blocks; lba++) this.#busy[lba - this.#firstLba] = 1;
    const needsBuffer = kind === 'write' || kind === 'read' || kind === 'deallocate';
    const buffer = needsBuffer ? (this.#freeBuffers.pop() ?? this.nvme.allocate(this.#geometry.maxBlocks * this.#geometry.lbaBytes + PAGE_BYTES, 'workload buffer')) : undefined;
    const offset = buffer !== undefined && this.#unaligned && kind !== 'deallocate' && this.#random() < 0.25 ? 4 * Math.floor(this.#random() * (PAGE_BYTES / 4)) : 0;
    const generation = kind === 'write' ? ++this.#generation : 0;
    const summary: CommandSummary = { id: this.#nextId++, kind, qid, cid: -1, slba, blocks, generation, phase };
    return { summary, buffer, dataAddress: (buffer?.address ?? 0) + offset, completions: 0, reportedMissing: false };
  }

  async #submitPlanned(perQueue: Map<number, InFlightCommand[]>): Promise<number> {
    let submitted = 0;
    for (const [qid, commands] of perQueue) {
      const nvmeCommands: NvmeCommand[] = [];
      for (const command of commands) nvmeCommands.push(await this.#prepare(command));
      const handles = await this.nvme.submitBatch(qid, nvmeCommands);
      handles.forEach((handle, index) => {
        const command = commands[index] as InFlightCommand;
        const tracked: InFlightCommand = { ...command, summary: { ...command.summary, cid: handle.cid } };
        this.#inFlight.set(tracked.summary.id, tracked);
        this.#count(tracked.summary, 'submitted');
        // Registered when the CQE is consumed (a microtask queued inside `poll`, so
        // before `pump` continues), then awaited by `pump`: a read is verified
        // before its LBAs and buffer are released.
        void handle.completion.then((completion) => {
          const settle: Promise<void> = this.#settle(tracked, completion).finally(() => this.#settling.delete(settle));
          this.#settling.add(settle);
        });
      });
      submitted += handles.length;
    }
    this.#stats.maxInFlight = Math.max(this.#stats.maxInFlight, this.#inFlight.size);
    return submitted;
  }

  /** Writes the data (or DSM range list) into guest memory and builds the NVMe command. */
  async #prepare(command: InFlightCommand): Promise<NvmeCommand> {
    const { kind, slba, blocks, generation } = command.summary;
    const range = { nsid: this.#nsid, slba, blocks };
    const data = { address: command.dataAddress, length: blocks * this.#geometry.lbaBytes };
    switch (kind) {
      case 'write':
        await this.nvme.memWrite(data.address, blockPattern({ seed: this.seed, lbaBytes: this.#geometry.lbaBytes }, slba, blocks, generation));
        return nvmWrite(range, data, { forceUnitAccess: this.#random() < 0.1 });
      case 'read':
        return nvmRead(range, data);
      case 'write-zeroes':
        return nvmWriteZeroes(range, { deallocate: this.#geometry.deallocatedReadsZero && this.#random() < 0.5 });
      case 'deallocate': {
        const ranges = splitRange(slba, blocks, 1 + Math.floor(this.#random() * Math.min(4, blocks)));
        const list = encodeDsmRanges(ranges);
        await this.nvme.memWrite(command.dataAddress, list);
        return nvmDatasetManagement(this.#nsid, ranges.length, { address: command.dataAddress, length: list.length }, { deallocate: true });
      }
      case 'flush':
        return nvmFlush(this.#nsid);
    }
  }

  #nextQueueWithRoom(room: Map<number, number>): number | undefined {
    for (let step = 0; step < this.#queues.length; step++) {
      const qid = this.#queues[(this.#queueCursor + step) % this.#queues.length] as number;
      if ((room.get(qid) ?? 0) > 0) {
        this.#queueCursor = (this.#queueCursor + step + 1) % this.#queues.length;
        return qid;
      }
    }
    return undefined;
  }

  // ---- completion and verification ----------------------------------------

  async #settle(command: InFlightCommand, completion: NvmeCompletion): Promise<void> {
    const { summary } = command;
    command.completions += 1;
    if (command.completions > 1 || !this.#inFlight.has(summary.id)) {
      this.#fail({ kind: 'duplicate-completion', message: `${describeCommand(summary)} completed ${command.completions} times`, command: summary });
      return;
    }
    try {
      this.#count(summary, 'completed');
      const lbas = Array.from({ length: summary.blocks }, (_, i) => summary.slba + i);
      if (!completionSucceeded(completion)) {
        const { sct, sc } = completion.status;
        this.#fail({ kind: 'failed-status', message: `${describeCommand(summary)} failed: SCT=0x${sct.toString(16)} SC=0x${sc.toString(16)}`, command: summary });
        if (summary.kind !== 'read' && summary.kind !== 'flush') for (const lba of lbas) this.#model.set(lba, { kind: 'unknown' });
        return;
      }
      const bytes = summary.blocks * this.#geometry.lbaBytes;
      switch (summary.kind) {
        case 'write':
          for (const lba of lbas) this.#model.set(lba, { kind: 'data', generation: summary.generation });
          this.#stats.bytesWritten += bytes;
          break;
        case 'write-zeroes':
          for (const lba of lbas) this.#model.set(lba, { kind: 'zero' });
          break;
        case 'deallocate':
          for (const lba of lbas) {
            this.#model.set(lba, this.#geometry.deallocatedReadsZero ? { kind: 'deallocated', before: this.#contentOf(lba) } : { kind: 'unknown' });
          }
          break;
        case 'read':
          this.#verify(summary, await this.nvme.memRead(command.dataAddress, bytes));
          this.#stats.bytesRead += bytes;
          break;
        case 'flush':
          break;
      }
    } finally {
      this.#inFlight.delete(summary.id);
      for (let lba = summary.slba; lba < summary.slba + summary.blocks; lba++) this.#busy[lba - this.#firstLba] = 0;
      if (command.buffer !== undefined) this.#freeBuffers.push(command.buffer);
    }
  }

  #contentOf(lba: number): LbaContent {
    return this.#model.get(lba) ?? this.#initial;
  }

  /** Compares a read's data with the model, reporting the first mismatching LBA of the command. */
  #verify(summary: CommandSummary, data: Uint8Array): void {
    const { lbaBytes } = this.#geometry;
    for (let index = 0; index < summary.blocks; index++) {
      const lba = summary.slba + index;
      const actual = data.subarray(index * lbaBytes, (index + 1) * lbaBytes);
      const content = this.#contentOf(lba);
      if (content.kind === 'unknown') continue; // nothing to check against (initial content, or a failed write)
      const mismatch = this.#mismatch(lba, content, actual);
      if (mismatch !== undefined) {
        this.#fail({
          kind: 'content-mismatch', command: summary, lba, byteOffset: mismatch.offset,
          message: `${describeCommand(summary)}: LBA ${lba} byte ${mismatch.offset}: expected ${mismatch.expected}, found ${describeSector(actual, mismatch.offset)}`,
        });
        return;
      }
      if (summary.phase === 'final-verify') this.#stats.finalVerifiedLbas += 1;
      this.#stats.verifiedLbas += 1;
    }
  }

  #mismatch(lba: number, content: LbaContent, actual: Uint8Array): { offset: number; expected: string } | undefined {
    switch (content.kind) {
      case 'unknown':
        return undefined;
      case 'zero': {
        const offset = firstNonZero(actual);
        return offset === -1 ? undefined : { offset, expected: 'zeros' };
      }
      case 'data': {
        const expected = blockPattern({ seed: this.seed, lbaBytes: this.#geometry.lbaBytes }, lba, 1, content.generation);
        const offset = firstDifference(expected, actual);
        return offset === -1 ? undefined : { offset, expected: `generation ${content.generation} (byte 0x${(expected[offset] ?? 0).toString(16)})` };
      }
      case 'deallocated': {
        if (firstNonZero(actual) === -1) return undefined;
        const before = this.#mismatch(lba, content.before, actual);
        return before === undefined ? undefined : { offset: before.offset, expected: `zeros (deallocated) or ${before.expected}` };
      }
    }
  }

  // ---- bookkeeping ----------------------------------------------------------

  async #run(done: () => boolean, timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (let idle = 0; !done(); ) {
      if (performance.now() > deadline) throw new Error(`workload did not reach its goal within ${timeoutMs} ms (${this.#stats.completed} completed, ${this.#inFlight.size} in flight)`);
      if (!this.#quiesced && this.#inFlight.size < this.#queueDepth) await this.submitBurst(this.#queueDepth - this.#inFlight.size);
      idle = (await this.pump()) > 0 ? 0 : idle + 1;
      await yieldToDevice(idle);
    }
  }

  /** Pump until nothing is in flight; what is still out at the deadline is reported missing. */
  async #drain(): Promise<void> {
    const deadline = performance.now() + this.#timeoutMs;
    for (let idle = 0; this.#inFlight.size > 0 && performance.now() <= deadline; ) {
      idle = (await this.pump()) > 0 ? 0 : idle + 1;
      await yieldToDevice(idle);
    }
    for (const command of this.#inFlight.values()) {
      if (!command.reportedMissing) {
        command.reportedMissing = true; // a late completion is still settled, but the failure stands
        this.#fail({ kind: 'missing-completion', message: `${describeCommand(command.summary)} got no completion within ${this.#timeoutMs} ms`, command: command.summary });
      }
    }
  }

  #count(summary: CommandSummary, what: keyof QueueCounts): void {
    this.#stats[what] += 1;
    const perQueue = this.#stats.perQueue[summary.qid];
    if (perQueue !== undefined) perQueue[what] += 1;
    if (what === 'submitted') this.#stats.byKind[summary.kind] += 1;
  }

  #fail(failure: WorkloadFailure): void {
    this.#failureCount += 1;
    if (this.#failures.length < MAX_KEPT_FAILURES) this.#failures.push(failure);
  }
}

function appendTo<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}

function splitRange(slba: number, blocks: number, parts: number): { slba: number; blocks: number }[] {
  const ranges: { slba: number; blocks: number }[] = [];
  const size = Math.ceil(blocks / parts);
  for (let start = slba; start < slba + blocks; start += size) ranges.push({ slba: start, blocks: Math.min(size, slba + blocks - start) });
  return ranges;
}

function describeCommand(summary: CommandSummary): string {
  const range = summary.kind === 'flush' ? '' : ` LBA ${summary.slba}+${summary.blocks}`;
  return `#${summary.id} ${summary.kind}${range} (q${summary.qid} cid ${summary.cid}, ${summary.phase})`;
}
