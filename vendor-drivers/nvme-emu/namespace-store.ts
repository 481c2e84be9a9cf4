/**
 * One namespace's data, kept in its backing file. There is no data cache in
 * the device: every write goes to the file at once, so a second agent that
 * opens the same file (the destination of a migration) sees it.
 */
import { access, constants as fsConstants, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { HealthCheck } from '../driver.ts';
import type { BackingFilePool } from './backing-files.ts';
import { errorCode } from './backing-files.ts';
import type { NamespaceConfig } from './options.ts';

/** Zeroes are written from one shared buffer, a chunk at a time. */
const ZERO_CHUNK = new Uint8Array(1024 * 1024);

export class NamespaceStore {
  readonly config: NamespaceConfig;
  readonly #files: BackingFilePool;

  constructor(config: NamespaceConfig, files: BackingFilePool) {
    this.config = config;
    this.#files = files;
  }

  get nsid(): number {
    return this.config.nsid;
  }

  /** Namespace size in logical blocks (NSZE). */
  get blockCount(): number {
    return this.config.sizeBytes / this.config.blockSize;
  }

  /** Reads bytes; what lies past the end of a shorter file reads as zero. */
  async read(offset: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    await this.#use(async (file) => {
      let done = 0;
      while (done < length) {
        const { bytesRead } = await file.read(out, done, length - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
    });
    return out;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    await this.#use(async (file) => {
      let done = 0;
      while (done < data.length) {
        const { bytesWritten } = await file.write(data, done, data.length - done, offset + done);
        done += bytesWritten;
      }
    });
  }

  /** Write Zeroes and deallocation: the range reads back as zero afterwards. */
  async writeZeroes(offset: number, length: number): Promise<void> {
    await this.#use(async (file) => {
      let done = 0;
      while (done < length) {
        const chunk = Math.min(ZERO_CHUNK.length, length - done);
        const { bytesWritten } = await file.write(ZERO_CHUNK, 0, chunk, offset + done);
        done += bytesWritten;
      }
    });
  }

  /** Flush: the data reaches stable storage (fdatasync). */
  async flush(): Promise<void> {
    await this.#use((file) => file.datasync());
  }

  async check(vfId: string): Promise<HealthCheck> {
    const name = `nvme-emu/${vfId}/ns${this.nsid}`;
    const { path, sizeBytes } = this.config;
    try {
      const info = await stat(path);
      if (!info.isFile()) return { name, ok: false, detail: `${path} is not a regular file` };
      await access(path, fsConstants.R_OK | fsConstants.W_OK);
      if (info.size !== sizeBytes) return { name, ok: false, detail: `${path} is ${info.size} bytes, expected ${sizeBytes}` };
      return { name, ok: true, detail: `${path}, ${sizeBytes} bytes` };
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') return { name, ok: false, detail: `${path}: ${describeError(error)}` };
      return this.#checkCreatable(name);
    }
  }

  /** A missing file is fine if it can be created on first use. */
  async #checkCreatable(name: string): Promise<HealthCheck> {
    const { path } = this.config;
    let dir = dirname(path);
    // The directory itself may not exist yet; the closest existing ancestor must be writable.
    for (;;) {
      try {
        await access(dir, fsConstants.W_OK | fsConstants.X_OK);
        return { name, ok: true, detail: `${path} not created yet; created sparse on first I/O` };
      } catch (error) {
        const parent = dirname(dir);
        if (errorCode(error) !== 'ENOENT' || parent === dir) return { name, ok: false, detail: `${path} missing and ${dir} not writable` };
        dir = parent;
      }
    }
  }

  #use<T>(work: (file: FileHandle) => Promise<T>): Promise<T> {
    return this.#files.use(this.config.path, this.config.sizeBytes, work);
  }
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
