/** blob-bench against the vendor-driver conformance kit: a 200 KiB state, so that streams span several records' worth of slices. */
import test from 'ava';
import { pino } from 'pino';
import { conformanceSuite, type DriverVf } from '../conformance/conformance-suite.ts';
import { createBlobBenchDriver } from './index.ts';

function vf(stateBytes: number, p2p: boolean): () => Promise<DriverVf> {
  return async () => {
    const driver = createBlobBenchDriver({ vfCount: 1, stateBytes, p2p });
    await driver.start(pino({ enabled: false }));
    return { driver, vf: 'blob0', close: () => driver.stop() };
  };
}

for (const p2p of [false, true]) {
  conformanceSuite(test, `blob-bench${p2p ? ' with P2P' : ''}`, {
    source: vf(200 * 1024, p2p),
    destination: vf(200 * 1024, p2p),
    foreign: vf(100 * 1024, p2p),
  });
}

// With PRE_COPY, changing while it runs (a page every 40 microseconds).
conformanceSuite(test, 'blob-bench with PRE_COPY and P2P', {
  source: preCopyVf(200 * 1024),
  destination: preCopyVf(200 * 1024),
  foreign: preCopyVf(100 * 1024),
});

function preCopyVf(stateBytes: number): () => Promise<DriverVf> {
  return async () => {
    const driver = createBlobBenchDriver({ vfCount: 1, stateBytes, p2p: true, preCopy: true, dirtyBytesPerSecond: 100 * 1024 * 1024 });
    await driver.start(pino({ enabled: false }));
    return { driver, vf: 'blob0', close: () => driver.stop() };
  };
}
