/**
 * Authorization and the per-call pipeline, driven in process through
 * `inject` (no sockets, milliseconds per case): grants by principal,
 * permission and VF; refusals that leak nothing; the order of the steps;
 * and what observers (the audit log) see of each call.
 */
import test, { type ExecutionContext } from 'ava';
import { pino } from 'pino';
import { assembleAgent, type AgentApp } from '../agent/agent.ts';
import { resolveConfig } from '../agent/config.ts';
import type { CallRecord } from '../agent/rpc/pipeline.ts';
import type { PeerInfo } from '../agent/transport/peer.ts';
import type { Grant } from '../schemas/types.ts';
import { checkResponseShape, schemas } from './support/rpc-client.ts';

type Json = Record<string, unknown>;

const HOST = 'spiffe://dc1/host/hv-17';
const OTHER_HOST = 'spiffe://dc1/host/hv-99';

async function app(t: ExecutionContext, grants?: readonly Grant[]): Promise<{ app: AgentApp; records: CallRecord[] }> {
  const records: CallRecord[] = [];
  const config = resolveConfig({
    ...(grants === undefined ? {} : { authorization: { grants: [...grants] } }),
    drivers: [{ driver: 'blob-bench', options: { vfCount: 3, stateBytes: 4096, p2p: true } }],
  }, {});
  const agent = await assembleAgent(config, pino({ level: 'silent' }), { schemas: schemas(), observers: [{ observe: (r) => records.push(r) }] });
  t.teardown(() => agent.close());
  return { app: agent, records };
}

function tlsPeer(principal: string): Partial<PeerInfo> {
  return { transport: 'tls', listener: 'tls://0.0.0.0:7701', remote: '192.0.2.17:50000', principal, authentication: 'mtls' };
}

let nextId = 1;
async function call(agent: AgentApp, method: string, params: Json | undefined, peer?: Partial<PeerInfo>): Promise<Json> {
  const id = nextId++;
  const response = await agent.inject({ jsonrpc: '2.0', method, ...(params === undefined ? {} : { params }), id }, peer) as Json;
  checkResponseShape(response, method);
  return response;
}

const unauthorized = { error: { code: -33012, message: 'Unauthorized', data: { code: 'UNAUTHORIZED' } } };

test('with no authorization config, the local caller may do everything and a certificate principal nothing', async (t) => {
  const { app: agent } = await app(t);
  t.like(await call(agent, 'vf.quiesce', { vf: 'blob0' }), { result: { state: 'STOP' } });
  t.like(await call(agent, 'vf.reset', { vf: 'blob0' }), { result: { state: 'RUNNING' } });
  t.like(await call(agent, 'rpc.discover', undefined, tlsPeer(HOST)), unauthorized);
  t.like(await call(agent, 'vf.list', undefined, tlsPeer(HOST)), unauthorized);
});

test('a read-only principal reads but cannot quiesce; the refusal names the permission and leaves the VF as it was', async (t) => {
  const { app: agent } = await app(t, [{ principal: HOST, permissions: ['read'] }]);
  t.like(await call(agent, 'vf.getState', { vf: 'blob0' }, tlsPeer(HOST)), { result: { state: 'RUNNING' } });
  const refused = await call(agent, 'vf.quiesce', { vf: 'blob0' }, tlsPeer(HOST));
  t.like(refused, { ...unauthorized, error: { ...unauthorized.error, data: { code: 'UNAUTHORIZED', permission: 'migrate' } } });
  t.regex(((refused.error as Json).data as Json).detail as string, /spiffe:\/\/dc1\/host\/hv-17.*"migrate".*blob0/);
  t.like(await call(agent, 'vf.getState', { vf: 'blob0' }, tlsPeer(HOST)), { result: { state: 'RUNNING' } });
});

test('a principal granted one VF cannot touch another, and cannot tell an unknown VF from a forbidden one', async (t) => {
  const { app: agent } = await app(t, [{ principal: HOST, permissions: ['read', 'migrate'], vfs: ['blob1'] }]);
  t.like(await call(agent, 'vf.quiesce', { vf: 'blob1' }, tlsPeer(HOST)), { result: { state: 'STOP' } });
  const forbidden = await call(agent, 'vf.get', { vf: 'blob0' }, tlsPeer(HOST));
  const unknown = await call(agent, 'vf.get', { vf: 'blob7' }, tlsPeer(HOST));
  t.like(forbidden, unauthorized);
  t.like(unknown, unauthorized);
  const detail = (r: Json): string => ((r.error as Json).data as Json).detail as string;
  t.is(detail(forbidden).replace('blob0', 'X'), detail(unknown).replace('blob7', 'X'), 'the same words for both');
  // vf.list shows only what the caller may read.
  const list = await call(agent, 'vf.list', undefined, tlsPeer(HOST));
  t.deepEqual(((list.result as Json).vfs as Json[]).map((v) => v.id), ['blob1']);
});

