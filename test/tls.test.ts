/**
 * Mutual TLS against a real agent process, with a real PKI made at test
 * time: who gets in (a certificate chaining to the CA, valid now, not
 * revoked), what principal it is, what every refusal looks like on the
 * wire and in the audit log, and SIGHUP reloads with a connection open.
 */
import test, { type ExecutionContext } from 'ava';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import type { Config } from '../schemas/types.ts';
import { startAgentProcess, tempDir, type AgentProcess } from './support/agent-process.ts';
import { TestCa, writePem, writeText, type IssuedCertificate, type PemFiles } from './support/pki.ts';
import { base64Of, RpcClient } from './support/rpc-client.ts';

type Json = Record<string, unknown>;

const HOST = 'spiffe://dc1/host/hv-17';

interface Pki {
  readonly ca: TestCa;
  readonly other: TestCa;
  readonly agent: IssuedCertificate;
  readonly client: IssuedCertificate;
}

let pkiPromise: Promise<Pki> | undefined;
/** One PKI for the file: key generation is the slow part. */
function pki(): Promise<Pki> {
  pkiPromise ??= (async () => {
    const ca = await TestCa.create('vfmigd test CA');
    const other = await TestCa.create('another CA');
    return {
      ca,
      other,
      agent: await ca.issue({ cn: 'dpu-7 agent', dns: ['localhost'], ips: ['127.0.0.1'], usage: 'server' }),
      client: await ca.issue({ cn: 'hv-17', uris: [HOST], usage: 'client' }),
    };
  })();
  return pkiPromise;
}

interface TlsAgent {
  readonly agent: AgentProcess;
  readonly dir: string;
  readonly files: { agent: PemFiles; ca: string; crl: string };
  connect(client: IssuedCertificate | undefined, extra?: ConnectionOptions): Promise<RpcClient>;
  /** Log events marked as audit events. */
  audit(): Json[];
}

async function startTlsAgent(t: ExecutionContext, config: Partial<Config> = {}, revoked: readonly string[] = []): Promise<TlsAgent> {
  const { ca, agent: agentCert } = await pki();
  const dir = tempDir('vfmigd-tls-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const files = { agent: writePem(dir, 'agent', agentCert), ca: writeText(dir, 'ca.crt', ca.certPem), crl: writeText(dir, 'ca.crl', await ca.crl(revoked)) };
  const agent = await startAgentProcess({
    config: {
      listen: ['tls://127.0.0.1:0', 'tcp://127.0.0.1:0'],
      tls: { cert: files.agent.cert, key: files.agent.key, ca: files.ca, crl: files.crl },
      authorization: { grants: [{ principal: HOST, permissions: ['read', 'migrate'] }, { principal: 'local', permissions: ['read'] }] },
      drivers: [{ driver: 'blob-bench', options: { vfCount: 2, stateBytes: 4096 } }],
      ...config,
    },
  });
  t.teardown(async () => { await agent.stop(); });
  const address = agent.tls;
  if (address === undefined) throw new Error('the agent reported no tls:// listener');
  return {
    agent,
    dir,
    files,
    connect: async (client, extra = {}) => {
      const c = await RpcClient.connect({ ...address, tls: { ca: ca.certPem, servername: 'localhost', ...(client === undefined ? {} : { cert: client.cert, key: client.key }), ...extra } });
      t.teardown(() => c.destroy());
      return c;
    },
    audit: () => agent.logs.map((l) => { try { return JSON.parse(l) as Json; } catch { return {}; } }).filter((e) => e.audit === true),
  };
}

/** Resolves once `predicate` holds for one of the agent's audit events from the `from`th on (the log arrives asynchronously). */
async function auditEvent(agent: TlsAgent, predicate: (e: Json) => boolean, what: string, from = 0): Promise<Json> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const found = agent.audit().slice(from).find(predicate);
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`no audit event for ${what}; audit events: ${JSON.stringify(agent.audit())}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Connects with `client` and resolves to whether a request got any answer before the connection closed. */
async function refusedBeforeAnyRequest(t: ExecutionContext, agent: TlsAgent, client: IssuedCertificate | undefined, extra: ConnectionOptions = {}): Promise<void> {
  const { ca } = await pki();
  const address = agent.agent.tls ?? { host: '127.0.0.1', port: 0 };
  const answer = await new Promise<string>((resolve) => {
    const socket = tlsConnect({ ...address, ca: ca.certPem, servername: 'localhost', ...(client === undefined ? {} : { cert: client.cert, key: client.key }), ...extra });
    let received = '';
    socket.on('secureConnect', () => socket.write('{"jsonrpc":"2.0","method":"vf.list","id":1}\n'));
    socket.on('data', (d: Buffer) => { received += d.toString(); });
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(received));
  });
  t.is(answer, '', 'no byte of a response reached a refused client');
}

test('a client certificate of the CA gets in; its principal is its first URI SAN, and its calls are audited under it', async (t) => {
  const agent = await startTlsAgent(t);
  const c = await agent.connect((await pki()).client);
  t.like(await c.call('vf.quiesce', { vf: 'blob0' }), { state: 'STOP' });
  const event = await auditEvent(agent, (e) => e.method === 'vf.quiesce', 'vf.quiesce');
  t.like(event, { event: 'call', principal: HOST, authentication: 'mtls', listener: `tls://127.0.0.1:${agent.agent.tls?.port}`, vf: 'blob0', outcome: 'ok', code: null });
  t.regex(event.peer as string, /^127\.0\.0\.1:\d+$/);
  t.is(typeof event.durationMs, 'number');
});

