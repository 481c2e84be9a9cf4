/** Writes a controller snapshot as a state of the full format (layout: STATE-FORMAT.md). */
import { crc32c } from '@node-rs/crc32';
import { putHex, putNulPadded } from './bytes.ts';
import { ByteWriter } from './byte-cursor.ts';
import type { ControllerSnapshot } from './controller-snapshot.ts';
import { hasMoreFeatures } from './features.ts';
import { encodeErrorEntry, ERROR_ENTRY_BYTES } from './log-pages.ts';
import { encodeIoQueues, writeHeader } from './nvme-controller-state.ts';
import {
  FIRMWARE_BYTES,
  MODEL_BYTES,
  RECORD_VERSION,
  RecordTag,
  SERIAL_BYTES,
  SUBNQN_BYTES,
  VENDOR_LAYOUT_VERSION,
  VENDOR_MAGIC,
} from './state-format.ts';

/**
 * The full format. `suspended`: taken with the VF stopped (CSATTR bit 0), the
 * only kind a destination applies; an image taken while it runs (pre-copy)
 * has it clear.
 */
export function encodeState(s: ControllerSnapshot, suspended = true): Uint8Array {
  const nvmeState = encodeIoQueues({ sqs: s.ioSqs, cqs: s.ioCqs });
  const vendor = encodeVendorSection(s);
  const w = new ByteWriter();
  writeHeader(w, suspended, nvmeState.length, vendor.length);
  w.bytes(nvmeState).bytes(vendor);
  const payload = w.finish();
  // The seal's value is the last dword; it covers everything before it.
  const crc = crc32c(Buffer.from(payload.buffer, payload.byteOffset, payload.length - 4));
  new DataView(payload.buffer).setUint32(payload.length - 4, crc >>> 0, true);
  return payload;
}

function encodeVendorSection(s: ControllerSnapshot): Uint8Array {
  const w = new ByteWriter();
  const moreFeaturesRecord: [number, (body: ByteWriter) => void] = [RecordTag.MORE_FEATURES, (b) => moreFeatures(b, s)];
  const records: [number, (body: ByteWriter) => void][] = [
    [RecordTag.REGISTERS, (b) => registers(b, s)],
    [RecordTag.ADMIN_QUEUES, (b) => adminQueues(b, s)],
    [RecordTag.IO_QUEUE_LATCHES, (b) => ioQueueLatches(b, s)],
    [RecordTag.FEATURES, (b) => features(b, s)],
    // Only when a value is not its default: a reader from before the record still takes every state that does not need it.
    ...(hasMoreFeatures(s.features) ? [moreFeaturesRecord] : []),
    [RecordTag.QUEUE_ALLOCATION, (b) => queueAllocation(b, s)],
    [RecordTag.INTERRUPTS, (b) => interrupts(b, s)],
    [RecordTag.ASYNC_EVENTS, (b) => asyncEvents(b, s)],
    [RecordTag.SMART, (b) => smart(b, s)],
    [RecordTag.ERROR_LOG, (b) => errorLog(b, s)],
    [RecordTag.IDENTITY, (b) => identity(b, s)],
    [RecordTag.SEAL, (b) => b.u32(0)],
  ];
  w.u32(VENDOR_MAGIC).u16(VENDOR_LAYOUT_VERSION).u16(records.length);
  for (const [tag, writeBody] of records) {
    const body = new ByteWriter();
    writeBody(body);
    w.u16(tag).u16(RECORD_VERSION).u32(body.length).bytes(body.finish()).padTo(4);
  }
  return w.finish();
}

function registers(w: ByteWriter, s: ControllerSnapshot): void {
  const r = s.registers;
  w.u32(r.cc).u32(r.csts).u32(r.aqa).u32(s.interruptMask);
  w.u32(r.asqLo).u32(r.asqHi).u32(r.acqLo).u32(r.acqHi);
  w.u32(s.latchedCc === undefined ? 0 : 1).u32(s.latchedCc ?? 0);
}

function adminQueues(w: ByteWriter, s: ControllerSnapshot): void {
  const { adminSq: sq, adminCq: cq } = s;
  w.u32(sq && cq ? 1 : 0);
  w.u64(sq?.base ?? 0).u16(sq?.size ?? 0).u16(sq?.head ?? 0).u16(sq?.tail ?? 0);
  w.u16(sq?.latchedTail === undefined ? 0 : 1).u32(sq?.latchedTail ?? 0);
  w.u64(cq?.base ?? 0).u16(cq?.size ?? 0).u16(cq?.head ?? 0).u16(cq?.tail ?? 0).u8(cq?.phase ?? 0);
  w.u8(cq?.latchedHead === undefined ? 0 : 1).u32(cq?.latchedHead ?? 0);
}

