// Runs the build's tools. A tool that fails stops the build with what it
// printed, so a failure names its cause instead of a later missing file.
import { execFileSync } from 'node:child_process';

/** Runs `command` and returns its stdout; stderr goes to ours unless `quiet`. */
export function run(command, args, { cwd, env, quiet = false, input } = {}) {
  try {
    return execFileSync(command, args, {
      cwd,
      env: env === undefined ? process.env : { ...process.env, ...env },
      encoding: 'utf8',
      maxBuffer: 256 * 1024 * 1024,
      input,
      stdio: ['pipe', 'pipe', quiet ? 'pipe' : 'inherit'],
    });
  } catch (error) {
    const output = [error.stdout, error.stderr].filter(Boolean).join('\n').trim();
    throw new Error(`${command} ${args.join(' ')} failed (${error.status ?? error.code})${output ? `:\n${output}` : ''}`);
  }
}

/** `tool` is on the PATH; otherwise says which Debian package brings it. */
export function requireTool(tool, debianPackage) {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
  } catch {
    throw new Error(`${tool} is missing: apt-get install ${debianPackage} (.ci/run does)`);
  }
}

/** One line of progress on stderr. */
export function note(text) {
  process.stderr.write(`package: ${text}\n`);
}
