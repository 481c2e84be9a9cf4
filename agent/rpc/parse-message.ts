/**
 * JSON.parse for JSON-RPC messages, with one fast path that gives exactly
 * what JSON.parse gives: a large request whose params carry a megabyte of
 * base64 in `data` (vf.load, emu.memWrite). JSON.parse spends about 1.5 ms
 * per megabyte checking every character of that string; checking that it
 * is strict base64 costs a twentieth of that (a decode into a small scratch
 * buffer), and base64 holds nothing JSON would treat specially.
 *
 * Why the result is exact:
 * - A JSON string cannot hold an unescaped `"`, so the text from an
 *   unescaped `"data":"` to the next `"` is a string; holding only base64
 *   characters (so no backslash and no control character), its value is
 *   the text itself, and JSON.parse would accept it.
 * - The lifted string is replaced by a string holding a NUL. A text with no
 *   `\u0000` in it holds no NUL in any string (a NUL can only be written
 *   as that escape), so if the rest parses and `params.data` is that
 *   marker, the lifted string was `params.data` and nothing else: not a
 *   top-level "data", not a key of the same name elsewhere, not the loser
 *   of a duplicate key.
 * Anything else goes to JSON.parse whole, so it is the one view of every
 * message, errors included.
 */

const LARGE_MESSAGE = 64 * 1024;
const KEY = '"data":"';
const MARKER = '\u0000';
const MARKER_TEXT = '\\u0000';

export function parseMessage(text: string): unknown {
  if (text.length < LARGE_MESSAGE) return JSON.parse(text);
  const key = text.indexOf(KEY);
  if (key <= 0 || text[key - 1] === '\\') return JSON.parse(text);
  const valueStart = key + KEY.length;
  const valueEnd = text.indexOf('"', valueStart);
  if (valueEnd === -1 || valueEnd - valueStart < LARGE_MESSAGE / 2) return JSON.parse(text);
  const value = text.slice(valueStart, valueEnd);
  if (!isStrictBase64(value) || text.includes(MARKER_TEXT)) return JSON.parse(text);
  const rest: unknown = JSON.parse(`${text.slice(0, valueStart)}${MARKER_TEXT}${text.slice(valueEnd)}`);
  if (typeof rest !== 'object' || rest === null || Array.isArray(rest)) return JSON.parse(text);
  const params = (rest as { params?: unknown }).params;
  if (typeof params !== 'object' || params === null || (params as { data?: unknown }).data !== MARKER) return JSON.parse(text);
  (params as { data: string }).data = value;
  return rest;
}

/** Base64 characters per scratch decode: a multiple of 4, so only the last piece may hold padding. */
const PIECE_CHARS = 64 * 1024;
const scratch = Buffer.allocUnsafe((PIECE_CHARS / 4) * 3);

/**
 * True if `text` is padded base64 of the standard alphabet (RFC 4648
 * section 4). Node's decoder skips characters outside the alphabet and
 * stops at padding, so a text is strict exactly when every piece decodes
 * to as many bytes as its length says; '-' and '_' (the URL alphabet,
 * which the decoder also takes) are looked for apart.
 */
function isStrictBase64(text: string): boolean {
  if (text.length % 4 !== 0 || text.includes('-') || text.includes('_')) return false;
  for (let at = 0; at < text.length; at += PIECE_CHARS) {
    const piece = text.slice(at, at + PIECE_CHARS);
    const last = at + PIECE_CHARS >= text.length;
    const padding = !last ? 0 : piece.endsWith('==') ? 2 : piece.endsWith('=') ? 1 : 0;
    if (scratch.write(piece, 0, 'base64') !== (piece.length / 4) * 3 - padding) return false;
  }
  return true;
}
