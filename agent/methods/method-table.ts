import type { SliceSource } from '../core/migration-session.ts';
import { InvalidParamsError } from '../rpc/call-errors.ts';
import type { RequestContext } from '../rpc/context.ts';
import type { MethodTypes } from '../../schemas/types.ts';

export type MethodName = keyof MethodTypes;

/** A handler per method, typed from the method's schemas. */
export type MethodHandlers = {
  readonly [M in MethodName]: (params: MethodTypes[M]['params'], ctx: RequestContext) => Promise<MethodTypes[M]['result']>;
};

/**
 * Strict base64 (RFC 4648 section 4, padded). Node's decoder skips bad
 * characters and also takes the URL alphabet, so check the length it
 * decoded and look for '-' and '_' (two memchr-speed scans, where a regex
 * would cost milliseconds per megabyte).
 */
export function decodeBase64(text: string, path: string): Buffer {
  const [bytes] = base64Slice(text, path).pieces();
  return bytes ?? Buffer.alloc(0);
}

/** A base64 param as a slice of bytes, decoded when the bytes are wanted. */
export function base64Slice(text: string, path: string): SliceSource {
  const padding = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const length = (text.length / 4) * 3 - padding;
  const invalid = (): InvalidParamsError => new InvalidParamsError(path, 'is not valid padded base64');
  if (text.length % 4 !== 0 || text.includes('-') || text.includes('_')) throw invalid();
  // A character outside the alphabet is skipped by the decoder: fewer bytes come out.
  const check = (written: number): void => { if (written !== length) throw invalid(); };
  return {
    length,
    pieces: () => {
      const bytes = Buffer.from(text, 'base64');
      check(bytes.length);
      return [bytes];
    },
  };
}
