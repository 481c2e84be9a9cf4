/**
 * Loads every JSON Schema under schemas/ into one ajv instance and compiles
 * each method's params and result validators once, at start-up (the agent
 * refuses to start on a schema that does not compile). A short-lived client
 * (vfmigctl) asks for `lazy` instead: each validator is compiled on its first
 * use, and the schemas are not checked against the meta-schema again (the
 * agent checks them at every start, and the tests), since all of that costs
 * more than the few calls it makes. Validation
 * is strict: no type coercion, no defaults filled in, no unknown fields
 * removed (the schemas reject them with `additionalProperties: false`).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import type { EventTopic } from '../../schemas/types.ts';
import type { Permission } from './permissions.ts';

/** schemas/ at the package root, from agent/rpc in the source tree or dist/agent/rpc. */
export const SCHEMAS_DIR = findSchemasDir(dirname(fileURLToPath(import.meta.url)));

export const SCHEMA_BASE = 'https://vfmigd.dev/schemas/';

/** A JSON Schema document as stored in schemas/. */
export type SchemaDocument = { [key: string]: unknown };

export interface MethodSchema {
  readonly name: string;
  readonly summary: string;
  readonly description: string;
  /** What a caller must be granted to call it. */
  readonly permission: Permission;
  /** Catalogue names of the domain errors this method can raise. */
  readonly errors: readonly string[];
  readonly params: SchemaDocument;
  readonly result: SchemaDocument;
  readonly validateParams: ValidateFunction;
  readonly validateResult: ValidateFunction;
  /**
   * Where the method's bytes may travel as an attachment (`x-attachment`):
   * the params field that may name the request's, the result field that
   * carries the response's.
   */
  readonly attachment: { readonly params?: string; readonly result?: string };
}

/** A notification the agent sends (schemas/events/): its method name and the schema of its params. */
export interface NotificationSchema {
  readonly name: string;
  readonly summary: string;
  readonly description: string;
  readonly params: SchemaDocument;
  readonly validate: ValidateFunction;
}

/** One failing path of a validation, as callers see it in `error.data.errors`. */
export interface SchemaViolation {
  readonly path: string;
  readonly message: string;
}

export class SchemaRegistry {
  readonly ajv: Ajv2020;
  readonly methods: ReadonlyMap<string, MethodSchema>;
  readonly common: SchemaDocument;
  /** schemas/drivers/<name>.json by driver name: its options, and the `$defs/details` of its VFs. */
  readonly drivers: ReadonlyMap<string, SchemaDocument>;
  /** The permission names, from common.json. */
  readonly permissions: readonly Permission[];
  /** schemas/events/<topic>.json by notification method: what each notification's params hold. */
  readonly notifications: ReadonlyMap<string, NotificationSchema>;
  /** The topics of the core's events (common.json's eventTopic), the ones a subscriber may ask for. */
  readonly eventTopics: readonly EventTopic[];
  private readonly configValidator: () => ValidateFunction;
  private readonly lazy: boolean;

  constructor(schemasDir: string = SCHEMAS_DIR, options: { readonly lazy?: boolean } = {}) {
    this.lazy = options.lazy === true;
    this.ajv = new Ajv2020({ strict: true, allowUnionTypes: true, discriminator: true, allErrors: false, coerceTypes: false, useDefaults: false, removeAdditional: false, validateSchema: !this.lazy });
    // Annotations of our own, carried for docs and OpenRPC.
    this.ajv.addVocabulary(['x-errors', 'x-summary', 'x-permission', 'x-driver-details', 'x-attachment', 'x-source']);
    this.common = readJson(join(schemasDir, 'common.json'));
    this.ajv.addSchema(this.common);
    this.permissions = ((this.common.$defs as { permission: { enum: Permission[] } }).permission.enum);
    this.eventTopics = ((this.common.$defs as { eventTopic: { enum: EventTopic[] } }).eventTopic.enum);
    const notifications = new Map<string, NotificationSchema>();
    for (const file of jsonFiles(join(schemasDir, 'events'))) {
      const doc = readJson(file);
      this.ajv.addSchema(doc);
      const name = String(doc.title);
      const validate = this.compiled(`${String(doc.$id)}#/$defs/params`, `${file}: $defs/params did not compile`);
      notifications.set(name, { name, summary: String(doc['x-summary'] ?? ''), description: String(doc.description ?? ''), params: (doc.$defs as { params: SchemaDocument }).params, get validate() { return validate(); } });
    }
    this.notifications = notifications;
    const drivers = new Map<string, SchemaDocument>();
    for (const file of jsonFiles(join(schemasDir, 'drivers'))) {
      const doc = readJson(file);
      this.ajv.addSchema(doc);
      drivers.set(basename(file, '.json'), doc);
    }
    this.drivers = drivers;
    const methods = new Map<string, MethodSchema>();
    for (const file of jsonFiles(join(schemasDir, 'methods'))) {
      const doc = withDriverDetails(readJson(file), drivers);
      this.ajv.addSchema(doc);
      const method = this.compileMethod(doc, file);
      methods.set(method.name, method);
    }
    this.methods = methods;
    const config = readJson(join(schemasDir, 'config.json'));
    this.ajv.addSchema(config);
    this.configValidator = this.compiled(String(config.$id), 'config.json did not compile');
  }

