/**
 * Get Features / Set Features for the features this controller has: the
 * ones the NVMe Base specification makes mandatory (Arbitration 01h, Power
 * Management 02h, Temperature Threshold 04h, Error Recovery 05h, Number of
 * Queues 07h, Interrupt Coalescing 08h, Interrupt Vector Configuration
 * 09h, Write Atomicity Normal 0Ah, Asynchronous Event Configuration 0Bh)
 * and Volatile Write Cache (06h). Any other feature is Invalid Field.
 * Nothing is saveable, so SEL=saved reports the default.
 */
import type { CoalescingSetting } from './interrupts.ts';
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
  /** Arbitration as set: AB 2:0, LPW 15:8, MPW 23:16, HPW 31:24 (kept; arbitration is round robin, CAP.AMS = 0). */
  arbitration: number;
  /** Power Management: WH 7:5 (PS 4:0 is always 0, the one power state). */
  workloadHint: number;
  /** Temperature Threshold of the composite temperature, in kelvin: over (THSEL 0) and under (THSEL 1). */
  overTemperatureThreshold: number;
  underTemperatureThreshold: number;
  /** Error Recovery TLER, in 100 ms units (DULBE is not supported). */
  timeLimitedErrorRecovery: number;
  /** Write Atomicity Normal DN. */
  disableNormalAtomicity: boolean;
  /** Interrupt Vector Configuration: the I/O vectors whose coalescing is disabled (CD), ascending. */
  coalescingDisabledVectors: readonly number[];
  /**
   * Number of Queues was set since the last controller reset: the
   * allocation then stays as it is until the next one (NVMe Base 2.1,
   * "the value allocated shall not change between resets").
   */
  queuesAllocated: boolean;
  /** An I/O queue was created since the last controller reset (deleted or not): Number of Queues is then a Command Sequence Error. */
  ioQueuesCreated: boolean;
}

/** 70 C: the over-temperature threshold a controller starts with (the composite temperature reads 313 K, 40 C). */
export const DEFAULT_OVER_TEMPERATURE_K = 343;
/** Temperature Threshold TMPSEL: the composite temperature, and "all sensors" (this controller has no other). */
const TMPSEL_COMPOSITE = 0x0;
const TMPSEL_ALL = 0xf;

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
    ...DEFAULT_MORE_FEATURES,
    queuesAllocated: false,
    ioQueuesCreated: false,
  };
}

/** The features of the state's "more features" record (STATE-FORMAT.md). */
export type MoreFeatures = Pick<FeatureState, 'arbitration' | 'workloadHint' | 'overTemperatureThreshold' | 'underTemperatureThreshold' | 'timeLimitedErrorRecovery' | 'disableNormalAtomicity' | 'coalescingDisabledVectors'>;

export const DEFAULT_MORE_FEATURES: Readonly<MoreFeatures> = Object.freeze({
  arbitration: 0,
  workloadHint: 0,
  overTemperatureThreshold: DEFAULT_OVER_TEMPERATURE_K,
  underTemperatureThreshold: 0,
  timeLimitedErrorRecovery: 0,
  disableNormalAtomicity: false,
  coalescingDisabledVectors: [],
});

/** Whether `state` holds any of the more features at a value other than its default (then the state must carry them). */
export function hasMoreFeatures(state: MoreFeatures): boolean {
  return (Object.keys(DEFAULT_MORE_FEATURES) as (keyof MoreFeatures)[]).some((key) => JSON.stringify(state[key]) !== JSON.stringify(DEFAULT_MORE_FEATURES[key]));
}

/** What the interrupt controller needs of the features: Interrupt Coalescing, and the vectors Interrupt Vector Configuration exempts. */
export function coalescingOf(state: Readonly<FeatureState>): CoalescingSetting {
  return { threshold: state.coalescingThreshold, time: state.coalescingTime, disabledVectors: state.coalescingDisabledVectors };
}

/** What the controller is: the bounds of what a feature may be set to. */
export interface FeatureLimits {
  readonly maxIoQueues: number;
  /** MSI-X vectors: Interrupt Vector Configuration's IV must be below it. */
  readonly vectorCount: number;
}

