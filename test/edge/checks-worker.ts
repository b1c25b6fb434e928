// The checks app as a Worker module: what each runtime serves (Deno and Bun through a one-line server around it).
import { createChecksApp } from './checks-app';

const app = createChecksApp();

export default { fetch: (request: Request) => app.fetch(request) };
