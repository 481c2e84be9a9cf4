/**
 * Test support only: a minimal guest-side NVMe driver over a HostPort, with
 * raw SQE builders. Keeps its own queue pointers so a test can move it to
 * another VF (after copying guest memory), as a migrated VM would.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { HostPort } from '../../../vendor-drivers/driver.ts';

export const ADMIN_SQ = 0x10000;
export const ADMIN_CQ = 0x20000;
export const IO_QUEUES = 0x100000;
export const DATA = 0x1000000;

export interface SqeFields {
  opcode: number;
  cid?: number;
  nsid?: number;
  flags?: number;
  prp1?: number;
  prp2?: number;
  cdw10?: number;
  cdw11?: number;
  cdw12?: number;
  cdw13?: number;
  cdw14?: number;
  cdw15?: number;
}

export function sqe(fields: SqeFields): Uint8Array {
  const bytes = new Uint8Array(64);
  const dv = new DataView(bytes.buffer);
  dv.setUint32(0, (fields.opcode | ((fields.flags ?? 0) << 8) | ((fields.cid ?? 0) << 16)) >>> 0, true);
  dv.setUint32(4, fields.nsid ?? 0, true);
  setU64(dv, 24, fields.prp1 ?? 0);
  setU64(dv, 32, fields.prp2 ?? 0);
  const dws = [fields.cdw10, fields.cdw11, fields.cdw12, fields.cdw13, fields.cdw14, fields.cdw15];
  dws.forEach((value, i) => dv.setUint32(40 + 4 * i, (value ?? 0) >>> 0, true));
  return bytes;
}

export function setU64(dv: DataView, offset: number, value: number): void {
  dv.setUint32(offset, value % 2 ** 32, true);
  dv.setUint32(offset + 4, Math.floor(value / 2 ** 32), true);
}

export interface Cqe {
  dw0: number;
  sqHead: number;
  sqId: number;
  cid: number;
  phase: number;
  /** Status field without DNR/M/CRD: (SCT << 8) | SC. */
  status: number;
  dnr: boolean;
  /** M: the Error Information log has an entry for this command. */
  more: boolean;
}

export function decodeCqe(bytes: Uint8Array): Cqe {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, 16);
  const dw2 = dv.getUint32(8, true);
  const dw3 = dv.getUint32(12, true);
  const statusField = dw3 >>> 17;
  return {
    dw0: dv.getUint32(0, true),
    sqHead: dw2 & 0xffff,
    sqId: dw2 >>> 16,
    cid: dw3 & 0xffff,
    phase: (dw3 >>> 16) & 1,
    status: statusField & 0x7ff,
    dnr: (statusField & 0x4000) !== 0,
    more: (statusField & 0x2000) !== 0,
  };
}

interface QueuePair {
  sqBase: number;
  sqEntries: number;
  sqTail: number;
  cqBase: number;
  cqEntries: number;
  cqHead: number;
  phase: number;
}

export class TestGuest {
  port: HostPort;
  readonly #queues = new Map<number, QueuePair>();
  #nextCid = 1;

  constructor(port: HostPort) {
    this.port = port;
  }

  /** Same queues, another VF: what a VM sees after migration. */
  moveTo(port: HostPort): void {
    this.port = port;
  }

  cid(): number {
    const cid = this.#nextCid;
    this.#nextCid = (this.#nextCid % 0xfffe) + 1;
    return cid;
  }

  async enable(entries = 32): Promise<void> {
    const p = this.port;
    // Stale entries from an earlier life of the queue would look like completions.
    p.memWrite(ADMIN_CQ, new Uint8Array(entries * 16));
    p.mmioWrite32(0x24, ((entries - 1) << 16) | (entries - 1));
    p.mmioWrite32(0x28, ADMIN_SQ);
    p.mmioWrite32(0x2c, 0);
    p.mmioWrite32(0x30, ADMIN_CQ);
    p.mmioWrite32(0x34, 0);
    p.mmioWrite32(0x14, (4 << 20) | (6 << 16) | 1);
    if ((p.mmioRead32(0x1c) & 1) !== 1) throw new Error('controller did not become ready');
    this.#queues.set(0, { sqBase: ADMIN_SQ, sqEntries: entries, sqTail: 0, cqBase: ADMIN_CQ, cqEntries: entries, cqHead: 0, phase: 1 });
  }

