/**
 * Pushed events (events.subscribe) from a real agent over real sockets:
 * the notifications of a save and of a load, in order and schema-checked
 * (the test client checks every notification against schemas/events/);
 * a subscriber that sees only the VFs it may read; one subscription per
 * connection, ended by events.unsubscribe; and a subscriber that stops
 * reading, dropped with a final notice while the agent serves on.
 */
import test from 'ava';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startAgentProcess, tempDir, type AgentProcess } from './support/agent-process.ts';
import { makePluginPki, PLUGIN_PRINCIPAL, type PluginPki } from './support/plugin-tls.ts';
import { base64Of, RpcClient, type Notification } from './support/rpc-client.ts';

let pki: PluginPki;
let agent: AgentProcess;
const socketDir = tempDir();
const socketPath = join(socketDir, 'agent.sock');

test.before(async () => {
  pki = await makePluginPki();
  agent = await startAgentProcess({
    config: {
      listen: ['tls://127.0.0.1:0', 'tcp://127.0.0.1:0', `unix:${socketPath}`],
      tls: { cert: pki.agent.cert, key: pki.agent.key, ca: pki.ca },
      // The plugin's principal may read nvme1 only; local callers (the test's TCP client) may do anything.
      authorization: { grants: [{ principal: PLUGIN_PRINCIPAL, permissions: ['read'], vfs: ['nvme1'] }, { principal: 'local', permissions: ['admin'] }] },
      // The least unsent limit: a subscriber that does not read is behind after 32 KiB (and what a Unix socket holds).
      limits: { maxQueuedEvents: 16, maxUnsentBytesPerConnection: 65536 },
      drivers: [{ driver: 'nvme-emu', options: { vfCount: 3, namespaceBytes: 1 << 20 } }],
    },
  });
});
test.after.always(async () => {
  await agent?.stop();
  pki?.remove();
  rmSync(socketDir, { recursive: true, force: true });
});

const local = (): Promise<RpcClient> => RpcClient.connect({ host: '127.0.0.1', port: agent.tcp.port });

function line(n: Notification): string {
  const p = n.params;
  switch (n.method) {
    case 'vf.stateChanged': return `${String(p.vf)} ${String(p.from)}→${String(p.to)}`;
    case 'session.progress': return `${String(p.vf)} progress ${String(p.kind)} ${String(p.bytes)}`;
    case 'session.ended': return `${String(p.vf)} ended ${String(p.kind)} ${String(p.outcome)}`;
    default: return `${String(p.vf)} ${n.method}`;
  }
}

test.serial('a save and a load, as notifications in order: every state entered, the bytes, each session\'s end with its downtime', async (t) => {
  const watcher = await local();
  const actor = await local();
  t.teardown(() => { watcher.destroy(); actor.destroy(); });
  const subscribed = await watcher.call('events.subscribe', { vfs: ['nvme0'] });
  t.deepEqual(subscribed.vfs, ['nvme0']);
  t.is(subscribed.maxQueued, 16);
  t.is(subscribed.topics.length, 5, 'every topic by default');

  await actor.call('vf.quiesce', { vf: 'nvme0' });
  const chunks: string[] = [];
  let offset = 0;
  let session: string | undefined;
  for (;;) {
    const slice = await actor.call('vf.save', { vf: 'nvme0', offset, maxBytes: 4096, ...(session === undefined ? {} : { session }) });
    session = slice.session;
    chunks.push(base64Of(slice.data));
    offset += slice.length;
    if (slice.eof) break;
  }
  await actor.call('vf.setState', { vf: 'nvme0', state: 'STOP', session });
  // The same VF takes its own state back: a resume, then RUNNING.
  const state = Buffer.concat(chunks.map((c) => Buffer.from(c, 'base64')));
  const loaded = await actor.call('vf.load', { vf: 'nvme0', offset: 0, data: state.toString('base64') });
  await actor.call('vf.resume', { vf: 'nvme0', session: loaded.session });
  await actor.call('vf.quiesce', { vf: 'nvme1' });
  await actor.call('vf.resume', { vf: 'nvme1' });
  await watcher.nextNotification((n) => n.method === 'vf.stateChanged' && n.params.to === 'RUNNING');

  const saves = Math.ceil(offset / 4096);
  t.deepEqual(watcher.notifications.map(line), [
    'nvme0 RUNNING→RUNNING_P2P', 'nvme0 RUNNING_P2P→STOP', 'nvme0 STOP→STOP_COPY',
    ...Array.from({ length: saves }, (_, i) => `nvme0 progress save ${Math.min((i + 1) * 4096, offset)}`),
    'nvme0 ended save completed', 'nvme0 STOP_COPY→STOP',
    'nvme0 STOP→RESUMING', `nvme0 progress resume ${offset}`, 'nvme0 ended resume completed', 'nvme0 RESUMING→STOP',
    'nvme0 STOP→RUNNING_P2P', 'nvme0 RUNNING_P2P→RUNNING',
  ], 'nothing of nvme1, which was not asked for');
  for (const ended of watcher.notifications.filter((n) => n.method === 'session.ended')) {
    t.true(typeof ended.params.downtimeMs === 'number' && ended.params.downtimeMs >= 0, JSON.stringify(ended.params));
  }
  t.deepEqual(await watcher.call('events.unsubscribe', {}), { unsubscribed: true });
  t.deepEqual(await watcher.call('events.unsubscribe', {}), { unsubscribed: false });
});

