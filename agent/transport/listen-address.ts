/** Where the agent listens: `tls://HOST:PORT`, `tcp://HOST:PORT` (IPv6 hosts in brackets) or `unix:PATH`. */
export type ListenAddress =
  | { readonly kind: 'tcp' | 'tls'; readonly host: string; readonly port: number }
  | { readonly kind: 'unix'; readonly path: string };

export function parseListenAddress(text: string): ListenAddress {
  if (text.startsWith('unix:')) {
    const path = text.slice('unix:'.length);
    if (path === '') throw new Error(`"${text}": a unix: address needs a socket path`);
    return { kind: 'unix', path };
  }
  const inet = /^(tcp|tls):\/\/(\[[0-9A-Fa-f:.]+\]|[^:/[\]]+):(\d{1,5})$/.exec(text);
  if (inet === null) throw new Error(`"${text}" is neither tls://HOST:PORT, tcp://HOST:PORT nor unix:PATH`);
  const host = (inet[2] ?? '').replace(/^\[(.*)\]$/, '$1');
  const port = Number(inet[3]);
  if (port > 65535) throw new Error(`"${text}": port ${port} is out of range`);
  return { kind: inet[1] === 'tls' ? 'tls' : 'tcp', host, port };
}

export function formatListenAddress(address: ListenAddress): string {
  if (address.kind === 'unix') return `unix:${address.path}`;
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  return `${address.kind}://${host}:${address.port}`;
}

/** Whether only this machine can reach the address: a loopback IP or `localhost`. */
export function isLoopback(address: ListenAddress): boolean {
  if (address.kind === 'unix') return true;
  const host = address.host.toLowerCase();
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) || /^::ffff:127\./.test(host);
}
