/**
 * The OpenRPC document served by `rpc.discover`, built from the same
 * schemas the agent validates with. References into common.json become
 * references into `components.schemas`, so the document stands alone.
 */
import { ERROR_CATALOGUE, type ErrorName } from './error-catalogue.ts';
import type { SchemaDocument, SchemaRegistry } from './schema-registry.ts';

const COMMON_REF = /^(?:\.\.\/)?common\.json#\/\$defs\/([A-Za-z0-9_]+)$/;
const LOCAL_REF = /^#\/\$defs\/([A-Za-z0-9_]+)$/;
/** A driver's definition, as the registry points at it (`$defs/details` of schemas/drivers/<driver>.json). */
const DRIVER_REF = /^https:\/\/vfmigd\.dev\/schemas\/drivers\/([a-z0-9-]+)\.json#\/\$defs\/([A-Za-z0-9_]+)$/;

/** Where `#/$defs/NAME` inside the schema being copied lives in components.schemas; undefined where no such ref may occur. */
type LocalDefs = ((name: string) => string) | undefined;

export interface OpenRpcInfo {
  readonly version: string;
  readonly apiVersion: string;
}

export function buildOpenRpcDocument(schemas: SchemaRegistry, info: OpenRpcInfo): SchemaDocument {
  const commonDefs = (schemas.common.$defs ?? {}) as Record<string, SchemaDocument>;
  const components: Record<string, unknown> = {};
  for (const [name, def] of Object.entries(commonDefs)) components[name] = rewriteRefs(def, (local) => local);
  // Each driver's details, and the definitions of its file they use, as `<driver>.<definition>`.
  for (const [driver, doc] of schemas.drivers) {
    const defs = (doc.$defs ?? {}) as Record<string, SchemaDocument>;
    if (defs.details === undefined) continue;
    for (const name of localClosure(defs, 'details')) components[`${driver}.${name}`] = rewriteRefs(defs[name], (local) => `${driver}.${local}`);
  }
  const methods = [...schemas.methods.values()].map((m) => {
    return {
      name: m.name,
      summary: m.summary,
      description: m.description,
      paramStructure: 'by-name',
      // What a caller must be granted (see components.schemas.permission), also as a tag for tools that group by tags.
      'x-permission': m.permission,
      tags: [{ name: `permission:${m.permission}` }],
      params: contentDescriptors(m.params),
      result: { name: `${m.name} result`, schema: rewriteRefs(m.result, undefined) },
      errors: m.errors.map((name) => {
        const entry = ERROR_CATALOGUE[name as ErrorName];
        return { code: entry.code, message: entry.message, data: { code: name } };
      }),
    };
  });
  // What the agent sends unasked to an events subscriber: OpenRPC's notifications (a method with no result).
  const notifications = [...schemas.notifications.values()].map((n) => {
    return {
      name: n.name,
      summary: n.summary,
      description: `${n.description} Sent by the agent to a connection subscribed with events.subscribe; never called by a client.`,
      paramStructure: 'by-name',
      'x-notification': 'agent-to-client',
      tags: [{ name: 'notification' }],
      params: contentDescriptors(n.params),
    };
  });
  return {
    openrpc: '1.3.2',
    info: {
      title: 'vfmigd',
      version: info.apiVersion,
      description: `Out-of-band live-migration agent for pass-through VFs (agent ${info.version}). Every error carries error.data.code; see components.schemas.errorData.`,
    },
    methods: [...methods, ...notifications],
    components: { schemas: components },
  };
}

/** An object schema's properties as OpenRPC by-name params (content descriptors). */
function contentDescriptors(params: SchemaDocument): object[] {
  const properties = (params.properties ?? {}) as Record<string, SchemaDocument>;
  const required = new Set((params.required ?? []) as string[]);
  return Object.entries(properties).map(([name, schema]) => ({
    name,
    required: required.has(name),
    ...(typeof schema.description === 'string' ? { description: schema.description } : {}),
    schema: rewriteRefs(schema, undefined),
  }));
}

/** Copies a schema with its $refs pointed at components.schemas. */
function rewriteRefs(node: unknown, localDefs: LocalDefs): unknown {
  if (Array.isArray(node)) return node.map((n) => rewriteRefs(n, localDefs));
  if (typeof node !== 'object' || node === null) return node;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node)) {
    if (key === '$ref' && typeof value === 'string') {
      out.$ref = `#/components/schemas/${componentOf(value, localDefs)}`;
    } else {
      out[key] = rewriteRefs(value, localDefs);
    }
  }
  return out;
}

function componentOf(ref: string, localDefs: LocalDefs): string {
  const common = COMMON_REF.exec(ref);
  if (common !== null) return common[1] as string;
  const driver = DRIVER_REF.exec(ref);
  if (driver !== null) return `${driver[1]}.${driver[2]}`;
  const local = LOCAL_REF.exec(ref);
  if (local !== null && localDefs !== undefined) return localDefs(local[1] as string);
  throw new Error(`cannot place $ref ${ref} in the OpenRPC document`);
}

/** `start` and every definition of the same file it reaches through `#/$defs/...` refs. */
function localClosure(defs: Record<string, SchemaDocument>, start: string): string[] {
  const reached = new Set<string>();
  const visit = (name: string): void => {
    if (reached.has(name) || defs[name] === undefined) return;
    reached.add(name);
    JSON.stringify(defs[name], (key, value: unknown) => {
      const local = key === '$ref' && typeof value === 'string' ? LOCAL_REF.exec(value) : null;
      if (local !== null) visit(local[1] as string);
      return value;
    });
  };
  visit(start);
  return [...reached];
}
