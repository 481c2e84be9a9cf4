/**
 * Mutual TLS for the plugin's tests: one PKI per test file (a CA, the
 * agent's certificate with the loopback IP and `localhost` in its SAN, the
 * plugin's certificate whose URI SAN is its principal, and a second CA
 * with a certificate of its own for the refusals), the agent config that
 * serves it, and the plugin argument that uses it.
 */
import type { ExecutionContext } from 'ava';
import { rmSync } from 'node:fs';
import type { Config, NvmeEmuVf } from '../../schemas/types.ts';
import { tempDir, type AgentProcess } from './agent-process.ts';
import { startSide, type Side } from './migration-rig.ts';
import { TestCa, writePem, writeText, type PemFiles } from './pki.ts';

/** The principal the plugin's certificate proves (its first URI SAN). */
export const PLUGIN_PRINCIPAL = 'spiffe://dc1/host/hv-17';

export interface PluginPki {
  readonly dir: string;
  /** The CA that issued the agent's and the plugin's certificates. */
  readonly ca: string;
  /** Another CA, trusted by nobody here. */
  readonly otherCa: string;
  readonly agent: PemFiles;
  readonly plugin: PemFiles;
  /** A client certificate with the plugin's principal, issued by the other CA. */
  readonly outsider: PemFiles;
  /** Removes the files. */
  remove(): void;
}

/** Key generation is the slow part: a file makes one of these and shares it. */
export async function makePluginPki(): Promise<PluginPki> {
  const dir = tempDir('vfmigd-plugin-pki-');
  const ca = await TestCa.create('vfmigd plugin test CA');
  const other = await TestCa.create('another CA');
  return {
    dir,
    ca: writeText(dir, 'ca.crt', ca.certPem),
    otherCa: writeText(dir, 'other-ca.crt', other.certPem),
    agent: writePem(dir, 'agent', await ca.issue({ cn: 'dpu-7 agent', dns: ['localhost'], ips: ['127.0.0.1'], usage: 'server' })),
    plugin: writePem(dir, 'hv-17', await ca.issue({ cn: 'hv-17', uris: [PLUGIN_PRINCIPAL], usage: 'client' })),
    outsider: writePem(dir, 'outsider', await other.issue({ cn: 'outsider', uris: [PLUGIN_PRINCIPAL], usage: 'client' })),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * An agent's config for a TLS listener (first) and a loopback TCP one (for
 * the test's own calls and the guest's host port), with the grants the plugin
 * needs for its principal and `admin` for local callers.
 */
export function tlsAgentConfig(pki: PluginPki, drivers: Config['drivers']): Config {
  return {
    listen: ['tls://127.0.0.1:0', 'tcp://127.0.0.1:0'],
    tls: { cert: pki.agent.cert, key: pki.agent.key, ca: pki.ca },
    authorization: {
      grants: [
        { principal: PLUGIN_PRINCIPAL, permissions: ['read', 'migrate', 'reset'] },
        { principal: 'local', permissions: ['admin'] },
      ],
    },
    drivers,
  };
}

export interface TlsArgOptions {
  readonly timeoutMs?: number;
  /** The plugin's own certificate and key (default: the one the agent trusts). */
  readonly client?: PemFiles;
  /** The CA the plugin trusts (default: the agent's issuer). */
  readonly ca?: string;
  readonly servername?: string;
  /** Another port on 127.0.0.1 (a proxy, a silent server, nothing). */
  readonly port?: number;
}

/** `tls:127.0.0.1:PORT,ca=…,cert=…,key=…[,servername=…],timeout_ms=N` for an agent's TLS listener. */
export function tlsArg(agent: AgentProcess | undefined, pki: PluginPki, options: TlsArgOptions = {}): string {
  const port = options.port ?? agent?.tls?.port;
  if (port === undefined) throw new Error('the agent reported no tls:// listener');
  const client = options.client ?? pki.plugin;
  return [
    `tls:127.0.0.1:${port}`,
    `ca=${options.ca ?? pki.ca}`,
    `cert=${client.cert}`,
    `key=${client.key}`,
    ...(options.servername === undefined ? [] : [`servername=${options.servername}`]),
    `timeout_ms=${options.timeoutMs ?? 5000}`,
  ].join(',');
}

/** migration-rig's startSide with the agent also on mutual TLS. */
export function startTlsSide(t: ExecutionContext, pki: PluginPki, vfs: NvmeEmuVf[], serviceTimeUs = 2000): Promise<Side> {
  return startSide(t, vfs, serviceTimeUs, tlsAgentConfig(pki, []));
}
