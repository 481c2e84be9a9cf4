import test from 'ava';
import { parseMessage } from './parse-message.ts';

const big = Buffer.alloc(300 * 1024, 0xa5).toString('base64');
const request = (params: object): string => JSON.stringify({ jsonrpc: '2.0', method: 'vf.load', params, id: 7 });

test('a large vf.load parses to exactly what JSON.parse gives', (t) => {
  for (const text of [
    request({ vf: 'nvme0', offset: 0, data: big }),
    request({ data: big, vf: 'nvme0', offset: 12 }),
    `{ "jsonrpc" : "2.0", "id": 7, "params" : { "offset": 0, "data":"${big}", "vf": "x" }, "method": "vf.load" }`,
  ]) {
    t.deepEqual(parseMessage(text), JSON.parse(text));
  }
});

test('anything the fast path cannot prove equal goes through JSON.parse', (t) => {
  const cases = [
    // an escape inside the value: the raw text is not the value
    request({ vf: 'a', offset: 0, data: `${big.slice(0, 40000)}\n${big.slice(40000)}` }),
    // "data" as a key elsewhere than params
    JSON.stringify({ jsonrpc: '2.0', method: 'x', params: { vf: 'a' }, id: 1, data: big }),
    // a key that ends in data", escaped
    request({ 'a"data': big, data: '' }),
    // a string value containing the key text (it is escaped there)
    request({ vf: `"data":"${big}`, offset: 0 }),
    // a batch
    JSON.stringify([{ jsonrpc: '2.0', method: 'vf.load', params: { vf: 'a', offset: 0, data: big }, id: 1 }]),
    // a short value in a large message
    request({ vf: big, offset: 0, data: 'AAAA' }),
  ];
  for (const text of cases) t.deepEqual(parseMessage(text), JSON.parse(text));
});

test('invalid JSON still throws', (t) => {
  t.throws(() => parseMessage(`{"jsonrpc":"2.0","params":{"data":"${big}"`));
  t.throws(() => parseMessage(`{"jsonrpc":"2.0","params":{"data":"${big}"}},`));
});