test.serial('a subscriber sees only the VFs it may read; naming another is VF_UNKNOWN, as for vf.get', async (t) => {
  const tls = { ca: readFileSync(pki.ca), cert: readFileSync(pki.plugin.cert), key: readFileSync(pki.plugin.key), servername: 'localhost' };
  const host = await RpcClient.connect({ host: '127.0.0.1', port: agent.tls?.port ?? 0, tls });
  const actor = await local();
  t.teardown(() => { host.destroy(); actor.destroy(); });
  t.is((await host.callError('events.subscribe', { vfs: ['nvme0'] })).data?.code, 'VF_UNKNOWN');
  const subscribed = await host.call('events.subscribe', { topics: ['vf.stateChanged'] });
  t.deepEqual(subscribed.vfs, ['nvme1']);
  await actor.call('vf.quiesce', { vf: 'nvme0' });
  await actor.call('vf.quiesce', { vf: 'nvme1' });
  await actor.call('vf.resume', { vf: 'nvme0' });
  await actor.call('vf.resume', { vf: 'nvme1' });
  await host.nextNotification((n) => n.params.to === 'RUNNING');
  t.true(host.notifications.every((n) => n.params.vf === 'nvme1'), host.notifications.map(line).join('; '));
});

test.serial('a subscriber that stops reading is dropped with one last notice, and the agent serves on meanwhile', async (t) => {
  const sleeper = await RpcClient.connect({ path: socketPath });
  const actor = await local();
  const reader = await local();
  t.teardown(() => { sleeper.destroy(); actor.destroy(); reader.destroy(); });
  const { subscription } = await sleeper.call('events.subscribe', { vfs: ['nvme2'], topics: ['session.progress'] });
  sleeper.pause();
  let dropped = false;
  void agent.waitForLog('slow events subscriber dropped', 60_000).then(() => { dropped = true; });
  // One byte per slice: a notification per call, until the sleeper is behind and 16 more wait.
  await actor.call('vf.quiesce', { vf: 'nvme2' });
  let offset = 0;
  let session: string | undefined;
  for (let calls = 1; !dropped; calls += 1) {
    const slice = await actor.call('vf.save', { vf: 'nvme2', offset, maxBytes: 1, ...(session === undefined ? {} : { session }) });
    ({ session } = slice);
    offset += slice.length;
    if (slice.eof) {
      await actor.call('vf.setState', { vf: 'nvme2', state: 'STOP', session });
      [offset, session] = [0, undefined];
    }
    // The agent answers others all along.
    if (calls % 500 === 0) t.is((await reader.call('vf.getState', { vf: 'nvme0' })).state, 'RUNNING');
  }
  sleeper.resume();
  const notice = await sleeper.nextNotification((n) => n.method === 'events.dropped', 30_000);
  t.like(notice.params, { subscription, discarded: 17 });
  t.is(sleeper.notifications.at(-1)?.method, 'events.dropped', 'nothing after the notice');
  t.true(sleeper.notifications.length > 100, `${sleeper.notifications.length} notifications came first`);
  await actor.call('vf.reset', { vf: 'nvme2' });
});
