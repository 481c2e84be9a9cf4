/**
 * The error catalogue, the schemas and the README must say the same thing:
 * a new error or method that is not documented fails here.
 */
import test from 'ava';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SCHEMAS_DIR } from '../agent/rpc/schema-registry.ts';
import { ERROR_CATALOGUE, ERROR_NAMES } from '../agent/rpc/error-catalogue.ts';
import { VFIO_STATES } from '../agent/core/vfio-states.ts';
import { schemas } from './support/rpc-client.ts';
import { configTable, errorTable, eventTable, methodTable, metricsTable, permissionTable, readSection } from './support/readme-tables.ts';
import { pluginContractHeader } from './support/plugin-contract.ts';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const pluginSource = new URL('../../vmm-plugin/src/', import.meta.url);

test('README error table matches the catalogue (npm run docs rewrites it)', (t) => {
  t.is(readSection(readme, 'errors'), errorTable());
});

test('README method table matches schemas/methods (npm run docs rewrites it)', (t) => {
  t.is(readSection(readme, 'methods'), methodTable(schemas()));
});

test('README permission table matches the methods\' x-permission (npm run docs rewrites it)', (t) => {
  t.is(readSection(readme, 'permissions'), permissionTable(schemas()));
});

test('README events table matches schemas/events (npm run docs rewrites it)', (t) => {
  t.is(readSection(readme, 'events'), eventTable(schemas()));
});

test('the topics a subscriber may ask for (common.json eventTopic) are exactly the events the core emits: schemas/events/ but for the connection\'s own notices', (t) => {
  const registry = schemas();
  const emitted = [...registry.notifications.keys()].filter((name) => name !== 'events.dropped').sort();
  t.deepEqual([...registry.eventTopics].sort(), emitted);
});

test('README config table matches schemas/config.json (npm run docs rewrites it)', (t) => {
  t.is(readSection(readme, 'config'), configTable(schemas()));
});

test('README metrics table lists every metric the registry serves (npm run docs rewrites it)', (t) => {
  t.is(readSection(readme, 'metrics'), metricsTable());
});

test('vmm-plugin/src/agent-contract.h says what the catalogue and the schemas say (npm run docs rewrites it)', (t) => {
  t.is(readFileSync(new URL('agent-contract.h', pluginSource), 'utf8'), pluginContractHeader(schemas()));
});

test('the C plugin spells no agent error name or state name by hand: it takes them from agent-contract.h', (t) => {
  const spelled = new Set<string>([...ERROR_NAMES, ...VFIO_STATES]);
  for (const file of readdirSync(pluginSource).filter((f) => /\.[ch]$/.test(f) && f !== 'agent-contract.h')) {
    const text = readFileSync(new URL(file, pluginSource), 'utf8');
    const literals = [...text.matchAll(/"([A-Z][A-Z0-9_]+)"/g)].map((m) => m[1] ?? '');
    t.deepEqual(literals.filter((l) => spelled.has(l)), [], `${file} spells an agent name in a string literal`);
  }
});

test('errorData.code in schemas/common.json lists exactly the catalogue', (t) => {
  const errorData = (schemas().common.$defs as Record<string, { properties: { code: { enum: string[] } } }>).errorData;
  t.deepEqual(errorData?.properties.code.enum, ERROR_NAMES);
});

test('every error a method schema declares is in the catalogue, in the application band', (t) => {
  for (const method of schemas().methods.values()) {
    for (const name of method.errors) {
      const entry = (ERROR_CATALOGUE as Record<string, { code: number }>)[name];
      t.truthy(entry, `${method.name} declares unknown error ${name}`);
      t.true(entry !== undefined && entry.code <= -33000 && entry.code > -33100, `${name} of ${method.name} is not an application error`);
    }
  }
});

test('codes are unique and in their documented bands', (t) => {
  const codes = ERROR_NAMES.map((n) => ERROR_CATALOGUE[n].code);
  t.is(new Set(codes).size, codes.length);
  for (const code of codes) {
    const standard = [-32700, -32600, -32601, -32602, -32603].includes(code);
    const server = code <= -32000 && code >= -32099;
    const application = code <= -33000 && code >= -33099;
    t.true(standard || server || application, `code ${code} is outside every band`);
  }
});

test('every driver a config can name has schemas/drivers/<name>.json with the $defs/details of its VFs', (t) => {
  const config = JSON.parse(readFileSync(join(SCHEMAS_DIR, 'config.json'), 'utf8')) as { properties: { drivers: { items: { properties: { driver: { enum: string[] } } } } } };
  const names = config.properties.drivers.items.properties.driver.enum;
  t.true(names.length >= 2);
  for (const name of names) {
    const file = join(SCHEMAS_DIR, 'drivers', `${name}.json`);
    t.true(existsSync(file), `${file} is missing`);
    const doc = JSON.parse(readFileSync(file, 'utf8')) as { $defs?: { details?: { type?: string } } };
    t.is(doc.$defs?.details?.type, 'object', `${name}: $defs/details is missing`);
  }
});

test('every config the README shows (a json block with drivers or listen) is one the agent accepts', (t) => {
  const blocks = [...readme.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => m[1] ?? '');
  const configs = blocks.flatMap((text) => {
    try {
      const value: unknown = JSON.parse(text);
      return typeof value === 'object' && value !== null && ('drivers' in value || 'listen' in value) ? [value] : [];
    } catch {
      return [];
    }
  });
  t.true(configs.length >= 2, 'the Configuration and Install on a DPU examples');
  for (const config of configs) t.deepEqual(schemas().checkConfig(config), [], JSON.stringify(config).slice(0, 120));
});

