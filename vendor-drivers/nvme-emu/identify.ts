/**
 * Identify data structures (4 KiB each): controller (CNS 01h), namespace
 * (CNS 00h), active namespace list (CNS 02h) and namespace identification
 * descriptor list (CNS 03h).
 */
import type { ControllerProfile, NamespaceProfile } from './controller-profile.ts';
import { putAsciiPadded, putHex, putNulPadded, setU64, view } from './bytes.ts';
import {
  ACL,
  AERL,
  ELPE,
  IdentifyCns,
  IOCQES,
  IOSQES,
  MDTS,
  NSID_BROADCAST,
  NVME_VERSION,
  PCI_SUBSYSTEM_VENDOR_ID,
  PCI_VENDOR_ID,
} from './nvme-defs.ts';
import { Status } from './nvme-status.ts';
import { absentNsidKind, maxNsid } from './nsid.ts';

export const IDENTIFY_BYTES = 4096;

export type IdentifyResult = { readonly ok: true; readonly data: Uint8Array } | { readonly ok: false; readonly status: number };

export function identify(profile: ControllerProfile, cns: number, nsid: number): IdentifyResult {
  switch (cns) {
    case IdentifyCns.CONTROLLER:
      return { ok: true, data: identifyController(profile) };
    case IdentifyCns.NAMESPACE:
      return withNamespace(profile, nsid, identifyNamespace, 'zeroes');
    case IdentifyCns.ACTIVE_NAMESPACES:
      if (nsid >= 0xfffffffe) return { ok: false, status: Status.INVALID_NAMESPACE };
      return { ok: true, data: activeNamespaceList(profile, nsid) };
    case IdentifyCns.NAMESPACE_DESCRIPTORS:
      return withNamespace(profile, nsid, namespaceDescriptors, 'refused');
    default:
      return { ok: false, status: Status.INVALID_FIELD };
  }
}

/**
 * An active NSID gets its data. An inactive one (valid, no namespace
 * attached) reads as zeroes where the CNS says so (00h), and is Invalid
 * Field in Command where it does not (03h); anything else is Invalid
 * Namespace or Format.
 */
function withNamespace(profile: ControllerProfile, nsid: number, build: (ns: NamespaceProfile) => Uint8Array, inactive: 'zeroes' | 'refused'): IdentifyResult {
  const ns = profile.namespaces.find((candidate) => candidate.nsid === nsid);
  if (ns) return { ok: true, data: build(ns) };
  if (absentNsidKind(nsid, maxNsid(profile)) !== 'inactive') return { ok: false, status: Status.INVALID_NAMESPACE };
  return inactive === 'zeroes' ? { ok: true, data: new Uint8Array(IDENTIFY_BYTES) } : { ok: false, status: Status.INVALID_FIELD };
}

function identifyController(profile: ControllerProfile): Uint8Array {
  const data = new Uint8Array(IDENTIFY_BYTES);
  const dv = view(data);
  dv.setUint16(0, PCI_VENDOR_ID, true);
  dv.setUint16(2, PCI_SUBSYSTEM_VENDOR_ID, true);
  putAsciiPadded(data, 4, 20, profile.serial);
  putAsciiPadded(data, 24, 40, profile.model);
  putAsciiPadded(data, 64, 8, profile.firmware);
  data[72] = 6; // RAB: recommended arbitration burst, 2^6
  data[77] = MDTS;
  dv.setUint16(78, profile.cntlid, true);
  dv.setUint32(80, NVME_VERSION, true);
  data[111] = 1; // CNTRLTYPE: I/O controller
  // OACS = 0: no namespace management, firmware, format or security commands.
  data[258] = ACL;
  data[259] = AERL;
  data[260] = 0x03; // FRMW: one firmware slot, read-only
  data[261] = 0x06; // LPA: Commands Supported and Effects log (bit 1), extended Get Log Page (NUMDU, offsets; bit 2)
  data[262] = ELPE;
  dv.setUint16(266, 343, true); // WCTEMP, kelvin
  dv.setUint16(268, 373, true); // CCTEMP
  data[512] = (IOSQES << 4) | IOSQES; // SQES: required = maximum = 64 bytes
  data[513] = (IOCQES << 4) | IOCQES; // CQES: 16 bytes
  dv.setUint32(516, maxNsid(profile), true); // NN
  dv.setUint16(520, 0x000c, true); // ONCS: Dataset Management, Write Zeroes
  data[525] = 0x07; // VWC: present; Flush with NSID FFFFFFFFh supported
  putNulPadded(data, 768, 256, profile.subnqn);
  dv.setUint16(2048, 2500, true); // PSD0 maximum power: 25 W (centiwatts)
  return data;
}

function identifyNamespace(ns: NamespaceProfile): Uint8Array {
  const data = new Uint8Array(IDENTIFY_BYTES);
  const dv = view(data);
  const blocks = ns.sizeBytes / ns.blockSize;
  setU64(dv, 0, blocks); // NSZE
  setU64(dv, 8, blocks); // NCAP
  setU64(dv, 16, blocks); // NUSE
  data[25] = 0; // NLBAF: one LBA format
  data[26] = 0; // FLBAS: format 0
  // DLFEAT: deallocated blocks read as zeroes (001b); Write Zeroes may deallocate (bit 3).
  data[33] = 0x09;
  putHex(data, 104, ns.nguid);
  putHex(data, 120, ns.eui64);
  dv.setUint32(128, Math.log2(ns.blockSize) << 16, true); // LBAF0: LBADS, no metadata
  return data;
}

function activeNamespaceList(profile: ControllerProfile, after: number): Uint8Array {
  const data = new Uint8Array(IDENTIFY_BYTES);
  const dv = view(data);
  const nsids = profile.namespaces.map((ns) => ns.nsid).filter((nsid) => nsid > after).sort((a, b) => a - b);
  nsids.slice(0, IDENTIFY_BYTES / 4).forEach((nsid, i) => dv.setUint32(4 * i, nsid, true));
  return data;
}

/** Namespace Identification Descriptors: EUI-64 (1), NGUID (2), UUID (3), Command Set Identifier (4, NVM). */
function namespaceDescriptors(ns: NamespaceProfile): Uint8Array {
  const data = new Uint8Array(IDENTIFY_BYTES);
  let at = 0;
  const descriptor = (type: number, bytes: number, fill: (offset: number) => void): void => {
    data[at] = type;
    data[at + 1] = bytes;
    fill(at + 4);
    at += 4 + bytes;
  };
  descriptor(1, 8, (offset) => putHex(data, offset, ns.eui64));
  descriptor(2, 16, (offset) => putHex(data, offset, ns.nguid));
  descriptor(3, 16, (offset) => putHex(data, offset, ns.uuid));
  descriptor(4, 1, (offset) => {
    data[offset] = 0;
  });
  return data;
}
