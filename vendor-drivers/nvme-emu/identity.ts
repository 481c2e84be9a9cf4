/**
 * The migration identity of a VF: everything a guest can observe that must
 * be the same on the destination. Compared field by field so a refusal
 * names the field and both values.
 */
import type { DeviceIdentity, JsonValue } from '../driver.ts';
import type { ControllerProfile } from './controller-profile.ts';
import { MDTS, NVME_VERSION, PCI_VENDOR_ID } from './nvme-defs.ts';

export const DEVICE_MODEL = 'vfmigd/nvme-emu';

export function deviceIdentity(profile: ControllerProfile): DeviceIdentity {
  return {
    model: DEVICE_MODEL,
    vendorId: PCI_VENDOR_ID,
    nvmeVersion: `${NVME_VERSION >>> 16}.${(NVME_VERSION >> 8) & 0xff}.${NVME_VERSION & 0xff}`,
    cntlid: profile.cntlid,
    serialNumber: profile.serial,
    modelNumber: profile.model,
    firmwareRevision: profile.firmware,
    subnqn: profile.subnqn,
    mqes: profile.mqes,
    maxIoQueues: profile.maxIoQueues,
    msixVectors: profile.vectorCount,
    mdts: MDTS,
    namespaces: profile.namespaces.map((ns) => ({
      nsid: ns.nsid,
      sizeBytes: ns.sizeBytes,
      blockSize: ns.blockSize,
      nguid: ns.nguid,
      eui64: ns.eui64,
      uuid: ns.uuid,
    })),
  };
}

/**
 * The first difference between a source identity and this VF's, as
 * "field: source X, destination Y", or undefined when they match.
 */
export function identityDifference(source: DeviceIdentity, destination: DeviceIdentity): string | undefined {
  return difference('identity', source, destination);
}

function difference(path: string, source: JsonValue | undefined, destination: JsonValue | undefined): string | undefined {
  if (Array.isArray(source) && Array.isArray(destination)) {
    if (source.length !== destination.length) return `${path} has ${source.length} entries on the source, ${destination.length} here`;
    for (let i = 0; i < source.length; i++) {
      const found = difference(`${path}[${i}]`, source[i], destination[i]);
      if (found) return found;
    }
    return undefined;
  }
  if (isObject(source) && isObject(destination)) {
    const keys = [...new Set([...Object.keys(destination), ...Object.keys(source)])];
    for (const key of keys) {
      const found = difference(`${path}.${key}`, source[key], destination[key]);
      if (found) return found;
    }
    return undefined;
  }
  if (source === destination) return undefined;
  return `${path} differs: source ${show(source)}, destination ${show(destination)}`;
}

function isObject(value: JsonValue | undefined): value is { [key: string]: JsonValue } {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function show(value: JsonValue | undefined): string {
  return value === undefined ? '(absent)' : JSON.stringify(value);
}
