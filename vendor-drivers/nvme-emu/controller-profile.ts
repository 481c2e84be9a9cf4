/**
 * What a guest can observe about a controller and that never changes while
 * it runs: the identify strings, IDs, limits and namespace identities. It is
 * what a migration destination must match (see identity.ts).
 */
import { FIRMWARE_REVISION } from './nvme-defs.ts';
import type { NamespaceConfig, ResolvedOptions, VfConfig } from './options.ts';

export interface NamespaceProfile {
  readonly nsid: number;
  readonly sizeBytes: number;
  readonly blockSize: number;
  readonly nguid: string;
  readonly eui64: string;
  readonly uuid: string;
}

export interface ControllerProfile {
  readonly cntlid: number;
  readonly serial: string;
  readonly model: string;
  readonly firmware: string;
  readonly subnqn: string;
  /** CAP.MQES: largest I/O queue, 0's based. */
  readonly mqes: number;
  readonly maxIoQueues: number;
  /** MSI-X vectors: one for the admin queue plus one per I/O queue. */
  readonly vectorCount: number;
  readonly namespaces: readonly NamespaceProfile[];
}

export function controllerProfile(vf: VfConfig, options: ResolvedOptions): ControllerProfile {
  return {
    cntlid: vf.cntlid,
    serial: vf.serial,
    model: vf.model,
    firmware: FIRMWARE_REVISION,
    subnqn: vf.subnqn,
    mqes: options.maxQueueEntries - 1,
    maxIoQueues: options.maxIoQueues,
    vectorCount: options.maxIoQueues + 1,
    namespaces: vf.namespaces.map(namespaceProfile),
  };
}

function namespaceProfile(ns: NamespaceConfig): NamespaceProfile {
  return { nsid: ns.nsid, sizeBytes: ns.sizeBytes, blockSize: ns.blockSize, nguid: ns.nguid, eui64: ns.eui64, uuid: ns.uuid };
}
