/**
 * Where vfmigctl's words go. Results on stdout: the method's result as
 * JSON under --json (and nothing else there), text for a person otherwise.
 * Notes (what a migration is doing) and errors on stderr. Colour only on
 * a terminal, never with NO_COLOR or --no-color, never in JSON.
 */
import Table from 'cli-table3';
import pc from 'picocolors';
import type { Colors } from 'picocolors/types.js';
import type { CliError } from './cli-errors.ts';

export interface OutputOptions {
  readonly json: boolean;
  readonly quiet: boolean;
  readonly color: boolean;
}

export class Output {
  readonly json: boolean;
  readonly quiet: boolean;
  /** For stdout's text. */
  readonly colors: Colors;
  /** For stderr's. */
  readonly errColors: Colors;
  /** stderr is a terminal: a progress bar may be drawn there. */
  readonly interactive: boolean;

  constructor(options: OutputOptions) {
    this.json = options.json;
    this.quiet = options.quiet;
    const allowed = options.color && process.env.NO_COLOR === undefined;
    this.colors = pc.createColors(allowed && !options.json && process.stdout.isTTY === true);
    this.errColors = pc.createColors(allowed && process.stderr.isTTY === true);
    this.interactive = process.stderr.isTTY === true && !options.quiet;
  }

  /** The command's result: `value` as JSON, or the text `human` makes of it. */
  result(value: unknown, human: (c: Colors) => string): void {
    process.stdout.write(this.json ? `${JSON.stringify(value, null, 2)}\n` : `${human(this.colors)}\n`);
  }

  /** A line about what is going on, on stderr; none with --quiet. */
  note(line: string): void {
    if (!this.quiet) process.stderr.write(`vfmigctl: ${line}\n`);
  }

  /** A warning, on stderr even with --quiet. */
  warn(line: string): void {
    process.stderr.write(`vfmigctl: ${this.errColors.yellow('warning')}: ${line}\n`);
  }

  /** How a failure is shown: JSON on stdout under --json, one line on stderr otherwise. */
  error(error: CliError): void {
    if (this.json) process.stdout.write(`${JSON.stringify({ error: error.toJson() }, null, 2)}\n`);
    else process.stderr.write(`vfmigctl: ${this.errColors.red('error')}: ${error.line()}\n`);
  }
}

/** A table with no borders, columns two spaces apart: easy on the eye and on grep. */
export function table(head: readonly string[], rows: readonly (readonly (string | number)[])[], c: Colors): string {
  const t = new Table({
    head: head.map((h) => c.bold(h)),
    chars: {
      top: '', 'top-mid': '', 'top-left': '', 'top-right': '', bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '',
      left: '', 'left-mid': '', mid: '', 'mid-mid': '', right: '', 'right-mid': '', middle: '  ',
    },
    style: { 'padding-left': 0, 'padding-right': 0, head: [], border: [] },
  });
  for (const row of rows) t.push([...row]);
  // cli-table3 pads the last column too; a line should not end in blanks.
  return t.toString().split('\n').map((line) => line.trimEnd()).join('\n');
}

/** `key  value` lines, keys padded to one width. */
export function fields(entries: readonly (readonly [string, string])[], c: Colors): string {
  const width = Math.max(...entries.map(([key]) => key.length));
  return entries.map(([key, value]) => `${c.bold(key.padEnd(width))}  ${value}`).join('\n');
}

/** A VFIO state, coloured by what it means for the guest: running, stopped, broken. */
export function stateText(state: string, c: Colors): string {
  if (state === 'RUNNING' || state === 'PRE_COPY') return c.green(state);
  if (state === 'ERROR') return c.red(state);
  return c.yellow(state);
}

export function bytesText(bytes: number): string {
  if (bytes < 1024) return `${Math.round(bytes)} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

export function msText(ms: number): string {
  return ms < 10 ? `${ms.toFixed(2)} ms` : ms < 10_000 ? `${ms.toFixed(1)} ms` : `${(ms / 1000).toFixed(1)} s`;
}
