/**
 * Keeps both sides' leases alive while the CLI calls neither (the
 * --before-resume command runs): a third of a lease after each renewal,
 * as the QEMU plugin renews, so that a long wait cannot make either agent
 * end the migration under us. The lease's length is the one each renewal
 * reports. A renewal that fails is kept and reported when the wait ends.
 */
import type { MigrationSide } from './migration-side.ts';

export interface LeaseHolder {
  readonly side: MigrationSide;
  /** The session that must still be open, if the side has one. */
  readonly session: string | undefined;
}

export class LeaseKeeper {
  private readonly holders: readonly LeaseHolder[];
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private failure: unknown;

  constructor(holders: readonly LeaseHolder[]) {
    this.holders = holders;
  }

  /** Renews now, and then on until `stop`. */
  start(): void {
    void this.renew();
  }

  /** Stops renewing; throws the first renewal's failure, if any. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.failure !== undefined) throw this.failure;
  }

  private async renew(): Promise<void> {
    try {
      const renewed = await Promise.all(this.holders.map(({ side, session }) => side.connection.call('vf.renewLease', { vf: side.vf, ...(session === undefined ? {} : { session }) })));
      if (this.stopped) return;
      const shortest = Math.min(...renewed.map((r) => r.leaseMs));
      this.timer = setTimeout(() => void this.renew(), Math.max(10, Math.floor(shortest / 3)));
    } catch (error) {
      this.failure ??= error;
    }
  }
}
