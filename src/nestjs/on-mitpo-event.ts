import type { MitpoEventName } from '../events/schemas';
import { namesOf } from '../router/event-router';
import type { EventHandler } from '../router/types';

/**
 * The event names each decorated method handles, keyed by the method itself.
 * A WeakMap rather than reflect-metadata: nothing global to load, and a method
 * inherited by a subclass is still the same function, so it is found there too.
 */
const handledEvents = new WeakMap<object, string[]>();

/** The names `@OnMitpoEvent` gave `method`, if it was decorated. */
export function eventsHandledBy(method: unknown): string[] | undefined {
  return typeof method === 'function' ? handledEvents.get(method) : undefined;
}

/**
 * Marks a provider's method as the handler of one or more event types, as
 * `webhooks.on(name, handler)` would: its `event` is narrowed to those types.
 * Found when the app starts; the provider must not be request-scoped.
 *
 * @throws TypeError on an event name this version does not know
 * @example
 * \@OnMitpoEvent('dispatch.completed')
 * async markDone(event: MitpoEventOf<'dispatch.completed'>) { ... }
 */
export function OnMitpoEvent<N extends MitpoEventName>(name: N | readonly N[]) {
  const names = namesOf(name, 'OnMitpoEvent');
  return <M extends EventHandler<N>>(_target: object, _key: string | symbol, descriptor: TypedPropertyDescriptor<M>): void => {
    if (typeof descriptor.value !== 'function') throw new TypeError('mitpo-webhooks: @OnMitpoEvent() goes on a method');
    handledEvents.set(descriptor.value, [...(handledEvents.get(descriptor.value) ?? []), ...names]);
  };
}
