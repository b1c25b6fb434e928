// Preloaded into the NestJS app process when NEST_MODULES names another install's
// node_modules (.ci/run points it at a NestJS 11 install): every @nestjs/* package is
// then taken from there, so the same suite runs on both majors, which npm cannot
// install side by side in one tree (their peer ranges exclude each other).
import Module from 'node:module';
import path from 'node:path';

const nestModules = process.env.NEST_MODULES!;
type Resolve = (request: string, parent: unknown, ...rest: unknown[]) => string;
const internals = Module as unknown as { _resolveFilename: Resolve };
const resolve = internals._resolveFilename;
internals._resolveFilename = function resolveNestFromElsewhere(request, parent, ...rest) {
  const target = request.startsWith('@nestjs/') ? path.join(nestModules, request) : request;
  return resolve.call(this, target, parent, ...rest);
};
