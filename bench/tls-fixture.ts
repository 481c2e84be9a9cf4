/**
 * Credentials for the TLS benchmarks: a test CA, the agent's (and the
 * baseline peers') server certificate, and the VMM client's certificate,
 * written to a temp dir removed by `dispose`.
 */
import { rmSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import type { Config } from '../schemas/types.ts';
import { tempDir } from '../test/support/agent-process.ts';
import { TestCa, writePem, writeText } from '../test/support/pki.ts';

export interface BenchTls {
  /** The agent config's tls, authorization and listen parts. */
  readonly agentConfig: Pick<Config, 'tls' | 'authorization'>;
  /** For a baseline peer: server certificate and key files. */
  readonly serverFiles: { cert: string; key: string };
  readonly client: ConnectionOptions;
  dispose(): void;
}

const PRINCIPAL = 'spiffe://bench/host/vmm';

export async function benchTls(): Promise<BenchTls> {
  const ca = await TestCa.create('vfmigd bench CA');
  const dir = tempDir('vfmigd-bench-tls-');
  const server = writePem(dir, 'agent', await ca.issue({ cn: 'agent', dns: ['localhost'], ips: ['127.0.0.1'], usage: 'server' }));
  const client = await ca.issue({ cn: 'vmm', uris: [PRINCIPAL], usage: 'client' });
  const caFile = writeText(dir, 'ca.crt', ca.certPem);
  return {
    agentConfig: {
      tls: { cert: server.cert, key: server.key, ca: caFile },
      authorization: { grants: [{ principal: PRINCIPAL, permissions: ['admin'] }, { principal: 'local', permissions: ['admin'] }] },
    },
    serverFiles: server,
    client: { ca: ca.certPem, cert: client.cert, key: client.key, servername: 'localhost' },
    dispose: () => rmSync(dir, { recursive: true, force: true }),
  };
}
