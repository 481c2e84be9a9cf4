// Rewrites the README's method and error tables from schemas/ and the
// error catalogue (run by `npm run docs`, after a build).
import { SchemaRegistry } from '../dist/agent/rpc/schema-registry.js';
import { configTable, errorTable, methodTable, writeSections } from '../dist/test/support/readme-tables.js';

writeSections(new URL('../README.md', import.meta.url).pathname, {
  methods: methodTable(new SchemaRegistry()),
  config: configTable(new SchemaRegistry()),
  errors: errorTable(),
});
