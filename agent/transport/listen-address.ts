/** Where the agent listens: `tcp://HOST:PORT` (IPv6 hosts in brackets) or `unix:PATH`. */
export type ListenAddress =
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number }
  | { readonly kind: 'unix'; readonly path: string };

export function parseListenAddress(text: string): ListenAddress {
  if (text.startsWith('unix:')) {
    const path = text.slice('unix:'.length);
    if (path === '') throw new Error(`"${text}": a unix: address needs a socket path`);
    return { kind: 'unix', path };
  }
  const tcp = /^tcp:\/\/(\[[0-9A-Fa-f:.]+\]|[^:/[\]]+):(\d{1,5})$/.exec(text);
  if (tcp === null) throw new Error(`"${text}" is neither tcp://HOST:PORT nor unix:PATH`);
  const host = (tcp[1] ?? '').replace(/^\[(.*)\]$/, '$1');
  const port = Number(tcp[2]);
  if (port > 65535) throw new Error(`"${text}": port ${port} is out of range`);
  return { kind: 'tcp', host, port };
}

export function formatListenAddress(address: ListenAddress): string {
  if (address.kind === 'unix') return `unix:${address.path}`;
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  return `tcp://${host}:${address.port}`;
}
