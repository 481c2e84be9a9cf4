/**
 * The fuzz suite on a small budget (a few seconds; `npm run fuzz` runs
 * 100,000 cases or more): mutated requests, truncation, deep nesting, huge
 * numbers, bytes that are not UTF-8, NUL bytes, duplicate keys and garbage
 * batches against a real agent process. Nothing may crash or hang it, every
 * reply must be JSON-RPC, and no VF may change state on a call that failed.
 * The seed is fixed, so that a failure here is a failure everywhere; the
 * fuzz command draws new ones.
 */
import test from 'ava';
import { drawCases } from './fuzz/draw.ts';
import { fuzz } from './fuzz/fuzzer.ts';

const SEED = 20261201;
const CASES = 1200;

test(`${CASES} fuzz cases (seed ${SEED}): no crash, no hang, only JSON-RPC replies, no state changed by a failed call`, async (t) => {
  const report = await fuzz(drawCases(CASES, SEED));
  t.log(`${report.cases} cases, ${report.replies} replies, ${report.stateChanges} legitimate state changes in ${(report.elapsedMs / 1000).toFixed(1)} s; agent RSS ${report.rss[0]?.mib.toFixed(0)} → ${report.rssAfterMiB.toFixed(0)} MiB`);
  for (const sample of report.samples) t.log(`[${sample.kind}] ${sample.detail}\n  ${sample.bytes}`);
  t.is(report.cases, CASES);
  t.deepEqual(report.findings, { 'crash': 0, 'hang': 0, 'not JSON-RPC': 0, 'unknown id': 0, 'answered wrongly': 0, 'state changed': 0 });
  t.true(report.replies > CASES, 'the cases were answered');
  t.true(report.stateChanges > 0, 'some cases were valid calls that moved a VF, and were undone');
});
