import fc from 'fast-check';
import { fuzzCase, type FuzzCase } from './cases.ts';

/** Cases drawn lazily in batches from one seed, so 100,000 of them are never all in memory at once. */
export function* drawCases(count: number, baseSeed: number): Generator<FuzzCase> {
  const batch = 500;
  for (let drawn = 0, round = 0; drawn < count; round += 1) {
    const n = Math.min(batch, count - drawn);
    yield* fc.sample(fuzzCase, { numRuns: n, seed: baseSeed + round });
    drawn += n;
  }
}
