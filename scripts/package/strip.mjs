// Strips an ELF file as dh_strip does: the symbol tables and debug info
// serve a debugger, which a SoC does not run, and are most of an
// unstripped file's size; what the dynamic linker and Node need stays.
import { ARCHES } from './layout.mjs';
import { run } from './run.mjs';

/** `kind`: 'executable' loses every symbol; 'shared' (a .so, a .node addon) keeps its dynamic ones. */
export function stripElf(path, arch, kind) {
  const unneeded = kind === 'shared' ? ['--strip-unneeded'] : [];
  run(`${ARCHES[arch].gnu}-strip`, ['--remove-section=.comment', '--remove-section=.note', ...unneeded, path]);
}