  method(name: string): MethodSchema | undefined {
    return this.methods.get(name);
  }

  /** Violations of the config schema, empty when `value` is a valid config. */
  checkConfig(value: unknown): SchemaViolation[] {
    const validate = this.configValidator();
    return validate(value) ? [] : violations(validate.errors);
  }

  private compileMethod(doc: SchemaDocument, file: string): MethodSchema {
    const id = String(doc.$id);
    const defs = doc.$defs as { params?: SchemaDocument; result?: SchemaDocument } | undefined;
    if (typeof doc.title !== 'string' || defs?.params === undefined || defs.result === undefined) {
      throw new Error(`${file}: a method schema needs a title (the method name) and $defs.params and $defs.result`);
    }
    const permission = doc['x-permission'];
    if (!this.permissions.some((p) => p === permission)) throw new Error(`${file}: x-permission must name one of the permissions of common.json#/$defs/permission`);
    const validateParams = this.compiled(`${id}#/$defs/params`, `${file}: $defs/params did not compile`);
    const validateResult = this.compiled(`${id}#/$defs/result`, `${file}: $defs/result did not compile`);
    return {
      name: doc.title,
      summary: typeof doc['x-summary'] === 'string' ? doc['x-summary'] : doc.title,
      description: typeof doc.description === 'string' ? doc.description : '',
      permission: permission as Permission,
      errors: Array.isArray(doc['x-errors']) ? doc['x-errors'].map(String) : [],
      params: defs.params,
      result: defs.result,
      get validateParams() { return validateParams(); },
      get validateResult() { return validateResult(); },
      attachment: attachmentFields(doc['x-attachment'], file),
    };
  }

  /** The validator of schema `ref`: compiled now, or on first use when lazy (ajv keeps it once compiled). */
  private compiled(ref: string, failure: string): () => ValidateFunction {
    let validate: ValidateFunction | undefined;
    const get = (): ValidateFunction => (validate ??= this.ajv.getSchema(ref) ?? fail(failure));
    if (!this.lazy) get();
    return get;
  }
}

/**
 * A property marked `"x-driver-details": true` holds what a VF's driver
 * tells about it: it must match `$defs/details` of that driver's schema
 * file, the driver being named by the object's `driver` property. One
 * if/then per driver file is added to the object's schema, so a new
 * driver's details are checked as soon as its schema file is there.
 */
function withDriverDetails(doc: SchemaDocument, drivers: ReadonlyMap<string, SchemaDocument>): SchemaDocument {
  const result = (doc.$defs as { result?: SchemaDocument } | undefined)?.result;
  const properties = (result?.properties ?? {}) as Record<string, SchemaDocument>;
  const marked = Object.keys(properties).filter((name) => properties[name]?.['x-driver-details'] === true);
  if (result === undefined || marked.length === 0) return doc;
  const branches = [...drivers].filter(([, driver]) => (driver.$defs as Record<string, unknown> | undefined)?.details !== undefined).map(([name, driver]) => ({
    if: { type: 'object', properties: { driver: { const: name } }, required: ['driver'] },
    then: { type: 'object', properties: Object.fromEntries(marked.map((property) => [property, { $ref: `${String(driver.$id)}#/$defs/details` }])) },
  }));
  result.allOf = [...((result.allOf ?? []) as unknown[]), ...branches];
  return doc;
}

function attachmentFields(value: unknown, file: string): MethodSchema['attachment'] {
  if (value === undefined) return {};
  const fields = value as { params?: unknown; result?: unknown };
  for (const part of ['params', 'result'] as const) {
    if (fields[part] !== undefined && typeof fields[part] !== 'string') throw new Error(`${file}: x-attachment.${part} must name a field`);
  }
  return { ...(typeof fields.params === 'string' ? { params: fields.params } : {}), ...(typeof fields.result === 'string' ? { result: fields.result } : {}) };
}

/** ajv's errors as `{path, message}`, e.g. `{path: "/maxBytes", message: "must be <= 4194304"}`. */
export function violations(errors: ErrorObject[] | null | undefined): SchemaViolation[] {
  return (errors ?? []).map((e) => {
    if (e.keyword === 'additionalProperties') {
      const extra = (e.params as { additionalProperty: string }).additionalProperty;
      return { path: `${e.instancePath}/${extra}`, message: 'is not a known field' };
    }
    return { path: e.instancePath === '' ? '/' : e.instancePath, message: e.message ?? e.keyword };
  });
}

function readJson(file: string): SchemaDocument {
  return JSON.parse(readFileSync(file, 'utf8')) as SchemaDocument;
}

function jsonFiles(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.endsWith('.json')).sort().map((n) => join(dir, n));
}

function findSchemasDir(from: string): string {
  // agent/rpc → ../../schemas; dist/agent/rpc → ../../../schemas
  for (const up of ['../..', '../../..']) {
    const candidate = join(from, up, 'schemas');
    try {
      readdirSync(join(candidate, 'methods'));
      return candidate;
    } catch {
      // not here; try one level higher
    }
  }
  throw new Error(`schemas/ not found above ${from}`);
}

function fail(message: string): never {
  throw new Error(message);
}
