/**
 * The fast path of parseMessage gives exactly what JSON.parse gives, or
 * throws where JSON.parse throws: the one view of every message.
 */
import test from 'ava';
import fc from 'fast-check';
import { parseMessage } from './parse-message.ts';

const big = Buffer.alloc(300 * 1024, 0xa5).toString('base64');
const request = (params: object): string => JSON.stringify({ jsonrpc: '2.0', method: 'vf.load', params, id: 7 });

/** parseMessage and JSON.parse agree: the same value, or both throw. */
function sameView(text: string): boolean {
  let expected: unknown;
  try {
    expected = JSON.parse(text);
  } catch {
    try {
      parseMessage(text);
      return false;
    } catch {
      return true;
    }
  }
  return JSON.stringify(parseMessage(text)) === JSON.stringify(expected);
}

test('a large vf.load parses to exactly what JSON.parse gives', (t) => {
  for (const text of [
    request({ vf: 'nvme0', offset: 0, data: big }),
    request({ data: big, vf: 'nvme0', offset: 12 }),
    request({ vf: 'nvme0', offset: 0, data: `${big.slice(0, -4)}AA==` }),
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
    // the probe: a top-level "data" first, and params.data empty
    JSON.stringify({ jsonrpc: '2.0', method: 'vf.load', data: big, params: { vf: 'a', offset: 0, data: '' }, id: 1 }),
    `{"jsonrpc":"2.0","method":"vf.load","params":{"data":"","vf":"a","offset":0},"id":1,"data":"${big}"}`,
    // duplicate keys: the last one wins, in both views
    `{"jsonrpc":"2.0","method":"vf.load","params":{"vf":"a","offset":0,"data":"${big}","data":"QUFB"},"id":1}`,
    `{"jsonrpc":"2.0","method":"vf.load","params":{"vf":"a","offset":0,"data":"${big}"},"params":{"data":"\\u0000"},"id":1}`,
    // a key that ends in data", escaped
    request({ 'a"data': big, data: '' }),
    // a string value containing the key text (it is escaped there)
    request({ vf: `"data":"${big}`, offset: 0 }),
    // a batch
    JSON.stringify([{ jsonrpc: '2.0', method: 'vf.load', params: { vf: 'a', offset: 0, data: big }, id: 1 }]),
    // a short value in a large message
    request({ vf: big, offset: 0, data: 'AAAA' }),
    // not base64: the URL alphabet, padding inside, a character outside the alphabet
    request({ vf: 'a', offset: 0, data: `${big.slice(0, 1000)}-_${big.slice(1002)}` }),
    request({ vf: 'a', offset: 0, data: `${big.slice(0, 1000)}==${big.slice(1002)}` }),
    request({ vf: 'a', offset: 0, data: `${big.slice(0, 1000)}é!${big.slice(1002)}` }),
  ];
  for (const text of cases) t.deepEqual(parseMessage(text), JSON.parse(text));
});

test('invalid JSON throws as JSON.parse does: truncated, trailing junk, raw control characters in the value', (t) => {
  for (const text of [
    `{"jsonrpc":"2.0","params":{"data":"${big}"`,
    `{"jsonrpc":"2.0","params":{"data":"${big}"}},`,
    `{"jsonrpc":"2.0","method":"vf.load","params":{"vf":"a","offset":0,"data":"${big.slice(0, 1000)}\u0001${big.slice(1001)}"},"id":1}`,
    `{"jsonrpc":"2.0","method":"vf.load","params":{"vf":"a","offset":0,"data":"${big.slice(0, 1000)}\t${big.slice(1001)}"},"id":1}`,
  ]) {
    t.throws(() => JSON.parse(text));
    t.throws(() => parseMessage(text));
  }
});

test('property: one character of a large vf.load replaced by any character, the two views agree', (t) => {
  const base = request({ vf: 'nvme0', offset: 0, data: big.slice(0, 48 * 1024) });
  fc.assert(fc.property(
    fc.nat({ max: base.length - 1 }),
    fc.oneof(fc.integer({ min: 0, max: 0x7f }), fc.integer({ min: 0x80, max: 0xffff })),
    (at, code) => sameView(`${base.slice(0, at)}${String.fromCharCode(code)}${base.slice(at + 1)}`),
  ), { numRuns: 2000 });
  // Every ASCII character at the start, middle and end of the value.
  const valueAt = base.indexOf('"data":"') + 8;
  for (let code = 0; code < 0x80; code += 1) {
    for (const at of [valueAt, valueAt + 20000, base.length - 4]) {
      t.true(sameView(`${base.slice(0, at)}${String.fromCharCode(code)}${base.slice(at + 1)}`), `0x${code.toString(16)} at ${at}`);
    }
  }
});
