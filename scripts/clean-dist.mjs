// Removes dist/ before a build: tsc never deletes the output of a source
// file that is gone, and ava would go on running a deleted test.
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

rmSync(fileURLToPath(new URL('../dist', import.meta.url)), { recursive: true, force: true });
