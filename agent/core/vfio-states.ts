/**
 * The VFIO migration v2 device state machine (include/uapi/linux/vfio.h,
 * drivers/vfio/vfio_main.c): state numbers, which states a device's
 * capabilities allow, and the kernel's next-step routing.
 */

export const VFIO_STATES = [
  'ERROR', 'STOP', 'RUNNING', 'STOP_COPY', 'RESUMING', 'RUNNING_P2P', 'PRE_COPY', 'PRE_COPY_P2P',
] as const;

export type VfioStateName = (typeof VFIO_STATES)[number];

/** enum vfio_device_mig_state: the numbers are uAPI (ERROR 0, STOP 1, RUNNING 2, ...). */
export function vfioStateValue(state: VfioStateName): number {
  return VFIO_STATES.indexOf(state);
}

export interface MigrationFeatures {
  /** VFIO_MIGRATION_P2P */
  readonly p2p: boolean;
  /** VFIO_MIGRATION_PRE_COPY */
  readonly preCopy: boolean;
}

/** States in which the device runs (processes its queues): leaving them for another is where downtime starts. */
export const RUNNING_STATES: ReadonlySet<VfioStateName> = new Set(['RUNNING', 'RUNNING_P2P', 'PRE_COPY', 'PRE_COPY_P2P']);

/** States whose device-state stream is open for reading. */
export const SAVING_STATES: ReadonlySet<VfioStateName> = new Set(['STOP_COPY', 'PRE_COPY', 'PRE_COPY_P2P']);

/** state_flags_table: which optional features a state needs (ERROR can never be entered by request). */
function isSupported(state: VfioStateName, features: MigrationFeatures): boolean {
  switch (state) {
    case 'ERROR': return false;
    case 'RUNNING_P2P': return features.p2p;
    case 'PRE_COPY': return features.preCopy;
    case 'PRE_COPY_P2P': return features.p2p && features.preCopy;
    default: return true;
  }
}

/**
 * vfio_from_fsm_table: the next step from `cur` towards `target`, assuming
 * every optional state is supported. A saving state never appears in the
 * middle of a path; ERROR marks a blocked arc.
 */
const NEXT_STEP: Readonly<Record<VfioStateName, Readonly<Record<VfioStateName, VfioStateName>>>> = {
  STOP: {
    STOP: 'STOP', RUNNING: 'RUNNING_P2P', STOP_COPY: 'STOP_COPY', RESUMING: 'RESUMING',
    RUNNING_P2P: 'RUNNING_P2P', PRE_COPY: 'RUNNING_P2P', PRE_COPY_P2P: 'RUNNING_P2P', ERROR: 'ERROR',
  },
  RUNNING: {
    STOP: 'RUNNING_P2P', RUNNING: 'RUNNING', STOP_COPY: 'RUNNING_P2P', RESUMING: 'RUNNING_P2P',
    RUNNING_P2P: 'RUNNING_P2P', PRE_COPY: 'PRE_COPY', PRE_COPY_P2P: 'RUNNING_P2P', ERROR: 'ERROR',
  },
  STOP_COPY: {
    STOP: 'STOP', RUNNING: 'STOP', STOP_COPY: 'STOP_COPY', RESUMING: 'STOP',
    RUNNING_P2P: 'STOP', PRE_COPY: 'ERROR', PRE_COPY_P2P: 'ERROR', ERROR: 'ERROR',
  },
  RESUMING: {
    STOP: 'STOP', RUNNING: 'STOP', STOP_COPY: 'STOP', RESUMING: 'RESUMING',
    RUNNING_P2P: 'STOP', PRE_COPY: 'STOP', PRE_COPY_P2P: 'STOP', ERROR: 'ERROR',
  },
  RUNNING_P2P: {
    STOP: 'STOP', RUNNING: 'RUNNING', STOP_COPY: 'STOP', RESUMING: 'STOP',
    RUNNING_P2P: 'RUNNING_P2P', PRE_COPY: 'RUNNING', PRE_COPY_P2P: 'PRE_COPY_P2P', ERROR: 'ERROR',
  },
  PRE_COPY: {
    STOP: 'RUNNING', RUNNING: 'RUNNING', STOP_COPY: 'PRE_COPY_P2P', RESUMING: 'RUNNING',
    RUNNING_P2P: 'RUNNING', PRE_COPY: 'PRE_COPY', PRE_COPY_P2P: 'PRE_COPY_P2P', ERROR: 'ERROR',
  },
  PRE_COPY_P2P: {
    STOP: 'RUNNING_P2P', RUNNING: 'RUNNING_P2P', STOP_COPY: 'STOP_COPY', RESUMING: 'RUNNING_P2P',
    RUNNING_P2P: 'RUNNING_P2P', PRE_COPY: 'PRE_COPY', PRE_COPY_P2P: 'PRE_COPY_P2P', ERROR: 'ERROR',
  },
  ERROR: {
    STOP: 'ERROR', RUNNING: 'ERROR', STOP_COPY: 'ERROR', RESUMING: 'ERROR',
    RUNNING_P2P: 'ERROR', PRE_COPY: 'ERROR', PRE_COPY_P2P: 'ERROR', ERROR: 'ERROR',
  },
};

/**
 * vfio_mig_get_next_state(): the next direct arc from `cur` towards
 * `target` for a device with `features`, or undefined when the request is
 * refused (-EINVAL): `cur` or `target` not supported, or a blocked arc.
 * Unlike the kernel before the June 2026 fix, the skip loop ends on ERROR.
 */
export function nextStep(cur: VfioStateName, target: VfioStateName, features: MigrationFeatures): VfioStateName | undefined {
  if (!isSupported(cur, features) || !isSupported(target, features)) return undefined;
  let next = NEXT_STEP[cur][target];
  while (next !== 'ERROR' && !isSupported(next, features)) next = NEXT_STEP[next][target];
  return next === 'ERROR' ? undefined : next;
}

/**
 * The states a request for `target` passes through, in order, ending with
 * `target`; empty when already there; undefined when refused.
 */
export function routeTo(cur: VfioStateName, target: VfioStateName, features: MigrationFeatures): VfioStateName[] | undefined {
  // Even "already there" is refused for states that cannot be requested (ERROR → ERROR).
  if (!isSupported(cur, features) || !isSupported(target, features)) return undefined;
  const path: VfioStateName[] = [];
  let at = cur;
  while (at !== target) {
    const next = nextStep(at, target, features);
    if (next === undefined) return undefined;
    path.push(next);
    at = next;
    // The table has at most three steps between any two states; this bound
    // turns a table mistake into a refusal instead of a hang.
    if (path.length > VFIO_STATES.length) return undefined;
  }
  return path;
}

/** Whether `cur` → `next` is an arc a driver must implement (one step of a route). */
export function isDirectArc(cur: VfioStateName, next: VfioStateName, features: MigrationFeatures): boolean {
  return cur !== next && nextStep(cur, next, features) === next;
}