test('over mutual TLS: a read-only principal cannot quiesce, one granted a VF cannot touch another, a second principal cannot interfere with a migration, and the owner reconnects and goes on', async (t) => {
  const { ca, client } = await pki();
  const reader = await ca.issue({ cn: 'ro', uris: ['spiffe://dc1/host/ro'], usage: 'client' });
  const other = await ca.issue({ cn: 'hv-99', uris: ['spiffe://dc1/host/hv-99'], usage: 'client' });
  const agent = await startTlsAgent(t, {
    authorization: {
      grants: [
        { principal: HOST, permissions: ['read', 'migrate'], vfs: ['blob0'] },
        { principal: 'spiffe://dc1/host/ro', permissions: ['read'] },
        { principal: 'spiffe://dc1/host/hv-99', permissions: ['read', 'migrate', 'reset'] },
      ],
    },
  });
  const ro = await agent.connect(reader);
  t.like(await ro.callError('vf.quiesce', { vf: 'blob0' }), { code: -33012, data: { code: 'UNAUTHORIZED', permission: 'migrate' } });
  t.is((await ro.call('vf.getState', { vf: 'blob0' })).state, 'RUNNING', 'the refusal changed nothing');

  const owner = await agent.connect(client);
  t.like(await owner.callError('vf.quiesce', { vf: 'blob1' }), { data: { code: 'UNAUTHORIZED' } });
  t.deepEqual((await owner.call('vf.list', {})).vfs.map((v) => v.id), ['blob0'], 'vf.list shows only the VFs it may read');
  t.is((await owner.call('vf.quiesce', { vf: 'blob0' })).state, 'STOP');
  const first = await owner.call('vf.save', { vf: 'blob0', maxBytes: 100 });
  t.is(first.offset, 0);

  const intruder = await agent.connect(other);
  for (const [method, params] of [['vf.save', { vf: 'blob0' }], ['vf.resume', { vf: 'blob0' }], ['vf.reset', { vf: 'blob0' }]] as const) {
    t.like(await intruder.callError(method, params), { code: -33013, data: { code: 'NOT_SESSION_OWNER', state: 'STOP_COPY' } }, method);
  }

  // The owner's connection is cut; it reconnects with the same certificate and goes on where it was.
  owner.destroy();
  const again = await agent.connect(client);
  const next = await again.call('vf.save', { vf: 'blob0', maxBytes: 100 });
  t.is(next.offset, 100);
  t.is((await again.call('vf.resume', { vf: 'blob0' })).state, 'RUNNING');
  const refusal = await auditEvent(agent, (e) => e.code === 'NOT_SESSION_OWNER', 'the ownership refusal');
  t.like(refusal, { principal: 'spiffe://dc1/host/hv-99', outcome: 'refused', vf: 'blob0' });
});

