/**
 * A write-ahead journal of migrations, so that an agent killed at any step
 * comes back knowing what each VF was doing: whose migration it was, its
 * lease, the session open on it and how far its state had gone.
 *
 * One file, `sessions.journal` in the state directory: one entry per line,
 * `CRC32C(hex) SPACE JSON`, the newest entry of a VF replacing the older
 * ones. Each entry is written and fsync'd before the call that made it is
 * answered. At start the file is read whole: an entry whose checksum fails
 * (a torn last write, a corrupted block) is skipped and reported, never
 * trusted, and the file is rewritten with what is left (written aside,
 * fsync'd, renamed), so it does not grow without bound.
 *
 * The journal says what the agent was doing; the device says where the VF
 * is. Where they disagree, the device wins (VfMachine.recover).
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { crc32c } from '@node-rs/crc32';
import type { Logger } from 'pino';
import type { StateFormat } from '../../vendor-drivers/driver.ts';
import type { SessionKind } from './migration-session.ts';
import type { VfioStateName } from './vfio-states.ts';

export interface JournaledSession {
  readonly id: string;
  readonly kind: SessionKind;
  readonly format: StateFormat | null;
}

export interface JournaledMigration {
  readonly owner: string;
  readonly role: 'source' | 'destination';
  readonly readToEnd: boolean;
  readonly applied: boolean;
  /** The state the agent had the VF in. */
  readonly state: VfioStateName;
  /** How long each extension of the lease lasts, and when it expires (wall-clock ms); null when it has ended. */
  readonly leaseMs: number | null;
  readonly leaseExpiresAt: number | null;
  readonly stranded: { readonly since: number; readonly reason: string } | null;
  readonly session: JournaledSession | null;
}

export interface JournalEntry {
  readonly vf: string;
  /** Null: the VF runs, in no migration. */
  readonly migration: JournaledMigration | null;
}

export interface JournalReading {
  readonly entries: ReadonlyMap<string, JournalEntry>;
  /** Lines that failed their checksum or did not parse, 1-based. */
  readonly refused: readonly number[];
}

const FILE = 'sessions.journal';

function line(entry: JournalEntry): string {
  const json = JSON.stringify(entry);
  return `${crc32c(Buffer.from(json, 'utf8')).toString(16).padStart(8, '0')} ${json}\n`;
}

/** The entries a journal file holds; a line that is not exactly what was written is refused, whatever else it says. */
export function readJournal(text: string): JournalReading {
  const entries = new Map<string, JournalEntry>();
  const refused: number[] = [];
  const lines = text.split('\n');
  // After the last newline: a write that did not finish (an entry's newline is its last byte), if anything.
  const torn = lines.pop() ?? '';
  lines.forEach((raw, index) => {
    const entry = parseLine(raw);
    if (entry === undefined) refused.push(index + 1);
    else entries.set(entry.vf, entry);
  });
  if (torn !== '') refused.push(lines.length + 1);
  return { entries, refused };
}

/** The entry of a whole line, if it is exactly what was written. */
function parseLine(raw: string): JournalEntry | undefined {
  const match = /^([0-9a-f]{8}) (.*)$/s.exec(raw);
  const json = match?.[2];
  if (match === null || json === undefined || Number.parseInt(match[1] as string, 16) !== crc32c(Buffer.from(json, 'utf8'))) return undefined;
  try {
    const entry = JSON.parse(json) as JournalEntry;
    return typeof entry.vf === 'string' && (entry.migration === null || typeof entry.migration === 'object') ? entry : undefined;
  } catch {
    return undefined;
  }
}

export class SessionJournal {
  readonly path: string;
  #fd: number;
  readonly #log: Logger;

  private constructor(path: string, fd: number, log: Logger) {
    this.path = path;
    this.#fd = fd;
    this.#log = log;
  }

  /**
   * Opens the journal in `dir` (made if missing): what it held, and a
   * journal to go on with, rewritten to hold only that. Never throws for
   * what the file contains; only for a directory it cannot use.
   */
  static open(dir: string, log: Logger): { journal: SessionJournal; reading: JournalReading } {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const path = join(dir, FILE);
    const reading = existsSync(path) ? readJournal(readFileSync(path, 'utf8')) : { entries: new Map<string, JournalEntry>(), refused: [] };
    if (reading.refused.length > 0) {
      log.error({ phase: 'journal', path, refusedLines: reading.refused }, 'journal lines failed their checksum and are ignored: the devices\' states decide');
    }
    const aside = `${path}.new`;
    const out = openSync(aside, 'w', 0o600);
    try {
      for (const entry of reading.entries.values()) if (entry.migration !== null) writeSync(out, line(entry));
      fsyncSync(out);
    } finally {
      closeSync(out);
    }
    renameSync(aside, path);
    const dirFd = openSync(dir, 'r');
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
    const journal = new SessionJournal(path, openSync(path, 'a', 0o600), log);
    log.info({ phase: 'journal', path, migrations: [...reading.entries.values()].filter((e) => e.migration !== null).length }, 'journal open');
    return { journal, reading };
  }

  /** Durable before it returns: written and fsync'd. */
  write(entry: JournalEntry): void {
    writeSync(this.#fd, line(entry));
    fsyncSync(this.#fd);
    this.#log.debug({ phase: 'journal', vf: entry.vf, state: entry.migration?.state ?? 'RUNNING' }, 'journaled');
  }

  close(): void {
    closeSync(this.#fd);
    this.#fd = -1;
  }
}
