/**
 * The VF state machine's promise that a refused call changes nothing: from
 * every state a client can put a VF in, every refusal (of the state
 * machine, of a stream offset, of a slice, of the driver: a quiesce that
 * times out after its first step) leaves the state, the save stream and its
 * cursor, and the load buffer exactly as they were, and says that state in
 * `details.state`. The exceptions are stated and tested too: a driver
 * failure leaves ERROR, and leaving RESUMING ends the resume session
 * whether or not the state applied.
 */
import test, { type ExecutionContext } from 'ava';
import { pino } from 'pino';
import { FAKE_FORMAT as FORMAT, FAKE_IDENTITY as IDENTITY, FakeDriver, refusal, savedStream } from '../../test/support/fake-driver.ts';
import { DriverError, type HostPort } from '../../vendor-drivers/driver.ts';
import { Fault, type FaultName } from './faults.ts';
import { bufferSlice, sliceBytes, type SliceSource } from './migration-session.ts';
import { encodeEnvelope } from './state-envelope.ts';
import { RecordStreamReader } from './state-records.ts';
import { AGENT_CALLER, VfMachine, type VfMachineLimits } from './vf-machine.ts';

const SECOND = 1000;

const LIMITS: VfMachineLimits = { maxStateBytes: 1 << 20, maxQueuedCalls: 8, defaultLeaseMs: 600000, maxLeaseMs: 600000 };

function machine(limits: VfMachineLimits = LIMITS): { vf: VfMachine; driver: FakeDriver } {
  const driver = new FakeDriver();
  const vf = new VfMachine({ id: 'vf0', bdf: '0000:01:00.1', kind: 'fake' }, driver, limits, pino({ enabled: false }));
  return { vf, driver };
}

/** A v1 state, as an older agent saved it (still loaded). */
function stream(payload: string): Buffer {
  return encodeEnvelope({ format: FORMAT, identity: IDENTITY, payload: Buffer.from(payload) });
}


/** Everything a refused call must leave as it was, read through the machine's public surface. */
async function fingerprint(vf: VfMachine, driver: FakeDriver): Promise<string> {
  const pending = vf.pending();
  // When a call last touched the session is not the session's state.
  const { lastActivityAt: _, ...session } = vf.sessionInfo ?? { lastActivityAt: '' };
  return JSON.stringify({ state: vf.state, level: driver.level, pending, session });
}

/** A session id no VF has open. */
const NOT_OPEN = '00000000-0000-4000-8000-000000000000';

/** The state the RESUMING setups load, in part. */
const INCOMING = stream('a state from elsewhere');

/** The VF in each state a client can leave it in, with a half-read save stream or a half-loaded state where there is one. */
const SETUPS: Record<string, (vf: VfMachine) => Promise<void>> = {
  RUNNING: async () => {},
  RUNNING_P2P: async (vf) => { await vf.setState('RUNNING_P2P', SECOND); },
  STOP: async (vf) => { await vf.quiesce(SECOND); },
  'STOP_COPY, stream half read': async (vf) => {
    await vf.quiesce(SECOND);
    await vf.save(20, undefined, SECOND);
  },
  'RESUMING, header not yet in': async (vf) => {
    await vf.quiesce(SECOND);
    await vf.load(0, bufferSlice(INCOMING.subarray(0, 10)), SECOND);
  },
  'RESUMING, state half loaded': async (vf) => {
    await vf.quiesce(SECOND);
    await vf.load(0, bufferSlice(INCOMING.subarray(0, 30)), SECOND);
  },
};

/** Calls refused in some or all of those states (and those they are not refused in are skipped). */
const REFUSALS: Record<string, (vf: VfMachine) => Promise<unknown>> = {
  'save past the end': (vf) => vf.save(10, 1 << 20, SECOND),
  'load with a gap': (vf) => vf.load(4096, bufferSlice(Buffer.from('xyz')), SECOND),
  'load of bytes that differ from those received': (vf) => vf.load(0, bufferSlice(Buffer.from('not the same bytes at all, no')), SECOND),
  'load of a foreign header': (vf) => vf.load(0, bufferSlice(Buffer.alloc(64, 0x41)), SECOND),
  'load of a header announcing too much': (vf) => {
    const big = Buffer.from(stream('x').subarray(0, 24));
    big.writeBigUInt64LE(1n << 40n, 16);
    return vf.load(0, bufferSlice(big), SECOND);
  },
  'load that completes the header with garbage': (vf) => vf.load(10, bufferSlice(Buffer.alloc(30, 0x41)), SECOND),
  'load that runs past the announced length': (vf) => vf.load(30, bufferSlice(Buffer.concat([INCOMING.subarray(30), Buffer.from('extra')])), SECOND),
  'save naming a session that is not open': (vf) => vf.save(10, undefined, SECOND, AGENT_CALLER, NOT_OPEN),
  'load naming a session that is not open': (vf) => vf.load(0, bufferSlice(INCOMING.subarray(0, 10)), SECOND, AGENT_CALLER, NOT_OPEN),
  'setState ERROR': (vf) => vf.setState('ERROR', SECOND),
  'setState PRE_COPY': (vf) => vf.setState('PRE_COPY', SECOND),
};

