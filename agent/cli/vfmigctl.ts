/**
 * vfmigctl: the operator's command line for vfmigd agents. It parses the
 * command line (commander), runs one command, and turns how it ended into
 * an exit code (exit-codes.ts) and, under --json, into JSON on stdout.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { DEFAULT_AGENT } from './agent-address.ts';
import { asCliError, UsageError } from './cli-errors.ts';
import { DEFAULT_TIMEOUT_MS, type CommandContext } from './command-context.ts';
import { actWith, type Act } from './commands/act.ts';
import { addAgentCommands } from './commands/agent-commands.ts';
import { addMigrationCommands } from './commands/migration-commands.ts';
import { addVfCommands } from './commands/vf-commands.ts';
import { addWatchCommand } from './commands/watch-command.ts';
import { EXIT, exitCodeHelp } from './exit-codes.ts';
import { Output } from './output.ts';

function buildProgram(act: Act, onUsageError: (message: string) => void): Command {
  const program = new Command('vfmigctl')
    .description('Operate vfmigd agents: their VFs, their health, and migrations between them.')
    .version(packageVersion(), '-V, --version')
    .option('-a, --agent <address>', `the agent: tcp://HOST:PORT, tls://HOST:PORT (mutual TLS) or unix:PATH (env VFMIGD_AGENT; default ${DEFAULT_AGENT})`)
    .option('--ca <file>', 'tls://: PEM file of the CA certificates the agent\'s certificate must chain to')
    .option('--cert <file>', 'tls://: PEM file of this client\'s certificate (intermediates may follow)')
    .option('--key <file>', 'tls://: PEM file of its private key (unencrypted)')
    .option('--server-name <name>', 'tls://: the name the agent\'s certificate must carry, also sent as SNI (default: the host)')
    .option('--timeout-ms <ms>', `how long to wait for a connection, and for each answer (default ${DEFAULT_TIMEOUT_MS})`)
    .option('--json', 'print the result as JSON on stdout, and errors as {"error": {code, message, data}}')
    .option('-q, --quiet', 'no progress notes on stderr')
    .option('--no-color', 'no colour (NO_COLOR in the environment does the same)')
    .addHelpText('after', `\n${exitCodeHelp()}`)
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({ outputError: (message) => onUsageError(message.replace(/^error: /, '').trim()) });
  addVfCommands(program, act);
  addAgentCommands(program, act);
  addMigrationCommands(program, act);
  addWatchCommand(program, act);
  // Each command reports its usage errors as the program does, and exits through the same place.
  for (const command of program.commands) command.exitOverride().configureOutput({ outputError: (message) => onUsageError(message.replace(/^error: /, '').trim()) });
  return program;
}

async function main(argv: readonly string[]): Promise<number> {
  let ctx: CommandContext | undefined;
  let usageMessage: string | undefined;
  const program = buildProgram(actWith((made) => { ctx = made; }), (message) => { usageMessage = message; });
  try {
    await program.parseAsync([...argv]);
    return EXIT.OK;
  } catch (thrown) {
    let error = thrown;
    if (thrown instanceof CommanderError) {
      // Help or the version asked for: done. Help shown because no command was given: a usage error.
      if (thrown.code === 'commander.helpDisplayed' || thrown.code === 'commander.version' || (thrown.code === 'commander.help' && thrown.exitCode === 0)) return EXIT.OK;
      error = new UsageError(usageMessage ?? (thrown.code === 'commander.help' ? 'a command is needed (vfmigctl --help lists them)' : thrown.message));
    }
    const out = ctx?.out ?? new Output({ json: argv.includes('--json'), quiet: false, color: !argv.includes('--no-color') });
    const failure = asCliError(error);
    out.error(failure);
    return failure.exitCode;
  }
}

/** package.json's version, from agent/cli in the source tree or dist/agent/cli. */
function packageVersion(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const up of ['../..', '../../..']) {
    try {
      return (JSON.parse(readFileSync(join(here, up, 'package.json'), 'utf8')) as { version: string }).version;
    } catch {
      // not here; one level higher
    }
  }
  return 'unknown';
}

// A reader that goes away (`vfmigctl list | head`) is no failure of ours: stop quietly, as other tools do.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw error;
  });
}
process.exitCode = await main(process.argv);
