/**
 * The VFIO v2 routing (`routeTo`, `nextStep`, `isDirectArc`) against an
 * oracle built independently from the reference text
 * (shared/reference/migration-interfaces.md §1.4 and §1.5), not from the
 * agent's table:
 *
 * - the graph is the set of direct arcs a driver must implement (§1.4) for
 *   the device's features;
 * - a route is a shortest path over those arcs that never has a saving
 *   state (STOP_COPY, PRE_COPY, PRE_COPY_P2P) in its middle, except when the
 *   whole path stays inside the saving group (the kernel's own example
 *   PRE_COPY→PRE_COPY_P2P→STOP_COPY keeps the one data fd open);
 * - STOP_COPY→PRE_COPY and STOP_COPY→PRE_COPY_P2P are blocked; ERROR is
 *   never a target and never left; a state the features lack is refused as
 *   start or target;
 * - where several shortest paths tie, the kernel's documented choice (the
 *   §1.5 table, transcribed literally below) decides.
 *
 * One reading note: §1.4 says "Without P2P and without PRE_COPY, add
 * RUNNING→STOP and STOP→RUNNING", but the kernel comment it quotes says
 * "Without P2P the driver must implement RUNNING -> STOP, STOP -> RUNNING",
 * and §1.5 confirms "Without P2P, RUNNING→STOP therefore becomes a direct
 * arc" whatever PRE_COPY is. Without those arcs a pre-copy device without
 * P2P could not get from RUNNING to STOP at all, so the oracle follows the
 * kernel comment.
 */
import test from 'ava';
import { Worker } from 'node:worker_threads';
import {
  SAVING_STATES, VFIO_STATES, isDirectArc, nextStep, routeTo, vfioStateValue,
  type MigrationFeatures, type VfioStateName,
} from './vfio-states.ts';

type S = VfioStateName;

const FEATURE_SETS: readonly { label: string; features: MigrationFeatures }[] = [
  { label: 'no P2P, no PRE_COPY', features: { p2p: false, preCopy: false } },
  { label: 'P2P, no PRE_COPY', features: { p2p: true, preCopy: false } },
  { label: 'PRE_COPY, no P2P', features: { p2p: false, preCopy: true } },
  { label: 'P2P and PRE_COPY', features: { p2p: true, preCopy: true } },
];

const ALL: readonly S[] = ['ERROR', 'STOP', 'RUNNING', 'STOP_COPY', 'RESUMING', 'RUNNING_P2P', 'PRE_COPY', 'PRE_COPY_P2P'];
const SAVING: ReadonlySet<S> = new Set<S>(['STOP_COPY', 'PRE_COPY', 'PRE_COPY_P2P']);

/** §1.2: the states a device with these features has (ERROR is never requestable). */
function supportedStates(f: MigrationFeatures): Set<S> {
  const states = new Set<S>(['STOP', 'RUNNING', 'STOP_COPY', 'RESUMING']);
  if (f.p2p) states.add('RUNNING_P2P');
  if (f.preCopy) states.add('PRE_COPY');
  if (f.p2p && f.preCopy) states.add('PRE_COPY_P2P');
  return states;
}

/** §1.4: the direct arcs a driver must implement, as "FROM>TO". */
function requiredArcs(f: MigrationFeatures): Set<string> {
  const arcs: [S, S][] = [['RESUMING', 'STOP'], ['STOP', 'RESUMING'], ['STOP', 'STOP_COPY'], ['STOP_COPY', 'STOP']];
  if (f.p2p) {
    arcs.push(['RUNNING', 'RUNNING_P2P'], ['RUNNING_P2P', 'RUNNING'], ['RUNNING_P2P', 'STOP'], ['STOP', 'RUNNING_P2P']);
  } else {
    arcs.push(['RUNNING', 'STOP'], ['STOP', 'RUNNING']);
  }
  if (f.preCopy && !f.p2p) {
    arcs.push(['RUNNING', 'PRE_COPY'], ['PRE_COPY', 'RUNNING'], ['PRE_COPY', 'STOP_COPY']);
  }
  if (f.preCopy && f.p2p) {
    arcs.push(
      ['PRE_COPY', 'RUNNING'], ['PRE_COPY', 'PRE_COPY_P2P'], ['PRE_COPY_P2P', 'PRE_COPY'], ['PRE_COPY_P2P', 'RUNNING_P2P'],
      ['PRE_COPY_P2P', 'STOP_COPY'], ['RUNNING', 'PRE_COPY'], ['RUNNING_P2P', 'PRE_COPY_P2P'],
    );
  }
  return new Set(arcs.map(([a, b]) => `${a}>${b}`));
}

