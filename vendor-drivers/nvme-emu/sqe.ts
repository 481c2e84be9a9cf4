/** Submission and completion queue entry encodings. */
import { getU64, view } from './bytes.ts';
import { CQE_BYTES } from './nvme-defs.ts';
import type { CompletionEntry } from './queues.ts';

/** A 64-byte submission queue entry, decoded. */
export interface Sqe {
  readonly opcode: number;
  /** FUSE in bits 1:0, PSDT in bits 7:6. */
  readonly flags: number;
  readonly cid: number;
  readonly nsid: number;
  readonly prp1: number;
  readonly prp2: number;
  readonly cdw10: number;
  readonly cdw11: number;
  readonly cdw12: number;
  readonly cdw13: number;
  readonly cdw14: number;
  readonly cdw15: number;
}

export function decodeSqe(bytes: Uint8Array): Sqe {
  const dv = view(bytes);
  const cdw0 = dv.getUint32(0, true);
  return {
    opcode: cdw0 & 0xff,
    flags: (cdw0 >> 8) & 0xff,
    cid: cdw0 >>> 16,
    nsid: dv.getUint32(4, true),
    prp1: getU64(dv, 24),
    prp2: getU64(dv, 32),
    cdw10: dv.getUint32(40, true),
    cdw11: dv.getUint32(44, true),
    cdw12: dv.getUint32(48, true),
    cdw13: dv.getUint32(52, true),
    cdw14: dv.getUint32(56, true),
    cdw15: dv.getUint32(60, true),
  };
}

/** Fused operations and SGLs are not supported: FUSE and PSDT must be 0. */
export function usesUnsupportedFlags(sqe: Sqe): boolean {
  return sqe.flags !== 0;
}

/** The 16-byte completion queue entry with its phase tag. */
export function encodeCqe(entry: CompletionEntry, phase: number): Uint8Array {
  const bytes = new Uint8Array(CQE_BYTES);
  const dv = view(bytes);
  dv.setUint32(0, entry.dw0 >>> 0, true);
  dv.setUint32(8, (entry.sqHead | (entry.sqId << 16)) >>> 0, true);
  dv.setUint32(12, (entry.cid | (phase << 16) | (entry.status << 17)) >>> 0, true);
  return bytes;
}