test('grants match principals and VFs by glob, by id or BDF, and a BDF in any case names the same VF', async (t) => {
  const { app: agent } = await app(t, [{ principal: 'spiffe://dc1/host/*', permissions: ['read'], vfs: ['0000:5e:00.*'] }, { principal: HOST, permissions: ['migrate'], vfs: ['blob2'] }]);
  const list = await call(agent, 'vf.list', undefined, tlsPeer(OTHER_HOST));
  t.is(((list.result as Json).vfs as Json[]).length, 3);
  const bdf = (((list.result as Json).vfs as Json[])[2] as Json).bdf as string;
  t.like(await call(agent, 'vf.quiesce', { vf: bdf.toUpperCase() }, tlsPeer(HOST)), { result: { vf: 'blob2', state: 'STOP' } });
  t.like(await call(agent, 'vf.quiesce', { vf: 'blob2' }, tlsPeer(OTHER_HOST)), unauthorized);
  t.like(await call(agent, 'vf.list', undefined, tlsPeer('spiffe://dc2/host/hv-17')), unauthorized, 'the glob is anchored');
});

test('admin holds every permission; local loses everything once a policy is configured that does not grant it', async (t) => {
  const { app: agent } = await app(t, [{ principal: 'ops-*', permissions: ['admin'] }]);
  t.like(await call(agent, 'vf.reset', { vf: 'blob0' }, tlsPeer('ops-alice')), { result: { state: 'RUNNING' } });
  t.like(await call(agent, 'vf.list', undefined), unauthorized);
});

test('authorization comes before params: a caller learns nothing from the validation of a call it may not make', async (t) => {
  const { app: agent } = await app(t, [{ principal: HOST, permissions: ['read'] }]);
  t.like(await call(agent, 'vf.quiesce', { vf: 'blob0', timeoutMs: 'soon' }, tlsPeer(HOST)), unauthorized);
  t.like(await call(agent, 'vf.getState', { vf: 'blob0', extra: 1 }, tlsPeer(HOST)), { error: { code: -32602 } });
});

test('observers see every call once, refused or not, with its outcome and no params', async (t) => {
  const { app: agent, records } = await app(t, [{ principal: HOST, permissions: ['read', 'migrate'], vfs: ['blob0'] }]);
  await call(agent, 'vf.quiesce', { vf: 'blob0' }, tlsPeer(HOST));
  await call(agent, 'vf.quiesce', { vf: 'blob1' }, tlsPeer(HOST));
  await call(agent, 'vf.setState', { vf: 'blob0', state: 'PRE_COPY' }, tlsPeer(HOST));
  t.deepEqual(records.map((r) => [r.method, r.vf, r.outcome, r.error, r.peer.principal]), [
    ['vf.quiesce', 'blob0', 'ok', undefined, HOST],
    ['vf.quiesce', 'blob1', 'refused', 'UNAUTHORIZED', HOST],
    ['vf.setState', 'blob0', 'failed', 'ILLEGAL_TRANSITION', HOST],
  ]);
  for (const r of records) {
    t.true(r.durationMs >= 0);
    t.false('params' in r);
  }
});

test('ids come back exactly as sent or are refused: huge integers, 1e400 and over-long fractions are refused, 1.5 and nested ids are not confused', async (t) => {
  const { app: agent } = await app(t);
  const raw = (text: string): Promise<unknown> => agent.inject(text);
  for (const id of ['1e400', '18446744073709551617', '9007199254740993', '0.10000000000000000001', '-1e400']) {
    const r = await raw(`{"jsonrpc":"2.0","method":"vf.list","id":${id}}`) as Json;
    t.like(r, { id: null, error: { code: -32600, data: { code: 'INVALID_REQUEST' } } }, `id ${id}`);
  }
  for (const id of ['1.5', '-0.25', '9007199254740991', '0']) {
    const r = await raw(`{"jsonrpc":"2.0","method":"vf.list","id":${id}}`) as Json;
    t.is(r.id, JSON.parse(id), `id ${id}`);
  }
  // A fractional id beside an over-long one in a batch: each judged by its own text.
  const batch = await raw('[{"jsonrpc":"2.0","method":"vf.getState","params":{"vf":"blob0"},"id":2.5},{"jsonrpc":"2.0","method":"vf.list","id":0.10000000000000000001}]') as Json[];
  t.deepEqual(batch.map((r) => [r.id, (r.error as Json | undefined)?.code ?? 'ok']).sort((a, b) => String(a[0]).localeCompare(String(b[0]))), [[2.5, 'ok'], [null, -32600]]);
});

