import { eventsHandledBy, OnMitpoEvent } from '../../src/nestjs/on-mitpo-event';

// The decorator alone (the module that finds the methods runs under NestJS, in
// test/integration/nestjs.test.ts).
describe('@OnMitpoEvent', () => {
  function decorate(prototype: object, key: string, names: Parameters<typeof OnMitpoEvent>[0]) {
    const descriptor: PropertyDescriptor = { value: () => {}, writable: true, configurable: true };
    OnMitpoEvent(names)(prototype, key, descriptor);
  }

  it('records the names by class and method, once per decorator, one or several', () => {
    const prototype = {};
    decorate(prototype, 'single', 'dispatch.completed');
    decorate(prototype, 'several', ['dispatch.failed', 'connection.active']);
    decorate(prototype, 'several', 'dispatch.accepted');
    expect(eventsHandledBy(prototype, 'single')).toEqual(['dispatch.completed']);
    expect(eventsHandledBy(prototype, 'several')).toEqual(['dispatch.failed', 'connection.active', 'dispatch.accepted']);
    expect(eventsHandledBy(prototype, 'other')).toBeUndefined();
    expect(eventsHandledBy({}, 'single')).toBeUndefined();
  });

  it('finds a decorated method inherited from a base class', () => {
    const base = {};
    decorate(base, 'handle', 'connection.reauth_required');
    expect(eventsHandledBy(Object.create(Object.create(base) as object) as object, 'handle')).toEqual(['connection.reauth_required']);
  });

  // Found by a hunt: an undecorated override still handled events, where Nest's own method
  // decorators (kept on the function) leave it out.
  it('leaves out a method a subclass overrides without the decorator, and keeps one it inherits', () => {
    class Base {
      @OnMitpoEvent('dispatch.completed')
      handle(): void {}
    }
    class Overrides extends Base {
      override handle(): void {}
    }
    class Inherits extends Base {}
    class Redecorates extends Base {
      @OnMitpoEvent('dispatch.failed')
      override handle(): void {}
    }
    expect(eventsHandledBy(Overrides.prototype, 'handle')).toBeUndefined();
    expect(eventsHandledBy(Object.create(Overrides.prototype) as object, 'handle')).toBeUndefined();
    expect(eventsHandledBy(Inherits.prototype, 'handle')).toEqual(['dispatch.completed']);
    expect(eventsHandledBy(Redecorates.prototype, 'handle')).toEqual(['dispatch.failed']);
  });

  it('still finds the method when a decorator above it replaced the function', () => {
    class Handlers {
      @((_target: object, _key: string, descriptor: PropertyDescriptor) => {
        const original = descriptor.value as (...args: unknown[]) => unknown;
        descriptor.value = function traced(this: unknown, ...args: unknown[]) {
          return original.apply(this, args);
        };
      })
      @OnMitpoEvent('dispatch.completed')
      completed(): void {}
    }
    expect(eventsHandledBy(Handlers.prototype, 'completed')).toEqual(['dispatch.completed']);
    expect(Handlers.prototype.completed.name).toBe('traced');
  });

  it('refuses, when the class is defined, a name this version does not know, or none', () => {
    expect(() => OnMitpoEvent('dispatch.complete' as never)).toThrow(/OnMitpoEvent\("dispatch.complete"\): unknown event type/);
    expect(() => OnMitpoEvent([])).toThrow(/OnMitpoEvent\(\) needs at least one event name/);
  });

  it('runs a method once per type however many decorators name it', () => {
    const prototype = {};
    decorate(prototype, 'handle', ['dispatch.completed', 'dispatch.failed']);
    decorate(prototype, 'handle', 'dispatch.completed');
    expect(eventsHandledBy(prototype, 'handle')).toEqual(['dispatch.completed', 'dispatch.failed']);
  });

  it('refuses a static method, which discovery of instances would never find', () => {
    class Handlers {}
    expect(() => OnMitpoEvent('dispatch.completed')(Handlers, 'handle', { value: () => {} })).toThrow(/not a static one/);
  });

  it('goes on methods only', () => {
    expect(() => OnMitpoEvent('dispatch.completed')({}, 'field', { value: 42 } as never)).toThrow(/@OnMitpoEvent\(\) goes on a method/);
  });
});
