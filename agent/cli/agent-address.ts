/**
 * Where an agent is, as the operator names it: the agent's own listen
 * syntax (`tcp://HOST:PORT`, `tls://HOST:PORT`, `unix:PATH`), and for
 * tls:// the client's credentials for mutual TLS, read once, as the QEMU
 * plugin reads its `ca=`, `cert=` and `key=`.
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { formatListenAddress, parseListenAddress, type ListenAddress } from '../transport/listen-address.ts';
import { UsageError } from './cli-errors.ts';

/** What `npm start` listens on. */
export const DEFAULT_AGENT = 'tcp://127.0.0.1:7700';

export interface TlsFiles {
  readonly ca?: string | undefined;
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
  readonly serverName?: string | undefined;
}

export interface AgentTarget {
  /** As it is shown: the address in the agent's own syntax. */
  readonly name: string;
  readonly address: ListenAddress;
  /** For tls://: the options of the handshake. */
  readonly tls: ConnectionOptions | undefined;
}

export function agentTarget(text: string, files: TlsFiles): AgentTarget {
  let address: ListenAddress;
  try {
    address = parseListenAddress(text);
  } catch (error) {
    throw new UsageError(`agent address ${error instanceof Error ? error.message : String(error)}`);
  }
  return { name: formatListenAddress(address), address, tls: address.kind === 'tls' ? tlsOptions(files) : undefined };
}

function tlsOptions(files: TlsFiles): ConnectionOptions {
  const missing = (['ca', 'cert', 'key'] as const).filter((name) => files[name] === undefined);
  if (missing.length > 0) throw new UsageError(`a tls:// agent needs ${missing.map((m) => `--${m}`).join(', ')} (mutual TLS)`);
  const serverName = files.serverName;
  return {
    ca: readPem('--ca', files.ca as string),
    cert: readPem('--cert', files.cert as string),
    key: readPem('--key', files.key as string),
    // The agent's certificate must name --server-name (also sent as SNI); without it, the host (Node's default check).
    ...(serverName === undefined ? {} : { servername: serverName }),
    minVersion: 'TLSv1.3',
  };
}

/** A credential file's contents; its name, never its contents, in any error. */
function readPem(option: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new UsageError(`${option} ${file}: cannot read it (${code})`);
  }
}
