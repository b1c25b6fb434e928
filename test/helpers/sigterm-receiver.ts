// A receiver in a process of its own that shuts down on SIGTERM the way the docs
// say: the receiver first (new deliveries answered 503, connections closed after
// each answer, in-flight handlers awaited), a moment for idle keep-alive
// connections, then the HTTP server.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { MitpoWebhooks } from '../../src';

const webhooks = new MitpoWebhooks({ secret: process.env.SECRET! });
webhooks.onAny(() => new Promise((resolve) => setTimeout(resolve, 5)));
const app = express();
app.post('/webhooks/mitpo', webhooks.middleware());
const server = http.createServer(app);
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as AddressInfo).port }));
process.once('SIGTERM', () => {
  void webhooks
    .close({ timeout: 10 })
    // A moment for keep-alive connections that were between requests to carry one
    // more, answered 503 and closed, before the server drops what is left idle.
    .then(() => new Promise((resolve) => setTimeout(resolve, Number(process.env.KEEP_ALIVE_GRACE_MS ?? 250))))
    .then(() => server.close(() => process.exit(0)));
});
