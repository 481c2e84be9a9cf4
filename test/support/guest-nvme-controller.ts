/**
 * Controller bring-up and state checks over BAR0 (NVMe Base 2.x, 3.5):
 * reading CAP and VS, disabling, enabling with an admin queue, shutdown,
 * and checking that a controller after migration is the one the guest
 * configured. Register access only; queues live elsewhere.
 */
import type { GuestHostPort } from './host-port.ts';
import { NvmeControllerError } from './guest-nvme-errors.ts';
import { pollUntil } from './guest-nvme-scheduling.ts';
import {
  CC, CSTS, REG, decodeCapabilities, decodeVersion, enabledConfiguration,
  type ControllerCapabilities, type NvmeVersion,
} from './guest-nvme-registers.ts';

export interface ControllerIdentity {
  readonly capabilities: ControllerCapabilities;
  /** CAP as read (low, high): an attach compares it bit for bit. */
  readonly capRaw: readonly [number, number];
  readonly version: NvmeVersion;
}

export interface AdminQueueLayout {
  readonly entries: number;
  readonly sqAddress: number;
  readonly cqAddress: number;
}

const hex = (value: number): string => `0x${(value >>> 0).toString(16)}`;

export class ControllerRegisters {
  readonly #port: () => GuestHostPort;

  /** `port` is a getter: the driver may be attached to another port later. */
  constructor(port: () => GuestHostPort) {
    this.#port = port;
  }

  async read(offset: number): Promise<number> {
    return (await this.#port().mmioRead32(offset)) >>> 0;
  }
  async write(offset: number, value: number): Promise<void> {
    await this.#port().mmioWrite32(offset, value >>> 0);
  }
  /** 64-bit register as two 32-bit writes, low half first. */
  async write64(offset: number, value: number): Promise<void> {
    await this.write(offset, value >>> 0);
    await this.write(offset + 4, Math.floor(value / 0x1_0000_0000) >>> 0);
  }

  /** CAP and VS, checked for what this driver needs: the NVM command set and 4 KiB pages. */
  async probe(): Promise<ControllerIdentity> {
    const capRaw = [await this.read(REG.CAP_LO), await this.read(REG.CAP_HI)] as const;
    const capabilities = decodeCapabilities(capRaw[0], capRaw[1]);
    if (!capabilities.nvmCommandSetSupported) throw new NvmeControllerError(`CAP.CSS does not include the NVM command set (CAP ${capRaw.map(hex).join(':')})`);
    if (capabilities.minPageBytes > 4096 || capabilities.maxPageBytes < 4096) throw new NvmeControllerError('controller does not support 4 KiB pages (CAP.MPSMIN/MPSMAX)');
    if (capabilities.maxQueueEntries < 2) throw new NvmeControllerError('CAP.MQES allows no usable queue');
    const version = decodeVersion(await this.read(REG.VS));
    if (version.major < 1) throw new NvmeControllerError(`implausible NVMe version ${version.major}.${version.minor}.${version.tertiary}`);
    return { capabilities, capRaw, version };
  }

  /** Clear CC.EN (if set) and wait for CSTS.RDY=0. */
  async disable(timeoutMs: number): Promise<void> {
    const cc = await this.read(REG.CC);
    if ((cc & CC.EN) !== 0) await this.write(REG.CC, (cc & ~CC.EN) >>> 0);
    await this.waitReady(false, timeoutMs);
  }

  /** AQA, ASQ, ACQ, then CC.EN=1 with NVM/4 KiB/64 B/16 B, and wait for CSTS.RDY=1. */
  async enable(admin: AdminQueueLayout, timeoutMs: number): Promise<void> {
    await this.write(REG.AQA, ((admin.entries - 1) | ((admin.entries - 1) << 16)) >>> 0);
    await this.write64(REG.ASQ_LO, admin.sqAddress);
    await this.write64(REG.ACQ_LO, admin.cqAddress);
    await this.write(REG.CC, enabledConfiguration());
    await this.waitReady(true, timeoutMs);
  }

  /** Normal shutdown notification (CC.SHN=01b), waiting for CSTS.SHST=10b. */
  async shutdown(timeoutMs: number): Promise<void> {
    const cc = await this.read(REG.CC);
    await this.write(REG.CC, ((cc & ~CC.SHN_MASK) | CC.SHN_NORMAL) >>> 0);
    let csts = 0;
    await pollUntil(
      async () => ((csts = await this.read(REG.CSTS)) & CSTS.SHST_MASK) === CSTS.SHST_COMPLETE || undefined,
      timeoutMs,
      () => new NvmeControllerError(`shutdown not complete after ${timeoutMs} ms (CSTS ${hex(csts)})`),
    );
  }

  /** Wait for CSTS.RDY to reach `ready` (CAP.TO bounds it); fatal status fails an enable at once. */
  async waitReady(ready: boolean, timeoutMs: number): Promise<void> {
    let csts = 0;
    await pollUntil(
      async () => {
        csts = await this.read(REG.CSTS);
        if (csts === 0xffff_ffff) throw new NvmeControllerError('CSTS reads all ones: the device is gone');
        if (ready && (csts & CSTS.CFS) !== 0) throw new NvmeControllerError(`controller fatal status while enabling (CSTS ${hex(csts)})`);
        return ((csts & CSTS.RDY) !== 0) === ready || undefined;
      },
      timeoutMs,
      () => new NvmeControllerError(`CSTS.RDY did not become ${ready ? 1 : 0} within ${timeoutMs} ms (CAP.TO; CSTS ${hex(csts)})`),
    );
  }
}

/**
 * A controller the guest may continue on after migration: same CAP, the CC
 * the guest wrote, ready and without fatal status. Reads `port` directly,
 * before the driver switches to it.
 */
export async function checkAttachable(port: GuestHostPort, expectedCap: readonly [number, number]): Promise<void> {
  const cap = [(await port.mmioRead32(REG.CAP_LO)) >>> 0, (await port.mmioRead32(REG.CAP_HI)) >>> 0] as const;
  const cc = (await port.mmioRead32(REG.CC)) >>> 0;
  const csts = (await port.mmioRead32(REG.CSTS)) >>> 0;
  if (cap[0] !== expectedCap[0] || cap[1] !== expectedCap[1]) {
    throw new NvmeControllerError(`attach: CAP changed from ${expectedCap.map(hex).join(':')} to ${cap.map(hex).join(':')}`);
  }
  if (cc !== enabledConfiguration()) throw new NvmeControllerError(`attach: CC is ${hex(cc)}, the guest set ${hex(enabledConfiguration())}`);
  if ((csts & CSTS.CFS) !== 0 || (csts & CSTS.RDY) === 0) throw new NvmeControllerError(`attach: controller not ready (CSTS ${hex(csts)})`);
}
