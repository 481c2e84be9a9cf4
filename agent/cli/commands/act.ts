/**
 * How a command's action is bound to commander: it gets the context made
 * from the global options and its own arguments and options; whatever it
 * throws reaches the entry point, which turns it into an exit code.
 */
import type { Command } from 'commander';
import { CommandContext } from '../command-context.ts';

/** Commander calls an action with the positional arguments, the command's options, and the command. */
export type Act = <A extends unknown[]>(action: (ctx: CommandContext, ...args: A) => Promise<void>) => (...args: unknown[]) => Promise<void>;

/** An Act that also tells `onContext` the context it made (the entry point reports errors through its output). */
export function actWith(onContext: (ctx: CommandContext) => void): Act {
  return (action) => async (...args) => {
    const command = args.at(-1) as Command;
    const ctx = new CommandContext(command.optsWithGlobals());
    onContext(ctx);
    await (action as (ctx: CommandContext, ...rest: unknown[]) => Promise<void>)(ctx, ...args.slice(0, -1));
  };
}
