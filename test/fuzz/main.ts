/**
 * `npm run fuzz`: fuzz cases against a real agent process, and a report of
 * crashes, hangs, replies that are not JSON-RPC, ids answered wrongly or
 * never sent, VF states changed by calls that did not succeed, and the
 * agent's RSS over the run. Exits 1 if anything was found, or if RSS still
 * grew over the second half of the run by more than RSS_SLACK_MIB (flat is
 * the target; the first half is where V8 and malloc reach their working
 * size, which the heaviest cases set).
 *
 *   node dist/test/fuzz/main.js [--cases N] [--seed S] [--json]
 */
import { parseArgs } from 'node:util';
import { drawCases } from './draw.ts';
import { FINDING_KINDS, fuzz, type FuzzReport } from './fuzzer.ts';

const { values } = parseArgs({
  options: {
    cases: { type: 'string', default: '100000' },
    seed: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});
const total = Number(values.cases);
const seed = values.seed === undefined ? Date.now() % 2 ** 31 : Number(values.seed);
if (!Number.isSafeInteger(total) || total < 1 || !Number.isSafeInteger(seed)) {
  process.stderr.write('usage: fuzz [--cases N] [--seed S] [--json]\n');
  process.exit(2);
}

/** RSS growth over the second half of a run that still counts as flat. */
const RSS_SLACK_MIB = 16;

/** The agent's RSS at the reading nearest to `fraction` of the run. */
function rssAt(report: FuzzReport, fraction: number): number {
  const want = report.cases * fraction;
  return report.rss.reduce((best, r) => (Math.abs(r.cases - want) < Math.abs(best.cases - want) ? r : best)).mib;
}

function summary(report: FuzzReport): string {
  const findings = FINDING_KINDS.map((kind) => `${kind} ${report.findings[kind]}`).join(', ');
  return `${report.cases} cases, ${report.replies} replies, ${report.stateChanges} legitimate state changes, ${(report.cases / (report.elapsedMs / 1000 || 1)).toFixed(0)} cases/s\n`
    + `findings: ${findings}\n`
    + `CPU: agent ${report.agentCpuS.toFixed(1)} s, fuzzer ${report.fuzzerCpuS.toFixed(1)} s, in ${(report.elapsedMs / 1000).toFixed(1)} s\n`
    + `agent RSS (MiB) at 0/10/25/50/75/100 % of the run: ${[0, 0.1, 0.25, 0.5, 0.75].map((f) => rssAt(report, f).toFixed(0)).join(' / ')} / ${report.rssAfterMiB.toFixed(0)} (peak ${report.peakRssMiB.toFixed(0)})`;
}

process.stderr.write(`fuzz: ${total} cases, seed ${seed}\n`);
const started = performance.now();
const report = await fuzz(drawCases(total, seed), {
  onProgress: (r) => { if (r.cases % 10_000 < 4) process.stderr.write(`  ${r.cases} cases (${((performance.now() - started) / 1000).toFixed(0)} s)\n`); },
});
const found = Object.values(report.findings).reduce((a, b) => a + b, 0);
const rssGrowth = report.rssAfterMiB - rssAt(report, 0.5);
const flat = rssGrowth <= RSS_SLACK_MIB;
if (values.json) {
  process.stdout.write(`${JSON.stringify({ seed, ...report }, null, 2)}\n`);
} else {
  process.stdout.write(`${summary(report)}: ${flat ? `flat over the second half (${rssGrowth >= 0 ? '+' : ''}${rssGrowth.toFixed(0)} MiB)` : `GREW by ${rssGrowth.toFixed(0)} MiB over the second half`}\nby kind of first piece: ${JSON.stringify(report.byKind)}\nseed ${seed} (again: npm run fuzz -- --seed ${seed} --cases ${total})\n`);
  for (const sample of report.samples) process.stdout.write(`\n[${sample.kind}] ${sample.detail}\n  ${sample.bytes}\n`);
  if (report.samples.length > 0) process.stdout.write('\n(--json gives each case whole, base64)\n');
}
process.exit(found === 0 && flat ? 0 : 1);
