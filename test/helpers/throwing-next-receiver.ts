// A plain node:http app whose `next` (its own error handler) answers and then throws,
// run in a process of its own: it prints each call of `next`, and what surfaced of the throw.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { MitpoWebhooks, type WebhookVerificationError } from '../../src';

const surfaced = (error: unknown) => {
  console.log(`surfaced: ${(error as Error).message}`);
  process.exit(0);
};
process.on('uncaughtException', surfaced).on('unhandledRejection', surfaced);

const webhooks = new MitpoWebhooks({ secret: process.env.SECRET! });
const middleware = webhooks.middleware({ passErrors: true });
const server = http.createServer((req, res) =>
  middleware(req, res, (err) => {
    console.log(`next called with ${(err as WebhookVerificationError).code}`);
    res.writeHead(500).end();
    throw new Error('the app’s error handler broke');
  }),
);
server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as AddressInfo).port }));
