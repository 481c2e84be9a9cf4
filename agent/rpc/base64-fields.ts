/**
 * Marks result fields whose strings the handler made with
 * `Buffer.toString('base64')`: only base64 characters, nothing JSON must
 * escape. The envelope writes such a field into the response as it is
 * instead of having JSON.stringify scan megabytes of it.
 */
export const BASE64_FIELDS: unique symbol = Symbol('vfmigd.base64Fields');

export type WithBase64Fields<T> = T & { [BASE64_FIELDS]?: readonly (keyof T & string)[] };

export function markBase64<T extends object>(result: T, ...fields: (keyof T & string)[]): WithBase64Fields<T> {
  Object.defineProperty(result, BASE64_FIELDS, { value: fields, enumerable: false });
  return result;
}