function blocked(cur: S, target: S): boolean {
  return cur === 'STOP_COPY' && (target === 'PRE_COPY' || target === 'PRE_COPY_P2P');
}

/** The routing rule of §1.5 for one candidate path (start and end included). */
function pathAllowed(path: readonly S[]): boolean {
  const interior = path.slice(1, -1);
  if (!interior.some((s) => SAVING.has(s))) return true;
  return path.every((s) => SAVING.has(s));
}

/** Every shortest allowed path from `cur` to `target` (each without `cur`), or undefined when refused. */
function oracleRoutes(cur: S, target: S, f: MigrationFeatures): S[][] | undefined {
  const states = supportedStates(f);
  if (!states.has(cur) || !states.has(target) || blocked(cur, target)) return undefined;
  if (cur === target) return [[]];
  const arcs = requiredArcs(f);
  const found: S[][] = [];
  const walk = (path: S[]): void => {
    const at = path[path.length - 1] as S;
    if (at === target) {
      if (pathAllowed(path)) found.push(path.slice(1));
      return;
    }
    for (const next of states) {
      if (!path.includes(next) && arcs.has(`${at}>${next}`)) walk([...path, next]);
    }
  };
  walk([cur]);
  if (found.length === 0) return undefined;
  const shortest = Math.min(...found.map((p) => p.length));
  return found.filter((p) => p.length === shortest);
}

/** §1.5, transcribed literally: vfio_from_fsm_table[cur][target]; 'ERR' is a blocked arc; '-' the diagonal. */
const TABLE_COLUMNS: readonly S[] = ['STOP', 'RUNNING', 'STOP_COPY', 'RESUMING', 'RUNNING_P2P', 'PRE_COPY', 'PRE_COPY_P2P'];
const KERNEL_TABLE: Readonly<Record<S, readonly (S | 'ERR' | '-')[]>> = {
  STOP: ['-', 'RUNNING_P2P', 'STOP_COPY', 'RESUMING', 'RUNNING_P2P', 'RUNNING_P2P', 'RUNNING_P2P'],
  RUNNING: ['RUNNING_P2P', '-', 'RUNNING_P2P', 'RUNNING_P2P', 'RUNNING_P2P', 'PRE_COPY', 'RUNNING_P2P'],
  STOP_COPY: ['STOP', 'STOP', '-', 'STOP', 'STOP', 'ERR', 'ERR'],
  RESUMING: ['STOP', 'STOP', 'STOP', '-', 'STOP', 'STOP', 'STOP'],
  RUNNING_P2P: ['STOP', 'RUNNING', 'STOP', 'STOP', '-', 'RUNNING', 'PRE_COPY_P2P'],
  PRE_COPY: ['RUNNING', 'RUNNING', 'PRE_COPY_P2P', 'RUNNING', 'RUNNING', '-', 'PRE_COPY_P2P'],
  PRE_COPY_P2P: ['RUNNING_P2P', 'RUNNING_P2P', 'STOP_COPY', 'RUNNING_P2P', 'RUNNING_P2P', 'PRE_COPY', '-'],
  ERROR: ['ERR', 'ERR', 'ERR', 'ERR', 'ERR', 'ERR', 'ERR'],
};

function kernelCell(cur: S, target: S): S | 'ERR' | '-' {
  const cell = KERNEL_TABLE[cur][TABLE_COLUMNS.indexOf(target)];
  if (cell === undefined) throw new Error(`no table cell ${cur}→${target}`);
  return cell;
}

/** The kernel's documented path (the table, skipping states the device lacks), for breaking ties only. */
function kernelPath(cur: S, target: S, f: MigrationFeatures): S[] {
  const states = supportedStates(f);
  const path: S[] = [];
  let at = cur;
  while (at !== target && path.length < 8) {
    let next = kernelCell(at, target);
    while (next !== 'ERR' && next !== '-' && !states.has(next)) next = kernelCell(next, target);
    if (next === 'ERR' || next === '-') throw new Error(`kernel table refuses ${at}→${target}`);
    path.push(next);
    at = next;
  }
  return path;
}

const fmt = (p: readonly S[] | undefined): string => (p === undefined ? 'refused' : `[${p.join(' → ')}]`);