export function getFeature(state: FeatureState, limits: FeatureLimits, cdw10: number, cdw11: number): Completion {
  const fid = cdw10 & 0xff;
  const select = (cdw10 >> 8) & 0x7;
  if (!isSupported(fid)) return completion(Status.INVALID_FIELD);
  if (select === 3) return completion(Status.SUCCESS, CAPABILITY_CHANGEABLE);
  if (select > 3) return completion(Status.INVALID_FIELD);
  const source = select === 0 ? state : defaultFeatures(limits.maxIoQueues);
  // Two features name what is read in CDW11: a threshold, a vector.
  if (fid === FeatureId.TEMPERATURE_THRESHOLD) {
    const threshold = temperatureSelection(cdw11);
    if (threshold === undefined) return completion(Status.INVALID_FIELD);
    const kelvin = threshold === 'over' ? source.overTemperatureThreshold : source.underTemperatureThreshold;
    return completion(Status.SUCCESS, (kelvin | (cdw11 & 0x3f0000)) >>> 0);
  }
  if (fid === FeatureId.INTERRUPT_VECTOR_CONFIGURATION) {
    const vector = cdw11 & 0xffff;
    if (vector >= limits.vectorCount) return completion(Status.INVALID_FIELD);
    return completion(Status.SUCCESS, (vector | (source.coalescingDisabledVectors.includes(vector) ? 1 << 16 : 0)) >>> 0);
  }
  return completion(Status.SUCCESS, featureValue(source, fid));
}

/** THSEL 0 is the over-temperature threshold, 1 the under; TMPSEL must name the composite temperature (or all sensors, which is it). */
function temperatureSelection(cdw11: number): 'over' | 'under' | undefined {
  const sensor = (cdw11 >>> 16) & 0xf;
  const kind = (cdw11 >>> 20) & 0x3;
  if (sensor !== TMPSEL_COMPOSITE && sensor !== TMPSEL_ALL) return undefined;
  return kind === 0 ? 'over' : kind === 1 ? 'under' : undefined;
}

/**
 * Number of Queues is set once between controller resets, before any I/O
 * queue was created: after a creation it is a Command Sequence Error, and
 * a second Set before one reports the allocation already made.
 */
export function setFeature(state: FeatureState, limits: FeatureLimits, cdw10: number, cdw11: number): Completion {
  const { maxIoQueues } = limits;
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
    case FeatureId.ARBITRATION:
      state.arbitration = (cdw11 & 0xffffff07) >>> 0;
      return OK;
    case FeatureId.POWER_MANAGEMENT:
      // Identify's NPSS is 0: power state 0 is the only one.
      if ((cdw11 & 0x1f) !== 0) return completion(Status.INVALID_FIELD);
      state.workloadHint = (cdw11 >> 5) & 0x7;
      return OK;
    case FeatureId.TEMPERATURE_THRESHOLD: {
      const threshold = temperatureSelection(cdw11);
      if (threshold === undefined) return completion(Status.INVALID_FIELD);
      if (threshold === 'over') state.overTemperatureThreshold = cdw11 & 0xffff;
      else state.underTemperatureThreshold = cdw11 & 0xffff;
      return OK;
    }
    case FeatureId.ERROR_RECOVERY:
      // DULBE needs a namespace that reports deallocated blocks as errors (NSFEAT bit 2); none does.
      if ((cdw11 & (1 << 16)) !== 0) return completion(Status.INVALID_FIELD);
      state.timeLimitedErrorRecovery = cdw11 & 0xffff;
      return OK;
    case FeatureId.INTERRUPT_VECTOR_CONFIGURATION: {
      const vector = cdw11 & 0xffff;
      const disable = (cdw11 & (1 << 16)) !== 0;
      // Coalescing never applies to the admin queue's vector 0, so CD cannot be cleared there.
      if (vector >= limits.vectorCount || (vector === 0 && !disable)) return completion(Status.INVALID_FIELD);
      const others = state.coalescingDisabledVectors.filter((v) => v !== vector);
      state.coalescingDisabledVectors = (disable ? [...others, vector] : others).sort((a, b) => a - b);
      return OK;
    }
    case FeatureId.WRITE_ATOMICITY_NORMAL:
      state.disableNormalAtomicity = (cdw11 & 1) === 1;
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
    case FeatureId.ARBITRATION:
      return state.arbitration;
    case FeatureId.POWER_MANAGEMENT:
      return state.workloadHint << 5;
    case FeatureId.ERROR_RECOVERY:
      return state.timeLimitedErrorRecovery;
    case FeatureId.WRITE_ATOMICITY_NORMAL:
      return state.disableNormalAtomicity ? 1 : 0;
    default:
      return state.asyncEventConfig;
  }
}
