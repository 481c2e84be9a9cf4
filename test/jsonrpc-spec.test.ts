/**
 * JSON-RPC 2.0 conformance over TCP against a real agent: every example of
 * section 7 of the specification (https://www.jsonrpc.org/specification),
 * mapped onto an agent method with the same protocol shape, plus the
 * corners the agent promises beyond jayson (`"id": null` is a request, a
 * nested array in a batch is one invalid entry, ids echo back exactly) and
 * wire compatibility with the stock jayson TCP client.
 *
 * Mapping of the specification's methods:
 *   subtract (positional)  → vf.getState with an array: the agent takes named params only, so -32602
 *   subtract (named)       → vf.getState / vf.setState (a no-op RUNNING → RUNNING) with named params
 *   update, notify_*       → notifications of vf.list / vf.getState / a missing method
 *   foobar, foo.get        → a method that does not exist
 *   sum, get_data          → vf.getState / vf.list
 *
 * Every response the RpcClient sees is also checked against the schemas and
 * the error catalogue (data.code, message) by the client itself.
 */
import test from 'ava';
import jayson from 'jayson';
import { connect as netConnect } from 'node:net';
import { startAgentProcess, type AgentProcess } from './support/agent-process.ts';
import { RpcClient, checkResponseShape } from './support/rpc-client.ts';

let agent: AgentProcess;

test.before(async () => {
  agent = await startAgentProcess({ config: { drivers: [{ driver: 'blob-bench', options: { vfCount: 2, stateBytes: 100000, p2p: true } }] } });
});

test.after.always(async () => {
  await agent?.stop();
});

type Json = Record<string, unknown>;

async function connect(t: { teardown: (fn: () => void) => void }): Promise<RpcClient> {
  const client = await RpcClient.connect(agent.tcp);
  t.teardown(() => client.destroy());
  return client;
}

/** Sends one raw line and returns the one response it gets. */
async function exchange(client: RpcClient, text: string): Promise<unknown> {
  client.sendRaw(`${text}\n`);
  return client.nextUnmatched(5000);
}

/**
 * Proves that nothing was (or will be) sent for what was written before:
 * two follow-up requests each get their own response, and no other
 * response arrives meanwhile or within a short grace period after.
 */
async function expectNoResponse(t: { deepEqual: (a: unknown, b: unknown, m?: string) => void; is: (a: unknown, b: unknown, m?: string) => void }, client: RpcClient): Promise<void> {
  for (const id of ['follow-up-1', 'follow-up-2']) {
    const response = await client.request({ jsonrpc: '2.0', method: 'vf.list', params: {}, id });
    t.is(response.id, id);
  }
  const extra = await client.nextUnmatched(300).then((r) => r, () => 'nothing');
  t.deepEqual(extra, 'nothing', 'a response arrived for a notification');
}

/**
 * One line out, the first line back, on a fresh plain socket: for inputs
 * whose response might not be well-formed, so that a malformed one fails
 * the test with an assertion instead of crashing the RpcClient.
 */
