/**
 * A --before-resume command for vfmigctl's tests: it writes the file named
 * by its argument (with the environment vfmigctl gave it, one NAME=value a
 * line) and exits 0 once the test removes the file. So the test acts at
 * exactly that point of the migration (moves the guest's RAM, sends
 * Ctrl-C) with no guess of how long the CLI takes to get there.
 */
import { existsSync, watch, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

const gate = process.argv[2];
if (gate === undefined) throw new Error('usage: before-resume-gate FILE');
const names = ['VFMIGCTL_SOURCE_AGENT', 'VFMIGCTL_SOURCE_VF', 'VFMIGCTL_DESTINATION_AGENT', 'VFMIGCTL_DESTINATION_VF'];
// Watching before the file is written: its removal cannot come before the watch.
watch(dirname(gate), () => {
  if (!existsSync(gate)) process.exit(0);
});
writeFileSync(gate, names.map((n) => `${n}=${process.env[n] ?? ''}\n`).join(''));