for (const [setupName, setup] of Object.entries(SETUPS)) {
  test(`from ${setupName}, every refused call changes nothing and says the state`, async (t) => {
    const { vf, driver } = machine();
    await setup(vf);
    let refused = 0;
    for (const [name, call] of Object.entries(REFUSALS)) {
      const before = await fingerprint(vf, driver);
      const state = vf.state;
      let fault: Fault;
      try {
        fault = await refusal(call(vf));
      } catch {
        // Not refused from this state (e.g. a matching retry): then it must not have changed anything either.
        t.is(await fingerprint(vf, driver), before, `${name} (accepted)`);
        continue;
      }
      refused += 1;
      t.is(fault.details.state, state, `${name}: ${fault.fault} ${fault.message}`);
      t.is(await fingerprint(vf, driver), before, `${name}: ${fault.fault} ${fault.message}`);
    }
    t.true(refused >= 3, `only ${refused} calls were refused from ${setupName}`);
  });
}

test('save with an offset past the end of a stream it had to open leaves the VF in STOP with no stream', async (t) => {
  const { vf } = machine();
  await vf.quiesce(SECOND);
  const fault = await refusal(vf.save(10, 1 << 20, SECOND));
  t.is(fault.fault, 'STREAM_OFFSET');
  t.is(fault.details.state, 'STOP');
  t.is(vf.state, 'STOP');
  t.false((await vf.pending()).streamOpen);
  // The next save opens the stream afresh, from its start.
  const slice = await vf.save(1 << 20, undefined, SECOND);
  t.true(sliceBytes(slice).equals(savedStream('the device state of the fake VF')));
});

test('a refused save in STOP_COPY leaves the cursor where it was', async (t) => {
  const { vf } = machine();
  await vf.quiesce(SECOND);
  const whole = savedStream('the device state of the fake VF');
  const head = sliceBytes(await vf.save(10, undefined, SECOND));
  t.is((await refusal(vf.save(10, whole.length + 1, SECOND))).details.expected, 10);
  const rest = sliceBytes(await vf.save(1 << 20, undefined, SECOND));
  t.true(Buffer.concat([head, rest]).equals(whole));
});

test('load at a wrong offset from STOP leaves the VF in STOP, not RESUMING', async (t) => {
  const { vf } = machine();
  await vf.quiesce(SECOND);
  const fault = await refusal(vf.load(7, bufferSlice(Buffer.from('abc')), SECOND));
  t.is(fault.fault, 'STREAM_OFFSET');
  t.is(fault.details.state, 'STOP');
  t.is(vf.state, 'STOP');
});

test('a slice whose bytes do not decode (not a Fault) passes through and changes nothing either', async (t) => {
  const { vf } = machine();
  await vf.quiesce(SECOND);
  const broken: SliceSource = {
    length: 3,
    pieces: () => { throw new RangeError('not base64'); },
  };
  await t.throwsAsync(vf.load(0, broken, SECOND), { instanceOf: RangeError });
  t.is(vf.state, 'STOP');
  const whole = stream('a state');
  await vf.load(0, bufferSlice(whole.subarray(0, 40)), SECOND);
  await t.throwsAsync(vf.load(40, broken, SECOND), { instanceOf: RangeError });
  t.like(await vf.load(40, bufferSlice(whole.subarray(40)), SECOND), { state: 'RESUMING', received: whole.length, complete: true });
});

test('a quiesce refused after its first step (RUNNING_P2P reached, STOP timed out) is put back to RUNNING', async (t) => {
  for (const target of ['STOP', 'STOP_COPY', 'RESUMING'] as const) {
    const { vf, driver } = machine();
    driver.onRunLevel = (from, to) => {
      if (from === 'p2p-quiesced' && to === 'stopped') throw new DriverError('quiesce-timeout', 'commands still in flight');
    };
    const fault = await refusal(target === 'STOP' ? vf.quiesce(SECOND) : vf.setState(target, SECOND));
    t.is(fault.fault, 'QUIESCE_TIMEOUT', target);
    t.is(fault.details.state, 'RUNNING', target);
    t.is(vf.state, 'RUNNING', target);
    t.is(driver.level, 'running', `${target}: the driver runs again`);
  }
});

