/**
 * What vfmigctl's exit status says, one meaning per code, so that a
 * script can tell "nothing happened" from "the migration was undone" from
 * "someone must look". `--help` and the README's table are made from this
 * list (test/vfmigctl.test.ts checks the README).
 */
export const EXIT = {
  OK: 0,
  REFUSED: 1,
  USAGE: 2,
  UNREACHABLE: 3,
  CANCELLED: 4,
  UNRESOLVED: 5,
  INCOMPATIBLE: 6,
  /** sysexits' EX_SOFTWARE. */
  INTERNAL: 70,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export const EXIT_MEANINGS: Readonly<Record<ExitCode, string>> = {
  [EXIT.OK]: 'done',
  [EXIT.REFUSED]: 'an agent refused a call (its error name, message and detail are printed), or a VF is not in a state the command can start from; nothing was changed',
  [EXIT.USAGE]: 'usage error: an unknown command or option, a missing argument, or a value the method\'s schema refuses; nothing was sent',
  [EXIT.UNREACHABLE]: 'an agent could not be reached or its connection failed: refused, timed out, closed, TLS handshake refused, or an answer that breaks the API\'s schemas (a migrate that had begun cancels instead: 4 or 5)',
  [EXIT.CANCELLED]: 'migrate: failed or interrupted (Ctrl-C) after it began, and was cancelled: the source VF runs on, the destination dropped what it received',
  [EXIT.UNRESOLVED]: 'migrate: failed and could not be cancelled cleanly, or its outcome is unknown: look at both VFs (`vfmigctl get`) before doing anything else',
  [EXIT.INCOMPATIBLE]: 'check, migrate: the destination cannot load the source\'s state (the reason is printed); nothing was changed',
  [EXIT.INTERNAL]: 'vfmigctl itself failed (a bug): the message says where',
};

/** The codes as `--help` shows them. */
export function exitCodeHelp(): string {
  const lines = Object.entries(EXIT_MEANINGS).map(([code, meaning]) => `  ${code.padStart(2)}  ${meaning}`);
  return ['Exit codes:', ...lines].join('\n');
}

/** The codes as the README's table shows them. */
export function exitCodeTable(): string {
  const rows = Object.entries(EXIT_MEANINGS).map(([code, meaning]) => `| ${code} | ${meaning} |`);
  return ['| exit code | meaning |', '|---|---|', ...rows].join('\n');
}
