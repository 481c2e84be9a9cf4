/**
 * Controller register fields (CAP, CC, CSTS, AQA) and the 32-bit register
 * read view of BAR0. Doorbells are handled by the controller, which knows
 * the queues and the run level.
 */
import type { ControllerCore } from './controller-core.ts';
import type { ControllerProfile } from './controller-profile.ts';
import { CAP_TIMEOUT_UNITS, NVME_VERSION, Reg } from './nvme-defs.ts';

export const CC_EN = 1 << 0;
export const CSTS_RDY = 1 << 0;
export const CSTS_CFS = 1 << 1;
export const CSTS_SHST_MASK = 0x3 << 2;
export const CSTS_SHST_COMPLETE = 0x2 << 2;
/** Bits of CC a host may set: EN, CSS, MPS, AMS, SHN, IOSQES, IOCQES. */
export const CC_WRITABLE = 0x00fffff1;
/** ASQ/ACQ bits 11:0 are reserved (page-aligned queues). */
export const QUEUE_BASE_MASK = 0xfffff000;
/** AQA: ASQS in bits 11:0, ACQS in bits 27:16. */
export const AQA_WRITABLE = 0x0fff0fff;

export const ccEnabled = (cc: number): boolean => (cc & CC_EN) !== 0;
export const ccCss = (cc: number): number => (cc >> 4) & 0x7;
export const ccMps = (cc: number): number => (cc >> 7) & 0xf;
export const ccAms = (cc: number): number => (cc >> 11) & 0x7;
export const ccShn = (cc: number): number => (cc >> 14) & 0x3;
export const ccIosqes = (cc: number): number => (cc >> 16) & 0xf;
export const ccIocqes = (cc: number): number => (cc >> 20) & 0xf;
export const aqaSqEntries = (aqa: number): number => (aqa & 0xfff) + 1;
export const aqaCqEntries = (aqa: number): number => ((aqa >> 16) & 0xfff) + 1;

/**
 * CAP: MQES from the configured maximum, CQR (contiguous queues required),
 * TO, DSTRD = 0, CSS bit 0 (NVM command set), MPSMIN = MPSMAX = 0 (4 KiB).
 */
export function capLow(profile: ControllerProfile): number {
  return (profile.mqes | (1 << 16) | (CAP_TIMEOUT_UNITS << 24)) >>> 0;
}

export function capHigh(): number {
  return 1 << (37 - 32);
}

/** Value of the 32-bit register at `offset` below the doorbells; reserved registers read 0. */
export function readRegister(core: ControllerCore, offset: number): number {
  const r = core.registers;
  switch (offset) {
    case Reg.CAP_LO:
      return capLow(core.profile);
    case Reg.CAP_HI:
      return capHigh();
    case Reg.VS:
      return NVME_VERSION;
    case Reg.INTMS:
    case Reg.INTMC:
      return core.interrupts.mask;
    case Reg.CC:
      return r.cc;
    case Reg.CSTS:
      return r.csts;
    case Reg.AQA:
      return r.aqa;
    case Reg.ASQ_LO:
      return r.asqLo;
    case Reg.ASQ_HI:
      return r.asqHi;
    case Reg.ACQ_LO:
      return r.acqLo;
    case Reg.ACQ_HI:
      return r.acqHi;
    default:
      return 0;
  }
}

export function queueAddress(lo: number, hi: number): number {
  return hi * 2 ** 32 + lo;
}
