/**
 * The framing DPU tools speak, over a real socket to a real agent: a client
 * in the manner of SPDK's rpc.py (pretty-printed requests with no
 * delimiter, replies read by incremental decoding), a byte order mark,
 * CRLF, texts back to back, no final newline, bytes that are not UTF-8.
 * Replies are always one JSON text per line, each checked against its schema.
 */
import test, { type ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startAgentProcess, type AgentProcess } from './support/agent-process.ts';
import { rawConnect } from './support/raw-connection.ts';
import { checkResponseShape } from './support/rpc-client.ts';

type Json = Record<string, unknown>;
/** dist/test → test/support/rpc-py-style-client.py in the source tree. */
const PY_CLIENT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'test', 'support', 'rpc-py-style-client.py');

let agent: AgentProcess;

test.before(async () => {
  agent = await startAgentProcess({ config: { drivers: [{ driver: 'blob-bench', options: { vfCount: 2, stateBytes: 4096 } }] } });
});

test.after.always(async () => {
  await agent?.stop();
});

const REQUESTS = [
  { jsonrpc: '2.0', method: 'vf.list', params: {}, id: 1 },
  { jsonrpc: '2.0', method: 'vf.getState', params: { vf: 'blob1' }, id: 'two' },
  { jsonrpc: '2.0', method: 'vf.getState', params: { vf: 'no-such-vf' }, id: 3 },
  { jsonrpc: '2.0', method: 'agent.health', id: 4 },
];
const METHOD_OF = new Map<unknown, string>(REQUESTS.map((r) => [r.id, r.method]));

/** Replies in order of their ids, each checked against the schema of the method it answers. */
function checked(replies: Json[]): Json[] {
  for (const reply of replies) checkResponseShape(reply, METHOD_OF.get(reply.id));
  return replies;
}

function expectAnswers(t: ExecutionContext, replies: Json[]): void {
  t.deepEqual(replies.map((r) => r.id), [1, 'two', 3, 4]);
  t.is(((replies[0]?.result as Json).vfs as unknown[]).length, 2);
  t.is((replies[1]?.result as Json).state, 'RUNNING');
  t.like(replies[2], { error: { data: { code: 'VF_UNKNOWN' } } });
}

for (const trickle of [false, true]) {
  test(`a client in the manner of SPDK's rpc.py: pretty-printed requests without delimiters, replies decoded incrementally${trickle ? ', sent one byte per write' : ''}`, async (t) => {
    const { stdout } = await promisify(execFile)('python3', [PY_CLIENT, agent.tcp.host, String(agent.tcp.port), JSON.stringify(REQUESTS), ...(trickle ? ['--trickle'] : [])], { timeout: 20_000 });
    const replies = checked(stdout.trim().split('\n').map((line) => JSON.parse(line) as Json));
    // The agent answers requests of one connection concurrently: order by id for the check.
    replies.sort((a, b) => REQUESTS.findIndex((r) => r.id === a.id) - REQUESTS.findIndex((r) => r.id === b.id));
    expectAnswers(t, replies);
  });
}

test('a byte order mark, CRLF, texts back to back and no final newline: one reply per request, one per line', async (t) => {
  const c = await rawConnect(t, agent.tcp);
  const [first, second, third, fourth] = REQUESTS;
  c.socket.write(`\ufeff${JSON.stringify(first, null, 2).replaceAll('\n', '\r\n')}${JSON.stringify(second)}${JSON.stringify(third, null, '\t')}\r\n\r\n  ${JSON.stringify(fourth)}`);
  const replies: Json[] = [];
  for (let i = 0; i < REQUESTS.length; i += 1) replies.push(JSON.parse((await c.nextLine()) ?? 'null') as Json);
  replies.sort((a, b) => REQUESTS.findIndex((r) => r.id === a.id) - REQUESTS.findIndex((r) => r.id === b.id));
  expectAnswers(t, checked(replies));
});

test('bytes that are not UTF-8 get -32700 Parse error, and the next request is served', async (t) => {
  const c = await rawConnect(t, agent.tcp);
  c.socket.write(Buffer.concat([Buffer.from('{"jsonrpc":"2.0","method":"vf.getState","params":{"vf":"blob'), Buffer.from([0xc0, 0xaf]), Buffer.from('"},"id":1}')]));
  const refusal = JSON.parse((await c.nextLine()) ?? 'null') as Json;
  checkResponseShape(refusal, undefined);
  t.like(refusal, { id: null, error: { code: -32700, data: { code: 'PARSE_ERROR' } } });
  t.regex(((refusal.error as Json).data as Json).detail as string, /UTF-8/);
  c.socket.write(JSON.stringify(REQUESTS[1], null, 2));
  t.like(JSON.parse((await c.nextLine()) ?? 'null'), { id: 'two', result: { state: 'RUNNING' } });
});

test('a truncated text on one line does not swallow the request on the next', async (t) => {
  const c = await rawConnect(t, agent.tcp);
  c.socket.write(`{"jsonrpc":"2.0","method":"vf.list","params":{}\n${JSON.stringify(REQUESTS[1])}\n`);
  const replies = [JSON.parse((await c.nextLine()) ?? 'null') as Json, JSON.parse((await c.nextLine()) ?? 'null') as Json];
  t.like(replies.find((r) => r.id === null), { error: { code: -32700 } });
  t.like(replies.find((r) => r.id === 'two'), { result: { state: 'RUNNING' } });
});

test('a client that half-closes after its requests (printf … | nc -N) gets every reply, then the connection closes', async (t) => {
  const c = await rawConnect(t, agent.tcp);
  // Two requests, a top-level string complete only at the end of the stream, and a cut object.
  c.socket.end(`${JSON.stringify(REQUESTS[0])}\n${JSON.stringify(REQUESTS[1], null, 2)}\n"just a string"`);
  await c.closed;
  const replies = c.lines.map((line) => JSON.parse(line) as Json);
  t.is(replies.length, 3);
  t.is(((replies.find((r) => r.id === 1)?.result as Json).vfs as unknown[]).length, 2);
  t.like(replies.find((r) => r.id === 'two'), { result: { state: 'RUNNING' } });
  t.like(replies.find((r) => r.id === null), { error: { code: -32600 } });
  const cut = await rawConnect(t, agent.tcp);
  cut.socket.end('{"jsonrpc":"2.0","method":"vf.list","id":');
  await cut.closed;
  t.like(JSON.parse(cut.lines[0] ?? 'null'), { id: null, error: { code: -32700 } });
});
