/**
 * The device link's JSON-RPC in lines: calls in flight at once each get
 * their own answer, a call the peer never answers fails at its deadline,
 * a peer that sends garbage or goes away fails the calls on the link
 * (never the process), the next call connects again, and a connection's
 * state is dropped when it closes.
 */
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lineRpcServer, LineRpcClient, LinkDownError, RpcFailureError } from './line-rpc.ts';

const dir = mkdtempSync(join(tmpdir(), 'vfmigd-line-rpc-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));
let sockets = 0;

async function serve(server: Server): Promise<string> {
  const path = join(dir, `s${sockets++}.sock`);
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return path;
}

test('calls in flight at once are answered each by its own id; errors come back as they were thrown; closing a connection drops its state', async (t) => {
  let opened = 0;
  let sawClose!: (n: number) => void;
  const closed = new Promise<number>((resolve) => { sawClose = resolve; });
  const server = lineRpcServer<{ n: number }>({
    open: () => ({ n: opened++ }),
    close: (connection) => sawClose(connection.n),
    failureOf: (error) => ({ code: -32000, message: String(error), data: { kind: 'driver-failure' } }),
    methods: {
      echo: async (params) => {
        await new Promise((resolve) => setTimeout(resolve, Number(params.delayMs)));
        return { back: params.value };
      },
      fail: async () => { throw new Error('refused'); },
    },
  });
  const path = await serve(server);
  t.teardown(() => server.close());
  const client = new LineRpcClient(path);
  const answers = await Promise.all([30, 0, 15].map((delayMs, value) => client.call('echo', { delayMs, value }, 5000)));
  t.deepEqual(answers, [{ back: 0 }, { back: 1 }, { back: 2 }]);
  const failure = await t.throwsAsync(client.call('fail', {}, 5000), { instanceOf: RpcFailureError });
  t.like(failure?.failure, { code: -32000, data: { kind: 'driver-failure' } });
  t.like((await t.throwsAsync(client.call('nothing', {}, 5000), { instanceOf: RpcFailureError }))?.failure, { code: -32601 });
  client.close();
  t.is(await closed, 0, 'the one connection, closed');
});

test('a peer that never answers fails the call at its deadline; one that sends garbage or hangs up fails the calls on the link, and the next call connects again', async (t) => {
  let mode: 'silent' | 'garbage' | 'hang-up' = 'silent';
  const server = createServer((socket) => {
    socket.on('data', () => {
      if (mode === 'garbage') socket.write('this is not JSON\n');
      if (mode === 'hang-up') socket.destroy();
    });
  });
  const path = await serve(server);
  t.teardown(() => server.close());
  const client = new LineRpcClient(path);
  const started = performance.now();
  await t.throwsAsync(client.call('x', {}, 100), { instanceOf: LinkDownError, message: /within 100 ms/ });
  t.true(performance.now() - started < 2000);
  mode = 'garbage';
  await t.throwsAsync(client.call('x', {}, 5000), { instanceOf: LinkDownError, message: /closed/ });
  mode = 'hang-up';
  await t.throwsAsync(client.call('x', {}, 5000), { instanceOf: LinkDownError });
  t.false(client.connected);
  client.close();
  await t.throwsAsync(new LineRpcClient(join(dir, 'nobody.sock')).call('x', {}, 1000), { instanceOf: LinkDownError, message: /ENOENT/ });
});
