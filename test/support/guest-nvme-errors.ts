/**
 * What can go wrong between the guest driver and the device, as typed
 * errors a test can assert on: a command that failed with an NVMe status,
 * a controller that did not come ready or reported fatal status, a
 * completion that never came, and device behaviour the protocol forbids.
 */
import type { NvmeStatus } from './guest-nvme-commands.ts';

export class NvmeStatusError extends Error {
  readonly qid: number;
  readonly cid: number;
  readonly opcode: number;
  readonly status: NvmeStatus;
  constructor(what: string, qid: number, cid: number, opcode: number, status: NvmeStatus) {
    super(`${what} failed: SCT=0x${status.sct.toString(16)} SC=0x${status.sc.toString(16).padStart(2, '0')}${status.doNotRetry ? ' (DNR)' : ''} (qid ${qid}, cid ${cid}, opcode 0x${opcode.toString(16)})`);
    this.name = 'NvmeStatusError';
    this.qid = qid;
    this.cid = cid;
    this.opcode = opcode;
    this.status = status;
  }
  get sct(): number {
    return this.status.sct;
  }
  get sc(): number {
    return this.status.sc;
  }
}

export class NvmeControllerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NvmeControllerError';
  }
}

export class NvmeTimeoutError extends Error {
  readonly qid: number;
  readonly cid: number;
  constructor(qid: number, cid: number, opcode: number, timeoutMs: number) {
    super(`no completion for qid ${qid} cid ${cid} (opcode 0x${opcode.toString(16)}) within ${timeoutMs} ms`);
    this.name = 'NvmeTimeoutError';
    this.qid = qid;
    this.cid = cid;
  }
}

export type ProtocolViolationKind =
  /** A CQE for a CID that completed before and is not outstanding now. */
  | 'duplicate-completion'
  /** A CQE for a CID this queue never issued. */
  | 'unknown-cid'
  /** A CQE for a command whose SQ tail doorbell was not rung yet. */
  | 'completion-before-doorbell'
  /** A CQE whose SQHD says the command's SQ entry had not been fetched. */
  | 'completion-before-fetch'
  /** A CQE naming an SQ that is not bound to the CQ it was posted in. */
  | 'wrong-sqid'
  /** SQHD behind the head an earlier CQE reported. */
  | 'sq-head-backwards'
  /** SQHD past the last tail the guest rang. */
  | 'sq-head-beyond-tail';

export interface ProtocolViolation {
  readonly kind: ProtocolViolationKind;
  readonly cqid: number;
  readonly sqid: number;
  readonly cid: number;
  readonly sqHead: number;
  readonly detail: string;
}

export class NvmeProtocolError extends Error {
  readonly violations: readonly ProtocolViolation[];
  constructor(violations: readonly ProtocolViolation[]) {
    super(`device violated the NVMe queue protocol: ${violations.map((v) => `${v.kind}: ${v.detail}`).join('; ')}`);
    this.name = 'NvmeProtocolError';
    this.violations = violations;
  }
}
