/**
 * `rpc.discover` from a real agent: the document validates against the
 * OpenRPC meta-schema (@open-rpc/meta-schema), lists exactly the methods of
 * schemas/methods/ and the notifications of schemas/events/, each with by-name params that match the method schema's
 * properties and required list, and stands alone: every $ref in it
 * resolves inside it. The method schemas in it also still work: a real
 * result validates against the result schema taken from the document.
 */
import test from 'ava';
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import Ajv, { type ValidateFunction } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { ERROR_CATALOGUE, type ErrorName } from '../agent/rpc/error-catalogue.ts';
import { SCHEMAS_DIR } from '../agent/rpc/schema-registry.ts';
import { startAgentProcess, type AgentProcess } from './support/agent-process.ts';
import { RpcClient } from './support/rpc-client.ts';

type Json = Record<string, unknown>;

const require = createRequire(import.meta.url);

let agent: AgentProcess;
let doc: Json;
let client: RpcClient;

test.before(async () => {
  agent = await startAgentProcess({ config: { drivers: [{ driver: 'blob-bench', options: { vfCount: 2, stateBytes: 100000, p2p: true } }] } });
  client = await RpcClient.connect(agent.tcp);
  doc = await client.call('rpc.discover', {}) as unknown as Json;
});

test.after.always(async () => {
  client?.destroy();
  await agent?.stop();
});

/** The schema files of schemas/methods/, by method name (their title). */
/** schemas/methods/ (what a client calls) and schemas/events/ (the notifications the agent sends), by method name. */
function methodSchemaFiles(): Map<string, Json> {
  const out = new Map<string, Json>();
  for (const dir of ['methods', 'events'].map((sub) => join(SCHEMAS_DIR, sub))) for (const file of readdirSync(dir).filter((f) => f.endsWith('.json'))) {
    const schema = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Json;
    check(file === `${String(schema.title)}.json`, `${file} has title ${String(schema.title)}`);
    out.set(String(schema.title), schema);
  }
  return out;
}

function check(condition: boolean, message: string): void {
  if (!condition) throw new Error(message);
}

/**
 * The OpenRPC meta-schema is draft-07 and refers to the JSON Schema
 * meta-schema at https://meta.json-schema.tools, which the package does not
 * ship. Stand it in with ajv's own draft-07 meta-schema under that id, plus
 * the `JSONSchemaObject.properties.$ref` the OpenRPC schema points into.
 */
function metaSchemaValidator(): ValidateFunction {
  const openrpc = (require('@open-rpc/meta-schema') as { openrpcDocument: Json }).openrpcDocument;
  const draft07 = require('ajv/dist/refs/json-schema-draft-07.json') as Json;
  const ajv = new Ajv.default({ strict: false, logger: false });
  for (const id of ['https://meta.json-schema.tools', 'https://meta.json-schema.tools/']) {
    const standIn = structuredClone(draft07) as Json & { definitions: Json };
    delete standIn.$schema;
    standIn.$id = id;
    standIn.definitions.JSONSchemaObject = { type: 'object', properties: { $ref: { type: 'string', format: 'uri-reference' } } };
    ajv.addSchema(standIn);
  }
  const { $schema: _ignored, ...schema } = openrpc;
  return ajv.compile(schema);
}

test('the document validates against the OpenRPC meta-schema', (t) => {
  const validate = metaSchemaValidator();
  const valid = validate(doc);
  t.true(valid, JSON.stringify(validate.errors?.slice(0, 5), null, 2));
  t.is(doc.openrpc, '1.3.2');
  // The validator is not vacuous: a broken document fails it.
  const broken = structuredClone(doc) as Json & { methods: Json[] };
  (broken.methods[0] as Json).params = 'not a list';
  t.false(validate(broken));
  t.false(validate({ ...doc, openrpc: 7 }));
});

test('the document lists exactly the methods of schemas/methods/, and the notifications of schemas/events/ (without a result)', (t) => {
  const names = (doc.methods as Json[]).map((m) => m.name as string);
  t.is(new Set(names).size, names.length, 'a method is listed twice');
  t.deepEqual([...names].sort(), [...methodSchemaFiles().keys()].sort());
  const events = new Set(readdirSync(join(SCHEMAS_DIR, 'events')).map((f) => f.replace(/\.json$/, '')));
  for (const method of doc.methods as Json[]) t.is(method.result === undefined, events.has(method.name as string), `${String(method.name)}: a result exactly when it is not a notification`);
});

