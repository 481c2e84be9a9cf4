/** Thrown by a handler for params the schema cannot express a rule for (e.g. base64 that does not decode). */
export class InvalidParamsError extends Error {
  readonly path: string;
  constructor(path: string, message: string) {
    super(`params${path} ${message}`);
    this.name = 'InvalidParamsError';
    this.path = path;
  }
}
