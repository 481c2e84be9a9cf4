/**
 * Who is on the other end of a connection, as the transport established it.
 * The principal is decided here, once per connection, and nowhere else:
 * from the client certificate on a mutual-TLS listener, or a fixed local
 * principal on a Unix socket or a plain TCP listener.
 */

/** How the principal was established. */
export type Authentication =
  /** A client certificate that chains to the configured CA (mutual TLS). */
  | 'mtls'
  /** A Unix socket or loopback TCP: whoever can reach it is on this machine. */
  | 'local'
  /** Plain TCP on a non-loopback address (only with `insecure: true`): nobody is proven. */
  | 'none';

export interface PeerInfo {
  readonly connectionId: number;
  readonly transport: 'tcp' | 'tls' | 'unix';
  /** The listener the connection came in on, e.g. `tls://0.0.0.0:7701`. */
  readonly listener: string;
  /** `host:port` for TCP and TLS, the socket path for a Unix socket. */
  readonly remote: string;
  readonly principal: string;
  readonly authentication: Authentication;
}

/**
 * The principal of local callers (Unix sockets, loopback TCP). Node cannot
 * read a Unix peer's credentials (SO_PEERCRED), so local callers share one
 * principal; the socket's mode, owner and group decide who is local.
 */
export const LOCAL_PRINCIPAL = 'local';

/** The principal of a caller on an insecure (unauthenticated, non-loopback) TCP listener. */
export const ANONYMOUS_PRINCIPAL = 'anonymous';

/** Principals a certificate may not claim, so that a certificate can never pass for a local caller. */
export const RESERVED_PRINCIPALS: ReadonlySet<string> = new Set([LOCAL_PRINCIPAL, ANONYMOUS_PRINCIPAL]);