function ioQueueLatches(w: ByteWriter, s: ControllerSnapshot): void {
  w.u16(s.ioSqs.length).u16(s.ioCqs.length);
  const latch = (qid: number, value: number | undefined): void => {
    w.u16(qid).u16(value === undefined ? 0 : 1).u32(value ?? 0);
  };
  for (const sq of s.ioSqs) latch(sq.id, sq.latchedTail);
  for (const cq of s.ioCqs) latch(cq.id, cq.latchedHead);
}

function features(w: ByteWriter, s: ControllerSnapshot): void {
  const f = s.features;
  w.u16(f.nsqa).u16(f.ncqa).u8(f.volatileWriteCache ? 1 : 0).u8(f.coalescingThreshold).u8(f.coalescingTime).u8(0);
  w.u32(f.asyncEventConfig);
}

function moreFeatures(w: ByteWriter, s: ControllerSnapshot): void {
  const f = s.features;
  w.u32(f.arbitration).u8(f.workloadHint).u8(f.disableNormalAtomicity ? 1 : 0).u16(f.coalescingDisabledVectors.length);
  w.u16(f.overTemperatureThreshold).u16(f.underTemperatureThreshold).u16(f.timeLimitedErrorRecovery).u16(0);
  for (const vector of f.coalescingDisabledVectors) w.u16(vector);
  w.padTo(4);
}

/** Bit 0: Number of Queues was set since the last reset; bit 1: an I/O queue was created since then. */
function queueAllocation(w: ByteWriter, s: ControllerSnapshot): void {
  w.u8((s.features.queuesAllocated ? 1 : 0) | (s.features.ioQueuesCreated ? 2 : 0)).u8(0).u16(0);
}

function interrupts(w: ByteWriter, s: ControllerSnapshot): void {
  w.u16(s.vectorCount).u16(s.pendingVectors.length);
  for (const vector of s.pendingVectors) w.u16(vector);
}

function asyncEvents(w: ByteWriter, s: ControllerSnapshot): void {
  const { outstanding, queued, masked } = s.events;
  w.u8(outstanding.length).u8(queued.length).u8(masked.length).u8(0);
  for (const cid of outstanding) w.u16(cid);
  w.padTo(4);
  for (const event of queued) w.u8(event.type).u8(event.info).u8(event.logPage).u8(0);
  for (const mask of masked) w.u8(mask.type).u8(mask.logPage).u16(0);
}

function smart(w: ByteWriter, s: ControllerSnapshot): void {
  w.u64(s.smart.unitsRead).u64(s.smart.unitsWritten).u64(s.smart.hostReadCommands).u64(s.smart.hostWriteCommands);
}

function errorLog(w: ByteWriter, s: ControllerSnapshot): void {
  w.u64(s.errorCount).u16(s.errorLog.length).u16(0).u32(0);
  const entry = new Uint8Array(ERROR_ENTRY_BYTES);
  for (const e of s.errorLog) {
    entry.fill(0);
    encodeErrorEntry(e, entry, 0);
    w.bytes(entry);
  }
}

function identity(w: ByteWriter, s: ControllerSnapshot): void {
  const p = s.profile;
  w.u16(p.cntlid).u16(p.namespaces.length).u32(p.mqes).u16(p.maxIoQueues).u16(p.vectorCount);
  w.bytes(fixedString(p.serial, SERIAL_BYTES)).bytes(fixedString(p.model, MODEL_BYTES));
  w.bytes(fixedString(p.firmware, FIRMWARE_BYTES)).bytes(fixedString(p.subnqn, SUBNQN_BYTES));
  for (const ns of p.namespaces) {
    const ids = new Uint8Array(40);
    putHex(ids, 0, ns.nguid);
    putHex(ids, 16, ns.eui64);
    putHex(ids, 24, ns.uuid);
    w.u32(ns.nsid).u32(ns.blockSize).u64(ns.sizeBytes).bytes(ids);
  }
}

function fixedString(text: string, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  putNulPadded(bytes, 0, length, text);
  return bytes;
}