test('when a refused call cannot be put back, the VF says ERROR rather than a state it is not in', async (t) => {
  const { vf, driver } = machine();
  driver.onRunLevel = (from, to) => {
    if (from === 'p2p-quiesced' && to === 'stopped') throw new DriverError('quiesce-timeout', 'commands still in flight');
    if (to === 'running') throw new Error('the device fell off the bus');
  };
  const fault = await refusal(vf.quiesce(SECOND));
  t.is(fault.fault, 'QUIESCE_TIMEOUT');
  t.is(fault.details.state, 'ERROR');
  t.is(vf.state, 'ERROR');
  t.false((await vf.pending()).streamOpen);
  driver.onRunLevel = () => undefined;
  t.is((await vf.reset()).state, 'RUNNING');
});

test('a driver failure is not undone: the VF is in ERROR and says so', async (t) => {
  const { vf, driver } = machine();
  driver.onRunLevel = () => { throw new Error('the device fell off the bus'); };
  const fault = await refusal(vf.quiesce(SECOND));
  t.is(fault.fault, 'DRIVER_FAILURE');
  t.is(fault.details.state, 'ERROR');
  for (const call of [vf.quiesce(SECOND), vf.resume(SECOND), vf.setState('STOP', SECOND), vf.load(0, bufferSlice(Buffer.alloc(1)), SECOND)]) {
    const refused = await refusal(call);
    t.is(refused.fault, 'ILLEGAL_TRANSITION');
    t.is(refused.details.state, 'ERROR');
  }
  t.is((await refusal(vf.save(10, undefined, SECOND))).details.state, 'ERROR');
});

test('leaving RESUMING ends the session whether the state applied or not; a refused state leaves the VF in STOP, untouched', async (t) => {
  for (const how of ['setState', 'resume'] as const) {
    const { vf, driver } = machine();
    await vf.quiesce(SECOND);
    await vf.load(0, bufferSlice(stream('bad state')), SECOND);
    const fault = await refusal(how === 'resume' ? vf.resume(SECOND) : vf.setState('STOP', SECOND));
    t.is(fault.fault, 'STATE_CORRUPT', how);
    t.is(fault.details.state, 'STOP', how);
    t.is(vf.state, 'STOP', how);
    t.is(driver.payload.toString(), 'the device state of the fake VF', how);
    t.is(driver.level, 'stopped', how);
  }
  // A state that applies stays applied.
  const { vf, driver } = machine();
  await vf.quiesce(SECOND);
  await vf.load(0, bufferSlice(stream('good state')), SECOND);
  t.is((await vf.resume(SECOND)).state, 'RUNNING');
  t.is(driver.payload.toString(), 'good state');
});

test('VF_BUSY says the state the VF is in', async (t) => {
  const { vf, driver } = machine({ ...LIMITS, maxQueuedCalls: 1 });
  let release = (): void => undefined;
  driver.onRunLevel = () => new Promise<void>((resolve) => { release = resolve; });
  const quiesce = vf.quiesce(SECOND);
  const fault = await refusal(vf.setState('STOP', SECOND));
  t.is(fault.fault, 'VF_BUSY');
  t.is(fault.details.state, 'RUNNING');
  release();
  driver.onRunLevel = () => undefined;
  t.is((await quiesce).state, 'STOP');
});

test('refusals of the state machine and of the save stream say the state', async (t) => {
  const { vf } = machine();
  const expectations: [Promise<unknown>, FaultName][] = [
    [vf.save(10, undefined, SECOND), 'NO_SAVE_STREAM'],
    [vf.load(0, bufferSlice(Buffer.alloc(1)), SECOND), 'ILLEGAL_TRANSITION'],
    [vf.setState('PRE_COPY_P2P', SECOND), 'ILLEGAL_TRANSITION'],
  ];
  for (const [call, name] of expectations) {
    const fault = await refusal(call);
    t.is(fault.fault, name);
    t.is(fault.details.state, 'RUNNING');
  }
});

test('host-port refusals say the state too', (t: ExecutionContext) => {
  const { vf, driver } = machine();
  t.is(t.throws(() => vf.hostAccess((port) => port.mmioRead32(0)), { instanceOf: Fault })?.details.state, 'RUNNING');
  driver.port = {
    mmioRead32: () => { throw new DriverError('invalid-access', 'misaligned'); },
    mmioWrite32: () => undefined,
    memRead: () => new Uint8Array(0),
    memWrite: () => undefined,
    interruptCounts: () => [],
  };
  const fault = t.throws(() => vf.hostAccess((port) => port.mmioRead32(1)), { instanceOf: Fault });
  t.is(fault?.fault, 'DEVICE_ACCESS');
  t.is(fault?.details.state, 'RUNNING');
  t.deepEqual(vf.hostAccess((port) => port.interruptCounts()), []);
});

