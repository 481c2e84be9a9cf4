/**
 * `npm run bench`: runs every benchmark, prints one markdown table (with
 * machine, Node version and date), and with --write-readme puts it into
 * the README between the bench markers. Figures, not pass/fail.
 *
 *   node dist/bench/run.js [--only transfer|large|small|tls|downtime|scale|plugin|load] [--quick] [--write-readme] [--load-seconds N]
 */
import os from 'node:os';
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { downtime } from './downtime.ts';
import { largeState } from './large-state.ts';
import { load } from './load.ts';
import { pluginPath } from './plugin.ts';
import { scale } from './scale.ts';
import { smallCalls, smallCallsTls } from './small-calls.ts';
import { stateTransfer, stateTransferTls } from './state-transfer.ts';
import type { BenchRow } from './stats.ts';

const { values } = parseArgs({
  options: {
    only: { type: 'string', multiple: true },
    quick: { type: 'boolean', default: false },
    'write-readme': { type: 'boolean', default: false },
    'load-seconds': { type: 'string' },
  },
});
const quick = values.quick === true;
const selected = (name: string): boolean => values.only === undefined || values.only.includes(name);

const benches: [string, () => Promise<BenchRow[]>][] = [
  ['transfer', () => stateTransfer({ stateMiB: quick ? 32 : 256, jaysonMiB: quick ? 8 : 32, sliceBytes: 1024 * 1024, depth: 4, rounds: quick ? 1 : 3 })],
  ['large', () => largeState({ stateMiB: quick ? 64 : 256, dirtyMiBPerSecond: 32, rounds: quick ? 1 : 3, rssStateMiB: quick ? 256 : 1024 })],
  ['small', () => smallCalls(quick ? 500 : 1000, quick ? 3 : 5)],
  ['tls', async () => [
    ...await stateTransferTls({ stateMiB: quick ? 32 : 256, jaysonMiB: 0, sliceBytes: 1024 * 1024, depth: 4, rounds: quick ? 1 : 3 }),
    ...await smallCallsTls(quick ? 500 : 1000, quick ? 3 : 5),
  ]],
  ['downtime', () => downtime({ runs: quick ? 30 : 200, vfCount: quick ? 8 : 64 })],
  ['scale', () => scale(1024)],
  ['plugin', () => pluginPath(quick ? 20 : 100)],
  ['load', () => load({ clients: 64, seconds: values['load-seconds'] === undefined ? (quick ? 5 : 60) : Number(values['load-seconds']) })],
];

const rows: BenchRow[] = [];
for (const [name, run] of benches) {
  if (!selected(name)) continue;
  process.stderr.write(`bench: ${name}...\n`);
  const result = await run();
  for (const row of result) process.stderr.write(`  ${row.bench}: ${row.measured} | ${row.baseline} | ${row.ratio}\n`);
  rows.push(...result);
}

const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
const header = `Measured ${new Date().toISOString().slice(0, 10)} on ${cpu.trim()} (${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB), Node.js ${process.version}, loopback${quick ? ', --quick sizes' : ''}.`;
const table = [
  header,
  '',
  '| benchmark | vfmigd | baseline (same run) | ratio | target |',
  '|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.bench} | ${r.measured} | ${r.baseline} | ${r.ratio} | ${r.target} |`),
].join('\n');
process.stdout.write(`${table}\n`);

if (values['write-readme'] === true) {
  const path = new URL('../../README.md', import.meta.url);
  const readme = readFileSync(path, 'utf8');
  const pattern = /(<!-- bench:begin -->\n)[\s\S]*?(<!-- bench:end -->)/;
  if (!pattern.test(readme)) throw new Error('README has no bench markers');
  writeFileSync(path, readme.replace(pattern, (_m, begin: string, end: string) => `${begin}${table}\n${end}`));
}
