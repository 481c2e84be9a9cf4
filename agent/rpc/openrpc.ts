/**
 * The OpenRPC document served by `rpc.discover`, built from the same
 * schemas the agent validates with. References into common.json become
 * references into `components.schemas`, so the document stands alone.
 */
import { ERROR_CATALOGUE, type ErrorName } from './error-catalogue.ts';
import type { SchemaDocument, SchemaRegistry } from './schema-registry.ts';

const COMMON_REF = /^(?:\.\.\/)?common\.json#\/\$defs\/([A-Za-z0-9_]+)$/;
const LOCAL_REF = /^#\/\$defs\/([A-Za-z0-9_]+)$/;

export interface OpenRpcInfo {
  readonly version: string;
  readonly apiVersion: string;
}

export function buildOpenRpcDocument(schemas: SchemaRegistry, info: OpenRpcInfo): SchemaDocument {
  const commonDefs = (schemas.common.$defs ?? {}) as Record<string, SchemaDocument>;
  const components: Record<string, unknown> = {};
  for (const [name, def] of Object.entries(commonDefs)) components[name] = rewriteRefs(def, true);
  const methods = [...schemas.methods.values()].map((m) => {
    const properties = (m.params.properties ?? {}) as Record<string, SchemaDocument>;
    const required = new Set((m.params.required ?? []) as string[]);
    return {
      name: m.name,
      summary: m.summary,
      description: m.description,
      paramStructure: 'by-name',
      // What a caller must be granted (see components.schemas.permission), also as a tag for tools that group by tags.
      'x-permission': m.permission,
      tags: [{ name: `permission:${m.permission}` }],
      params: Object.entries(properties).map(([name, schema]) => ({
        name,
        required: required.has(name),
        ...(typeof schema.description === 'string' ? { description: schema.description } : {}),
        schema: rewriteRefs(schema, false),
      })),
      result: { name: `${m.name} result`, schema: rewriteRefs(m.result, false) },
      errors: m.errors.map((name) => {
        const entry = ERROR_CATALOGUE[name as ErrorName];
        return { code: entry.code, message: entry.message, data: { code: name } };
      }),
    };
  });
  return {
    openrpc: '1.3.2',
    info: {
      title: 'vfmigd',
      version: info.apiVersion,
      description: `Out-of-band live-migration agent for pass-through VFs (agent ${info.version}). Every error carries error.data.code; see components.schemas.errorData.`,
    },
    methods,
    components: { schemas: components },
  };
}

/** Copies a schema with its $refs pointed at components.schemas. */
function rewriteRefs(node: unknown, inCommon: boolean): unknown {
  if (Array.isArray(node)) return node.map((n) => rewriteRefs(n, inCommon));
  if (typeof node !== 'object' || node === null) return node;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node)) {
    if (key === '$ref' && typeof value === 'string') {
      const match = COMMON_REF.exec(value) ?? (inCommon ? LOCAL_REF.exec(value) : null);
      if (match === null) throw new Error(`cannot place $ref ${value} in the OpenRPC document`);
      out.$ref = `#/components/schemas/${match[1]}`;
    } else {
      out[key] = rewriteRefs(value, inCommon);
    }
  }
  return out;
}
