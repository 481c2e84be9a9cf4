/**
 * The paged save stream's two ways of reading (a buffer of its own, or the
 * caller's) hand out the same bytes, cut anywhere, and end alike.
 */
import test from 'ava';
import { pagedSaveStream, type PagedState } from './paged-streams.ts';

function pages(count: number, size: number): PagedState {
  return {
    pageSize: size,
    pageCount: count,
    writePage: (index, target, offset) => { target.fill(index + 1, offset, offset + size); },
    takeDirty: () => [],
  };
}

test('read and readInto hand out the same stream, whatever the sizes asked for', async (t) => {
  for (const ask of [1, 7, 64, 67, 1000, 4096]) {
    const byRead: Buffer[] = [];
    const viaRead = pagedSaveStream(pages(9, 60), () => false);
    for (let piece = await viaRead.read(ask); piece.length > 0; piece = await viaRead.read(ask)) byRead.push(Buffer.from(piece));
    const byInto: Buffer[] = [];
    const viaInto = pagedSaveStream(pages(9, 60), () => false);
    const target = Buffer.alloc(ask);
    for (let n = await (viaInto.readInto as (b: Buffer) => Promise<number>)(target); n > 0; n = await (viaInto.readInto as (b: Buffer) => Promise<number>)(target)) {
      byInto.push(Buffer.from(target.subarray(0, n)));
    }
    const whole = Buffer.concat(byRead);
    t.is(whole.length, 9 * 64, `asked ${ask}`);
    t.true(whole.equals(Buffer.concat(byInto)), `asked ${ask}`);
    t.is((await viaInto.stopCopyBytes()), 0);
  }
});
