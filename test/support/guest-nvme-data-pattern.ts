/**
 * The self-describing data a verifying guest writes, and how to read it
 * back. Every 512-byte sector carries a magic, its LBA, the write
 * generation, its sector index, the seed, seeded noise and a CRC-32 of the
 * rest, so that a sector found in the wrong place or from the wrong write
 * says where it came from.
 */
import { crc32 } from 'node:zlib';

export const SECTOR_BYTES = 512;
const WORDS_PER_SECTOR = SECTOR_BYTES / 4;
/** "WFMV" read little-endian: vfmigd workload. */
const MAGIC = 0x564d_4657;

if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) throw new Error('the data pattern is built with native (little-endian) words');

export interface PatternParameters {
  readonly seed: number;
  readonly lbaBytes: number;
}

/** The bytes `blocks` LBAs from `slba` hold after write `generation`. */
export function blockPattern(parameters: PatternParameters, slba: number, blocks: number, generation: number): Uint8Array {
  const sectorsPerLba = parameters.lbaBytes / SECTOR_BYTES;
  const bytes = new Uint8Array(blocks * parameters.lbaBytes);
  const words = new Uint32Array(bytes.buffer);
  for (let block = 0; block < blocks; block++) {
    const lba = slba + block;
    for (let sector = 0; sector < sectorsPerLba; sector++) {
      const base = (block * sectorsPerLba + sector) * WORDS_PER_SECTOR;
      words[base] = MAGIC;
      words[base + 1] = lba >>> 0;
      words[base + 2] = Math.floor(lba / 0x1_0000_0000);
      words[base + 3] = generation;
      words[base + 4] = (sector | (sectorsPerLba << 16)) >>> 0;
      words[base + 5] = parameters.seed;
      // xorshift32 noise, so that no two sectors share content beyond their header.
      let state = (Math.imul(lba ^ parameters.seed, 0x9e37_79b1) ^ Math.imul(generation + 1, 0x85eb_ca6b) ^ Math.imul(sector + 1, 0xc2b2_ae35)) | 1;
      for (let word = 6; word < WORDS_PER_SECTOR - 1; word++) {
        state ^= state << 13;
        state ^= state >>> 17;
        state ^= state << 5;
        words[base + word] = state >>> 0;
      }
      words[base + WORDS_PER_SECTOR - 1] = crc32(bytes.subarray(base * 4, base * 4 + SECTOR_BYTES - 4));
    }
  }
  return bytes;
}

/** Index of the first byte where `a` and `b` differ, or -1. */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length === b.length && Buffer.compare(a, b) === 0) return -1;
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) if (a[i] !== b[i]) return i;
  return length;
}

const ZEROS = new Uint8Array(64 * 1024);

/** Index of the first non-zero byte, or -1; compares natively against a zero block. */
export function firstNonZero(data: Uint8Array): number {
  for (let start = 0; start < data.length; start += ZEROS.length) {
    const chunk = data.subarray(start, start + ZEROS.length);
    const zeros = ZEROS.subarray(0, chunk.length);
    if (Buffer.compare(chunk, zeros) !== 0) return start + firstDifference(zeros, chunk);
  }
  return -1;
}

/** What the sector around `offset` actually holds, decoded from its header when it is pattern data. */
export function describeSector(lbaData: Uint8Array, offset: number): string {
  const start = offset - (offset % SECTOR_BYTES);
  const sector = lbaData.subarray(start, start + SECTOR_BYTES);
  const byte = `0x${(lbaData[offset] ?? 0).toString(16)}`;
  if (sector.every((b) => b === 0)) return `${byte}; the sector is all zeros`;
  const view = new DataView(sector.buffer, sector.byteOffset, sector.byteLength);
  if (sector.length < SECTOR_BYTES || view.getUint32(0, true) !== MAGIC) return `${byte}; the sector is not pattern data`;
  const lba = view.getUint32(4, true) + view.getUint32(8, true) * 0x1_0000_0000;
  const crcOk = crc32(sector.subarray(0, SECTOR_BYTES - 4)) === view.getUint32(SECTOR_BYTES - 4, true);
  return `${byte}; the sector holds LBA ${lba} generation ${view.getUint32(12, true)} sector ${view.getUint16(16, true)} seed ${view.getUint32(20, true)} (CRC ${crcOk ? 'ok' : 'bad'})`;
}

/** Small, fast, seedable PRNG: the same seed gives the same sequence. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b_79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
