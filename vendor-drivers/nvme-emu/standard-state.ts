/**
 * The standard format (`nvme-controller-state` v0): a Controller State data
 * structure with only its standardized part, the header (VSS = 0) and the
 * I/O SQ and CQ entries; no vendor-specific section. What nvme-emu loses by
 * it, and what a destination makes of it: standard-restore.ts and README.md.
 *
 * A doorbell the guest wrote while the VF was stopped is latched inside
 * nvme-emu and would be acted on when the VF ran again. The standard entries
 * have no place for a latch, but their pointers are what the guest last
 * wrote: so a latched value goes out as the pointer, where the source would
 * itself have accepted it when it resumed, and a controller reset latched
 * the same way (CC.EN cleared) goes out as what it leaves, no queues.
 */
import { ByteWriter, corrupt } from './byte-cursor.ts';
import type { ControllerSnapshot, CqSnapshot, SqSnapshot } from './controller-snapshot.ts';
import {
  encodeIoQueues, type ImageKind, readHeader, readIoQueues, requireKind, writeHeader, type StandardCq, type StandardQueues, type StandardSq,
} from './nvme-controller-state.ts';
import { ccEnabled } from './registers.ts';

export interface StandardState extends StandardQueues {
  /** Taken with the VF stopped (CSATTR bit 0): only such a state is applied. */
  readonly suspended: boolean;
}

export function encodeStandardState(s: ControllerSnapshot, suspended = true): Uint8Array {
  const queues = standardQueuesOf(s);
  const nvmeState = encodeIoQueues(queues);
  const w = new ByteWriter(64 + nvmeState.length);
  writeHeader(w, suspended, nvmeState.length, 0);
  w.bytes(nvmeState);
  return w.finish();
}

/**
 * Structure only (lengths, versions, reserved fields); the values are checked
 * against the destination VF by validateSnapshot, on what standard-restore.ts
 * makes of them. There is no checksum: the state stream's records carry a
 * CRC32C each.
 */
export function decodeStandardState(payload: Uint8Array, accept: ImageKind = 'suspended'): StandardState {
  const header = readHeader(payload);
  if (header.vendor.end !== header.vendor.start) {
    throw corrupt(`a standard controller state has no vendor-specific section; VSS says ${(header.vendor.end - header.vendor.start) / 4} dwords`);
  }
  const queues = readIoQueues(payload, header.nvme);
  requireKind(header, accept);
  return { ...queues, suspended: header.suspended };
}

/** The I/O queues as the guest left them: latched doorbells folded into the pointers. */
function standardQueuesOf(s: ControllerSnapshot): StandardQueues {
  // A reset leaves no queues (a disabled controller has none to begin with).
  if (s.latchedCc !== undefined && !ccEnabled(s.latchedCc)) return { sqs: [], cqs: [] };
  return { sqs: s.ioSqs.map(rungSq), cqs: s.ioCqs.map(rungCq) };
}

/** A latched tail counts if the source would have taken it (inside the queue); otherwise it would have raised an error event. */
function rungSq({ latchedTail, ...sq }: SqSnapshot): StandardSq {
  return latchedTail !== undefined && latchedTail < sq.size ? { ...sq, tail: latchedTail } : sq;
}

/** A latched head counts if it only moves over entries the controller posted, as the source checks it. */
function rungCq({ latchedHead, ...cq }: CqSnapshot): StandardCq {
  if (latchedHead === undefined || latchedHead >= cq.size) return cq;
  const posted = (cq.tail - cq.head + cq.size) % cq.size;
  const advance = (latchedHead - cq.head + cq.size) % cq.size;
  return advance <= posted ? { ...cq, head: latchedHead } : cq;
}
