// Derives TypeScript types from schemas/ (the API contract) into
// schemas/types.ts. Runs before every build; the output is not committed,
// so types cannot drift from the schemas.
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compile } from 'json-schema-to-typescript';

const schemasDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'schemas');

async function jsonFiles(sub) {
  const names = (await readdir(join(schemasDir, sub))).filter((n) => n.endsWith('.json')).sort();
  return Promise.all(names.map(async (n) => ({ file: `${sub}/${n}`, schema: JSON.parse(await readFile(join(schemasDir, sub, n), 'utf8')) })));
}

// One synthetic root that references every type, so that shared
// definitions are declared once.
const properties = {};
const common = JSON.parse(await readFile(join(schemasDir, 'common.json'), 'utf8'));
const methodTypes = [];
for (const { file, schema } of await jsonFiles('methods')) {
  methodTypes.push(`  '${schema.title}': { params: ${typeName(schema.$defs.params)}; result: ${typeName(schema.$defs.result)} };`);
  for (const part of ['params', 'result']) {
    if (schema.$defs?.[part]) properties[`${schema.title}.${part}`] = { $ref: `${file}#/$defs/${part}` };
  }
}
const eventTypes = [];
for (const { file, schema } of await jsonFiles('events')) {
  eventTypes.push(`  '${schema.title}': ${typeName(schema.$defs.params)};`);
  properties[`${schema.title}.params`] = { $ref: `${file}#/$defs/params` };
}
for (const { file, schema } of await jsonFiles('drivers')) properties[schema.title] = { $ref: file };
properties.config = { $ref: './config.json' };
properties.common = { $ref: './common.json' };

const root = { title: 'SchemaIndex', type: 'object', additionalProperties: false, properties };
const ts = await compile(root, 'SchemaIndex', {
  cwd: schemasDir,
  additionalProperties: false,
  unreachableDefinitions: true,
  strictIndexSignatures: true,
  format: false,
  ignoreMinAndMaxItems: true,
  bannerComment: '/* Generated from schemas/ by scripts/gen-types.mjs. Do not edit. */',
});
const index = `\n/** Each method's params and result types, by method name. */\nexport interface MethodTypes {\n${methodTypes.join('\n')}\n}\n`
  + `\n/** Each event's params (what its notification carries), by topic. */\nexport interface EventTypes {\n${eventTypes.join('\n')}\n}\n`;
await writeFile(join(schemasDir, 'types.ts'), ts + index);

/** The name json-schema-to-typescript gives a (possibly referenced) schema: its title. */
function typeName(schema) {
  const ref = schema.$ref?.match(/common\.json#\/\$defs\/(\w+)$/);
  const title = ref ? common.$defs[ref[1]].title : schema.title;
  if (!title) throw new Error(`a method's params or result schema has no title: ${JSON.stringify(schema).slice(0, 80)}`);
  return title;
}
