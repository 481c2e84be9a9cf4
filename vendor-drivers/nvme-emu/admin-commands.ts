/**
 * Admin command set. Admin commands act on controller state only (no
 * namespace I/O), so they run to completion when fetched; the engine still
 * holds their completion for the service time like any other command.
 * Asynchronous Event Requests never come here: the engine parks them.
 */
import { commandsEffectsPage, featuresEffectsPage, firmwareSlotPage, supportedLogPagesPage } from './capability-logs.ts';
import { coalescingOf, getFeature, setFeature, SUPPORTED_FEATURES } from './features.ts';
import { identify, IDENTIFY_BYTES } from './identify.ts';
import { errorLogPage, smartLogPage } from './log-pages.ts';
import { AdminOpcode, LogPageId, MAX_TRANSFER_BYTES, NSID_BROADCAST } from './nvme-defs.ts';
import { completion, type Completion, Status } from './nvme-status.ts';
import { planPrpTransfer, scatterToGuest } from './prp.ts';
import {
  createIoCompletionQueue,
  createIoSubmissionQueue,
  deleteIoCompletionQueue,
  deleteIoSubmissionQueue,
  type QueueCommandHost,
} from './queue-commands.ts';
import { type Sqe, usesUnsupportedFlags } from './sqe.ts';

export interface AdminHost extends QueueCommandHost {
  /** Abort (best effort): true if the command was still in the controller and now completes as aborted. */
  abortCommand(sqid: number, cid: number): boolean;
  /** Reports queued events to outstanding AERs, after event masks changed. */
  deliverEvents(): void;
}

export function executeAdmin(host: AdminHost, sqe: Sqe): Completion {
  if (usesUnsupportedFlags(sqe)) return completion(Status.INVALID_FIELD);
  const core = host.core;
  switch (sqe.opcode) {
    case AdminOpcode.IDENTIFY:
      return identifyCommand(host, sqe);
    case AdminOpcode.CREATE_IO_CQ:
      return createIoCompletionQueue(core, sqe);
    case AdminOpcode.CREATE_IO_SQ:
      return createIoSubmissionQueue(core, sqe);
    case AdminOpcode.DELETE_IO_SQ:
      return deleteIoSubmissionQueue(host, sqe);
    case AdminOpcode.DELETE_IO_CQ:
      return deleteIoCompletionQueue(host, sqe);
    case AdminOpcode.GET_FEATURES:
      return getFeature(core.features, core.profile, sqe.cdw10, sqe.cdw11);
    case AdminOpcode.SET_FEATURES: {
      const result = setFeature(core.features, core.profile, sqe.cdw10, sqe.cdw11);
      core.interrupts.setCoalescing(coalescingOf(core.features));
      return result;
    }
    case AdminOpcode.GET_LOG_PAGE:
      return getLogPage(host, sqe);
    case AdminOpcode.ABORT: {
      const aborted = host.abortCommand(sqe.cdw10 & 0xffff, sqe.cdw10 >>> 16);
      // DW0 bit 0 set means "command not aborted".
      return completion(Status.SUCCESS, aborted ? 0 : 1);
    }
    default:
      return completion(Status.INVALID_OPCODE);
  }
}

function identifyCommand(host: AdminHost, sqe: Sqe): Completion {
  const result = identify(host.core.profile, sqe.cdw10 & 0xff, sqe.nsid);
  if (!result.ok) return completion(result.status);
  return transferToHost(host, sqe, result.data, IDENTIFY_BYTES);
}

function getLogPage(host: AdminHost, sqe: Sqe): Completion {
  const core = host.core;
  const lid = sqe.cdw10 & 0xff;
  const retainEvent = ((sqe.cdw10 >> 15) & 1) === 1;
  const dwords = ((sqe.cdw10 >>> 16) | ((sqe.cdw11 & 0xffff) << 16)) >>> 0;
  const length = (dwords + 1) * 4;
  const offset = sqe.cdw13 * 2 ** 32 + sqe.cdw12;
  let page: Uint8Array;
  if (lid === LogPageId.ERROR_INFORMATION) {
    page = errorLogPage(core.errorLog);
  } else if (lid === LogPageId.SMART_HEALTH) {
    // LPA bit 0 is clear: SMART data is controller-wide only.
    if (sqe.nsid !== 0 && sqe.nsid !== NSID_BROADCAST) return completion(Status.INVALID_FIELD);
    page = smartLogPage(core.smart, core.errorLog.errorCount, core.features);
  } else if (lid === LogPageId.SUPPORTED_LOG_PAGES) {
    page = supportedLogPagesPage();
  } else if (lid === LogPageId.FIRMWARE_SLOT) {
    page = firmwareSlotPage(core.profile.firmware);
  } else if (lid === LogPageId.COMMANDS_EFFECTS) {
    page = commandsEffectsPage();
  } else if (lid === LogPageId.FEATURES_EFFECTS) {
    page = featuresEffectsPage(SUPPORTED_FEATURES);
  } else {
    return completion(Status.INVALID_LOG_PAGE);
  }
  if (offset % 4 !== 0 || offset > page.length || length > MAX_TRANSFER_BYTES) return completion(Status.INVALID_FIELD);
  const data = new Uint8Array(length);
  data.set(page.subarray(offset, Math.min(page.length, offset + length)));
  const result = transferToHost(host, sqe, data, length);
  if (result.status === Status.SUCCESS && !retainEvent) {
    core.events.logPageRead(lid);
    host.deliverEvents();
  }
  return result;
}

function transferToHost(host: AdminHost, sqe: Sqe, data: Uint8Array, length: number): Completion {
  const plan = planPrpTransfer(host.core.memory, sqe.prp1, sqe.prp2, length);
  if (!plan.ok) return completion(plan.status);
  if (!scatterToGuest(host.core.memory, plan.ranges, data)) return completion(Status.DATA_TRANSFER_ERROR);
  return completion(Status.SUCCESS);
}
