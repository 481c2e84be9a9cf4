/**
 * Can the source's state load on the destination? As the README says a
 * VMM finds out, touching nothing: the formats each VF saves and loads
 * (vf.formats), then for each format the source saves that the
 * destination loads, in the source's order (its default first), what the
 * save would say it is (vf.stateDescriptor on the source) judged exactly
 * as a load would judge it (vf.checkCompatibility on the destination).
 * The first format that passes is the one to save in.
 */
import type { FormatRef, StateDescriptor, StateFormat } from '../../../schemas/types.ts';
import type { AgentConnection } from '../agent-connection.ts';

export interface FormatTried {
  readonly format: FormatRef;
  readonly compatible: boolean;
  readonly reason: string | null;
}

export interface Verdict {
  readonly compatible: boolean;
  /** The format to save in; null when none passes. */
  readonly format: FormatRef | null;
  /** What the destination would load it as. */
  readonly loadsAs: StateFormat | null;
  readonly descriptor: StateDescriptor | null;
  /** Whether `format` is the source's default save format (a PRE_COPY save is always in the default). */
  readonly defaultFormat: boolean;
  /** Why not, when not compatible. */
  readonly reason: string | null;
  readonly tried: readonly FormatTried[];
}

export interface VfOn {
  readonly agent: AgentConnection;
  readonly vf: string;
}

export async function judge(source: VfOn, destination: VfOn, signal?: AbortSignal): Promise<Verdict> {
  const [saves, loads] = await Promise.all([
    source.agent.call('vf.formats', { vf: source.vf }, { signal }),
    destination.agent.call('vf.formats', { vf: destination.vf }, { signal }),
  ]);
  const saved = saves.formats.filter((f) => f.save).map(formatRef);
  const loaded = loads.formats.filter((f) => f.load).map(formatRef);
  const candidates = saved.filter((s) => loaded.some((l) => sameFormat(s, l)));
  const tried: FormatTried[] = [];
  for (const format of candidates) {
    const { descriptor } = await source.agent.call('vf.stateDescriptor', { vf: source.vf, format }, { signal });
    const check = await destination.agent.call('vf.checkCompatibility', { vf: destination.vf, descriptor }, { signal });
    tried.push({ format, compatible: check.compatible, reason: check.reason });
    if (check.compatible) {
      return { compatible: true, format, loadsAs: check.format, descriptor, defaultFormat: saved[0] !== undefined && sameFormat(format, saved[0]), reason: null, tried };
    }
  }
  const reason = candidates.length === 0
    ? `the destination loads none of the formats the source saves (source saves ${saved.map(formatName).join(', ') || 'none'}; destination loads ${loaded.map(formatName).join(', ') || 'none'})`
    : tried.map((t) => `${formatName(t.format)}: ${t.reason ?? 'refused'}`).join('; ');
  return { compatible: false, format: null, loadsAs: null, descriptor: null, defaultFormat: false, reason, tried };
}

function formatRef(f: { name: string; version: number; vendor?: string }): FormatRef {
  return { name: f.name, version: f.version, ...(f.vendor === undefined ? {} : { vendor: f.vendor }) };
}

function sameFormat(a: FormatRef, b: FormatRef): boolean {
  return a.name === b.name && a.version === b.version && a.vendor === b.vendor;
}

export function formatName(f: FormatRef): string {
  return `${f.name} v${f.version}`;
}
