/**
 * The one place where nvme-emu options get their defaults. Everything
 * downstream works on the fully resolved shape and never sees `undefined`.
 *
 * The schema has already been checked by the config loader; what is checked
 * here is what JSON Schema cannot say (uniqueness, size multiples).
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NvmeEmuNamespace, NvmeEmuOptions, NvmeEmuVf } from '../../schemas/types.ts';
import { generatedBdf, namespaceIdsFor, serialFromBdf, subnqnFromSerial } from './derived-ids.ts';
import type { StateFormatName } from './state-codecs.ts';

export const DEFAULTS = {
  dataDirName: 'vfmigd',
  vfCount: 4,
  namespaceBytes: 1024 ** 3,
  maxIoQueues: 16,
  maxQueueEntries: 1024,
  serviceTimeUs: 100,
  /**
   * 256 MiB per VF: room for everything a busy guest driver puts in memory
   * at the defaults (17 queue pairs of 1024 entries are 1.4 MiB; 512 commands
   * of the largest transfer, 512 KiB, are 256 MiB) while four VFs can hold
   * no more than 1 GiB of the SoC's RAM. Agents with many VFs lower it.
   */
  maxGuestMemoryBytes: 256 * 1024 * 1024,
  hostPort: false,
  p2p: true,
  preCopy: false,
  /** The full format first (the default save), and the standard one a destination of another vendor could take. */
  stateFormats: ['full', 'standard'] as readonly StateFormatName[],
  model: 'vfmigd nvme-emu',
  blockSize: 512,
} as const;

export interface NamespaceConfig {
  readonly nsid: number;
  readonly path: string;
  readonly sizeBytes: number;
  readonly blockSize: 512 | 4096;
  readonly nguid: string;
  readonly eui64: string;
  readonly uuid: string;
}

export interface VfConfig {
  readonly id: string;
  readonly bdf: string;
  readonly cntlid: number;
  readonly serial: string;
  readonly model: string;
  readonly subnqn: string;
  readonly namespaces: readonly NamespaceConfig[];
}

export interface ResolvedOptions {
  readonly vfs: readonly VfConfig[];
  readonly maxIoQueues: number;
  readonly maxQueueEntries: number;
  readonly serviceTimeUs: number;
  readonly maxGuestMemoryBytes: number;
  readonly hostPort: boolean;
  readonly p2p: boolean;
  readonly preCopy: boolean;
  readonly stateFormats: readonly StateFormatName[];
}

export function resolveOptions(options: NvmeEmuOptions): ResolvedOptions {
  const explicitVfs = options.vfs ?? generateVfs(options);
  const vfs = explicitVfs.map((vf, index) => resolveVf(vf, index));
  assertUnique(vfs.map((vf) => vf.id), 'VF id');
  assertUnique(vfs.map((vf) => vf.bdf), 'VF bdf');
  return {
    vfs,
    maxIoQueues: options.maxIoQueues ?? DEFAULTS.maxIoQueues,
    maxQueueEntries: options.maxQueueEntries ?? DEFAULTS.maxQueueEntries,
    serviceTimeUs: options.serviceTimeUs ?? DEFAULTS.serviceTimeUs,
    maxGuestMemoryBytes: options.maxGuestMemoryBytes ?? DEFAULTS.maxGuestMemoryBytes,
    hostPort: options.hostPort ?? DEFAULTS.hostPort,
    p2p: options.p2p ?? DEFAULTS.p2p,
    preCopy: options.preCopy ?? DEFAULTS.preCopy,
    stateFormats: options.stateFormats ?? DEFAULTS.stateFormats,
  };
}

/** Where generated namespace files (and a device process's socket) go. */
export function dataDirOf(options: NvmeEmuOptions): string {
  return options.dataDir ?? join(tmpdir(), DEFAULTS.dataDirName);
}

/** `vfCount` VFs `nvme0..` with one sparse namespace each in `dataDir`. */
function generateVfs(options: NvmeEmuOptions): NvmeEmuVf[] {
  const dataDir = dataDirOf(options);
  const count = options.vfCount ?? DEFAULTS.vfCount;
  const sizeBytes = options.namespaceBytes ?? DEFAULTS.namespaceBytes;
  return Array.from({ length: count }, (_, index) => {
    const id = `nvme${index}`;
    return { id, bdf: generatedBdf(index), namespaces: [{ path: join(dataDir, `${id}-ns1.img`), sizeBytes }] };
  });
}

function resolveVf(vf: NvmeEmuVf, index: number): VfConfig {
  const serial = vf.serial ?? serialFromBdf(vf.bdf);
  const subnqn = vf.subnqn ?? subnqnFromSerial(serial);
  const namespaces = vf.namespaces.map((ns, nsIndex) => resolveNamespace(vf.id, subnqn, ns, nsIndex));
  assertUnique(namespaces.map((ns) => ns.nsid), `NSID of VF ${vf.id}`);
  return { id: vf.id, bdf: vf.bdf, cntlid: vf.cntlid ?? index + 1, serial, model: vf.model ?? DEFAULTS.model, subnqn, namespaces };
}

function resolveNamespace(vfId: string, subnqn: string, ns: NvmeEmuNamespace, index: number): NamespaceConfig {
  const nsid = ns.nsid ?? index + 1;
  const blockSize = ns.blockSize ?? DEFAULTS.blockSize;
  if (ns.sizeBytes % blockSize !== 0) {
    throw new RangeError(`nvme-emu: VF ${vfId} namespace ${nsid}: sizeBytes ${ns.sizeBytes} is not a multiple of blockSize ${blockSize}`);
  }
  const derived = namespaceIdsFor(subnqn, nsid);
  return {
    nsid,
    path: ns.path,
    sizeBytes: ns.sizeBytes,
    blockSize,
    nguid: ns.nguid ?? derived.nguid,
    eui64: ns.eui64 ?? derived.eui64,
    uuid: ns.uuid ?? derived.uuid,
  };
}

function assertUnique<T>(values: readonly T[], what: string): void {
  const seen = new Set<T>();
  for (const value of values) {
    if (seen.has(value)) throw new RangeError(`nvme-emu: duplicate ${what} ${String(value)}`);
    seen.add(value);
  }
}
