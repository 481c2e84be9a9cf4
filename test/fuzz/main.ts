/**
 * `npm run fuzz`: fuzz cases against a real agent process, and a report of
 * crashes, hangs, replies that are not JSON-RPC, ids answered wrongly or
 * never sent, VF states changed by calls that did not succeed, and the
 * agent's RSS after warm-up and at the end. Exits 1 if anything was found
 * or RSS grew by more than RSS_SLACK_MIB (flat is the target).
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

/** RSS growth over a run that still counts as flat: V8 grows its heap before it collects. */
const RSS_SLACK_MIB = 64;

function summary(report: FuzzReport): string {
  const findings = FINDING_KINDS.map((kind) => `${kind} ${report.findings[kind]}`).join(', ');
  return `${report.cases} cases, ${report.replies} replies, ${report.stateChanges} legitimate state changes, ${(report.cases / (report.elapsedMs / 1000 || 1)).toFixed(0)} cases/s\n`
    + `findings: ${findings}\n`
    + `CPU: agent ${report.agentCpuS.toFixed(1)} s, fuzzer ${report.fuzzerCpuS.toFixed(1)} s, in ${(report.elapsedMs / 1000).toFixed(1)} s\n`
    + `agent RSS after warm-up ${report.rssBeforeMiB.toFixed(0)} MiB, at the end ${report.rssAfterMiB.toFixed(0)} MiB (peak ${report.peakRssMiB.toFixed(0)} MiB)`;
}

process.stderr.write(`fuzz: ${total} cases, seed ${seed}\n`);
const started = performance.now();
const report = await fuzz(drawCases(total, seed), {
  onProgress: (r) => { if (r.cases % 10_000 < 4) process.stderr.write(`  ${r.cases} cases (${((performance.now() - started) / 1000).toFixed(0)} s)\n`); },
});
const found = Object.values(report.findings).reduce((a, b) => a + b, 0);
const rssGrowth = report.rssAfterMiB - report.rssBeforeMiB;
const flat = rssGrowth <= RSS_SLACK_MIB;
if (values.json) {
  process.stdout.write(`${JSON.stringify({ seed, ...report }, null, 2)}\n`);
} else {
  process.stdout.write(`${summary(report)}: ${flat ? 'flat' : `GREW by ${rssGrowth.toFixed(0)} MiB`}\nby kind of first piece: ${JSON.stringify(report.byKind)}\nseed ${seed} (again: npm run fuzz -- --seed ${seed} --cases ${total})\n`);
  for (const sample of report.samples) process.stdout.write(`\n[${sample.kind}] ${sample.detail}\n  ${sample.bytes}\n`);
  if (report.samples.length > 0) process.stdout.write('\n(--json gives each case whole, base64)\n');
}
process.exit(found === 0 && flat ? 0 : 1);
