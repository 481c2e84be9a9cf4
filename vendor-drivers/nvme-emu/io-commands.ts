/**
 * NVM command set: Read, Write, Flush, Write Zeroes and Dataset Management.
 *
 * Data a command sends is read from guest memory when the command starts
 * (the VF is running then); data it returns is written to guest memory only
 * while the command is still live, so a command dropped by a reset or an
 * abort never DMAs afterwards.
 */
import type { ControllerCore } from './controller-core.ts';
import type { NamespaceStore } from './namespace-store.ts';
import { noActiveNamespaceStatus } from './nsid.ts';
import { DSM_RANGE_BYTES, IoOpcode, MAX_TRANSFER_BYTES, NSID_BROADCAST } from './nvme-defs.ts';
import { completion, type Completion, OK, Status } from './nvme-status.ts';
import { gatherFromGuest, planPrpTransfer, scatterToGuest } from './prp.ts';
import { getU64, view } from './bytes.ts';
import { type Sqe, usesUnsupportedFlags } from './sqe.ts';

export interface IoContext {
  readonly core: ControllerCore;
  /** False once the command was aborted or the controller reset. */
  isLive(): boolean;
  /** A backing file operation failed (logged by the caller, never with data). */
  storageError(error: unknown): void;
}

const FUA = 1 << 30;
const DSM_DEALLOCATE = 1 << 2;

export async function executeIo(ctx: IoContext, sqe: Sqe): Promise<Completion> {
  if (usesUnsupportedFlags(sqe)) return completion(Status.INVALID_FIELD);
  switch (sqe.opcode) {
    case IoOpcode.READ:
      return read(ctx, sqe);
    case IoOpcode.WRITE:
      return write(ctx, sqe);
    case IoOpcode.FLUSH:
      return flush(ctx, sqe);
    case IoOpcode.WRITE_ZEROES:
      return writeZeroes(ctx, sqe);
    case IoOpcode.DATASET_MANAGEMENT:
      return datasetManagement(ctx, sqe);
    default:
      return completion(Status.INVALID_OPCODE);
  }
}

interface BlockRange {
  readonly ns: NamespaceStore;
  readonly offset: number;
  readonly bytes: number;
}

/** The command's one active namespace, or the completion its NSID gets (no command here but Flush takes the broadcast NSID). */
function activeNamespace(ctx: IoContext, sqe: Sqe): NamespaceStore | Completion {
  return ctx.core.namespaces.get(sqe.nsid) ?? completion(noActiveNamespaceStatus(sqe.nsid, ctx.core.nn));
}

/** NSID, SLBA (CDW10/11) and NLB (CDW12 15:0, 0's based) checked against the namespace. */
function blockRange(ctx: IoContext, sqe: Sqe): BlockRange | Completion {
  const ns = activeNamespace(ctx, sqe);
  if ('status' in ns) return ns;
  const slba = sqe.cdw11 * 2 ** 32 + sqe.cdw10;
  const blocks = (sqe.cdw12 & 0xffff) + 1;
  if (slba + blocks > ns.blockCount) return completion(Status.LBA_OUT_OF_RANGE);
  const { blockSize } = ns.config;
  return { ns, offset: slba * blockSize, bytes: blocks * blockSize };
}

async function read(ctx: IoContext, sqe: Sqe): Promise<Completion> {
  const range = blockRange(ctx, sqe);
  if ('status' in range) return range;
  if (range.bytes > MAX_TRANSFER_BYTES) return completion(Status.INVALID_FIELD);
  const plan = planPrpTransfer(ctx.core.memory, sqe.prp1, sqe.prp2, range.bytes);
  if (!plan.ok) return completion(plan.status);
  let data: Uint8Array;
  try {
    data = await range.ns.read(range.offset, range.bytes);
  } catch (error) {
    ctx.storageError(error);
    return completion(Status.UNRECOVERED_READ_ERROR);
  }
  if (!ctx.isLive()) return completion(Status.ABORT_REQUESTED);
  if (!scatterToGuest(ctx.core.memory, plan.ranges, data)) return completion(Status.DATA_TRANSFER_ERROR);
  ctx.core.smart.unitsRead += range.bytes / 512;
  ctx.core.smart.hostReadCommands += 1;
  return OK;
}

