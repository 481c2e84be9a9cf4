/**
 * The journal's reader never trusts a line that is not exactly what was
 * written: a journal cut at any byte yields only the entries written whole
 * before the cut, and any one changed byte makes its line refused.
 */
import test from 'ava';
import fc from 'fast-check';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { readJournal, SessionJournal, type JournalEntry } from './session-journal.ts';

const log = pino({ enabled: false });

function entry(vf: string, n: number): JournalEntry {
  return {
    vf,
    migration: {
      owner: `principal-${n}`, role: n % 2 === 0 ? 'source' : 'destination', readToEnd: n % 3 === 0, applied: false, state: 'STOP_COPY',
      leaseMs: 30_000, leaseExpiresAt: 1_800_000_000_000 + n, stranded: null,
      session: { id: `00000000-0000-4000-8000-${n.toString().padStart(12, '0')}`, kind: 'save', format: { name: 'fmt', version: 1 } },
    },
  };
}

/** A journal file as the agent writes it, and the entries in it. */
function written(count: number): { text: string; entries: JournalEntry[] } {
  const dir = mkdtempSync(join(tmpdir(), 'vfmigd-journal-'));
  try {
    const { journal } = SessionJournal.open(dir, log);
    const entries = Array.from({ length: count }, (_, n) => entry(`vf${n % 3}`, n));
    for (const e of entries) journal.write(e);
    journal.close();
    return { text: readFileSync(journal.path, 'utf8'), entries };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('a journal cut at any byte gives exactly the entries written whole before the cut, the newest per VF', (t) => {
  const { text, entries } = written(7);
  const ends = [...text].flatMap((c, i) => (c === '\n' ? [i + 1] : []));
  for (let cut = 0; cut <= text.length; cut += 1) {
    const whole = ends.filter((end) => end <= cut).length;
    const expected = new Map(entries.slice(0, whole).map((e) => [e.vf, e]));
    const reading = readJournal(text.slice(0, cut));
    t.deepEqual(reading.entries, expected, `cut at ${cut}`);
    t.deepEqual(reading.refused, ends.includes(cut) || cut === 0 ? [] : [whole + 1], `cut at ${cut}: the torn line, and only it, is refused`);
  }
});

test('any one changed byte of a line makes that line, and only it, refused', (t) => {
  const { text } = written(3);
  const lines = text.split('\n').filter((l) => l !== '');
  fc.assert(fc.property(fc.nat({ max: lines.length - 1 }), fc.nat(), fc.integer({ min: 1, max: 255 }), (which, at, xor) => {
    const target = lines[which] as string;
    const bytes = Buffer.from(target, 'utf8');
    const index = at % bytes.length;
    bytes[index] = (bytes[index] as number) ^ xor;
    if (bytes.includes(0x0a)) return; // a new line break makes two lines: another case, below
    const edited = [...lines.slice(0, which), bytes.toString('latin1'), ...lines.slice(which + 1)].join('\n');
    const reading = readJournal(`${edited}\n`);
    t.deepEqual(reading.refused, [which + 1]);
    const without = readJournal(`${lines.filter((_, i) => i !== which).join('\n')}\n`);
    t.deepEqual(reading.entries, without.entries, 'read as if the line were not there');
  }), { numRuns: 300, seed: 20261202 });
});

test('opening compacts the journal to the newest entry of each VF still in a migration', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vfmigd-journal-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const first = SessionJournal.open(dir, log).journal;
  first.write(entry('vf0', 1));
  first.write(entry('vf1', 2));
  first.write({ vf: 'vf1', migration: null });
  first.write(entry('vf0', 3));
  first.close();
  const { journal, reading } = SessionJournal.open(dir, log);
  journal.close();
  t.deepEqual([...reading.entries.keys()].sort(), ['vf0', 'vf1']);
  const kept = readJournal(readFileSync(journal.path, 'utf8'));
  t.deepEqual([...kept.entries.values()], [entry('vf0', 3)], 'a VF that runs needs no line');
});