test('with no URI SAN the principal is the subject CN', async (t) => {
  const { ca } = await pki();
  const agent = await startTlsAgent(t, { authorization: { grants: [{ principal: 'ops-console', permissions: ['read'] }] } });
  const c = await agent.connect(await ca.issue({ cn: 'ops-console', usage: 'client' }));
  t.is((await c.call('vf.list', {})).vfs.length, 2);
});

test('refused at the handshake, before any request: no certificate, another CA, expired, not yet valid, revoked; each audited with its reason', async (t) => {
  const { ca, other } = await pki();
  const revoked = await ca.issue({ cn: 'stolen', uris: [HOST], usage: 'client' });
  const agent = await startTlsAgent(t, {}, [revoked.serial]);
  const cases: [string, IssuedCertificate | undefined, RegExp][] = [
    ['no certificate', undefined, /no client certificate/],
    ['another CA', await other.issue({ cn: 'intruder', uris: [HOST], usage: 'client' }), /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT/],
    ['expired', await ca.issue({ cn: 'old', uris: [HOST], notBeforeDays: -30, notAfterDays: -1, usage: 'client' }), /CERT_HAS_EXPIRED/],
    ['not yet valid', await ca.issue({ cn: 'early', uris: [HOST], notBeforeDays: 2, notAfterDays: 30, usage: 'client' }), /CERT_NOT_YET_VALID/],
    ['revoked', revoked, /CERT_REVOKED/],
  ];
  for (const [name, cert, reason] of cases) {
    const before = agent.audit().length;
    await refusedBeforeAnyRequest(t, agent, cert);
    const event = await auditEvent(agent, (e) => e.event === 'connection', name, before);
    t.like(event, { outcome: 'refused', kind: 'authentication' }, name);
    t.regex(event.reason as string, reason, name);
  }
  t.false(agent.audit().some((e) => e.event === 'call'), 'no call was made');
});

test('a certificate claiming the local principal is refused: it can never pass for a local caller', async (t) => {
  const { ca } = await pki();
  const agent = await startTlsAgent(t);
  await refusedBeforeAnyRequest(t, agent, await ca.issue({ cn: 'local', usage: 'client' }));
  t.regex((await auditEvent(agent, (e) => e.event === 'connection', 'reserved principal')).reason as string, /reserved principal "local"/);
});

test('plain TCP spoken to a TLS port gets nothing and is audited; TLS 1.2 is refused unless configured', async (t) => {
  const { client } = await pki();
  const agent = await startTlsAgent(t);
  const address = agent.agent.tls ?? { host: '127.0.0.1', port: 0 };
  const plain = await new Promise<string>((resolve) => {
    const socket = netConnect(address.port, address.host, () => socket.write('{"jsonrpc":"2.0","method":"vf.list","id":1}\n'));
    let received = '';
    socket.on('data', (d: Buffer) => { received += d.toString('latin1'); });
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(received));
  });
  t.false(plain.includes('jsonrpc'), 'no JSON-RPC answer to plain text');
  t.regex((await auditEvent(agent, (e) => e.event === 'connection', 'plain TCP')).reason as string, /TLS handshake failed/);
  await refusedBeforeAnyRequest(t, agent, client, { maxVersion: 'TLSv1.2' });

  const lenient = await startTlsAgent(t, { tls: { ...(await startTlsFiles(t)), minVersion: 'TLSv1.2' } });
  const c = await lenient.connect(client, { maxVersion: 'TLSv1.2' });
  t.is((await c.call('vf.list', {})).vfs.length, 2);
});

