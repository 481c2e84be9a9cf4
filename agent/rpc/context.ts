import type { Logger } from 'pino';
import type { Attachment } from '../../schemas/types.ts';
import type { PeerInfo } from '../transport/peer.ts';
import type { Permission } from './permissions.ts';

/** What a VF is called by: the two names a grant may list. */
export interface VfNames {
  readonly id: string;
  readonly bdf: string;
}

/**
 * The connection a call came on, for what the agent sends on it unasked:
 * notifications. The same object for every call of one connection, so a
 * handler may key per-connection state on it.
 */
export interface NotificationChannel {
  /** Sends {"jsonrpc":"2.0","method":…,"params":…}; see ConnectionLink.notify for `busy`, `closed` and `force`. */
  notify(method: string, params: object, force?: boolean): 'sent' | 'busy' | 'closed';
  whenDrained(listener: () => void): void;
  onClose(listener: () => void): void;
  /** Keeps the connection from being closed as idle until the release is called. */
  hold(): () => void;
}

/**
 * What a method handler knows about the call it serves. The pipeline makes
 * one per call, after authorization.
 */
export interface RequestContext {
  readonly peer: PeerInfo;
  /** The caller, as the transport authenticated it. */
  readonly principal: string;
  readonly method: string;
  /** Whether the caller holds `admin` on the VF of this call: it may then act on another principal's migration. */
  readonly admin: boolean;
  /** Whether the caller holds `permission` on a VF (e.g. which VFs `vf.list` may show). */
  may(permission: Permission, vf: VfNames): boolean;
  /** Child logger bound to connection, principal and method. */
  readonly log: Logger;
  /** The bytes of the request's attachment, as the pieces they came in; the pipeline has matched them to `ref` before the call. */
  attachment(ref: Attachment): readonly Buffer[];
  /**
   * Sends `pieces` raw, in order, in one attachment frame before the
   * response, when the connection has attachments on and the call is not in
   * a batch: returns what the result names them by, and calls `onSent` once
   * the pieces are no longer needed (written, or never to be). Otherwise
   * undefined (and `onSent` is not called): send base64.
   */
  attach(pieces: readonly Uint8Array[], onSent?: () => void): Attachment | undefined;
  /** Turns attachment frames on for the connection this call came on. */
  enableAttachments(): void;
  /** The connection this call came on, for notifications. */
  readonly channel: NotificationChannel;
}