  /** Writes the SQE at the tail without ringing (several can be queued, then `ring`). */
  place(qid: number, entry: Uint8Array): void {
    const q = this.#queue(qid);
    this.port.memWrite(q.sqBase + q.sqTail * 64, entry);
    q.sqTail = (q.sqTail + 1) % q.sqEntries;
  }

  ring(qid: number): void {
    this.port.mmioWrite32(0x1000 + 8 * qid, this.#queue(qid).sqTail);
  }

  submit(qid: number, entry: Uint8Array): void {
    this.place(qid, entry);
    this.ring(qid);
  }

  /** The next CQE of the pair's CQ if one is there, consumed (CQ head doorbell rung). */
  poll(qid: number): Cqe | undefined {
    const q = this.#queue(qid);
    const cqe = decodeCqe(this.port.memRead(q.cqBase + q.cqHead * 16, 16));
    if (cqe.phase !== q.phase) return undefined;
    q.cqHead = (q.cqHead + 1) % q.cqEntries;
    if (q.cqHead === 0) q.phase ^= 1;
    this.port.mmioWrite32(0x1000 + 8 * qid + 4, q.cqHead);
    return cqe;
  }

  async next(qid: number, timeoutMs = 3000): Promise<Cqe> {
    const until = performance.now() + timeoutMs;
    for (;;) {
      const cqe = this.poll(qid);
      if (cqe) return cqe;
      if (performance.now() > until) throw new Error(`no completion on CQ ${qid} within ${timeoutMs} ms`);
      await nextTurn();
    }
  }

  async collect(qid: number, count: number, timeoutMs = 3000): Promise<Cqe[]> {
    const out: Cqe[] = [];
    while (out.length < count) out.push(await this.next(qid, timeoutMs));
    return out;
  }

  async run(qid: number, fields: SqeFields): Promise<Cqe> {
    const cid = fields.cid ?? this.cid();
    this.submit(qid, sqe({ ...fields, cid }));
    const cqe = await this.next(qid);
    if (cqe.cid !== cid) throw new Error(`expected completion of CID ${cid}, got ${cqe.cid}`);
    return cqe;
  }

  admin(fields: SqeFields): Promise<Cqe> {
    return this.run(0, fields);
  }

  async createIoPair(qid: number, entries = 64, vector = qid, cqEntries = entries): Promise<void> {
    const cqBase = IO_QUEUES + qid * 0x20000;
    const sqBase = cqBase + 0x10000;
    this.port.memWrite(cqBase, new Uint8Array(cqEntries * 16));
    const cq = await this.admin({ opcode: 0x05, prp1: cqBase, cdw10: ((cqEntries - 1) << 16) | qid, cdw11: (vector << 16) | 0x3 });
    if (cq.status !== 0) throw new Error(`Create I/O CQ ${qid} failed: 0x${cq.status.toString(16)}`);
    const sq = await this.admin({ opcode: 0x01, prp1: sqBase, cdw10: ((entries - 1) << 16) | qid, cdw11: (qid << 16) | 0x1 });
    if (sq.status !== 0) throw new Error(`Create I/O SQ ${qid} failed: 0x${sq.status.toString(16)}`);
    this.#queues.set(qid, { sqBase, sqEntries: entries, sqTail: 0, cqBase, cqEntries, cqHead: 0, phase: 1 });
  }

  /** Guest ranges in use (queues), for copying guest memory to another VF. */
  queueRanges(): { address: number; length: number }[] {
    return [...this.#queues.values()].flatMap((q) => [
      { address: q.sqBase, length: q.sqEntries * 64 },
      { address: q.cqBase, length: q.cqEntries * 16 },
    ]);
  }

  #queue(qid: number): QueuePair {
    const q = this.#queues.get(qid);
    if (!q) throw new Error(`no queue pair ${qid}`);
    return q;
  }
}

export function copyGuestMemory(from: HostPort, to: HostPort, ranges: { address: number; length: number }[]): void {
  for (const range of ranges) to.memWrite(range.address, from.memRead(range.address, range.length));
}

export function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
  return out;
}
