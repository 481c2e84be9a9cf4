/**
 * A guest NVMe host driver that reaches its controller only through a
 * `GuestHostPort`: BAR0 registers over 32-bit MMIO and queues, PRP lists and
 * data buffers in guest memory that the device DMAs. It polls for
 * completions (no interrupt handler), checks every completion against what
 * it submitted, and can be re-attached to another port after a migration
 * with all of its queue bookkeeping intact.
 */
import type { GuestHostPort, GuestMemoryRegion } from './host-port.ts';
import {
  CQE_BYTES, FEATURE, IDENTIFY_CNS, SQE_BYTES,
  completionSucceeded, createIoCompletionQueue, createIoSubmissionQueue, decodeCompletionEntry,
  deleteIoCompletionQueue, deleteIoSubmissionQueue, encodeSubmissionEntry, getFeatures, getLogPage,
  identify, phaseOf, setFeatures,
  type FeatureOptions, type LogPageOptions, type NvmeCommand, type NvmeCompletion,
} from './guest-nvme-commands.ts';
import { ControllerRegisters, checkAttachable, type ControllerIdentity } from './guest-nvme-controller.ts';
import { NvmeControllerError, NvmeProtocolError, NvmeStatusError, NvmeTimeoutError, type ProtocolViolation } from './guest-nvme-errors.ts';
import {
  IDENTIFY_BYTES, parseIdentifyController, parseIdentifyNamespace, parseNamespaceDescriptors, parseNamespaceList,
  type IdentifyController, type IdentifyNamespace, type NamespaceDescriptors,
} from './guest-nvme-identify.ts';
import { GuestMemoryAllocator, planPrps, type GuestAllocation, type GuestMemoryWindow, type PrpPlan } from './guest-nvme-memory.ts';
import { QueuePair, type PendingCommand } from './guest-nvme-queues.ts';
import { cqHeadDoorbell, sqTailDoorbell, type ControllerCapabilities, type NvmeVersion } from './guest-nvme-registers.ts';
import { Mutex, pollUntil } from './guest-nvme-scheduling.ts';

export { yieldToDevice } from './guest-nvme-scheduling.ts';

export interface GuestNvmeOptions {
  /** Guest-physical window the driver allocates from. Default 1 GiB at 4 GiB. */
  readonly memory?: GuestMemoryWindow;
  /** Admin queue size in entries. Default 32. */
  readonly adminQueueEntries?: number;
  /** How long an admin command may take. Default 5 s. */
  readonly adminTimeoutMs?: number;
  /** What `poll` does on a protocol violation after consuming the entries: throw (default) or only record it. */
  readonly onViolation?: 'throw' | 'record';
}

export interface SubmittedCommand {
  readonly qid: number;
  readonly cid: number;
  readonly opcode: number;
  /** Resolves with the CQE, whatever its status; never rejects. */
  readonly completion: Promise<NvmeCompletion>;
  /** The CQE once it has been consumed. */
  result(): NvmeCompletion | undefined;
}

export interface QueueStats {
  readonly qid: number;
  readonly entries: number;
  readonly vector: number;
  readonly outstanding: number;
  readonly submitted: number;
  readonly completed: number;
}

interface QueueHandle {
  readonly pair: QueuePair;
  readonly submitLock: Mutex;
  readonly completeLock: Mutex;
}

const POLL_BATCH_ENTRIES = 64;

export class GuestNvme {
  #port: GuestHostPort;
  readonly #memory: GuestMemoryAllocator;
  readonly #adminEntries: number;
  readonly #adminTimeoutMs: number;
  readonly #onViolation: 'throw' | 'record';
  readonly #queues = new Map<number, QueueHandle>();
  readonly #violations: ProtocolViolation[] = [];
  readonly #registers = new ControllerRegisters(() => this.#port);
  #controller: ControllerIdentity | undefined;

  constructor(port: GuestHostPort, options: GuestNvmeOptions = {}) {
    this.#port = port;
    this.#memory = new GuestMemoryAllocator(options.memory ?? { base: 0x1_0000_0000, size: 1 << 30 });
    this.#adminEntries = options.adminQueueEntries ?? 32;
    this.#adminTimeoutMs = options.adminTimeoutMs ?? 5000;
    this.#onViolation = options.onViolation ?? 'throw';
  }

