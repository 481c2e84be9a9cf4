/**
 * What an operator relies on from the agent process itself: one JSON log
 * event per line, bound to connection, method, VF and migration phase,
 * never carrying a state payload; a clean stop on SIGTERM that leaves no
 * socket or lock file behind.
 */
import test from 'ava';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { startAgentProcess, tempDir } from './support/agent-process.ts';
import { base64Of, RpcClient } from './support/rpc-client.ts';

test('log events are JSON lines bound to connection, method, VF and phase, and carry no state payload', async (t) => {
  const agent = await startAgentProcess({ config: { drivers: [{ driver: 'blob-bench', options: { vfCount: 2, stateBytes: 4096 } }] } });
  t.teardown(async () => { await agent.stop(); });
  const rpc = await RpcClient.connect(agent.tcp);
  t.teardown(() => rpc.destroy());

  await rpc.call('vf.quiesce', { vf: 'blob0' });
  const slice = await rpc.call('vf.save', { vf: 'blob0', maxBytes: 1024 * 1024 });
  await rpc.call('vf.setState', { vf: 'blob1', state: 'STOP' });
  await rpc.call('vf.load', { vf: 'blob1', offset: 0, data: slice.data });
  await rpc.call('vf.resume', { vf: 'blob1' });
  await agent.stop();

  const events = agent.logs.filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.true(events.length > 0);
  for (const e of events) {
    t.is(typeof e.level, 'number');
    t.is(typeof e.msg, 'string');
  }
  const transitions = events.filter((e) => e.msg === 'state changed');
  t.true(transitions.length >= 3);
  for (const e of transitions) {
    t.is(typeof e.conn, 'number', 'bound to the connection');
    t.is(typeof e.method, 'string', 'bound to the method');
    t.true(e.vf === 'blob0' || e.vf === 'blob1', 'bound to the VF');
    t.is(e.phase, 'transition');
  }
  t.truthy(events.find((e) => e.msg === 'save session opened' && e.phase === 'save' && e.vf === 'blob0' && e.session === slice.session));
  t.truthy(events.find((e) => e.msg === 'resume session opened' && e.phase === 'load' && e.vf === 'blob1'));
  t.truthy(events.find((e) => e.msg === 'state applied' && e.phase === 'load' && e.vf === 'blob1'));
  // A state payload never reaches the log, not even a piece of it.
  const needle = base64Of(slice.data).slice(100, 164);
  t.false(agent.logs.some((l) => l.includes(needle)));
  t.false(events.some((e) => 'data' in e || 'params' in e));
});

test('SIGTERM stops the agent cleanly: exit 0, Unix socket and lock removed', async (t) => {
  const dir = tempDir();
  const socket = join(dir, 'vfmigd.sock');
  const agent = await startAgentProcess({
    config: { listen: ['tcp://127.0.0.1:0', `unix:${socket}`], drivers: [{ driver: 'blob-bench', options: {} }] },
  });
  t.true(existsSync(socket));
  t.true(existsSync(`${socket}.lock`));
  const rpc = await RpcClient.connect({ path: socket });
  t.is((await rpc.call('vf.list', {})).vfs.length, 1);
  t.is(await agent.stop(), 0);
  t.false(existsSync(socket));
  t.false(existsSync(`${socket}.lock`));
  t.truthy(agent.logs.find((l) => l.includes('"msg":"stopped"')));
});
