// Rewrites what is generated from schemas/ and the error catalogue (run by
// `npm run docs`, after a build): the README's method, permission, event, config, error
// and metrics tables, vfmigctl's exit codes, and the C plugin's vmm-plugin/src/agent-contract.h.
import { exitCodeTable } from '../dist/agent/cli/exit-codes.js';
import { SchemaRegistry } from '../dist/agent/rpc/schema-registry.js';
import { writePluginContract } from '../dist/test/support/plugin-contract.js';
import { configTable, errorTable, eventTable, methodTable, metricsTable, permissionTable, writeSections } from '../dist/test/support/readme-tables.js';

writeSections(new URL('../README.md', import.meta.url).pathname, {
  methods: methodTable(new SchemaRegistry()),
  permissions: permissionTable(new SchemaRegistry()),
  events: eventTable(new SchemaRegistry()),
  config: configTable(new SchemaRegistry()),
  errors: errorTable(),
  metrics: metricsTable(),
  'vfmigctl-exit-codes': exitCodeTable(),
});
writePluginContract(new URL('../vmm-plugin/src/agent-contract.h', import.meta.url).pathname, new SchemaRegistry());