async function write(ctx: IoContext, sqe: Sqe): Promise<Completion> {
  const range = blockRange(ctx, sqe);
  if ('status' in range) return range;
  if (range.bytes > MAX_TRANSFER_BYTES) return completion(Status.INVALID_FIELD);
  const plan = planPrpTransfer(ctx.core.memory, sqe.prp1, sqe.prp2, range.bytes);
  if (!plan.ok) return completion(plan.status);
  const data = gatherFromGuest(ctx.core.memory, plan.ranges, range.bytes);
  const durable = (sqe.cdw12 & FUA) !== 0 || !ctx.core.features.volatileWriteCache;
  try {
    await range.ns.write(range.offset, data);
    if (durable) await range.ns.flush();
  } catch (error) {
    ctx.storageError(error);
    return completion(Status.WRITE_FAULT);
  }
  if (ctx.isLive()) {
    ctx.core.smart.unitsWritten += range.bytes / 512;
    ctx.core.smart.hostWriteCommands += 1;
  }
  return OK;
}

async function writeZeroes(ctx: IoContext, sqe: Sqe): Promise<Completion> {
  const range = blockRange(ctx, sqe);
  if ('status' in range) return range;
  const durable = (sqe.cdw12 & FUA) !== 0 || !ctx.core.features.volatileWriteCache;
  try {
    await range.ns.writeZeroes(range.offset, range.bytes);
    if (durable) await range.ns.flush();
  } catch (error) {
    ctx.storageError(error);
    return completion(Status.WRITE_FAULT);
  }
  if (ctx.isLive()) ctx.core.smart.hostWriteCommands += 1;
  return OK;
}

/** Flush of one namespace, or of all of them with NSID FFFFFFFFh. */
async function flush(ctx: IoContext, sqe: Sqe): Promise<Completion> {
  let targets: NamespaceStore[];
  if (sqe.nsid === NSID_BROADCAST) {
    targets = [...ctx.core.namespaces.values()];
  } else {
    const ns = activeNamespace(ctx, sqe);
    if ('status' in ns) return ns;
    targets = [ns];
  }
  try {
    await Promise.all(targets.map((ns) => ns.flush()));
  } catch (error) {
    ctx.storageError(error);
    return completion(Status.WRITE_FAULT);
  }
  return OK;
}

/**
 * Dataset Management: ranges are hints except with the Deallocate
 * attribute, which zeroes them (DLFEAT says deallocated blocks read as 0).
 * All ranges are checked before any is touched.
 */
async function datasetManagement(ctx: IoContext, sqe: Sqe): Promise<Completion> {
  const ns = activeNamespace(ctx, sqe);
  if ('status' in ns) return ns;
  const count = (sqe.cdw10 & 0xff) + 1;
  const plan = planPrpTransfer(ctx.core.memory, sqe.prp1, sqe.prp2, count * DSM_RANGE_BYTES);
  if (!plan.ok) return completion(plan.status);
  const list = view(gatherFromGuest(ctx.core.memory, plan.ranges, count * DSM_RANGE_BYTES));
  const ranges: { slba: number; blocks: number }[] = [];
  for (let i = 0; i < count; i++) {
    const blocks = list.getUint32(i * DSM_RANGE_BYTES + 4, true);
    const slba = getU64(list, i * DSM_RANGE_BYTES + 8);
    if (slba + blocks > ns.blockCount) return completion(Status.LBA_OUT_OF_RANGE);
    ranges.push({ slba, blocks });
  }
  if ((sqe.cdw11 & DSM_DEALLOCATE) === 0) return OK;
  const { blockSize } = ns.config;
  try {
    for (const range of ranges) {
      if (range.blocks > 0) await ns.writeZeroes(range.slba * blockSize, range.blocks * blockSize);
    }
  } catch (error) {
    ctx.storageError(error);
    return completion(Status.WRITE_FAULT);
  }
  return OK;
}
