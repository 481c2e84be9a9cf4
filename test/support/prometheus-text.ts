/**
 * A scrape read as Prometheus reads it: the text goes through the
 * reference Python client's parser (parse-prometheus.py, Debian's
 * python3-prometheus-client), not through code of ours, and comes back as
 * families of series. A histogram's `_bucket`, `_sum` and `_count` samples
 * are gathered into one series per label set (its labels without `le`).
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** Debian's interpreter, where python3-prometheus-client is installed (not a pyenv or venv first on PATH). */
const PYTHON = '/usr/bin/python3';
const PARSER = fileURLToPath(new URL('../../../test/support/parse-prometheus.py', import.meta.url));

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'info' | 'stateset' | 'unknown';

export interface Series {
  readonly labels: Readonly<Record<string, string>>;
  /** Counters and gauges. */
  readonly value?: number;
  /** Histograms: the cumulative count at each bound (`le`, as the text spells it), the count and the sum. */
  readonly buckets?: ReadonlyMap<string, number>;
  readonly count?: number;
  readonly sum?: number;
}

export interface MetricFamily {
  readonly name: string;
  readonly help: string;
  readonly type: MetricType;
  readonly series: readonly Series[];
}

interface ParsedSample { readonly name: string; readonly labels: Record<string, string>; readonly value: number | string }
interface ParsedFamily { readonly name: string; readonly help: string; readonly type: MetricType; readonly samples: readonly ParsedSample[] }

export function parsePrometheusText(text: string): Map<string, MetricFamily> {
  const parsed = JSON.parse(execFileSync(PYTHON, [PARSER], { input: text, encoding: 'utf8' })) as ParsedFamily[];
  return new Map(parsed.map((family) => [family.name, { name: family.name, help: family.help, type: family.type, series: seriesOf(family) }]));
}

/** The parser's numbers; its infinities and NaN come as the exposition's words. */
function toNumber(value: number | string): number {
  if (value === '+Inf') return Infinity;
  if (value === '-Inf') return -Infinity;
  return Number(value);
}

function seriesOf(family: ParsedFamily): Series[] {
  if (family.type !== 'histogram') return family.samples.map((s) => ({ labels: s.labels, value: toNumber(s.value) }));
  const byLabels = new Map<string, { labels: Record<string, string>; buckets: Map<string, number>; count?: number; sum?: number }>();
  for (const sample of family.samples) {
    const { le, ...labels } = sample.labels;
    const key = JSON.stringify(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)));
    let entry = byLabels.get(key);
    if (entry === undefined) byLabels.set(key, entry = { labels, buckets: new Map() });
    const value = toNumber(sample.value);
    if (sample.name.endsWith('_bucket') && le !== undefined) entry.buckets.set(le, value);
    else if (sample.name.endsWith('_count')) entry.count = value;
    else if (sample.name.endsWith('_sum')) entry.sum = value;
  }
  return [...byLabels.values()];
}
