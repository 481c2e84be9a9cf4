/**
 * JSON.parse for JSON-RPC messages, with one fast path: a large request
 * whose params carry a megabyte of base64 in `data` (vf.load, emu.memWrite).
 * JSON.parse spends about a millisecond per megabyte checking every
 * character of that string; base64 needs no such check, so the string is
 * lifted out of the text, the rest is parsed, and the string is put back.
 *
 * Why this is exact: a JSON string cannot contain an unescaped `"`, so an
 * unescaped `"data":"` outside every string is a key and the text up to the
 * next `"` is that key's value; with no backslash in it, the value is the
 * text itself. The lifted value is used only if the rest parses to a
 * request whose `params.data` is the empty string left in its place.
 * One difference from JSON.parse remains: raw control characters in the
 * value are not refused here but by the strict base64 check of the
 * handler (-32602 rather than -32700).
 */

const LARGE_MESSAGE = 64 * 1024;
const KEY = '"data":"';

export function parseMessage(text: string): unknown {
  if (text.length < LARGE_MESSAGE) return JSON.parse(text);
  const key = text.indexOf(KEY);
  if (key <= 0 || text[key - 1] === '\\') return JSON.parse(text);
  const valueStart = key + KEY.length;
  const valueEnd = text.indexOf('"', valueStart);
  if (valueEnd === -1 || valueEnd - valueStart < LARGE_MESSAGE / 2) return JSON.parse(text);
  const backslash = text.indexOf('\\', valueStart);
  if (backslash !== -1 && backslash < valueEnd) return JSON.parse(text);
  const rest: unknown = JSON.parse(text.slice(0, valueStart) + text.slice(valueEnd));
  if (typeof rest !== 'object' || rest === null || Array.isArray(rest)) return JSON.parse(text);
  const params = (rest as { params?: unknown }).params;
  if (typeof params !== 'object' || params === null || (params as { data?: unknown }).data !== '') return JSON.parse(text);
  (params as { data: string }).data = text.slice(valueStart, valueEnd);
  return rest;
}