/** A second set of credential files for an agent whose tls section a test writes itself. */
async function startTlsFiles(t: ExecutionContext): Promise<{ cert: string; key: string; ca: string }> {
  const { ca, agent } = await pki();
  const dir = tempDir('vfmigd-tls-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const files = writePem(dir, 'agent', agent);
  return { ...files, ca: writeText(dir, 'ca.crt', ca.certPem) };
}

test('a TLS handshake that never starts is cut at the handshake deadline', async (t) => {
  const agent = await startTlsAgent(t, { tls: { ...(await startTlsFiles(t)), handshakeTimeoutMs: 200 } });
  const address = agent.agent.tls ?? { host: '127.0.0.1', port: 0 };
  const closed = await new Promise<boolean>((resolve) => {
    const socket = netConnect(address.port, address.host);
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(true));
  });
  t.true(closed);
  t.regex((await auditEvent(agent, (e) => e.event === 'connection', 'handshake timeout')).reason as string, /TLS handshake failed/);
});

test('SIGHUP reloads certificate, CRL and CA for new connections; an open connection goes on; a failed reload keeps the old credentials', async (t) => {
  const { ca, client } = await pki();
  const second = await ca.issue({ cn: 'hv-18', uris: ['spiffe://dc1/host/hv-18'], usage: 'client' });
  const agent = await startTlsAgent(t, { authorization: { grants: [{ principal: 'spiffe://dc1/host/*', permissions: ['read'] }] } });
  const open = await agent.connect(client);
  t.is((await open.call('vf.list', {})).vfs.length, 2);
  const serialOf = async (): Promise<string> => new Promise((resolve, reject) => {
    const address = agent.agent.tls ?? { host: '127.0.0.1', port: 0 };
    const socket = tlsConnect({ ...address, ca: ca.certPem, servername: 'localhost', cert: client.cert, key: client.key }, () => {
      resolve(socket.getPeerCertificate().serialNumber);
      socket.destroy();
    });
    socket.on('error', reject);
  });
  const firstSerial = await serialOf();

  // Rotate the agent's certificate and revoke the second client.
  const rotated = await ca.issue({ cn: 'dpu-7 agent', dns: ['localhost'], ips: ['127.0.0.1'], usage: 'server' });
  writePem(agent.dir, 'agent', rotated);
  writeFileSync(agent.files.crl, await ca.crl([second.serial]));
  agent.agent.process.kill('SIGHUP');
  await agent.agent.waitForLog('TLS credentials reloaded');
  t.not(await serialOf(), firstSerial, 'new connections see the rotated certificate');
  t.is(rotated.serial.toLowerCase().replace(/^0+/, ''), (await serialOf()).toLowerCase().replace(/^0+/, ''));
  await refusedBeforeAnyRequest(t, agent, second);
  t.is((await open.call('vf.list', {})).vfs.length, 2, 'the connection open across the reload still works');

  // A broken key: the reload fails, says why without the key, and the rotated credentials stay.
  writeFileSync(agent.files.agent.key, '-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n');
  agent.agent.process.kill('SIGHUP');
  const failure = await agent.agent.waitForLog('TLS reload failed; the credentials in use stay');
  t.regex(failure.err as string, /unusable/);
  t.false(JSON.stringify(failure).includes('not a key'), 'no key material in the log');
  const after = await agent.connect(client);
  t.is((await after.call('vf.list', {})).vfs.length, 2, 'new connections still get in');
});


test('the agent refuses to start with plain TCP beyond loopback, unless insecure is set, and then warns', async (t) => {
  const error = await t.throwsAsync(startAgentProcess({ config: { listen: ['tcp://0.0.0.0:0'], drivers: [{ driver: 'blob-bench' }] } }));
  t.regex(error?.message ?? '', /refusing to listen on tcp:\/\/0\.0\.0\.0:0: plain TCP beyond loopback/);
  const agent = await startAgentProcess({ config: { listen: ['tcp://0.0.0.0:0'], insecure: true, drivers: [{ driver: 'blob-bench' }] } });
  t.teardown(async () => { await agent.stop(); });
  t.true(agent.logs.some((l) => l.includes('INSECURE: plain TCP beyond loopback')));
  // Nobody is granted anything there by default: the caller is anonymous.
  const c = await RpcClient.connect({ host: '127.0.0.1', port: agent.tcp.port });
  t.teardown(() => c.destroy());
  t.like(await c.callError('vf.list', {}), { data: { code: 'UNAUTHORIZED' } });
});