for (const { label, features } of FEATURE_SETS) {
  for (const cur of ALL) {
    test(`${label}: routeTo and nextStep from ${cur} to every state match the §1.4 oracle`, (t) => {
      for (const target of ALL) {
        // ERROR → ERROR has its own test below, so that one finding fails one
        // test. Any other state the features lack can never be current, so
        // "already there" for it is meaningless either way.
        if (cur === target && !supportedStates(features).has(cur)) continue;
        const routes = oracleRoutes(cur, target, features);
        const route = routeTo(cur, target, features);
        const step = nextStep(cur, target, features);
        const where = `${cur} → ${target}`;
        if (routes === undefined) {
          t.is(route, undefined, `${where} must be refused, routeTo gave ${fmt(route)}`);
          t.is(step, undefined, `${where} must be refused, nextStep gave ${String(step)}`);
          continue;
        }
        if (routes.length > 1) {
          const chosen = kernelPath(cur, target, features);
          t.true(routes.some((r) => r.join() === chosen.join()), `documented path ${fmt(chosen)} for ${where} is not one of the shortest`);
          t.deepEqual(route, chosen, `${where}: ${routes.length} shortest paths tie; the kernel takes ${fmt(chosen)}`);
        } else {
          t.deepEqual(route, routes[0], `${where}: oracle ${fmt(routes[0])}, routeTo ${fmt(route)}`);
        }
        if (cur !== target) {
          t.is(step, route?.[0], `${where}: nextStep must be the first state of the route`);
          // Every step of the route is an arc the driver implements.
          let at = cur;
          for (const next of route ?? []) {
            t.true(requiredArcs(features).has(`${at}>${next}`), `${where} takes ${at} → ${next}, which §1.4 does not list`);
            at = next;
          }
        }
      }
    });
  }

  test(`${label}: isDirectArc is exactly the §1.4 arc set`, (t) => {
    const arcs = requiredArcs(features);
    for (const cur of ALL) {
      for (const next of ALL) {
        t.is(isDirectArc(cur, next, features), arcs.has(`${cur}>${next}`), `${cur} → ${next}`);
      }
    }
  });

  test(`${label}: ERROR is never a target and never left`, (t) => {
    for (const s of ALL) {
      if (s === 'ERROR') continue;
      t.is(routeTo(s, 'ERROR', features), undefined, `request ERROR from ${s}`);
      t.is(routeTo('ERROR', s, features), undefined, `leave ERROR for ${s}`);
      t.is(nextStep(s, 'ERROR', features), undefined, `nextStep ${s} → ERROR`);
      t.is(nextStep('ERROR', s, features), undefined, `nextStep ERROR → ${s}`);
    }
  });
}

test('with every feature, nextStep is the §1.5 table cell by cell', (t) => {
  const all: MigrationFeatures = { p2p: true, preCopy: true };
  for (const cur of ALL) {
    for (const target of TABLE_COLUMNS) {
      if (cur === target) continue;
      const cell = kernelCell(cur, target);
      t.is(nextStep(cur, target, all), cell === 'ERR' || cell === '-' ? undefined : cell, `${cur} → ${target}`);
    }
  }
});

test('the §1.5 example paths, with every feature', (t) => {
  const all: MigrationFeatures = { p2p: true, preCopy: true };
  t.deepEqual(routeTo('RUNNING', 'STOP_COPY', all), ['RUNNING_P2P', 'STOP', 'STOP_COPY']);
  t.deepEqual(routeTo('RESUMING', 'RUNNING', all), ['STOP', 'RUNNING_P2P', 'RUNNING']);
  t.deepEqual(routeTo('PRE_COPY', 'STOP_COPY', all), ['PRE_COPY_P2P', 'STOP_COPY']);
  t.deepEqual(routeTo('STOP_COPY', 'RESUMING', all), ['STOP', 'RESUMING']);
});

test('the §1.5 skip rule: without P2P, RUNNING→STOP and PRE_COPY→STOP_COPY are direct', (t) => {
  t.deepEqual(routeTo('RUNNING', 'STOP', { p2p: false, preCopy: false }), ['STOP']);
  t.deepEqual(routeTo('RUNNING', 'STOP', { p2p: false, preCopy: true }), ['STOP']);
  t.deepEqual(routeTo('PRE_COPY', 'STOP_COPY', { p2p: false, preCopy: true }), ['STOP_COPY']);
  // ...and with P2P the same requests go through RUNNING_P2P / PRE_COPY_P2P.
  t.deepEqual(routeTo('RUNNING', 'STOP', { p2p: true, preCopy: false }), ['RUNNING_P2P', 'STOP']);
  t.deepEqual(routeTo('PRE_COPY', 'STOP_COPY', { p2p: true, preCopy: true }), ['PRE_COPY_P2P', 'STOP_COPY']);
});

