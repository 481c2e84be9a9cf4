/**
 * Namespace backing files, opened on first use and shared by path.
 *
 * An agent may serve a thousand VFs; holding a descriptor per namespace from
 * start-up would exhaust the fd limit and slow the start. Files are opened
 * (and created sparse if missing) when a command first needs them, and idle
 * ones are closed once more than `maxOpen` are open.
 */
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';

interface PoolEntry {
  readonly handle: Promise<FileHandle>;
  users: number;
}

export class BackingFilePool {
  readonly #maxOpen: number;
  /** Insertion order is least-recently-used first. */
  readonly #entries = new Map<string, PoolEntry>();
  #closed = false;

  constructor(maxOpen = 256) {
    this.#maxOpen = maxOpen;
  }

  get openCount(): number {
    return this.#entries.size;
  }

  /** Runs `work` with the file at `path` open, creating it sparse at `sizeBytes` if it does not exist. */
  async use<T>(path: string, sizeBytes: number, work: (file: FileHandle) => Promise<T>): Promise<T> {
    // A command still finishing after stop() must not reopen (and leak) a file.
    if (this.#closed) throw new Error('namespace files are closed (driver stopped)');
    const entry = this.#acquire(path, sizeBytes);
    try {
      return await work(await entry.handle);
    } finally {
      entry.users -= 1;
      this.#closeIdleBeyondLimit();
    }
  }

  async closeAll(): Promise<void> {
    this.#closed = true;
    const entries = [...this.#entries.values()];
    this.#entries.clear();
    // FileHandle.close waits for operations still running on the handle.
    await Promise.allSettled(entries.map(async (entry) => (await entry.handle).close()));
  }

  #acquire(path: string, sizeBytes: number): PoolEntry {
    let entry = this.#entries.get(path);
    if (entry) {
      this.#entries.delete(path);
    } else {
      const handle = openOrCreate(path, sizeBytes);
      const created: PoolEntry = { handle, users: 0 };
      entry = created;
      // A failed open must not stick: the next command retries.
      handle.catch(() => {
        if (this.#entries.get(path) === created) this.#entries.delete(path);
      });
    }
    this.#entries.set(path, entry);
    entry.users += 1;
    return entry;
  }

  #closeIdleBeyondLimit(): void {
    if (this.#entries.size <= this.#maxOpen) return;
    for (const [path, entry] of this.#entries) {
      if (this.#entries.size <= this.#maxOpen) break;
      if (entry.users > 0) continue;
      this.#entries.delete(path);
      entry.handle.then((file) => file.close()).catch(() => undefined);
    }
  }
}

async function openOrCreate(path: string, sizeBytes: number): Promise<FileHandle> {
  try {
    return await open(path, 'r+');
  } catch (error) {
    if (errorCode(error) !== 'ENOENT') throw error;
  }
  await mkdir(dirname(path), { recursive: true });
  try {
    const file = await open(path, 'wx+');
    await file.truncate(sizeBytes);
    return file;
  } catch (error) {
    // Another agent (the other end of a migration) created it first.
    if (errorCode(error) === 'EEXIST') return open(path, 'r+');
    throw error;
  }
}

export function errorCode(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string') return error.code;
  return undefined;
}
