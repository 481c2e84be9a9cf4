/**
 * What a destination VF becomes from a standard-format state, which carries
 * only the I/O queues. Everything else is decided here, in one place, so that
 * the controller it makes is one nvme-emu could be in and that validation
 * (state-validate.ts) checks like any other; README.md says what a guest
 * notices. The rules:
 *
 * - I/O queues: exactly as saved (base, size, QID, CQID, priority, head,
 *   tail, phase, vector, IEN). No latches: the source folded them in.
 * - With I/O queues the controller is enabled and ready. CC is what a guest
 *   must have written for I/O queues to exist here (EN, NVM command set,
 *   4 KiB pages, round robin, 64-byte SQEs, 16-byte CQEs), CSTS is RDY.
 *   Without any the controller is a disabled one, as after a reset.
 * - No admin queue: where the guest's lives is not in the state, and the
 *   destination's own (if it had one) belongs to nobody's guest. AQA, ASQ
 *   and ACQ read 0; the guest's admin commands go unanswered until it
 *   resets the controller (CC.EN 1 -> 0 -> 1), which sets a new one up.
 * - Features: their defaults, except the volatile write cache, which is
 *   off: the source's setting is not in the state, and a guest that turned
 *   the cache off counts on every completed write being durable. Number of
 *   Queues is the default grant (every queue pair of the VF), which every
 *   QID of the state must be within.
 * - Interrupts: nothing masked, no coalescing. A CQ with completions the
 *   guest has not acknowledged (head != tail) gets its vector raised on
 *   resume: the source may have held that interrupt back, and a spurious
 *   interrupt costs a guest a look at its CQ where a lost one hangs it.
 * - No outstanding AERs and no queued or masked events: AER commands the
 *   guest had outstanding never complete.
 * - SMART counters and the error log stay the destination VF's own: they
 *   are its history, not the guest's, and the state has none.
 */
import type { ControllerSnapshot } from './controller-snapshot.ts';
import { defaultFeatures } from './features.ts';
import { IOCQES, IOSQES } from './nvme-defs.ts';
import { CC_EN, CSTS_RDY } from './registers.ts';
import type { StandardState } from './standard-state.ts';

/** CC of an enabled controller that can have I/O queues: EN, CSS 0, MPS 0, AMS 0, SHN 0, IOSQES, IOCQES. */
const CC_WITH_IO_QUEUES = (CC_EN | (IOSQES << 16) | (IOCQES << 20)) >>> 0;

/** `destination` is the VF's snapshot now: the identity and history that stay its own. */
export function snapshotFromStandard(state: StandardState, destination: ControllerSnapshot): ControllerSnapshot {
  const enabled = state.sqs.length > 0 || state.cqs.length > 0;
  const unacknowledged = state.cqs.filter((cq) => cq.interruptsEnabled && cq.head !== cq.tail).map((cq) => cq.vector);
  return {
    registers: { cc: enabled ? CC_WITH_IO_QUEUES : 0, csts: enabled ? CSTS_RDY : 0, aqa: 0, asqLo: 0, asqHi: 0, acqLo: 0, acqHi: 0 },
    interruptMask: 0,
    latchedCc: undefined,
    adminSq: undefined,
    adminCq: undefined,
    ioSqs: state.sqs.map((sq) => ({ ...sq, latchedTail: undefined })),
    ioCqs: state.cqs.map((cq) => ({ ...cq, latchedHead: undefined })),
    // The standard state says nothing of Number of Queues: queues that exist were created since the guest's last reset.
    features: { ...defaultFeatures(destination.profile.maxIoQueues), volatileWriteCache: false, ioQueuesCreated: enabled },
    vectorCount: destination.vectorCount,
    pendingVectors: [...new Set(unacknowledged)].sort((a, b) => a - b),
    events: { outstanding: [], queued: [], masked: [] },
    smart: destination.smart,
    errorCount: destination.errorCount,
    errorLog: destination.errorLog,
    profile: destination.profile,
  };
}
