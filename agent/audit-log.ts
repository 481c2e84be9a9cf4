/**
 * Audit events: who did what to which VF, and every refusal. One JSON line
 * per event, marked `"audit": true` so that a log router can send them to
 * their own destination; always written, whatever the log level, and also
 * appended to `auditLog` when the config names a file. An event carries
 * names, outcomes and times, never params, results or key material.
 */
import { pino, type Logger } from 'pino';
import type { CallObserver, CallRecord } from './rpc/pipeline.ts';
import type { ConnectionRefusal } from './transport/listener.ts';

/** Calls that change nothing are audited only when refused: they would drown the rest. */
const UNAUDITED_WHEN_ALLOWED = new Set(['read', 'host-port']);

export class AuditLog implements CallObserver {
  private readonly log: Logger;

  constructor(log: Logger) {
    this.log = log;
  }

  /** An audit logger beside the main one: level info whatever the main level, to stdout and optionally a file. */
  static open(path: string | undefined): AuditLog {
    const stdout = pino.destination({ dest: 1, sync: true });
    const streams = path === undefined ? [{ stream: stdout }] : [{ stream: stdout }, { stream: pino.destination({ dest: path, append: true, mkdir: true, sync: true }) }];
    return new AuditLog(pino({ name: 'vfmigd', level: 'info', base: { pid: process.pid } }, pino.multistream(streams)).child({ audit: true }));
  }

  observe(record: CallRecord): void {
    // A method that does not exist did nothing, and nobody refused it: the metrics count such calls.
    if (record.permission === undefined) return;
    if (record.outcome !== 'refused' && UNAUDITED_WHEN_ALLOWED.has(record.permission)) return;
    this.log.info({
      event: 'call',
      principal: record.peer.principal,
      authentication: record.peer.authentication,
      peer: record.peer.remote,
      listener: record.peer.listener,
      conn: record.peer.connectionId,
      method: record.method,
      vf: record.vf ?? null,
      outcome: record.outcome,
      code: record.error ?? null,
      durationMs: Math.round(record.durationMs * 1000) / 1000,
    }, `${record.method} ${record.outcome}`);
  }

  connectionRefused(refusal: ConnectionRefusal): void {
    this.log.info({ event: 'connection', outcome: 'refused', kind: refusal.kind, peer: refusal.remote, listener: refusal.listener, reason: refusal.reason }, 'connection refused');
  }
}
