/**
 * Parsers for the Identify data structures (NVMe Base Specification 2.x,
 * Figure 312 controller, NVM Command Set Specification Figure 97 namespace).
 * Only the fields a guest driver or a test relies on are decoded.
 */

export const IDENTIFY_BYTES = 4096;

export interface IdentifyController {
  readonly vid: number;
  readonly ssvid: number;
  /** SN, MN, FR: space-padded ASCII, trailing spaces removed. */
  readonly serialNumber: string;
  readonly modelNumber: string;
  readonly firmwareRevision: string;
  /** Maximum Data Transfer Size as a power of two in units of CAP.MPSMIN; 0 = no limit. */
  readonly mdts: number;
  readonly cntlid: number;
  readonly version: number;
  readonly oacs: number;
  /** Optional NVM Command Support bits (ONCS). */
  readonly oncs: number;
  readonly sqes: number;
  readonly cqes: number;
  readonly maxcmd: number;
  /** Number of Namespaces: the largest NSID the controller supports. */
  readonly nn: number;
  /** Volatile Write Cache present. */
  readonly volatileWriteCache: boolean;
  readonly subnqn: string;
}

export const ONCS = {
  COMPARE: 1 << 0,
  WRITE_UNCORRECTABLE: 1 << 1,
  DATASET_MANAGEMENT: 1 << 2,
  WRITE_ZEROES: 1 << 3,
} as const;

export function parseIdentifyController(data: Uint8Array): IdentifyController {
  const view = viewOf(data);
  return {
    vid: view.getUint16(0, true),
    ssvid: view.getUint16(2, true),
    serialNumber: ascii(data, 4, 20),
    modelNumber: ascii(data, 24, 40),
    firmwareRevision: ascii(data, 64, 8),
    mdts: data[77] ?? 0,
    cntlid: view.getUint16(78, true),
    version: view.getUint32(80, true),
    oacs: view.getUint16(256, true),
    sqes: data[512] ?? 0,
    cqes: data[513] ?? 0,
    maxcmd: view.getUint16(514, true),
    nn: view.getUint32(516, true),
    oncs: view.getUint16(520, true),
    volatileWriteCache: ((data[525] ?? 0) & 1) === 1,
    subnqn: nulTerminated(data, 768, 256),
  };
}

export interface LbaFormat {
  readonly metadataBytes: number;
  readonly lbaBytes: number;
  readonly relativePerformance: number;
}

export interface IdentifyNamespace {
  /** Namespace Size, Capacity and Utilization, in logical blocks. */
  readonly nsze: number;
  readonly ncap: number;
  readonly nuse: number;
  readonly nsfeat: number;
  readonly nlbaf: number;
  readonly flbas: number;
  /** Deallocate Logical Block Features: bits 2:0 say what a deallocated block reads as. */
  readonly dlfeat: number;
  readonly lbaFormats: readonly LbaFormat[];
  /** The format in use (FLBAS), and its logical block size in bytes. */
  readonly activeFormat: LbaFormat;
  readonly lbaBytes: number;
  /** NGUID (32) and EUI64 (16) as lower-case hex; all zeros when not reported. */
  readonly nguid: string;
  readonly eui64: string;
}

/** DLFEAT bits 2:0 = 001b: a deallocated logical block reads as all zeros. */
export function deallocatedReadsZero(ns: IdentifyNamespace): boolean {
  return (ns.dlfeat & 0b111) === 0b001;
}

export function parseIdentifyNamespace(data: Uint8Array): IdentifyNamespace {
  const view = viewOf(data);
  const nlbaf = data[25] ?? 0;
  const flbas = data[26] ?? 0;
  const lbaFormats: LbaFormat[] = [];
  for (let index = 0; index <= nlbaf && index < 64; index++) {
    const dword = view.getUint32(128 + 4 * index, true);
    const lbads = (dword >>> 16) & 0xff;
    lbaFormats.push({ metadataBytes: dword & 0xffff, lbaBytes: lbads === 0 ? 0 : 2 ** lbads, relativePerformance: (dword >>> 24) & 0x3 });
  }
  // FLBAS bits 3:0 are the low and bits 6:5 the high bits of the format index.
  const formatIndex = (flbas & 0xf) | (((flbas >>> 5) & 0x3) << 4);
  const activeFormat = lbaFormats[formatIndex];
  if (activeFormat === undefined) throw new Error(`FLBAS selects LBA format ${formatIndex} but NLBAF is ${nlbaf}`);
  return {
    nsze: u64(view, 0),
    ncap: u64(view, 8),
    nuse: u64(view, 16),
    nsfeat: data[24] ?? 0,
    nlbaf,
    flbas,
    dlfeat: data[33] ?? 0,
    lbaFormats,
    activeFormat,
    lbaBytes: activeFormat.lbaBytes,
    nguid: hex(data, 104, 16),
    eui64: hex(data, 120, 8),
  };
}

/** Active Namespace ID list (CNS 02h): ascending NSIDs, ended by a zero entry. */
export function parseNamespaceList(data: Uint8Array): number[] {
  const view = viewOf(data);
  const ids: number[] = [];
  for (let offset = 0; offset + 4 <= data.length; offset += 4) {
    const nsid = view.getUint32(offset, true);
    if (nsid === 0) break;
    ids.push(nsid);
  }
  return ids;
}

export interface NamespaceDescriptors {
  readonly eui64?: string;
  readonly nguid?: string;
  readonly uuid?: string;
  readonly csi?: number;
}

/** Namespace Identification Descriptor list (CNS 03h): type, length, value, until a zero type. */
export function parseNamespaceDescriptors(data: Uint8Array): NamespaceDescriptors {
  const found: { eui64?: string; nguid?: string; uuid?: string; csi?: number } = {};
  for (let offset = 0; offset + 4 <= data.length; ) {
    const type = data[offset] ?? 0;
    const length = data[offset + 1] ?? 0;
    if (type === 0) break;
    const value = data.subarray(offset + 4, offset + 4 + length);
    if (type === 1) found.eui64 = Buffer.from(value).toString('hex');
    else if (type === 2) found.nguid = Buffer.from(value).toString('hex');
    else if (type === 3) {
      const h = Buffer.from(value).toString('hex');
      found.uuid = `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
    } else if (type === 4) found.csi = value[0] ?? 0;
    offset += 4 + length;
  }
  return found;
}

function viewOf(data: Uint8Array): DataView {
  if (data.length < IDENTIFY_BYTES) throw new RangeError(`identify data must be ${IDENTIFY_BYTES} bytes, got ${data.length}`);
  return new DataView(data.buffer, data.byteOffset, data.byteLength);
}

function u64(view: DataView, offset: number): number {
  const value = view.getBigUint64(offset, true);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`64-bit field at ${offset} exceeds 2^53`);
  return Number(value);
}

function ascii(data: Uint8Array, offset: number, length: number): string {
  return Buffer.from(data.subarray(offset, offset + length)).toString('latin1').replace(/[ \0]+$/, '');
}

function nulTerminated(data: Uint8Array, offset: number, length: number): string {
  const field = data.subarray(offset, offset + length);
  const end = field.indexOf(0);
  return Buffer.from(end === -1 ? field : field.subarray(0, end)).toString('utf8');
}

function hex(data: Uint8Array, offset: number, length: number): string {
  return Buffer.from(data.subarray(offset, offset + length)).toString('hex');
}