test('the in-process harness answers protocol cases without a socket', async (t) => {
  const { app: agent } = await app(t);
  t.like(await agent.inject('{"jsonrpc":"2.0","method":"vf.list","id":1'), { id: null, error: { code: -32700 } });
  t.like(await agent.inject('[]'), { id: null, error: { code: -32600 } });
  t.is(await agent.inject('{"jsonrpc":"2.0","method":"vf.list"}'), undefined, 'a notification gets nothing');
  t.like(await agent.inject('{"jsonrpc":"2.0","method":"no.such","id":"x"}'), { id: 'x', error: { code: -32601 } });
});

test('session ownership: a migration belongs to the principal that began it, on any connection; another is refused unless admin', async (t) => {
  const grants: Grant[] = [
    { principal: 'spiffe://dc1/host/*', permissions: ['read', 'migrate', 'reset'] },
    { principal: 'ops-alice', permissions: ['admin'] },
  ];
  const { app: agent, records } = await app(t, grants);
  const owner = tlsPeer(HOST);
  t.like(await call(agent, 'vf.quiesce', { vf: 'blob0' }, owner), { result: { state: 'STOP' } });
  const slice = await call(agent, 'vf.save', { vf: 'blob0', maxBytes: 100 }, owner);
  t.like(slice, { result: { offset: 0, length: 100 } });
  const session = (slice.result as Json).session as string;
  t.like(await call(agent, 'vf.get', { vf: 'blob0' }, owner), { result: { session: { id: session, kind: 'save', owner: HOST, phase: 'stop-copy', bytes: 100 } } });

  // Another host, granted migrate and reset, may neither go on nor cancel nor reset.
  const intruder = tlsPeer(OTHER_HOST);
  for (const [method, params] of [['vf.save', { vf: 'blob0' }], ['vf.resume', { vf: 'blob0' }], ['vf.setState', { vf: 'blob0', state: 'RUNNING' }], ['vf.reset', { vf: 'blob0' }], ['vf.load', { vf: 'blob0', offset: 0, data: '' }]] as const) {
    const refused = await call(agent, method, params, intruder);
    t.like(refused, { error: { code: -33013, data: { code: 'NOT_SESSION_OWNER', state: 'STOP_COPY' } } }, method);
  }
  t.like(await call(agent, 'vf.getState', { vf: 'blob0' }, intruder), { result: { state: 'STOP_COPY' } }, 'reads are not refused');
  t.like(await call(agent, 'vf.pending', { vf: 'blob0' }, intruder), { result: { pendingBytes: ((slice.result as Json).totalBytes as number) - 100 } }, 'and the stream did not move');

  // The owner, on a new connection (it reconnected), goes on where it was, in the same session.
  t.like(await call(agent, 'vf.save', { vf: 'blob0', maxBytes: 100, session }, { ...owner, connectionId: 42, remote: '192.0.2.17:50001' }), { result: { offset: 100, session } });
  t.like(await call(agent, 'vf.save', { vf: 'blob0', maxBytes: 100, session: '00000000-0000-4000-8000-000000000000' }, owner), { error: { code: -33014, data: { code: 'SESSION_UNKNOWN', session, state: 'STOP_COPY' } } });
  // An admin may act on it: a reset ends the migration, and the VF belongs to nobody.
  t.like(await call(agent, 'vf.reset', { vf: 'blob0' }, tlsPeer('ops-alice')), { result: { state: 'RUNNING' } });
  t.like(await call(agent, 'vf.quiesce', { vf: 'blob0' }, intruder), { result: { state: 'STOP' } }, 'now anyone granted migrate may begin one');
  t.like(await call(agent, 'vf.resume', { vf: 'blob0' }, intruder), { result: { state: 'RUNNING' } });
  t.true(records.some((r) => r.outcome === 'refused' && r.error === 'NOT_SESSION_OWNER' && r.peer.principal === OTHER_HOST));
});

test('session ownership on the destination: loading into a VF makes it the loader\'s until it runs', async (t) => {
  const { app: agent } = await app(t, [{ principal: 'spiffe://dc1/host/*', permissions: ['read', 'migrate'] }]);
  const source = await call(agent, 'vf.save', { vf: 'blob1', maxBytes: 1 << 20 }, tlsPeer(HOST));
  t.like(source, { error: { data: { code: 'NO_SAVE_STREAM' } } }, 'a running VF has no save stream (and a refusal takes no ownership)');
  t.like(await call(agent, 'vf.setState', { vf: 'blob1', state: 'STOP' }, tlsPeer(HOST)), { result: { state: 'STOP' } });
  t.like(await call(agent, 'vf.load', { vf: 'blob1', offset: 0, data: 'AAAA' }, tlsPeer(HOST)), { result: { state: 'RESUMING' } });
  t.like(await call(agent, 'vf.load', { vf: 'blob1', offset: 3, data: 'AAAA' }, tlsPeer(OTHER_HOST)), { error: { data: { code: 'NOT_SESSION_OWNER', state: 'RESUMING' } } });
});