test('a tls:// listener without the tls section is a config error', async (t) => {
  const error = await t.throwsAsync(startAgentProcess({ config: { listen: ['tls://127.0.0.1:0'], drivers: [{ driver: 'blob-bench' }] } }));
  t.regex(error?.message ?? '', /needs the "tls" section/);
});

test('no payload, key or certificate material reaches any log, even at trace level; events are bound to the principal', async (t) => {
  const { ca, client, agent: agentCert, other } = await pki();
  const dir = tempDir('vfmigd-tls-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const auditLog = `${dir}/audit.jsonl`;
  const agent = await startTlsAgent(t, { logLevel: 'trace', auditLog, authorization: { grants: [{ principal: HOST, permissions: ['read', 'migrate'], vfs: ['blob0', 'blob1'] }] } });
  const c = await agent.connect(client);
  await c.call('vf.quiesce', { vf: 'blob0' });
  const slice = await c.call('vf.save', { vf: 'blob0', maxBytes: 1 << 20 });
  await c.call('vf.setState', { vf: 'blob1', state: 'STOP' });
  await c.call('vf.load', { vf: 'blob1', offset: 0, data: slice.data });
  await c.call('vf.resume', { vf: 'blob1' });
  await c.callError('vf.load', { vf: 'blob1', offset: 0, data: slice.data });
  await refusedBeforeAnyRequest(t, agent, await other.issue({ cn: 'x', usage: 'client' }));
  writeFileSync(agent.files.agent.key, `${agentCert.key.slice(0, 60)}garbage\n-----END PRIVATE KEY-----\n`);
  agent.agent.process.kill('SIGHUP');
  await agent.agent.waitForLog('TLS reload failed; the credentials in use stay');
  await agent.agent.stop();

  const everything = `${agent.agent.logs.join('\n')}\n${readFileSync(auditLog, 'utf8')}`;
  const pemLines = (pem: string): string[] => pem.split('\n').filter((l) => l.length >= 40 && !l.startsWith('-----'));
  const secrets: [string, string[]][] = [
    ['state payload', [base64Of(slice.data).slice(64, 128), base64Of(slice.data).slice(-64)]],
    ['agent key', pemLines(agentCert.key)],
    ['client key', pemLines(client.key)],
    ['agent certificate', pemLines(agentCert.cert)],
    ['client certificate', pemLines(client.cert)],
    ['CA certificate', pemLines(ca.certPem)],
  ];
  for (const [what, needles] of secrets) {
    t.true(needles.length > 0);
    for (const needle of needles) t.false(everything.includes(needle), `${what} in a log`);
  }
  const events = agent.agent.logs.map((l) => JSON.parse(l) as Json);
  const transitions = events.filter((e) => e.msg === 'state changed');
  t.true(transitions.length >= 3);
  for (const e of transitions) t.like(e, { principal: HOST, phase: 'transition' });
  // Audit events go to the main log and to the audit file alike.
  const audited = readFileSync(auditLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Json);
  t.deepEqual(audited.map((e) => [e.event, e.method ?? null, e.outcome]), [
    ['call', 'vf.quiesce', 'ok'],
    ['call', 'vf.save', 'ok'],
    ['call', 'vf.setState', 'ok'],
    ['call', 'vf.load', 'ok'],
    ['call', 'vf.resume', 'ok'],
    ['call', 'vf.load', 'failed'],
    ['connection', null, 'refused'],
  ]);
  t.is(events.filter((e) => e.audit === true).length, audited.length);
});