test('a save is a session: its id comes with every slice, its owner is the principal that opened it, and it ends with the stream', async (t) => {
  const { vf } = machine();
  const host = { principal: 'spiffe://dc1/host/hv-17', admin: false };
  await vf.quiesce(SECOND, host);
  t.is(vf.sessionInfo, undefined, 'STOP opens no session');
  const first = await vf.save(10, undefined, SECOND, host);
  t.regex(first.session, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  t.like(vf.sessionInfo, { id: first.session, kind: 'save', vf: 'vf0', owner: host.principal, phase: 'stop-copy', bytes: 10 });
  const info = vf.sessionInfo;
  t.true(Date.parse(info?.createdAt ?? '') <= Date.parse(info?.lastActivityAt ?? ''));
  const second = await vf.save(10, undefined, SECOND, host, first.session);
  t.is(second.session, first.session);
  t.is(second.offset, 10);
  const wrong = await refusal(vf.save(10, undefined, SECOND, host, NOT_OPEN));
  t.is(wrong.fault, 'SESSION_UNKNOWN');
  t.is(wrong.details.session, first.session, 'the refusal names the open session');
  t.is((await vf.save(10, undefined, SECOND, host)).offset, 20, 'the refused call moved nothing');
  await vf.setState('STOP', SECOND, host);
  t.is(vf.sessionInfo, undefined, 'STOP_COPY → STOP ends the session');
  const again = await refusal(vf.save(10, undefined, SECOND, host, first.session));
  t.is(again.fault, 'SESSION_UNKNOWN', 'an ended session cannot be continued');
  t.is(again.details.session, null);
  t.is(vf.state, 'STOP', 'and the refusal opened no new one');
  t.not((await vf.save(10, undefined, SECOND, host)).session, first.session, 'a new save is a new session');
});

test('a resume is a session too: opened by the first load, named by the next, ended by the commit', async (t) => {
  const { vf } = machine();
  await vf.quiesce(SECOND);
  const whole = stream('the state to load');
  const first = await vf.load(0, bufferSlice(whole.subarray(0, 30)), SECOND);
  t.like(vf.sessionInfo, { id: first.session, kind: 'resume', phase: 'resuming', owner: 'agent', bytes: 30 });
  t.is((await refusal(vf.load(30, bufferSlice(whole.subarray(30)), SECOND, AGENT_CALLER, NOT_OPEN))).fault, 'SESSION_UNKNOWN');
  const rest = await vf.load(30, bufferSlice(whole.subarray(30)), SECOND, AGENT_CALLER, first.session);
  t.true(rest.complete);
  await vf.resume(SECOND);
  t.is(vf.sessionInfo, undefined);
});

test('formats: a driver that saves in two formats saves in the one asked for, and lists what it saves and loads', async (t) => {
  const driver = new FakeDriver();
  const legacy = { name: 'fake', version: 0 };
  Object.assign(driver, { saveFormats: [FORMAT, legacy], stateFormats: [FORMAT, legacy, { name: 'fake-import', version: 1 }] });
  const vf = new VfMachine({ id: 'vf0', bdf: '0000:01:00.1', kind: 'fake' }, driver, LIMITS, pino({ enabled: false }));
  t.deepEqual(vf.formats(), [
    { name: 'fake', version: 1, save: true, load: true },
    { name: 'fake', version: 0, save: true, load: true },
    { name: 'fake-import', version: 1, save: false, load: true },
  ]);
  t.deepEqual(await vf.stateDescriptor(), { format: FORMAT, identity: IDENTITY });
  t.deepEqual((await vf.stateDescriptor(legacy)).format, legacy);
  t.is((await refusal(Promise.resolve().then(() => vf.stateDescriptor({ name: 'fake-import', version: 1 })))).fault, 'STATE_INCOMPATIBLE', 'loaded, not saved');
  await vf.quiesce(SECOND);
  const slice = await vf.save(1 << 20, undefined, SECOND, AGENT_CALLER, undefined, legacy);
  const reader = new RecordStreamReader({ maxRecordBytes: 1 << 20, maxV1StateBytes: 1 << 20 });
  const descriptor = reader.push(sliceBytes(slice)).find((e) => e.type === 'descriptor');
  t.deepEqual(descriptor?.type === 'descriptor' ? descriptor.descriptor.format : undefined, legacy, 'the stream says the format asked for');
  t.like(await vf.checkCompatibility({ format: legacy, identity: IDENTITY }), { compatible: true, format: legacy });
  t.like(await vf.checkCompatibility({ format: { name: 'fake', version: 9 }, identity: IDENTITY }), { compatible: false, format: null });
});
