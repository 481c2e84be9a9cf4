/**
 * The pieces every end-to-end migration test needs: two agent processes
 * offering the same nvme-emu VFs (same guest-visible identity, same
 * namespace files, as with shared storage), and a busy guest on a VF with
 * commands in flight whose every command and byte is checked at the end.
 */
import type { ExecutionContext } from 'ava';
import { join } from 'node:path';
import type { Config, NvmeEmuOptions, NvmeEmuVf } from '../../schemas/types.ts';
import { startAgentProcess, type AgentProcess } from './agent-process.ts';
import { GuestNvme } from './guest-nvme.ts';
import { rpcHostPort, type GuestHostPort } from './host-port.ts';
import { base64Of, RpcClient } from './rpc-client.ts';
import { VerifyingWorkload, type WorkloadReport } from './verifying-workload.ts';

const MiB = 1024 * 1024;

export interface Side {
  readonly agent: AgentProcess;
  readonly rpc: RpcClient;
  /** The host port of a VF of this agent, for the guest. */
  portOf(bdf: string): GuestHostPort;
}

export interface BusyGuest {
  readonly nvme: GuestNvme;
  readonly workload: VerifyingWorkload;
}

/** VF `index` as both agents offer it. */
/** The PCI address of function `n` of bus 3b: eight functions to a device. */
const bdfAt = (n: number): string => `0000:3b:${Math.floor(n / 8).toString(16).padStart(2, '0')}.${n % 8}`;

export function vfConfig(dir: string, index = 0, overrides: Partial<NvmeEmuVf> = {}): NvmeEmuVf {
  return {
    id: `nvme${index}`, bdf: bdfAt(2 + index), cntlid: 3 + index, serial: `VFMIG-E2E-000${index}`,
    model: 'vfmigd e2e', subnqn: `nqn.2026-11.dev.vfmigd:e2e-${index}`,
    namespaces: [{ nsid: 1, path: join(dir, `ns${index}.img`), sizeBytes: 64 * MiB, blockSize: 512 }],
    ...overrides,
  };
}

/**
 * An agent with these VFs and the host port on; a 2 ms service time keeps
 * many commands inside the device at once. `config` adds to the agent's
 * config (listeners, TLS, grants), `options` to nvme-emu's (formats,
 * pre-copy); the test's own calls and the host port use its loopback TCP
 * listener.
 */
export async function startSide(t: Pick<ExecutionContext, 'teardown'>, vfs: NvmeEmuVf[], serviceTimeUs = 2000, config: Partial<Config> = {}, options: NvmeEmuOptions = {}): Promise<Side> {
  const agent = await startAgentProcess({ config: { ...config, drivers: [{ driver: 'nvme-emu', options: { ...options, hostPort: true, serviceTimeUs, vfs } }] } });
  t.teardown(async () => { await agent.stop(); });
  const rpc = await RpcClient.connect(agent.tcp);
  t.teardown(() => rpc.destroy());
  // Each VF's host port gets a connection of its own, as each VM's would:
  // several busy guests on one connection would exceed its in-flight limit.
  const connections = new Map<string, Promise<RpcClient>>();
  const connectionFor = (bdf: string): Promise<RpcClient> => {
    let connection = connections.get(bdf);
    if (connection === undefined) {
      connection = RpcClient.connect(agent.tcp);
      connections.set(bdf, connection);
      t.teardown(async () => { (await connection)?.destroy(); });
    }
    return connection;
  };
  return {
    agent,
    rpc,
    portOf: (bdf) => rpcHostPort(async (method, params) => (await connectionFor(bdf)).callAny(method, params), bdf),
  };
}

/** A guest with four I/O queue pairs and a verifying workload that has run for a while. */
export async function busyGuest(port: GuestHostPort, seed: number): Promise<BusyGuest> {
  const nvme = new GuestNvme(port);
  await nvme.enable();
  await nvme.setNumberOfQueues(4);
  for (let qid = 1; qid <= 4; qid += 1) await nvme.createIoQueuePair(qid, 256, qid);
  const workload = await VerifyingWorkload.create(nvme, { nsid: 1, queueIds: [1, 2, 3, 4], seed, queueDepth: 96, initialContent: 'zeroes', lbaCount: 8192 });
  await workload.runUntil(300);
  return { nvme, workload };
}

/** Puts at least 64 commands in flight and stops the guest's vCPUs (no submitting, no polling). */
export async function pauseWithCommandsInFlight(t: ExecutionContext, workload: VerifyingWorkload): Promise<number> {
  await workload.submitBurst(160);
  const inFlight = workload.inFlight;
  t.true(inFlight >= 64, `${inFlight} commands in flight when the VM stops`);
  workload.quiesceGuestSide();
  return inFlight;
}

/** The guest runs on (wherever it is attached now) and then every command and byte is checked. */
export async function finishClean(t: ExecutionContext, guest: BusyGuest, moreCommands: number): Promise<void> {
  guest.workload.resumeGuestSide();
  await guest.workload.runUntil(guest.workload.stats().completed + moreCommands);
  assertClean(t, await guest.workload.finish(), guest.nvme);
}

export function assertClean(t: ExecutionContext, report: WorkloadReport, nvme: GuestNvme): void {
  t.deepEqual(report.failures.map((f) => f.message), [], `seed ${report.seed}: ${report.failureCount} failures`);
  t.true(report.ok);
  t.is(report.stats.completed, report.stats.submitted, 'every submitted command completed exactly once');
  t.deepEqual(nvme.violations(), [], 'no duplicate or stray completion, no queue pointer going backwards');
}

/** Reads the whole save stream of `vf` in slices of `sliceBytes`, from `offset` 0, checking what each slice says. */
export async function saveAll(rpc: RpcClient, vf: string, sliceBytes: number): Promise<{ slices: Buffer[]; total: number }> {
  const slices: Buffer[] = [];
  let offset = 0;
  for (;;) {
    const slice = await rpc.call('vf.save', { vf, maxBytes: sliceBytes, offset });
    if (slice.offset !== offset) throw new Error(`slice at ${slice.offset}, expected ${offset}`);
    const bytes = Buffer.from(base64Of(slice.data), 'base64');
    if (bytes.length !== slice.length || bytes.length > sliceBytes) throw new Error(`slice of ${bytes.length} bytes, announced ${slice.length}`);
    slices.push(bytes);
    offset += bytes.length;
    if (slice.remaining !== slice.totalBytes - offset) throw new Error(`remaining ${slice.remaining} after ${offset} of ${slice.totalBytes}`);
    if (slice.eof) return { slices, total: slice.totalBytes };
  }
}

/** Loads `slices` in order into `vf`, checking the progress each reports. */
export async function loadAll(rpc: RpcClient, vf: string, slices: readonly Buffer[]): Promise<void> {
  let offset = 0;
  for (const [index, bytes] of slices.entries()) {
    const progress = await rpc.call('vf.load', { vf, offset, data: bytes.toString('base64') });
    offset += bytes.length;
    if (progress.received !== offset || progress.state !== 'RESUMING') throw new Error(`load progress ${JSON.stringify(progress)} at ${offset}`);
    if (progress.complete !== (index === slices.length - 1)) throw new Error(`complete=${progress.complete} after slice ${index + 1} of ${slices.length}`);
  }
}