test('each method takes by-name params that match its schema\'s properties and required list', (t) => {
  const files = methodSchemaFiles();
  for (const method of doc.methods as Json[]) {
    const name = method.name as string;
    const file = files.get(name);
    if (file === undefined) {
      t.fail(`${name} has no schema file`);
      continue;
    }
    const params = (file.$defs as { params: Json }).params;
    const properties = Object.keys((params.properties ?? {}) as Json);
    const required = new Set((params.required ?? []) as string[]);
    t.is(method.paramStructure, 'by-name', name);
    const listed = method.params as Json[];
    t.deepEqual(listed.map((p) => p.name).sort(), [...properties].sort(), `${name}: params`);
    for (const p of listed) {
      t.is(p.required, required.has(p.name as string), `${name}.${String(p.name)} required`);
      t.is(typeof p.schema, 'object', `${name}.${String(p.name)} has a schema`);
    }
    if (method['x-notification'] !== undefined) {
      t.is(method.result, undefined, `${name}: a notification has no result`);
      t.is(method.errors, undefined, `${name}: nor errors`);
      continue;
    }
    t.is(typeof (method.result as Json | undefined)?.schema, 'object', `${name} has a result schema`);
    // Errors: exactly the x-errors of the schema file, as in the catalogue.
    const declared = (file['x-errors'] ?? []) as ErrorName[];
    t.deepEqual(method.errors, declared.map((e) => ({ code: ERROR_CATALOGUE[e].code, message: ERROR_CATALOGUE[e].message, data: { code: e } })), `${name}: errors`);
  }
});

/** Every `$ref` value in `node`, with the JSON pointer where it sits. */
function refsIn(node: unknown, at = ''): { ref: string; at: string }[] {
  if (Array.isArray(node)) return node.flatMap((n, i) => refsIn(n, `${at}/${i}`));
  if (typeof node !== 'object' || node === null) return [];
  return Object.entries(node).flatMap(([k, v]) => (k === '$ref' && typeof v === 'string' ? [{ ref: v, at }] : refsIn(v, `${at}/${k}`)));
}

function resolvePointer(root: unknown, pointer: string): unknown {
  let node: unknown = root;
  for (const raw of pointer.split('/').slice(1)) {
    const key = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
    if (typeof node !== 'object' || node === null || !(key in node)) return undefined;
    node = (node as Json)[key];
  }
  return node;
}

test('every $ref in the document resolves inside it', (t) => {
  const refs = refsIn(doc);
  t.true(refs.length > 0, 'the document has no $ref at all: this test would prove nothing');
  for (const { ref, at } of refs) {
    t.true(ref.startsWith('#/'), `${at}: ${ref} points outside the document`);
    const target = resolvePointer(doc, ref.slice(1));
    t.true(typeof target === 'object' && target !== null, `${at}: ${ref} does not resolve`);
  }
});

test('the schemas in the document still validate what the agent really returns', async (t) => {
  // Compile each result schema from the document alone (components inlined
  // as the document's own), and check a live result against it.
  const ajv = new Ajv2020({ strict: false, logger: false });
  ajv.addSchema({ $id: 'urn:vfmigd:openrpc', ...doc } as Json);
  const resultSchema = (name: string) => {
    const index = (doc.methods as Json[]).findIndex((m) => m.name === name);
    const v = ajv.getSchema(`urn:vfmigd:openrpc#/methods/${index}/result/schema`);
    if (v === undefined) throw new Error(`no result schema for ${name}`);
    return v;
  };
  const samples: [string, unknown][] = [
    ['vf.list', await client.call('vf.list', {})],
    ['vf.get', await client.call('vf.get', { vf: 'blob0' })],
    ['vf.getState', await client.call('vf.getState', { vf: 'blob0' })],
    ['vf.quiesce', await client.call('vf.quiesce', { vf: 'blob1' })],
    ['vf.save', await client.call('vf.save', { vf: 'blob1', maxBytes: 100 })],
    ['vf.pending', await client.call('vf.pending', { vf: 'blob1' })],
    ['agent.health', await client.call('agent.health', {})],
  ];
  for (const [name, result] of samples) {
    const validate = resultSchema(name);
    t.true(validate(result), `${name}: ${JSON.stringify(validate.errors)}`);
  }
  // ...and they are not vacuous.
  t.false(resultSchema('vf.getState')({ vf: 'blob0', state: 'NOT_A_STATE', value: 2 }));
  // A VF's details are checked against its own driver's schema.
  const blob = samples.find(([name]) => name === 'vf.get')?.[1] as Json;
  t.deepEqual(blob.details, { stateBytes: 102400, dirtyBytesPerSecond: 0 }, 'whole 4 KiB pages');
  t.false(resultSchema('vf.get')({ ...blob, details: { stateBytes: 'big' } }), 'blob-bench details of the wrong shape');
  t.false(resultSchema('vf.get')({ ...blob, driver: 'nvme-emu' }), 'blob-bench details under the nvme-emu driver');
  t.true(resultSchema('vf.get')({ ...blob, driver: 'nvme-emu', details: { queues: { max: 4, active: 1 }, namespaces: [{ nsid: 1, sizeBytes: 4096, blockSize: 512 }] } }));
  t.true(typeof (doc.components as { schemas: Json }).schemas['nvme-emu.details'] === 'object', 'the nvme-emu details are in the document');
});
