/** vf.*: the VFIO v2 migration surface of each VF. */
import type { MigrationCore } from '../core/migration-core.ts';
import type { Caller, TransitionResult, VfMachine } from '../core/vf-machine.ts';
import type { RequestContext } from '../rpc/context.ts';
import { vfioStateValue } from '../core/vfio-states.ts';
import { markBase64 } from '../rpc/base64-fields.ts';
import type { StreamDescriptor } from '../core/state-records.ts';
import { piecesSlice, sliceBytes } from '../core/migration-session.ts';
import type { Transition } from '../../schemas/types.ts';
import { InvalidParamsError } from '../rpc/call-errors.ts';
import { base64Slice, type MethodHandlers } from './method-table.ts';

const DEFAULT_TIMEOUT_MS = 5000;
const DEFAULT_SLICE_BYTES = 1024 * 1024;

type VfHandlers = Pick<MethodHandlers,
  'vf.list' | 'vf.get' | 'vf.getState' | 'vf.setState' | 'vf.quiesce' | 'vf.resume' | 'vf.save' | 'vf.load' | 'vf.pending' | 'vf.reset'
  | 'vf.formats' | 'vf.stateDescriptor' | 'vf.checkCompatibility' | 'vf.precopyInfo' | 'vf.renewLease'>;

export function vfHandlers(core: MigrationCore): VfHandlers {
  return {
    // Only the VFs the caller may read: the others are not said to exist.
    'vf.list': async ({ driver }, ctx) => ({
      vfs: core.list().map((m) => core.summary(m)).filter((s) => (driver === undefined || s.driver === driver) && ctx.may('read', s)),
    }),
    'vf.get': async ({ vf }) => {
      const { capabilities, stateFormats, description, session, migration, ...summary } = await core.details(vf);
      return {
        ...summary,
        capabilities: { ...capabilities },
        details: description.details,
        stateFormats: stateFormats.map((f) => ({ ...f })),
        identity: { ...description.identity },
        session: session ?? null,
        migration: migration ?? null,
      };
    },
    // The VMM polls these while a migration runs: the owner's polls keep its lease.
    'vf.getState': async ({ vf }, ctx) => {
      const machine = touched(core, vf, ctx);
      return { vf: machine.vf.id, state: machine.state, value: vfioStateValue(machine.state) };
    },
    'vf.setState': async ({ vf, state, timeoutMs, leaseMs, session }, ctx) => {
      const machine = core.lookup(vf);
      return transition(machine, await machine.setState(state, timeoutMs ?? DEFAULT_TIMEOUT_MS, callerOf(ctx, machine, leaseMs), session));
    },
    'vf.quiesce': async ({ vf, timeoutMs, leaseMs }, ctx) => {
      const machine = core.lookup(vf);
      return transition(machine, await machine.quiesce(timeoutMs ?? DEFAULT_TIMEOUT_MS, callerOf(ctx, machine, leaseMs)));
    },
    'vf.renewLease': async ({ vf, session, leaseMs }, ctx) => {
      const machine = core.lookup(vf);
      return { vf: machine.vf.id, ...(await machine.renewLease(callerOf(ctx, machine, leaseMs), session)) };
    },
    'vf.resume': async ({ vf, timeoutMs, session }, ctx) => {
      const machine = core.lookup(vf);
      return transition(machine, await machine.resume(timeoutMs ?? DEFAULT_TIMEOUT_MS, callerOf(ctx, machine), session));
    },
    'vf.reset': async ({ vf }, ctx) => {
      const machine = core.lookup(vf);
      return transition(machine, await machine.reset(callerOf(ctx, machine)));
    },
    'vf.save': async ({ vf, maxBytes, offset, session, format, leaseMs }, ctx) => {
      const machine = core.lookup(vf);
      const slice = await machine.save(maxBytes ?? DEFAULT_SLICE_BYTES, offset, DEFAULT_TIMEOUT_MS, callerOf(ctx, machine, leaseMs), session, format);
      const result = {
        offset: slice.offset,
        length: slice.length,
        remaining: slice.remaining,
        totalBytes: slice.totalBytes,
        eof: slice.eof,
        session: slice.session,
      };
      const attached = ctx.attach(slice.pieces, slice.release);
      if (attached !== undefined) return { data: attached, ...result };
      const base64 = sliceBytes(slice).toString('base64');
      slice.release();
      return markBase64({ data: base64, ...result }, 'data');
    },
    'vf.load': async ({ vf, offset, data, session, leaseMs }, ctx) => {
      const machine = core.lookup(vf);
      const bytes = typeof data === 'string' ? base64Slice(data, '/data') : piecesSlice(ctx.attachment(data), data.attachment);
      return machine.load(offset, bytes, DEFAULT_TIMEOUT_MS, callerOf(ctx, machine, leaseMs), session);
    },
    'vf.pending': async ({ vf }, ctx) => touched(core, vf, ctx).pending(),
    'vf.formats': async ({ vf }) => ({ formats: core.lookup(vf).formats() }),
    'vf.precopyInfo': async ({ vf }, ctx) => touched(core, vf, ctx).precopyInfo(),
    'vf.stateDescriptor': async ({ vf, format }) => ({ descriptor: await core.lookup(vf).stateDescriptor(format) }),
    // The schema has checked the descriptor's shape; its identity is JSON, as a stream's is.
    'vf.checkCompatibility': async ({ vf, descriptor }) => core.lookup(vf).checkCompatibility(descriptor as StreamDescriptor),
  };
}

/**
 * The caller of a state-changing call, as the migration core needs it: for
 * session ownership, a logger bound to the VF, and the lease it asks for
 * (refused before anything happens if longer than the config allows).
 */
function callerOf(ctx: RequestContext, machine: VfMachine, leaseMs?: number): Caller {
  if (leaseMs !== undefined && leaseMs > machine.maxLeaseMs) {
    throw new InvalidParamsError('/leaseMs', `must be at most ${machine.maxLeaseMs} (leases.maxMs)`);
  }
  return { principal: ctx.principal, admin: ctx.admin, log: ctx.log.child({ vf: machine.vf.id }), ...(leaseMs === undefined ? {} : { leaseMs }) };
}

/** The VF, its owner's lease extended: a poll of the VMM is a sign of life. */
function touched(core: MigrationCore, vf: string, ctx: RequestContext): VfMachine {
  const machine = core.lookup(vf);
  machine.touch(ctx.principal);
  return machine;
}

function transition(machine: VfMachine, result: TransitionResult): Transition {
  return { vf: machine.vf.id, ...result, value: vfioStateValue(result.state) };
}