test('a state already reached needs no step', (t) => {
  for (const { features } of FEATURE_SETS) {
    for (const s of supportedStates(features)) t.deepEqual(routeTo(s, s, features), [], s);
  }
});

test('requesting ERROR while in ERROR is refused too (§1.3: ERROR cannot be requested with SET)', (t) => {
  for (const { label, features } of FEATURE_SETS) {
    t.is(routeTo('ERROR', 'ERROR', features), undefined, `${label}: routeTo(ERROR, ERROR) must refuse, not report "already there"`);
    t.is(nextStep('ERROR', 'ERROR', features), undefined, label);
  }
});

test('the oracle reproduces the §1.5 example paths, and ties are resolved by the table', (t) => {
  const all: MigrationFeatures = { p2p: true, preCopy: true };
  t.deepEqual(oracleRoutes('RUNNING', 'STOP_COPY', all), [['RUNNING_P2P', 'STOP', 'STOP_COPY']]);
  t.deepEqual(oracleRoutes('RESUMING', 'RUNNING', all), [['STOP', 'RUNNING_P2P', 'RUNNING']]);
  t.deepEqual(oracleRoutes('PRE_COPY', 'STOP_COPY', all), [['PRE_COPY_P2P', 'STOP_COPY']]);
  t.deepEqual(oracleRoutes('STOP_COPY', 'RESUMING', all), [['STOP', 'RESUMING']]);
  t.is(oracleRoutes('STOP_COPY', 'PRE_COPY', all), undefined);
  // Where the oracle has ties, the table's path must be one of them (else the oracle is wrong).
  let ties = 0;
  for (const { features } of FEATURE_SETS) {
    for (const cur of ALL) {
      for (const target of ALL) {
        const routes = oracleRoutes(cur, target, features);
        if (routes === undefined || routes.length < 2) continue;
        ties += 1;
        const chosen = kernelPath(cur, target, features).join();
        t.true(routes.some((r) => r.join() === chosen), `${cur} → ${target}`);
      }
    }
  }
  t.log(`pairs with tied shortest paths (all with PRE_COPY, if any): ${ties}`);
});

test('state numbers are the uAPI enum (§1.3)', (t) => {
  t.deepEqual(VFIO_STATES.map((s) => [s, vfioStateValue(s)]), [
    ['ERROR', 0], ['STOP', 1], ['RUNNING', 2], ['STOP_COPY', 3], ['RESUMING', 4], ['RUNNING_P2P', 5], ['PRE_COPY', 6], ['PRE_COPY_P2P', 7],
  ]);
  t.deepEqual([...SAVING_STATES].sort(), [...SAVING].sort());
});

/**
 * The kernel bug of §1.5: on a PRE_COPY device the skip loop spun forever
 * on the blocked STOP_COPY→PRE_COPY* arcs. Run the routing in a worker so a
 * regression shows up as a failed test within seconds, not a hung suite.
 */
test('routing terminates (and refuses) on the blocked STOP_COPY→PRE_COPY arcs with PRE_COPY on', async (t) => {
  const moduleUrl = new URL('./vfio-states.js', import.meta.url).href;
  const source = `
    const { parentPort } = await import('node:worker_threads');
    const { routeTo, nextStep } = await import(${JSON.stringify(moduleUrl)});
    const out = [];
    for (const p2p of [false, true]) {
      for (const target of ['PRE_COPY', 'PRE_COPY_P2P']) {
        const f = { p2p, preCopy: true };
        out.push([p2p, target, routeTo('STOP_COPY', target, f) ?? null, nextStep('STOP_COPY', target, f) ?? null]);
      }
    }
    parentPort.postMessage(out);
  `;
  const worker = new Worker(source, { eval: true });
  try {
    const result = await new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('routing STOP_COPY → PRE_COPY did not return within 5 s (infinite loop)')), 5000);
      worker.once('message', (m) => { clearTimeout(timer); resolve(m); });
      worker.once('error', (e) => { clearTimeout(timer); reject(e); });
    });
    t.deepEqual(result, [
      [false, 'PRE_COPY', null, null],
      [false, 'PRE_COPY_P2P', null, null],
      [true, 'PRE_COPY', null, null],
      [true, 'PRE_COPY_P2P', null, null],
    ]);
  } finally {
    await worker.terminate();
  }
});
