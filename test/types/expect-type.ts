// Type-level assertions for the *.typetest.ts files, which tsc checks and nothing runs.

/** Whether two types are the same type, not merely assignable to each other. */
export type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

/** Compiles only when its type argument is `true`. */
export function expectType<T extends true>(_check?: T): void {}
