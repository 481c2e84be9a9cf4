/**
 * vmm-plugin/src/agent-contract.h: what the C plugin must say exactly as
 * the agent does, generated from the error catalogue and the schemas so
 * that the plugin keeps no hand-made copy of it. `npm run docs` writes the
 * file (it is committed: the plugin builds with a C toolchain alone);
 * test/drift.test.ts fails when the file says something else. A name the
 * plugin uses that the catalogue loses then fails the plugin's build.
 */
import { writeFileSync } from 'node:fs';
import { ERROR_CATALOGUE, ERROR_NAMES } from '../../agent/rpc/error-catalogue.ts';
import type { SchemaRegistry } from '../../agent/rpc/schema-registry.ts';
import { VFIO_STATES, vfioStateValue } from '../../agent/core/vfio-states.ts';

interface Bounded {
  readonly minimum?: number;
  readonly maximum?: number;
}

function bounds(node: Bounded | undefined, where: string): { minimum: number; maximum: number } {
  if (typeof node?.minimum !== 'number' || typeof node.maximum !== 'number') throw new Error(`${where} has no minimum and maximum`);
  return { minimum: node.minimum, maximum: node.maximum };
}

export function pluginContractHeader(schemas: SchemaRegistry): string {
  const defs = schemas.common.$defs as Record<string, Bounded>;
  const lease = bounds(defs.leaseMs, 'common.json $defs/leaseMs');
  const saveParams = schemas.methods.get('vf.save')?.params as { properties?: Record<string, Bounded> } | undefined;
  const slice = bounds(saveParams?.properties?.maxBytes, 'vf.save params maxBytes');
  const width = Math.max(...ERROR_NAMES.map((n) => n.length));
  const errors = ERROR_NAMES.flatMap((name) => [
    `#define VFM_AGENT_ERROR_${name.padEnd(width)} "${name}"`,
    `#define VFM_AGENT_CODE_${name.padEnd(width)}  (${ERROR_CATALOGUE[name].code})`,
  ]);
  return [
    '/*',
    ' * Generated from agent/rpc/error-catalogue.ts and schemas/ by `npm run docs`',
    ' * (test/support/plugin-contract.ts). Do not edit: test/drift.test.ts fails',
    ' * when this file and they disagree.',
    ' *',
    ' * What the plugin must say exactly as the agent does: each error\'s stable',
    ' * name (error.data.code) and its JSON-RPC code, the names of the VFIO',
    ' * states, and the bounds of the parameters the plugin sends.',
    ' */',
    '#ifndef VFM_AGENT_CONTRACT_H',
    '#define VFM_AGENT_CONTRACT_H',
    '',
    '/* The error catalogue: error.data.code, and error.code. */',
    ...errors,
    '',
    '/* The VFIO v2 states: the agent\'s name of each, and the number it gives it (enum vfio_device_mig_state). */',
    ...VFIO_STATES.flatMap((name) => [
      `#define VFM_AGENT_STATE_${name} "${name}"`,
      `#define VFM_AGENT_STATE_VALUE_${name} ${vfioStateValue(name)}`,
    ]),
    '',
    '/* common.json $defs/leaseMs: a lease a call may ask for, in milliseconds (the agent\'s leases.maxMs may bound it lower). */',
    `#define VFM_AGENT_LEASE_MIN_MS ${lease.minimum}`,
    `#define VFM_AGENT_LEASE_MAX_MS ${lease.maximum}`,
    '',
    '/* vf.save maxBytes: the largest slice one call may ask for. */',
    `#define VFM_AGENT_SAVE_MAX_BYTES ${slice.maximum}u`,
    '',
    '#endif',
    '',
  ].join('\n');
}

export function writePluginContract(path: string, schemas: SchemaRegistry): void {
  writeFileSync(path, pluginContractHeader(schemas));
}
