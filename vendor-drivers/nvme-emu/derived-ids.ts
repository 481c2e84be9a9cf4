/**
 * Defaults that are derived rather than fixed: PCI addresses of generated
 * VFs, serial numbers, NQNs and namespace identifiers. All derivations are
 * deterministic, so two agents with the same configuration (source and
 * destination of a migration) present identical identities.
 */
import { createHash } from 'node:crypto';

/** Where generated VFs start: bus 0x3b, device 0, function 2 (after the PF's functions). */
const FIRST_BUS = 0x3b;
const FIRST_DEVFN = 2;

/**
 * The BDF of generated VF `index`: devfn = 2 + index, carrying into the
 * device number every 8 functions and into the bus number every 256 devfns,
 * as consecutive routing IDs do in PCI.
 */
export function generatedBdf(index: number): string {
  const routingId = FIRST_BUS * 256 + FIRST_DEVFN + index;
  const bus = Math.floor(routingId / 256);
  const device = (routingId >> 3) & 0x1f;
  const fn = routingId & 0x7;
  return `0000:${hex(bus, 2)}:${hex(device, 2)}.${fn}`;
}

/** Serial number derived from the BDF: `VFM` + the BDF's hex digits (12 characters, within SN's 20). */
export function serialFromBdf(bdf: string): string {
  return `VFM${bdf.replace(/[:.]/g, '').toUpperCase()}`;
}

/** Subsystem NQN derived from the serial number (NVMe "nqn.yyyy-mm.reverse-domain:..." form). */
export function subnqnFromSerial(serial: string): string {
  return `nqn.2025-01.dev.vfmigd:nvme-emu:${serial.trim()}`;
}

export interface NamespaceIds {
  readonly nguid: string;
  readonly eui64: string;
  readonly uuid: string;
}

/** NGUID, EUI-64 and UUID derived from the subsystem NQN and NSID. */
export function namespaceIdsFor(subnqn: string, nsid: number): NamespaceIds {
  const digest = createHash('sha256').update(`${subnqn}\u0000${nsid}`).digest();
  const nguid = digest.subarray(0, 16).toString('hex');
  const eui64 = digest.subarray(16, 24).toString('hex');
  // RFC 9562 version 8 (vendor-defined) UUID from the remaining bytes.
  const u = Buffer.from(digest.subarray(16, 32));
  u[6] = ((u[6] ?? 0) & 0x0f) | 0x80;
  u[8] = ((u[8] ?? 0) & 0x3f) | 0x80;
  const h = u.toString('hex');
  const uuid = `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
  return { nguid, eui64, uuid };
}

function hex(value: number, width: number): string {
  return value.toString(16).padStart(width, '0');
}
