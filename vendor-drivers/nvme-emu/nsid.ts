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

/**
 * What an NSID that names no attached namespace is: the broadcast value,
 * an invalid NSID (0, or above `nn`, Identify Controller's NN), or else a
 * valid but inactive one. Callers ask once their lookup found nothing.
 */
export function absentNsidKind(nsid: number, nn: number): 'inactive' | 'broadcast' | 'invalid' {
  if (nsid === NSID_BROADCAST) return 'broadcast';
  if (nsid === 0 || nsid > nn) return 'invalid';
  return 'inactive';
}

/** The status of a command that needs one active namespace and names none: Invalid Namespace only for an invalid NSID. */
export function noActiveNamespaceStatus(nsid: number, nn: number): number {
  return absentNsidKind(nsid, nn) === 'invalid' ? Status.INVALID_NAMESPACE : Status.INVALID_FIELD;
}
