/** Starts the baseline peers of bench/peers.ts as child processes. */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const PEERS = join(dirname(fileURLToPath(import.meta.url)), 'peers.js');

export interface Peer {
  readonly port: number;
  readonly process: ChildProcess;
  stop(): void;
}

export function startPeer(...args: string[]): Promise<Peer> {
  const child = spawn(process.execPath, [PEERS, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.stdout?.once('data', (d: Buffer) => {
      const match = /listening (\d+)/.exec(d.toString());
      if (match === null) reject(new Error(`peer ${args.join(' ')} said: ${d.toString()}`));
      else resolve({ port: Number(match[1]), process: child, stop: () => { child.kill(); } });
    });
    child.once('exit', (code) => reject(new Error(`peer ${args.join(' ')} exited with ${code}`)));
  });
}

/** RSS of a process in bytes, from /proc. */
export async function rssBytes(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
  return Number(kb ?? Number.NaN) * 1024;
}
