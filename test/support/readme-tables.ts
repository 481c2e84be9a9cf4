/**
 * The README's method, permission, event, config, error and metrics tables, as the schemas and the error
 * catalogue say they must read. `npm run docs` writes them into the README;
 * test/drift.test.ts fails when the README says something else.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { AgentMetrics } from '../../agent/metrics/agent-metrics.ts';
import { ERROR_CATALOGUE, ERROR_NAMES } from '../../agent/rpc/error-catalogue.ts';
import type { SchemaRegistry } from '../../agent/rpc/schema-registry.ts';

export function methodTable(schemas: SchemaRegistry): string {
  const rows = [...schemas.methods.values()].map((m) => {
    const params = Object.keys((m.params.properties ?? {}) as object);
    const required = new Set((m.params.required ?? []) as string[]);
    const paramList = params.map((p) => (required.has(p) ? `\`${p}\`` : `\`${p}?\``)).join(', ');
    const errors = m.errors.map((e) => `\`${e}\``).join(' ');
    return `| \`${m.name}\` | ${paramList || '–'} | ${m.summary} | \`${m.permission}\` | ${errors || '–'} |`;
  });
  return ['| method | params (`?` optional) | what it does | permission | domain errors |', '|---|---|---|---|---|', ...rows].join('\n');
}

/** The methods each permission of a grant gives (each method schema's `x-permission`); `admin` gives every one. */
export function permissionTable(schemas: SchemaRegistry): string {
  const methods = [...schemas.methods.values()];
  const rows = schemas.permissions.map((permission) => {
    const named = methods.filter((m) => m.permission === permission).map((m) => `\`${m.name}\``);
    const list = permission === 'admin'
      ? ['every method, and acting on another principal\'s migration', ...named.length > 0 ? [`(only with it: ${named.join(', ')})`] : []].join(' ')
      : named.join(', ');
    return `| \`${permission}\` | ${list} |`;
  });
  return ['| permission | methods |', '|---|---|', ...rows].join('\n');
}

/** Every notification an events subscriber may get, from schemas/events/. */
export function eventTable(schemas: SchemaRegistry): string {
  const rows = [...schemas.notifications.values()].sort((a, b) => a.name.localeCompare(b.name)).map((n) => {
    const params = Object.keys((n.params.properties ?? {}) as object).map((p) => `\`${p}\``).join(', ');
    return `| \`${n.name}\` | ${params} | ${oneLine(n.description)} |`;
  });
  return ['| notification (method) | params | when it comes |', '|---|---|---|', ...rows].join('\n');
}

/**
 * Every config field, from schemas/config.json: its path and its
 * description (which names its default). Nested objects are flattened to
 * dotted paths; driver options are documented in their own schemas.
 */
export function configTable(schemas: SchemaRegistry): string {
  const config = schemas.ajv.getSchema('https://vfmigd.dev/schemas/config.json')?.schema as SchemaNode;
  const defs = (config.$defs ?? {}) as Record<string, SchemaNode>;
  const rows: string[] = [];
  const walk = (node: SchemaNode, prefix: string): void => {
    for (const [name, child] of Object.entries(node.properties ?? {})) {
      const path = `${prefix}${name}`;
      const item = child.items?.$ref?.startsWith('#/$defs/') ? defs[child.items.$ref.slice('#/$defs/'.length)] : undefined;
      const row = (shown: string): string => `| \`${shown}\` | ${defaultText(name, child.default)} | ${oneLine(child.description ?? '')} |`;
      if (child.properties !== undefined) {
        rows.push(row(path));
        walk(child, `${path}.`);
      } else if (item?.properties !== undefined) {
        rows.push(row(`${path}[]`));
        walk(item, `${path}[].`);
      } else {
        rows.push(row(path));
      }
    }
  };
  walk(config, '');
  return ['| field | default | what it sets |', '|---|---|---|', ...rows].join('\n');
}

/** A default as a person reads it: byte counts in MiB or GiB. */
function defaultText(name: string, value: unknown): string {
  if (value === undefined) return '–';
  if (typeof value === 'number' && name.endsWith('Bytes')) {
    for (const [unit, size] of [['GiB', 2 ** 30], ['MiB', 2 ** 20]] as const) if (value % size === 0) return `${value / size} ${unit}`;
  }
  return `\`${JSON.stringify(value)}\``;
}

interface SchemaNode {
  readonly description?: string;
  readonly default?: unknown;
  readonly properties?: Record<string, SchemaNode>;
  readonly items?: { readonly $ref?: string };
  readonly $defs?: Record<string, SchemaNode>;
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').replace(/\|/g, '\\|');
}

export function errorTable(): string {
  const rows = ERROR_NAMES.map((name) => {
    const e = ERROR_CATALOGUE[name];
    return `| ${e.code} | \`${name}\` | ${e.message} | ${e.meaning} |`;
  });
  return ['| code | `error.data.code` | message | meaning |', '|---|---|---|---|', ...rows].join('\n');
}

/**
 * Every metric the agent serves, from its registry: the agent's own (name,
 * type, labels, help) in a table, then the names prom-client's process and
 * Node.js metrics take here.
 */
export function metricsTable(): string {
  const build = { version: 'x', apiVersion: 'x' };
  const own = new AgentMetrics({ build, methods: [], processMetrics: false }).registry.getMetricsAsArray();
  const ownNames = new Set(own.map((m) => m.name));
  const all = new AgentMetrics({ build, methods: [], processMetrics: true }).registry.getMetricsAsArray();
  const rows = own.map((m) => {
    // prom-client keeps each metric's label names on it, untyped.
    const labels = (m as unknown as { labelNames?: readonly string[] }).labelNames ?? [];
    return `| \`${m.name}\` | ${m.type} | ${labels.map((l) => `\`${l}\``).join(', ') || '–'} | ${oneLine(m.help)} |`;
  });
  const processNames = all.map((m) => m.name).filter((name) => !ownNames.has(name));
  return [
    '| metric | type | labels | what it says |', '|---|---|---|---|', ...rows,
    '',
    `prom-client's process and Node.js metrics, with the same prefix: ${processNames.map((n) => `\`${n}\``).join(', ')}.`,
  ].join('\n');
}

/** The text between `<!-- NAME:begin -->` and `<!-- NAME:end -->`. */
export function readSection(readme: string, name: string): string | undefined {
  const match = new RegExp(`<!-- ${name}:begin -->\\n([\\s\\S]*?)\\n<!-- ${name}:end -->`).exec(readme);
  return match?.[1];
}

export function writeSections(path: string, sections: Record<string, string>): void {
  let readme = readFileSync(path, 'utf8');
  for (const [name, body] of Object.entries(sections)) {
    const pattern = new RegExp(`(<!-- ${name}:begin -->\\n)[\\s\\S]*?(<!-- ${name}:end -->)`);
    if (!pattern.test(readme)) throw new Error(`README has no ${name} section markers`);
    readme = readme.replace(pattern, (_m, begin: string, end: string) => `${begin}${body}\n${end}`);
  }
  writeFileSync(path, readme);
}
