import net from 'node:net';

/** A raw HTTP/1.1 conversation, for requests no well-behaved client would send. */
export function rawSocket(url: string) {
  const { hostname, port, pathname } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  let received = '';
  socket.on('data', (chunk) => (received += chunk.toString('latin1')));
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  socket.on('error', () => {});
  const connected = new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  return {
    path: pathname,
    connected,
    write: (data: string | Buffer) => new Promise<void>((resolve) => socket.write(data, () => resolve())),
    end: () => socket.end(),
    destroy: () => socket.destroy(),
    /** Resolves with the first response's status once its head has arrived. */
    status: () =>
      new Promise<number>((resolve, reject) => {
        const check = () => {
          const match = /^HTTP\/1\.1 (\d{3})/.exec(received);
          if (match && received.includes('\r\n\r\n')) resolve(Number(match[1]));
        };
        socket.on('data', check);
        socket.on('close', () => {
          check();
          reject(new Error(`connection closed without a response: ${JSON.stringify(received.slice(0, 200))}`));
        });
        check();
      }),
    received: () => received,
    closed,
  };
}

export function requestHead(path: string, headers: Record<string, string>): string {
  return `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}\r\n`;
}
