import { eventsHandledBy, OnMitpoEvent } from '../../src/nestjs/on-mitpo-event';

// The decorator alone (the module that finds the methods runs under NestJS, in
// test/integration/nestjs.test.ts).
describe('@OnMitpoEvent', () => {
  function decorate(method: (...args: never[]) => unknown, names: Parameters<typeof OnMitpoEvent>[0]) {
    const descriptor: PropertyDescriptor = { value: method, writable: true, configurable: true };
    OnMitpoEvent(names)({}, 'handle', descriptor);
    return method;
  }

  it('records the names on the method itself, once per decorator, one or several', () => {
    const single = decorate(() => {}, 'dispatch.completed');
    expect(eventsHandledBy(single)).toEqual(['dispatch.completed']);
    const several = decorate(() => {}, ['dispatch.failed', 'connection.active']);
    expect(eventsHandledBy(several)).toEqual(['dispatch.failed', 'connection.active']);
    decorate(several, 'dispatch.accepted');
    expect(eventsHandledBy(several)).toEqual(['dispatch.failed', 'connection.active', 'dispatch.accepted']);
    expect(eventsHandledBy(() => {})).toBeUndefined();
    expect(eventsHandledBy('not a method')).toBeUndefined();
  });

  it('refuses, when the class is defined, a name this version does not know, or none', () => {
    expect(() => OnMitpoEvent('dispatch.complete' as never)).toThrow(/OnMitpoEvent\("dispatch.complete"\): unknown event type/);
    expect(() => OnMitpoEvent([])).toThrow(/OnMitpoEvent\(\) needs at least one event name/);
  });

  it('goes on methods only', () => {
    expect(() => OnMitpoEvent('dispatch.completed')({}, 'field', { value: 42 } as never)).toThrow(/@OnMitpoEvent\(\) goes on a method/);
  });
});