  get port(): GuestHostPort {
    return this.#port;
  }
  get capabilities(): ControllerCapabilities {
    return this.#identity().capabilities;
  }
  get version(): NvmeVersion {
    return this.#identity().version;
  }

  // ---- controller bring-up ------------------------------------------------

  /** Reset the controller, set up the admin queue and enable it (NVMe Base 2.x, 3.5.1). */
  async enable(): Promise<void> {
    this.#controller = await this.#registers.probe();
    await this.disable();
    this.#dropAllQueues();
    const entries = Math.min(this.#adminEntries, this.capabilities.maxQueueEntries, 4096);
    const admin = await this.#newQueuePair(0, entries, 0);
    await this.#registers.enable({ entries, sqAddress: admin.sq.address, cqAddress: admin.cq.address }, this.#readyTimeoutMs());
  }

  /** Clear CC.EN and wait for CSTS.RDY=0; the device forgets all queues. */
  async disable(): Promise<void> {
    await this.#registers.disable(this.#readyTimeoutMs());
  }

  /** Normal shutdown notification, waiting for shutdown processing to complete. */
  async shutdown(): Promise<void> {
    await this.#registers.shutdown(this.#readyTimeoutMs());
  }

  // ---- admin commands -----------------------------------------------------

  /** Submit an admin command, wait for it, and throw `NvmeStatusError` unless it succeeded. */
  async adminCommand(command: NvmeCommand, what = `admin opcode 0x${command.opcode.toString(16)}`): Promise<NvmeCompletion> {
    const submitted = await this.submit(0, command);
    const completion = await this.waitFor(submitted, this.#adminTimeoutMs);
    if (!completionSucceeded(completion)) throw new NvmeStatusError(what, 0, completion.cid, command.opcode, completion.status);
    return completion;
  }

  async identifyController(): Promise<IdentifyController> {
    return parseIdentifyController(await this.#identify(IDENTIFY_CNS.CONTROLLER, 0));
  }
  async identifyNamespace(nsid: number): Promise<IdentifyNamespace> {
    return parseIdentifyNamespace(await this.#identify(IDENTIFY_CNS.NAMESPACE, nsid));
  }
  async activeNamespaces(): Promise<number[]> {
    return parseNamespaceList(await this.#identify(IDENTIFY_CNS.ACTIVE_NAMESPACES, 0));
  }
  async namespaceDescriptors(nsid: number): Promise<NamespaceDescriptors> {
    return parseNamespaceDescriptors(await this.#identify(IDENTIFY_CNS.NAMESPACE_DESCRIPTORS, nsid));
  }

  /** Number of Queues feature: asks for `count` I/O SQs and CQs, returns what was allocated. */
  async setNumberOfQueues(count: number): Promise<{ submissionQueues: number; completionQueues: number }> {
    const dw0 = await this.setFeature(FEATURE.NUMBER_OF_QUEUES, ((count - 1) | ((count - 1) << 16)) >>> 0);
    return { submissionQueues: (dw0 & 0xffff) + 1, completionQueues: (dw0 >>> 16) + 1 };
  }

  async getFeature(fid: number, options: FeatureOptions = {}): Promise<number> {
    return (await this.adminCommand(getFeatures(fid, options), `Get Features 0x${fid.toString(16)}`)).dw0;
  }
  async setFeature(fid: number, value: number, options: FeatureOptions = {}): Promise<number> {
    return (await this.adminCommand(setFeatures(fid, value, options), `Set Features 0x${fid.toString(16)}`)).dw0;
  }

  async getLogPage(lid: number, length: number, options: LogPageOptions = {}): Promise<Uint8Array> {
    return this.#withBuffer(length, `log page 0x${lid.toString(16)}`, async (buffer) => {
      await this.adminCommand(getLogPage(lid, { address: buffer.address, length }, options), `Get Log Page 0x${lid.toString(16)}`);
      return this.#port.memRead(buffer.address, length);
    });
  }

  /** Completion queue first (PC=1, IEN=1, IV=vector), then its submission queue. */
  async createIoQueuePair(qid: number, entries: number, vector: number): Promise<void> {
    if (!Number.isInteger(qid) || qid < 1 || qid > 0xfffe) throw new RangeError(`I/O queue id must be in [1, 65534], got ${qid}`);
    if (this.#queues.has(qid)) throw new Error(`queue ${qid} already exists`);
    if (entries < 2 || entries > this.capabilities.maxQueueEntries) {
      throw new RangeError(`queue size ${entries} outside [2, ${this.capabilities.maxQueueEntries}] (CAP.MQES)`);
    }
    const pair = await this.#newQueuePair(qid, entries, vector);
    try {
      await this.adminCommand(createIoCompletionQueue(qid, entries, pair.cq.address, vector), `Create I/O CQ ${qid}`);
    } catch (error) {
      this.#releaseQueue(qid);
      throw error;
    }
    try {
      await this.adminCommand(createIoSubmissionQueue(qid, entries, pair.sq.address, qid), `Create I/O SQ ${qid}`);
    } catch (error) {
      await this.adminCommand(deleteIoCompletionQueue(qid), `Delete I/O CQ ${qid}`).catch(() => undefined);
      this.#releaseQueue(qid);
      throw error;
    }
  }

  /** SQ first, then its CQ. The pair must be idle: the guest has nothing left to wait for. */
  async deleteIoQueuePair(qid: number): Promise<void> {
    const { pair } = this.#handle(qid);
    if (qid === 0) throw new RangeError('the admin queue cannot be deleted');
    if (pair.outstandingCount > 0) throw new Error(`queue ${qid} still has ${pair.outstandingCount} outstanding commands`);
    await this.adminCommand(deleteIoSubmissionQueue(qid), `Delete I/O SQ ${qid}`);
    await this.adminCommand(deleteIoCompletionQueue(qid), `Delete I/O CQ ${qid}`);
    this.#releaseQueue(qid);
  }

  // ---- submission ---------------------------------------------------------

  /** Write the SQEs at the tail and ring the tail doorbell once for all of them. */
  async submitBatch(qid: number, commands: readonly NvmeCommand[]): Promise<SubmittedCommand[]> {
    const handle = this.#handle(qid);
    return handle.submitLock.run(async () => {
      const submitted = await this.#writeEntries(handle.pair, commands);
      await this.#ring(handle.pair);
      return submitted;
    });
  }

  async submit(qid: number, command: NvmeCommand): Promise<SubmittedCommand> {
    const [submitted] = await this.submitBatch(qid, [command]);
    if (submitted === undefined) throw new Error('unreachable: one command in, none out');
    return submitted;
  }

  /** Write SQEs without a doorbell; `ringDoorbell` announces them later. */
  async enqueue(qid: number, commands: readonly NvmeCommand[]): Promise<SubmittedCommand[]> {
    const handle = this.#handle(qid);
    return handle.submitLock.run(() => this.#writeEntries(handle.pair, commands));
  }

  async ringDoorbell(qid: number): Promise<void> {
    const handle = this.#handle(qid);
    await handle.submitLock.run(() => this.#ring(handle.pair));
  }

  /** Submit, wait and return the CQE whatever its status. */
  async execute(qid: number, command: NvmeCommand, timeoutMs = this.#adminTimeoutMs): Promise<NvmeCompletion> {
    return this.waitFor(await this.submit(qid, command), timeoutMs);
  }

  // ---- completion ---------------------------------------------------------

  /**
   * Consume every CQE whose phase tag matches, check it, update the SQ head,
   * write the CQ head doorbell and resolve the commands by CID. Violations
   * are recorded (and thrown once the queue is consistent, unless configured
   * to only record).
   */
  async poll(qid: number): Promise<NvmeCompletion[]> {
    const handle = this.#handle(qid);
    return handle.completeLock.run(async () => {
      const { pair } = handle;
      const completions: NvmeCompletion[] = [];
      const resolved: [PendingCommand, NvmeCompletion][] = [];
      const violations: ProtocolViolation[] = [];
      let consumed = 0;
      while (consumed < pair.entries) {
        const count = Math.min(pair.entriesUntilWrap(), POLL_BATCH_ENTRIES);
        const bytes = await this.#port.memRead(pair.cqHeadAddress(), count * CQE_BYTES);
        let index = 0;
        for (; index < count && phaseOf(bytes, index * CQE_BYTES) === pair.expectedPhase; index++) {
          const completion = decodeCompletionEntry(bytes, index * CQE_BYTES, qid);
          pair.advanceCqHead();
          const verdict = pair.accept(completion);
          violations.push(...verdict.violations);
          completions.push(completion);
          if (verdict.command !== undefined) resolved.push([verdict.command, completion]);
        }
        consumed += index;
        if (index < count) break;
      }
      if (consumed > 0) await this.#write(cqHeadDoorbell(qid, this.capabilities.doorbellStrideBytes), pair.cqHead);
      for (const [command, completion] of resolved) {
        for (const page of command.prpPages) this.#memory.free(page.address);
        command.resolve(completion);
      }
      if (violations.length > 0) {
        this.#violations.push(...violations);
        if (this.#onViolation === 'throw') throw new NvmeProtocolError(violations);
      }
      return completions;
    });
  }

  async waitFor(command: SubmittedCommand, timeoutMs: number): Promise<NvmeCompletion> {
    return pollUntil(
      async () => command.result() ?? (await this.poll(command.qid), command.result()),
      timeoutMs,
      () => new NvmeTimeoutError(command.qid, command.cid, command.opcode, timeoutMs),
    );
  }

  // ---- migration and inspection -------------------------------------------

  /**
   * Continue against another port (the destination VF after migration; guest
   * memory has been copied there). Checks before switching that the new
   * controller looks like the one the guest configured: same CAP, same CC,
   * ready and not failed. A real guest would not notice a migration either.
   */
  async attach(port: GuestHostPort): Promise<void> {
    await checkAttachable(port, this.#identity().capRaw);
    this.#port = port;
  }

  memoryRegions(): GuestMemoryRegion[] {
    return this.#memory.regions();
  }
  allocations(): readonly GuestAllocation[] {
    return this.#memory.allocations();
  }
  allocate(bytes: number, purpose: string): GuestAllocation {
    return this.#memory.allocate(bytes, purpose);
  }
  free(address: number): void {
    this.#memory.free(address);
  }
  async memRead(address: number, length: number): Promise<Uint8Array> {
    return this.#port.memRead(address, length);
  }
  async memWrite(address: number, data: Uint8Array): Promise<void> {
    await this.#port.memWrite(address, data);
  }
  async interruptCounts(): Promise<readonly number[]> {
    return this.#port.interruptCounts();
  }
  violations(): readonly ProtocolViolation[] {
    return [...this.#violations];
  }
  ioQueueIds(): number[] {
    return [...this.#queues.keys()].filter((qid) => qid !== 0).sort((a, b) => a - b);
  }
  queueStats(qid: number): QueueStats {
    const { pair } = this.#handle(qid);
    return { qid, entries: pair.entries, vector: pair.vector, outstanding: pair.outstandingCount, submitted: pair.submitted, completed: pair.completed };
  }
  /** Commands the guest still waits for on a queue. */
  outstanding(qid: number): readonly { readonly cid: number; readonly opcode: number; readonly doorbellRung: boolean }[] {
    return this.#handle(qid).pair.outstanding().map(({ cid, opcode, doorbellRung }) => ({ cid, opcode, doorbellRung }));
  }
  /** SQ/CQ positions as the guest believes them, for diagnostics. */
  queuePositions(qid: number): ReturnType<QueuePair['positions']> {
    return this.#handle(qid).pair.positions();
  }
  freeSlots(qid: number): number {
    return this.#handle(qid).pair.freeSlots();
  }

  // ---- internals ----------------------------------------------------------

  async #writeEntries(pair: QueuePair, commands: readonly NvmeCommand[]): Promise<SubmittedCommand[]> {
    if (commands.length > pair.freeSlots()) throw new Error(`queue ${pair.qid}: ${commands.length} commands but ${pair.freeSlots()} free slots`);
    const plans: PrpPlan[] = [];
    try {
      for (const command of commands) {
        plans.push(command.data === undefined ? { prp1: command.prp1 ?? 0, prp2: 0, listPages: [], listWrites: [] } : planPrps(command.data, this.#memory, `q${pair.qid}`));
      }
      for (const plan of plans) for (const write of plan.listWrites) await this.#port.memWrite(write.address, write.data);
    } catch (error) {
      for (const plan of plans) for (const page of plan.listPages) this.#memory.free(page.address);
      throw error;
    }
    const submitted: SubmittedCommand[] = [];
    const entries: { sequence: number; bytes: Uint8Array }[] = [];
    commands.forEach((command, index) => {
      const plan = plans[index] as PrpPlan;
      let result: NvmeCompletion | undefined;
      let resolve: (completion: NvmeCompletion) => void = () => {};
      const completion = new Promise<NvmeCompletion>((r) => (resolve = r));
      const pending = pair.reserve(command.opcode, plan.listPages, (c) => {
        result = c;
        resolve(c);
      });
      entries.push({ sequence: pending.sequence, bytes: encodeSubmissionEntry(command, pending.cid, plan.prp1, plan.prp2) });
      submitted.push({ qid: pair.qid, cid: pending.cid, opcode: command.opcode, completion, result: () => result });
    });
    // One DMA-visible write per contiguous run of slots (a batch splits at most once, at the wrap).
    for (let start = 0; start < entries.length; ) {
      let end = start + 1;
      while (end < entries.length && ((entries[end]?.sequence ?? 0) % pair.entries) !== 0) end++;
      const run = new Uint8Array((end - start) * SQE_BYTES);
      for (let i = start; i < end; i++) run.set(entries[i]?.bytes ?? new Uint8Array(), (i - start) * SQE_BYTES);
      await this.#port.memWrite(pair.sqEntryAddress(entries[start]?.sequence ?? 0), run);
      start = end;
    }
    return submitted;
  }

  async #ring(pair: QueuePair): Promise<void> {
    if (!pair.hasUnrungEntries) return;
    const tail = pair.ring();
    await this.#write(sqTailDoorbell(pair.qid, this.capabilities.doorbellStrideBytes), tail);
  }

  async #identify(cns: number, nsid: number): Promise<Uint8Array> {
    return this.#withBuffer(IDENTIFY_BYTES, `identify CNS ${cns}`, async (buffer) => {
      await this.adminCommand(identify(cns, nsid, { address: buffer.address, length: IDENTIFY_BYTES }), `Identify CNS 0x${cns.toString(16)} NSID ${nsid}`);
      return this.#port.memRead(buffer.address, IDENTIFY_BYTES);
    });
  }

  async #withBuffer<T>(length: number, purpose: string, use: (buffer: GuestAllocation) => Promise<T>): Promise<T> {
    const buffer = this.#memory.allocate(length, purpose);
    try {
      return await use(buffer);
    } finally {
      this.#memory.free(buffer.address);
    }
  }

  /** Allocates a pair's memory and zeroes the CQ, so stale phase tags of reused memory never look like new entries. */
  async #newQueuePair(qid: number, entries: number, vector: number): Promise<QueuePair> {
    const sq = this.#memory.allocate(entries * SQE_BYTES, `SQ ${qid}`);
    const cq = this.#memory.allocate(entries * CQE_BYTES, `CQ ${qid}`);
    await this.#port.memWrite(cq.address, new Uint8Array(cq.length));
    const pair = new QueuePair(qid, entries, sq, cq, vector);
    this.#queues.set(qid, { pair, submitLock: new Mutex(), completeLock: new Mutex() });
    return pair;
  }

  #releaseQueue(qid: number): void {
    const handle = this.#queues.get(qid);
    if (handle === undefined) return;
    this.#queues.delete(qid);
    this.#memory.free(handle.pair.sq.address);
    this.#memory.free(handle.pair.cq.address);
    for (const command of handle.pair.outstanding()) for (const page of command.prpPages) this.#memory.free(page.address);
  }

  #dropAllQueues(): void {
    for (const qid of [...this.#queues.keys()]) this.#releaseQueue(qid);
  }

  #handle(qid: number): QueueHandle {
    const handle = this.#queues.get(qid);
    if (handle === undefined) throw new Error(`queue ${qid} does not exist`);
    return handle;
  }

  #identity(): ControllerIdentity {
    if (this.#controller === undefined) throw new Error('controller not enabled yet');
    return this.#controller;
  }

  /** CAP.TO bounds every wait for RDY or shutdown; at least 500 ms in case a device reports 0. */
  #readyTimeoutMs(): number {
    return Math.max(this.capabilities.readyTimeoutMs, 500);
  }

  async #write(offset: number, value: number): Promise<void> {
    await this.#registers.write(offset, value);
  }
}

export { NvmeControllerError, NvmeProtocolError, NvmeStatusError, NvmeTimeoutError };
export type { ProtocolViolation, IdentifyController, IdentifyNamespace, NvmeCommand, NvmeCompletion, ControllerCapabilities, NvmeVersion, GuestAllocation };
