/**
 * The principal a client certificate proves: its first URI SAN (e.g.
 * `spiffe://dc1/host/hv-17`), else its subject CN.
 */
import type { PeerCertificate } from 'node:tls';

export function principalOf(cert: PeerCertificate): string | undefined {
  const uri = subjectAltNames(cert.subjectaltname ?? '').find((n) => n.type === 'URI');
  if (uri !== undefined && uri.value !== '') return uri.value;
  const cn: unknown = (cert.subject as unknown as Record<string, unknown> | undefined)?.CN;
  const first = Array.isArray(cn) ? cn[0] : cn;
  return typeof first === 'string' && first !== '' ? first : undefined;
}

/**
 * Node's `subjectaltname` string: `TYPE:value` entries joined by `, `. A
 * value that contains a comma, a quote or another special character is
 * written as a JSON string (`URI:"a, b"`), so a value can never be split
 * in two, nor forged from two.
 */
export function subjectAltNames(text: string): { type: string; value: string }[] {
  const names: { type: string; value: string }[] = [];
  let at = 0;
  while (at < text.length) {
    const colon = text.indexOf(':', at);
    if (colon === -1) break;
    const type = text.slice(at, colon);
    let value: string;
    let end: number;
    if (text[colon + 1] === '"') {
      end = closingQuote(text, colon + 2);
      value = JSON.parse(text.slice(colon + 1, end + 1)) as string;
      end += 1;
    } else {
      const comma = text.indexOf(', ', colon + 1);
      end = comma === -1 ? text.length : comma;
      value = text.slice(colon + 1, end);
    }
    names.push({ type, value });
    at = end + 2;
  }
  return names;
}

function closingQuote(text: string, from: number): number {
  for (let i = from; i < text.length; i += 1) {
    if (text[i] === '\\') i += 1;
    else if (text[i] === '"') return i;
  }
  throw new Error(`unterminated quoted name in subjectaltname: ${text}`);
}
