/**
 * A plain socket to the agent that records every line it receives and how
 * the connection ended: for tests of framing, limits and hostile clients.
 */
import type { ExecutionContext } from 'ava';
import { connect as netConnect, type Socket } from 'node:net';
import type { RpcAddress } from './rpc-client.ts';

/** A plain socket that records every line and how the connection ended. */
export interface RawConnection {
  readonly socket: Socket;
  readonly lines: string[];
  /** 'end' (orderly close by the peer), then 'close'; or 'error:CODE'. */
  readonly events: string[];
  nextLine(timeoutMs?: number): Promise<string | undefined>;
  closed: Promise<void>;
}

export function rawConnect(t: ExecutionContext, address: RpcAddress, localAddress?: string): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    const socket = 'path' in address ? netConnect(address.path) : netConnect({ port: address.port, host: address.host, ...(localAddress === undefined ? {} : { localAddress }) });
    socket.setNoDelay(true);
    const lines: string[] = [];
    const events: string[] = [];
    const waiters: ((line: string | undefined) => void)[] = [];
    let pending: Buffer[] = [];
    let closedResolve: () => void = () => undefined;
    const closed = new Promise<void>((r) => { closedResolve = r; });
    socket.on('data', (chunk: Buffer) => {
      let start = 0;
      for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
        pending.push(chunk.subarray(start, nl));
        const line = Buffer.concat(pending).toString('utf8');
        pending = [];
        start = nl + 1;
        const waiter = waiters.shift();
        if (waiter) waiter(line);
        else lines.push(line);
      }
      if (start < chunk.length) pending.push(chunk.subarray(start));
    });
    socket.on('end', () => events.push('end'));
    socket.on('error', (error: NodeJS.ErrnoException) => events.push(`error:${error.code ?? error.message}`));
    socket.on('close', () => {
      events.push('close');
      for (const w of waiters.splice(0)) w(undefined);
      closedResolve();
    });
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve({
        socket,
        lines,
        events,
        closed,
        nextLine: (timeoutMs = 5000) => {
          const ready = lines.shift();
          if (ready !== undefined) return Promise.resolve(ready);
          if (socket.destroyed) return Promise.resolve(undefined);
          return new Promise((res, rej) => {
            const timer = setTimeout(() => rej(new Error(`no line within ${timeoutMs} ms`)), timeoutMs);
            waiters.push((l) => { clearTimeout(timer); res(l); });
          });
        },
      });
    });
    socket.once('error', reject);
    t.teardown(() => socket.destroy());
  });
}
