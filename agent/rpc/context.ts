import type { Logger } from 'pino';

/** Who is on the other end of a connection, as the transport knows it. */
export interface PeerInfo {
  readonly connectionId: number;
  readonly transport: 'tcp' | 'unix';
  /** `host:port` for TCP, the socket path for a Unix socket. */
  readonly remote: string;
}

/**
 * What a method handler knows about the call it serves. `identity` is the
 * authenticated caller; it stays null until transport authentication
 * (mutual TLS) exists, and authorization will key off it.
 */
export interface RequestContext {
  readonly peer: PeerInfo;
  readonly identity: string | null;
  readonly method: string;
  /** Child logger bound to connection, method and request id. */
  readonly log: Logger;
}