function rawExchange(text: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(agent.tcp.port, agent.tcp.host);
    let buffer = '';
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`no response to ${text} within 5 s`)); }, 5000);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${text}\n`));
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      const newline = buffer.indexOf('\n');
      if (newline === -1) return;
      clearTimeout(timer);
      socket.destroy();
      resolve(JSON.parse(buffer.slice(0, newline)));
    });
    socket.on('error', (error) => { clearTimeout(timer); reject(error); });
  });
}

function specError(response: unknown): { code: unknown; message: unknown; id: unknown } {
  const r = response as Json;
  const error = r.error as Json | undefined;
  return { code: error?.code, message: error?.message, id: r.id };
}

// ---------------------------------------------------------------- §7 examples

test('§7 positional parameters: the agent takes named params only, so -32602 Invalid params with the id', async (t) => {
  const client = await connect(t);
  const a = await exchange(client, '{"jsonrpc": "2.0", "method": "vf.getState", "params": ["blob0"], "id": 1}');
  t.deepEqual(specError(a), { code: -32602, message: 'Invalid params', id: 1 });
  const b = await exchange(client, '{"jsonrpc": "2.0", "method": "vf.getState", "params": [42, 23], "id": 2}');
  t.deepEqual(specError(b), { code: -32602, message: 'Invalid params', id: 2 });
});

test('§7 named parameters: result with the id, whatever the order of the members', async (t) => {
  const client = await connect(t);
  const a = await exchange(client, '{"jsonrpc": "2.0", "method": "vf.getState", "params": {"vf": "blob0"}, "id": 3}') as Json;
  t.deepEqual(a, { jsonrpc: '2.0', result: { vf: 'blob0', state: 'RUNNING', value: 2 }, id: 3 });
  const b = await exchange(client, '{"jsonrpc": "2.0", "method": "vf.setState", "params": {"vf": "blob1", "state": "RUNNING"}, "id": 3}') as Json;
  const c = await exchange(client, '{"jsonrpc": "2.0", "method": "vf.setState", "params": {"state": "RUNNING", "vf": "blob1"}, "id": 4}') as Json;
  t.is(b.id, 3);
  t.is(c.id, 4);
  const withoutTime = (r: Json): unknown => ({ ...(r.result as Json), elapsedMs: 0 });
  t.deepEqual(withoutTime(b), withoutTime(c));
  t.like(b.result as Json, { vf: 'blob1', from: 'RUNNING', state: 'RUNNING', path: [] });
});

test('§7 notification: no response at all, also for an unknown method or bad params', async (t) => {
  const client = await connect(t);
  client.sendRaw('{"jsonrpc": "2.0", "method": "vf.getState", "params": [1,2,3,4,5]}\n');
  client.sendRaw('{"jsonrpc": "2.0", "method": "foobar"}\n');
  client.sendRaw('{"jsonrpc": "2.0", "method": "vf.list", "params": {}}\n');
  client.sendRaw('{"jsonrpc": "2.0", "method": "vf.getState", "params": {"vf": "no-such-vf"}}\n');
  await expectNoResponse(t, client);
});

test('§7 non-existent method: -32601 Method not found with the id', async (t) => {
  const client = await connect(t);
  const r = await exchange(client, '{"jsonrpc": "2.0", "method": "foobar", "id": "1"}');
  t.deepEqual(specError(r), { code: -32601, message: 'Method not found', id: '1' });
});

test('§7 invalid JSON: -32700 Parse error with a null id', async (t) => {
  const client = await connect(t);
  const r = await exchange(client, '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]');
  t.deepEqual(specError(r), { code: -32700, message: 'Parse error', id: null });
});

test('§7 invalid Request object: -32600 Invalid Request with a null id', async (t) => {
  const client = await connect(t);
  const r = await exchange(client, '{"jsonrpc": "2.0", "method": 1, "params": "bar"}');
  t.deepEqual(specError(r), { code: -32600, message: 'Invalid Request', id: null });
});

test('§7 batch with invalid JSON: one -32700 Parse error, not an array', async (t) => {
  const client = await connect(t);
  const r = await exchange(client, '[\n  {"jsonrpc": "2.0", "method": "vf.getState", "params": {"vf": "blob0"}, "id": "1"},\n  {"jsonrpc": "2.0", "method"\n]'.replace(/\n/g, ' '));
  t.false(Array.isArray(r));
  t.deepEqual(specError(r), { code: -32700, message: 'Parse error', id: null });
});

test('§7 empty array: one -32600 Invalid Request, not an array', async (t) => {
  const client = await connect(t);
  const r = await exchange(client, '[]');
  t.false(Array.isArray(r));
  t.deepEqual(specError(r), { code: -32600, message: 'Invalid Request', id: null });
});

test('§7 invalid batch [1]: an array with one -32600', async (t) => {
  const client = await connect(t);
  const r = await exchange(client, '[1]');
  t.true(Array.isArray(r));
  t.deepEqual((r as unknown[]).map(specError), [{ code: -32600, message: 'Invalid Request', id: null }]);
});

test('§7 invalid batch [1,2,3]: an array with three -32600', async (t) => {
  const client = await connect(t);
  const r = await exchange(client, '[1,2,3]');
  t.true(Array.isArray(r));
  t.deepEqual((r as unknown[]).map(specError), Array(3).fill({ code: -32600, message: 'Invalid Request', id: null }));
});

test('§7 mixed batch: a response per request, none for the notification, in request order', async (t) => {
  const client = await connect(t);
  const batch = [
    { jsonrpc: '2.0', method: 'vf.getState', params: { vf: 'blob0' }, id: '1' },
    { jsonrpc: '2.0', method: 'vf.list', params: {} },
    { jsonrpc: '2.0', method: 'vf.getState', params: { vf: 'blob1' }, id: '2' },
    { foo: 'boo' },
    { jsonrpc: '2.0', method: 'foo.get', params: { name: 'myself' }, id: '5' },
    { jsonrpc: '2.0', method: 'vf.list', id: '9' },
  ];
  const r = await exchange(client, JSON.stringify(batch));
  t.true(Array.isArray(r));
  const responses = r as Json[];
  t.is(responses.length, 5);
  // The specification lets a server answer a batch in any order; match by id first...
  const byId = new Map(responses.filter((x) => x.id !== null).map((x) => [x.id, x]));
  t.deepEqual(byId.get('1'), { jsonrpc: '2.0', result: { vf: 'blob0', state: 'RUNNING', value: 2 }, id: '1' });
  t.deepEqual(byId.get('2'), { jsonrpc: '2.0', result: { vf: 'blob1', state: 'RUNNING', value: 2 }, id: '2' });
  t.deepEqual(specError(byId.get('5')), { code: -32601, message: 'Method not found', id: '5' });
  t.deepEqual((byId.get('9')?.result as Json).vfs, [
    { id: 'blob0', bdf: '0000:5e:00.0', driver: 'blob-bench', kind: 'blob', state: 'RUNNING', stranded: false },
    { id: 'blob1', bdf: '0000:5e:00.1', driver: 'blob-bench', kind: 'blob', state: 'RUNNING', stranded: false },
  ]);
  const invalid = responses.filter((x) => x.id === null);
  t.deepEqual(invalid.map(specError), [{ code: -32600, message: 'Invalid Request', id: null }]);
  // ...and the agent keeps the order of the requests, as in the specification's example.
  t.deepEqual(responses.map((x) => x.id), ['1', '2', null, '5', '9']);
  await expectNoResponse(t, client);
});

test('§7 batch of notifications only: nothing is returned', async (t) => {
  const client = await connect(t);
  client.sendRaw(`${JSON.stringify([
    { jsonrpc: '2.0', method: 'vf.list', params: {} },
    { jsonrpc: '2.0', method: 'vf.getState', params: [7] },
    { jsonrpc: '2.0', method: 'notify_hello', params: [7] },
  ])}\n`);
  await expectNoResponse(t, client);
});

// ---------------------------------------------------------------- beyond §7

test('a request with "id": null is answered, with "id": null', async (t) => {
  const client = await connect(t);
  const ok = await exchange(client, '{"jsonrpc": "2.0", "method": "vf.getState", "params": {"vf": "blob0"}, "id": null}');
  t.deepEqual(ok, { jsonrpc: '2.0', result: { vf: 'blob0', state: 'RUNNING', value: 2 }, id: null });
  const error = await exchange(client, '{"jsonrpc": "2.0", "method": "foobar", "id": null}');
  t.deepEqual(specError(error), { code: -32601, message: 'Method not found', id: null });
  const batch = await exchange(client, '[{"jsonrpc": "2.0", "method": "vf.getState", "params": {"vf": "blob1"}, "id": null}, {"jsonrpc": "2.0", "method": "vf.list"}]');
  t.deepEqual(batch, [{ jsonrpc: '2.0', result: { vf: 'blob1', state: 'RUNNING', value: 2 }, id: null }]);
});

test('a nested array inside a batch gets its own -32600 entry; the rest of the batch runs', async (t) => {
  const client = await connect(t);
  const r = await exchange(client, '[{"jsonrpc": "2.0", "method": "vf.getState", "params": {"vf": "blob0"}, "id": 1}, [{"jsonrpc": "2.0", "method": "vf.list", "id": 2}], [], {"jsonrpc": "2.0", "method": "vf.getState", "params": {"vf": "blob1"}, "id": 3}]');
  t.true(Array.isArray(r));
  const responses = r as Json[];
  t.is(responses.length, 4);
  t.deepEqual(responses.find((x) => x.id === 1)?.result, { vf: 'blob0', state: 'RUNNING', value: 2 });
  t.deepEqual(responses.find((x) => x.id === 3)?.result, { vf: 'blob1', state: 'RUNNING', value: 2 });
  t.deepEqual(responses.filter((x) => x.id === null).map(specError), Array(2).fill({ code: -32600, message: 'Invalid Request', id: null }));
  t.false(responses.some((x) => x.id === 2), 'the request inside the nested array must not run');
});

test('string, integer, fractional, negative, zero and empty-string ids echo back exactly', async (t) => {
  const client = await connect(t);
  for (const [text, id] of [['"abc-é"', 'abc-é'], ['42', 42], ['1.5', 1.5], ['-7', -7], ['0', 0], ['""', ''], ['"null"', 'null']] as const) {
    const r = await exchange(client, `{"jsonrpc": "2.0", "method": "vf.getState", "params": {"vf": "blob0"}, "id": ${text}}`) as Json;
    t.is(r.id, id, `id ${text}`);
    t.deepEqual(r.result, { vf: 'blob0', state: 'RUNNING', value: 2 });
  }
  // An error response echoes the id too.
  for (const [text, id] of [['"s"', 's'], ['2.25', 2.25]] as const) {
    t.deepEqual(specError(await exchange(client, `{"jsonrpc": "2.0", "method": "nope", "id": ${text}}`)), { code: -32601, message: 'Method not found', id });
  }
});

test('a request whose id is an object, an array or a boolean is an Invalid Request', async (t) => {
  const client = await connect(t);
  for (const id of ['{"a": 1}', '[1]', 'true']) {
    const r = await exchange(client, `{"jsonrpc": "2.0", "method": "vf.list", "id": ${id}}`);
    t.deepEqual(specError(r), { code: -32600, message: 'Invalid Request', id: null }, `id ${id}`);
  }
});

test('a request without "jsonrpc": "2.0", or with params that are not structured, is an Invalid Request', async (t) => {
  const client = await connect(t);
  for (const text of [
    '{"method": "vf.list", "id": 1}',
    '{"jsonrpc": "1.0", "method": "vf.list", "id": 1}',
    '{"jsonrpc": 2.0, "method": "vf.list", "id": 1}',
    '{"jsonrpc": "2.0", "id": 1}',
    '{"jsonrpc": "2.0", "method": "vf.list", "params": "bar", "id": 1}',
    '{"jsonrpc": "2.0", "method": "vf.list", "params": 5, "id": 1}',
    '{}',
  ]) {
    const r = specError(await exchange(client, text));
    t.is(r.code, -32600, text);
    t.is(r.message, 'Invalid Request', text);
  }
});

test('a JSON text that is a number, null or true is an Invalid Request', async (t) => {
  for (const text of ['5', 'null', 'true', '[]']) {
    const r = await rawExchange(text);
    t.notThrows(() => checkResponseShape(r, undefined), text);
    t.deepEqual(specError(r), { code: -32600, message: 'Invalid Request', id: null }, text);
  }
});

test('a JSON text that is a string is an Invalid Request (valid JSON, so not a Parse error), with a catalogued error.data', async (t) => {
  const r = await rawExchange('"hello"');
  let contract = 'ok';
  try {
    checkResponseShape(r, undefined);
  } catch (error) {
    contract = (error as Error).message;
  }
  t.deepEqual({ ...specError(r), contract }, { code: -32600, message: 'Invalid Request', id: null, contract: 'ok' }, `the agent answered ${JSON.stringify(r)}`);
});

test('a JSON string whose content is a request is not executed as one', async (t) => {
  const smuggled = JSON.stringify(JSON.stringify({ jsonrpc: '2.0', method: 'vf.getState', params: { vf: 'blob0' }, id: 7 }));
  const r = await rawExchange(smuggled);
  t.deepEqual(specError(r), { code: -32600, message: 'Invalid Request', id: null }, `the agent answered ${JSON.stringify(r)}`);
});

test('the stock jayson TCP client calls vf.list and reads the result', async (t) => {
  const client = jayson.Client.tcp({ host: agent.tcp.host, port: agent.tcp.port });
  const response = await new Promise<Json>((resolve, reject) => {
    client.request('vf.list', { driver: 'blob-bench' }, (error: unknown, r: unknown) => (error ? reject(error as Error) : resolve(r as Json)));
  });
  t.is(response.jsonrpc, '2.0');
  t.is(typeof response.id, 'string');
  t.deepEqual((response.result as Json).vfs, [
    { id: 'blob0', bdf: '0000:5e:00.0', driver: 'blob-bench', kind: 'blob', state: 'RUNNING', stranded: false },
    { id: 'blob1', bdf: '0000:5e:00.1', driver: 'blob-bench', kind: 'blob', state: 'RUNNING', stranded: false },
  ]);
  // ...and an error comes back as a JSON-RPC error object.
  const failed = await new Promise<Json>((resolve, reject) => {
    client.request('vf.get', { vf: 'nope0' }, (error: unknown, r: unknown) => (error ? reject(error as Error) : resolve(r as Json)));
  });
  t.like(failed.error as Json, { code: -33001, message: 'Unknown VF', data: { code: 'VF_UNKNOWN' } });
});
