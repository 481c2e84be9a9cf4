/**
 * Get Features / Set Features for the features this controller has:
 * Volatile Write Cache (06h), Number of Queues (07h), Interrupt Coalescing
 * (08h) and Asynchronous Event Configuration (0Bh). Any other feature is
 * Invalid Field. Nothing is saveable, so SEL=saved reports the default.
 */
import { FeatureId } from './nvme-defs.ts';
import { completion, type Completion, OK, Status } from './nvme-status.ts';

export interface FeatureState {
  /** Number of Queues granted, 0's based (NSQA, NCQA). */
  nsqa: number;
  ncqa: number;
  /** Volatile Write Cache Enable: when off, every write is made durable before it completes. */
  volatileWriteCache: boolean;
  coalescingThreshold: number;
  coalescingTime: number;
  asyncEventConfig: number;
  /**
   * Number of Queues was set since the last controller reset: the
   * allocation then stays as it is until the next one (NVMe Base 2.1,
   * "the value allocated shall not change between resets").
   */
  queuesAllocated: boolean;
  /** An I/O queue was created since the last controller reset (deleted or not): Number of Queues is then a Command Sequence Error. */
  ioQueuesCreated: boolean;
}

/** AEC bits we accept: the SMART / Health critical warnings (7:0). */
const AEC_SUPPORTED = 0xff;
/** Get Features SEL=3 capabilities: changeable, not saveable, not namespace specific. */
const CAPABILITY_CHANGEABLE = 0x4;

export function defaultFeatures(maxIoQueues: number): FeatureState {
  return {
    nsqa: maxIoQueues - 1,
    ncqa: maxIoQueues - 1,
    volatileWriteCache: true,
    coalescingThreshold: 0,
    coalescingTime: 0,
    asyncEventConfig: 0,
    queuesAllocated: false,
    ioQueuesCreated: false,
  };
}

export function getFeature(state: FeatureState, maxIoQueues: number, cdw10: number): Completion {
  const fid = cdw10 & 0xff;
  const select = (cdw10 >> 8) & 0x7;
  if (!isSupported(fid)) return completion(Status.INVALID_FIELD);
  if (select === 3) return completion(Status.SUCCESS, CAPABILITY_CHANGEABLE);
  if (select > 3) return completion(Status.INVALID_FIELD);
  const source = select === 0 ? state : defaultFeatures(maxIoQueues);
  return completion(Status.SUCCESS, featureValue(source, fid));
}

/**
 * Number of Queues is set once between controller resets, before any I/O
 * queue was created: after a creation it is a Command Sequence Error, and
 * a second Set before one reports the allocation already made.
 */
export function setFeature(state: FeatureState, maxIoQueues: number, cdw10: number, cdw11: number): Completion {
  const fid = cdw10 & 0xff;
  const save = (cdw10 >>> 31) === 1;
  if (!isSupported(fid)) return completion(Status.INVALID_FIELD);
  if (save) return completion(Status.FEATURE_NOT_SAVEABLE);
  switch (fid) {
    case FeatureId.NUMBER_OF_QUEUES: {
      const nsqr = cdw11 & 0xffff;
      const ncqr = cdw11 >>> 16;
      if (nsqr === 0xffff || ncqr === 0xffff) return completion(Status.INVALID_FIELD);
      if (state.ioQueuesCreated) return completion(Status.COMMAND_SEQUENCE_ERROR);
      if (!state.queuesAllocated) {
        state.nsqa = Math.min(nsqr, maxIoQueues - 1);
        state.ncqa = Math.min(ncqr, maxIoQueues - 1);
        state.queuesAllocated = true;
      }
      return completion(Status.SUCCESS, featureValue(state, fid));
    }
    case FeatureId.VOLATILE_WRITE_CACHE:
      state.volatileWriteCache = (cdw11 & 1) === 1;
      return OK;
    case FeatureId.INTERRUPT_COALESCING:
      state.coalescingThreshold = cdw11 & 0xff;
      state.coalescingTime = (cdw11 >> 8) & 0xff;
      return OK;
    case FeatureId.ASYNC_EVENT_CONFIGURATION:
      if ((cdw11 & ~AEC_SUPPORTED) !== 0) return completion(Status.INVALID_FIELD);
      state.asyncEventConfig = cdw11 & AEC_SUPPORTED;
      return OK;
    default:
      return completion(Status.INVALID_FIELD);
  }
}

/** The features Get and Set Features take (and the Feature Identifiers Supported and Effects log lists). */
export const SUPPORTED_FEATURES: readonly number[] = Object.values(FeatureId);

function isSupported(fid: number): boolean {
  return SUPPORTED_FEATURES.includes(fid);
}

function featureValue(state: FeatureState, fid: number): number {
  switch (fid) {
    case FeatureId.NUMBER_OF_QUEUES:
      return (state.nsqa | (state.ncqa << 16)) >>> 0;
    case FeatureId.VOLATILE_WRITE_CACHE:
      return state.volatileWriteCache ? 1 : 0;
    case FeatureId.INTERRUPT_COALESCING:
      return state.coalescingThreshold | (state.coalescingTime << 8);
    default:
      return state.asyncEventConfig;
  }
}
