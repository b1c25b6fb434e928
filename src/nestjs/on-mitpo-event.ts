import type { MitpoEventName } from '../events/schemas';
import { namesOf } from '../router/event-router';
import type { EventHandler } from '../node-types';

/**
 * The event names of each decorated method, by class prototype and method name.
 * Kept by name, not on the function: a decorator applied above this one (a
 * tracing span, say) replaces the function, and the method must still be found.
 * A WeakMap rather than reflect-metadata: nothing global to rely on.
 */
const handledEvents = new WeakMap<object, Map<string | symbol, string[]>>();

/**
 * The names `@OnMitpoEvent` gave the method `key` of `prototype`, or of the class
 * it inherits the decorated method from; undefined if it was not decorated, or
 * was overridden below the decorated class without the decorator (as Nest's own
 * method decorators, kept on the function, are not inherited by an override).
 */
export function eventsHandledBy(prototype: object, key: string | symbol): string[] | undefined {
  for (let level: object | null = prototype; level !== null; level = Object.getPrototypeOf(level) as object | null) {
    const names = handledEvents.get(level)?.get(key);
    if (names !== undefined) return names;
    if (Object.prototype.hasOwnProperty.call(level, key)) return undefined;
  }
  return undefined;
}

/**
 * Marks a provider's method as the handler of one or more event types, as
 * `webhooks.on(name, handler)` would: its `event` is narrowed to those types.
 * Found when the app starts; the provider must be a singleton (not request-scoped
 * or transient).
 *
 * @throws TypeError on an event name this version does not know
 * @example
 * \@OnMitpoEvent('dispatch.completed')
 * async markDone(event: MitpoEventOf<'dispatch.completed'>) { ... }
 */
export function OnMitpoEvent<N extends MitpoEventName>(name: N | readonly N[]) {
  const names = namesOf(name, 'OnMitpoEvent');
  return <M extends EventHandler<N>>(target: object, key: string | symbol, descriptor: TypedPropertyDescriptor<M>): void => {
    if (typeof descriptor?.value !== 'function') throw new TypeError('mitpo-webhooks: @OnMitpoEvent() goes on a method');
    // Discovery looks at instances' methods; a static one would silently never run.
    if (typeof target === 'function') throw new TypeError('mitpo-webhooks: @OnMitpoEvent() goes on an instance method, not a static one');
    const methods = handledEvents.get(target) ?? new Map<string | symbol, string[]>();
    // Two decorators naming the same type still run the method once for it.
    methods.set(key, [...new Set([...(methods.get(key) ?? []), ...names])]);
    handledEvents.set(target, methods);
  };
}
