/**
 * The TLS listeners' credentials: the agent's certificate and key, the CA
 * bundle client certificates must chain to, and optional CRLs. Read from
 * files at start and again on reload; a reload that fails (a missing file,
 * a key that does not match the certificate, a CRL that does not parse)
 * keeps the credentials in use.
 */
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContextOptions } from 'node:tls';

export interface TlsFiles {
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
  readonly crl?: string | undefined;
  readonly minVersion: 'TLSv1.3' | 'TLSv1.2';
}

export class TlsCredentials {
  readonly files: TlsFiles;
  private current: SecureContextOptions;
  private readonly listeners = new Set<(options: SecureContextOptions) => void>();

  /** Throws, naming the file, when the credentials cannot be used. */
  constructor(files: TlsFiles) {
    this.files = files;
    this.current = load(files);
  }

  get options(): SecureContextOptions {
    return this.current;
  }

  /** Calls `listener` with the new options after every successful reload. */
  onReload(listener: (options: SecureContextOptions) => void): void {
    this.listeners.add(listener);
  }

  /** Reads every file again; on failure throws and keeps the credentials in use. */
  reload(): void {
    const next = load(this.files);
    this.current = next;
    for (const listener of this.listeners) listener(next);
  }
}

function load(files: TlsFiles): SecureContextOptions {
  const read = (what: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (error) {
      throw new Error(`cannot read the TLS ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, { cause: error });
    }
  };
  const options: SecureContextOptions = {
    cert: read('certificate', files.cert),
    key: read('key', files.key),
    ca: read('CA bundle', files.ca),
    ...(files.crl === undefined ? {} : { crl: read('CRL', files.crl) }),
    minVersion: files.minVersion,
  };
  try {
    // Everything OpenSSL checks when the context is made: PEM syntax, key matching certificate, CRL syntax.
    createSecureContext(options);
  } catch (error) {
    // Never the key material itself, only what is wrong with it.
    throw new Error(`the TLS credentials (${files.cert}, ${files.key}, ${files.ca}${files.crl === undefined ? '' : `, ${files.crl}`}) are unusable: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  return options;
}
