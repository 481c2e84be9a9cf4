import type { SliceSource } from '../core/load-buffer.ts';
import type { RequestContext } from '../rpc/context.ts';
import type { MethodTypes } from '../../schemas/types.ts';

export type MethodName = keyof MethodTypes;

/** A handler per method, typed from the method's schemas. */
export type MethodHandlers = {
  readonly [M in MethodName]: (params: MethodTypes[M]['params'], ctx: RequestContext) => Promise<MethodTypes[M]['result']>;
};

/** Thrown by a handler for params the schema cannot express a rule for (e.g. base64 that does not decode). */
export class InvalidParamsError extends Error {
  readonly path: string;
  constructor(path: string, message: string) {
    super(`params${path} ${message}`);
    this.name = 'InvalidParamsError';
    this.path = path;
  }
}

/**
 * Strict base64 (RFC 4648 section 4, padded). Node's decoder skips bad
 * characters and also takes the URL alphabet, so check the length it
 * decoded and look for '-' and '_' (two memchr-speed scans, where a regex
 * would cost milliseconds per megabyte).
 */
export function decodeBase64(text: string, path: string): Buffer {
  const slice = base64Slice(text, path);
  return slice.toBuffer();
}

/** A base64 param as a slice of bytes, decoded only where it is written to. */
export function base64Slice(text: string, path: string): SliceSource {
  const padding = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const length = (text.length / 4) * 3 - padding;
  const invalid = (): InvalidParamsError => new InvalidParamsError(path, 'is not valid padded base64');
  if (text.length % 4 !== 0 || text.includes('-') || text.includes('_')) throw invalid();
  // A character outside the alphabet is skipped by the decoder: fewer bytes come out.
  const check = (written: number): void => { if (written !== length) throw invalid(); };
  return {
    length,
    toBuffer: () => {
      const bytes = Buffer.from(text, 'base64');
      check(bytes.length);
      return bytes;
    },
    writeTo: (target, offset) => check(target.write(text, offset, length, 'base64')),
  };
}

/**
 * Marks result fields whose strings the handler made with
 * `Buffer.toString('base64')`: only base64 characters, nothing JSON must
 * escape. The dispatcher writes such a field into the response as it is
 * instead of having JSON.stringify scan megabytes of it.
 */
export const BASE64_FIELDS: unique symbol = Symbol('vfmigd.base64Fields');

export type WithBase64Fields<T> = T & { [BASE64_FIELDS]?: readonly (keyof T & string)[] };

export function markBase64<T extends object>(result: T, ...fields: (keyof T & string)[]): WithBase64Fields<T> {
  Object.defineProperty(result, BASE64_FIELDS, { value: fields, enumerable: false });
  return result;
}
