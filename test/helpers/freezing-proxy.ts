import net from 'node:net';
import type { AddressInfo } from 'node:net';

/**
 * A TCP proxy in front of Redis or Postgres that can freeze: while frozen it
 * accepts connections and bytes but forwards nothing either way, as a hung
 * server (or a network partition) would look to a client. `cutOff()` does that
 * to the connections open now only: new ones pass, as after a failover that
 * left the old connections open and silent. `drop()` closes every connection and
 * refuses new ones (counting them) until `restore()`, as a server that went away.
 * With `spared`, the first `spared` connections are never frozen, as when a server
 * hangs between a client's first connections and its next.
 */
export async function freezingProxy(target: string, { answersClose = true, spared = 0 } = {}) {
  const { hostname, port } = new URL(target);
  let frozen = false;
  let dropped = false;
  let refused = 0;
  let accepted = 0;
  const pairs = new Set<{ client: net.Socket; upstream: net.Socket; cut: boolean; letGo: boolean }>();
  // With answersClose false, a client's close goes unanswered while frozen, as a hung
  // server's kernel acknowledges it and the server never closes its side.
  const server = net.createServer({ allowHalfOpen: !answersClose }, (client) => {
    if (dropped) {
      refused += 1;
      client.destroy();
      return;
    }
    accepted += 1;
    const freezes = accepted > spared;
    const upstream = net.connect(Number(port), hostname);
    const pair = { client, upstream, cut: false, letGo: false };
    pairs.add(pair);
    const forward = (from: net.Socket, to: net.Socket) => from.on('data', (chunk) => ((frozen && freezes) || pair.cut ? undefined : to.write(chunk)));
    forward(client, upstream);
    forward(upstream, client);
    const close = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('end', () => {
      pair.letGo = true;
      if (!answersClose && !(frozen && freezes)) client.end();
    });
    client.on('close', close).on('error', close);
    upstream.on('close', close).on('error', close);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    // The target's URL (its user, database) with the proxy's address.
    url: Object.assign(new URL(target), { hostname: '127.0.0.1', port: String((server.address() as AddressInfo).port) }).href,
    freeze: () => void (frozen = true),
    /** Forwards again; what came while frozen was dropped, so a connection open then may be broken. */
    unfreeze: () => void (frozen = false),
    cutOff: () => {
      for (const pair of pairs) pair.cut = true;
    },
    drop: () => {
      dropped = true;
      for (const { client, upstream } of pairs) {
        client.destroy();
        upstream.destroy();
      }
    },
    restore: () => void (dropped = false),
    /** Connections refused since the proxy was made. */
    refused: () => refused,
    /** Connections accepted (and passed on) since the proxy was made. */
    accepted: () => accepted,
    /** Connections open through the proxy now, not counting those whose client has closed its side. */
    open: () => [...pairs].filter((pair) => !pair.letGo).length,
    close: async () => {
      for (const { client, upstream } of pairs) {
        client.destroy();
        upstream.destroy();
      }
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
