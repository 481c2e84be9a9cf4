/**
 * The two state formats nvme-emu saves and loads, each as a writer and a
 * reader of one controller state (an "image"), behind one shape so that the
 * driver and its streams do not care which it is. The option `stateFormats`
 * names them: `full` and `standard`.
 */
import type { StateFormat } from '../driver.ts';
import type { ControllerSnapshot } from './controller-snapshot.ts';
import type { ImageKind } from './nvme-controller-state.ts';
import { snapshotFromStandard } from './standard-restore.ts';
import { decodeStandardState, encodeStandardState } from './standard-state.ts';
import { decodeState } from './state-decode.ts';
import { encodeState } from './state-encode.ts';
import { FULL_STATE_FORMAT, STANDARD_STATE_FORMAT } from './state-format.ts';
import { validateSnapshot } from './state-validate.ts';

export type StateFormatName = 'full' | 'standard';

export interface StateCodec {
  readonly format: StateFormat;
  /** The state of a controller; `suspended` when the VF is stopped. */
  encode(snapshot: ControllerSnapshot, suspended: boolean): Uint8Array;
  /**
   * The snapshot the VF whose state is `destination` now would take from
   * `image`, decoded and validated whole against it; nothing is applied.
   * Throws `corrupt-state` or `incompatible-state`.
   */
  decode(image: Uint8Array, destination: ControllerSnapshot, accept: ImageKind): ControllerSnapshot;
}

export const STATE_CODECS: Readonly<Record<StateFormatName, StateCodec>> = {
  full: {
    format: FULL_STATE_FORMAT,
    encode: (snapshot, suspended) => encodeState(snapshot, suspended),
    decode(image, destination, accept) {
      const snapshot = decodeState(image, accept);
      validateSnapshot(snapshot, destination.profile);
      return snapshot;
    },
  },
  standard: {
    format: STANDARD_STATE_FORMAT,
    encode: (snapshot, suspended) => encodeStandardState(snapshot, suspended),
    decode(image, destination, accept) {
      // The state names no identity: the core has checked the descriptor's (checkIdentity), and the rest is the destination's own.
      const snapshot = snapshotFromStandard(decodeStandardState(image, accept), destination);
      validateSnapshot(snapshot, destination.profile);
      return snapshot;
    },
  },
};
