import type { Config } from 'jest';

const config: Config = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test', '<rootDir>/examples'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }],
  },
  // The examples import the package by name, as a user's code would; inside the
  // repo that name must mean the sources, so tests never run a stale dist/.
  moduleNameMapper: {
    '^mitpo-webhooks$': '<rootDir>/src/index.ts',
    '^mitpo-webhooks/(testing|redis|bullmq|postgres|fastify|koa|nestjs|api|web)$': '<rootDir>/src/$1/index.ts',
  },
  globalSetup: '<rootDir>/test/global-setup.js',
  // The library's own code. The CLI is left out: its tests run the built bin in a
  // child process, as a user would, where Jest cannot instrument it. So is the
  // NestJS module (not its decorator): Nest 12 is ESM only, which Jest cannot load
  // on Node 20, so its suite serves apps from a child process too
  // (test/helpers/nest-app-process.ts). Without a
  // Redis (REDIS_URL unset) the BullMQ queue cannot run, so it is measured only
  // where it is exercised: in CI, which starts a Redis.
  collectCoverageFrom: [
    'src/**/*.ts',
    '!src/cli/**',
    '!src/nestjs/{index,mitpo-webhooks.module}.ts',
    ...(process.env.REDIS_URL ? [] : ['!src/bullmq/**']),
    ...(process.env.DATABASE_URL ? [] : ['!src/postgres/**']),
  ],
  coverageReporters: ['text-summary'],
  coverageThreshold: { global: { statements: 96, branches: 91 } },
  testTimeout: 20_000,
};

// CommonJS, not `export default`: Node 22.18+ and 24 load this file natively (types
// stripped) before jest falls back to ts-node, and without "type": "module" an ES export
// fails there with a warning on every run.
module.exports = config;
