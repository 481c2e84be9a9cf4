/**
 * What an NSID in a command names, as the NVMe Base specification sorts
 * them (2.1, "Namespace Identifier"): an active namespace; a valid NSID
 * (1..NN) with no namespace attached, which is inactive; the broadcast
 * value FFFFFFFFh; or an invalid NSID (0, or above NN). The statuses
 * differ: a command gets Invalid Namespace or Format only for an invalid
 * NSID, and Invalid Field in Command for an inactive one, or for the
 * broadcast value where it takes none.
 */
import type { ControllerProfile } from './controller-profile.ts';
import { NSID_BROADCAST } from './nvme-defs.ts';
import { Status } from './nvme-status.ts';

/** Identify Controller's NN: the largest valid NSID, that of the last namespace configured. */
export function maxNsid(profile: ControllerProfile): number {
  return Math.max(...profile.namespaces.map((ns) => ns.nsid));
}

export type NsidKind = 'active' | 'inactive' | 'broadcast' | 'invalid';

/** `nn` is Identify Controller's NN: the largest valid NSID. */
export function nsidKind(nsid: number, active: (nsid: number) => boolean, nn: number): NsidKind {
  if (nsid === NSID_BROADCAST) return 'broadcast';
  if (nsid === 0 || nsid > nn) return 'invalid';
  return active(nsid) ? 'active' : 'inactive';
}

/** The status of a command that needs one active namespace and got `kind` instead. */
export function notActiveStatus(kind: Exclude<NsidKind, 'active'>): number {
  return kind === 'invalid' ? Status.INVALID_NAMESPACE : Status.INVALID_FIELD;
}
