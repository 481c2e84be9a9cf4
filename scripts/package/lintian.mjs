// lintian on each .deb: an error or a warning fails the build. What is
// overridden is in deploy/debian/PKG.lintian-overrides, each with its reason;
// info tags are printed, so that they are seen, and do not fail it.
import { run } from './run.mjs';

export function lintian(debs) {
  // --no-cfg: the machine's own lintian settings do not change the verdict.
  // Not --show-overrides: lintian 2.116 then fails on the overridden tags too.
  const args = ['--no-cfg', '--fail-on', 'error,warning', '--display-info', ...debs];
  let output;
  try {
    output = run('lintian', args, { quiet: true });
  } catch (error) {
    throw new Error(`lintian found errors or warnings:\n${error.message}`);
  }
  return output.trim();
}
