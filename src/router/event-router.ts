import { toError } from '../errors';
import { isPromiseLike, type MaybePromise } from '../maybe-promise';
import { isMitpoEventName, MITPO_EVENT_NAMES, type MitpoEvent, type UnknownMitpoEvent } from '../events/schemas';
import type { AnyEventHandler, DeliveryContext, HandlerErrorHandler } from './types';

type Handler = (event: never, ctx: DeliveryContext) => unknown;

/** Which handlers run for which event, and running them. */
export class EventRouter {
  private readonly byName = new Map<string, Handler[]>();
  private anyHandlers: AnyEventHandler[] = [];
  private errorHandlers: HandlerErrorHandler[] = [];
  private readonly combined = new Map<string, readonly Handler[]>();

  on(names: unknown, handler: unknown): void {
    assertHandler(handler, 'on');
    for (const name of namesOf(names, 'on')) {
      this.byName.set(name, [...(this.byName.get(name) ?? []), handler as Handler]);
    }
    this.combined.clear();
  }

  onAny(handler: unknown): void {
    assertHandler(handler, 'onAny');
    this.anyHandlers = [...this.anyHandlers, handler as AnyEventHandler];
    this.combined.clear();
  }

  onError(handler: unknown): void {
    assertHandler(handler, 'onError');
    this.errorHandlers = [...this.errorHandlers, handler as HandlerErrorHandler];
  }

  /** `'*'` names the `onAny` handlers. Removing one that is not registered does nothing. */
  removeListener(names: unknown, handler: unknown): void {
    const list = Array.isArray(names) ? names : [names];
    for (const name of list) {
      if (name === '*') {
        this.anyHandlers = this.anyHandlers.filter((h) => h !== handler);
        continue;
      }
      const remaining = (this.byName.get(name as string) ?? []).filter((h) => h !== handler);
      if (remaining.length > 0) this.byName.set(name as string, remaining);
      else this.byName.delete(name as string);
    }
    this.combined.clear();
  }

  /**
   * Runs every handler for the event at once and waits for all of them. The
   * arrays are replaced, never mutated, on registration, so a handler added or
   * removed while a delivery runs affects only later deliveries. When every
   * handler returned synchronously the result is too: no promise is made.
   *
   * @returns the errors of the handlers that failed (empty on success)
   */
  dispatch(event: MitpoEvent | UnknownMitpoEvent, ctx: DeliveryContext): MaybePromise<Error[]> {
    const handlers = this.handlersFor(event.event);
    const failures: Error[] = [];
    let pending: Promise<unknown>[] | undefined;
    for (const handler of handlers) {
      try {
        const result = handler(event as never, ctx);
        if (isPromiseLike(result)) {
          (pending ??= []).push(Promise.resolve(result).then(undefined, (error: unknown) => failures.push(toError(error))));
        }
      } catch (error) {
        failures.push(toError(error));
      }
    }
    if (pending === undefined) return this.reported(failures, event, ctx);
    return Promise.all(pending).then(() => this.reported(failures, event, ctx));
  }

  /** The named handlers then the onAny ones, combined once per registration change rather than per delivery. */
  private handlersFor(name: string): readonly Handler[] {
    let combined = this.combined.get(name);
    if (combined === undefined) {
      combined = [...(this.byName.get(name) ?? []), ...this.anyHandlers];
      // Unknown event names would grow this without bound: only known ones are kept.
      if (this.byName.has(name) || isMitpoEventName(name)) this.combined.set(name, combined);
    }
    return combined;
  }

  private reported(failures: Error[], event: MitpoEvent | UnknownMitpoEvent, ctx: DeliveryContext): Error[] {
    for (const failure of failures) this.reportHandlerError(failure, event, ctx);
    return failures;
  }

  private reportHandlerError(error: Error, event: MitpoEvent | UnknownMitpoEvent, ctx: DeliveryContext): void {
    for (const handler of this.errorHandlers) {
      try {
        const result = handler(error, event, ctx);
        // An onError that rejects must not become an unhandled rejection that kills the process.
        if (isPromiseLike(result)) Promise.resolve(result).catch(() => undefined);
      } catch {
        // An onError that throws never changes the answer.
      }
    }
  }
}

function assertHandler(handler: unknown, method: string): void {
  if (typeof handler !== 'function') {
    throw new TypeError(`mitpo-webhooks: ${method}() needs a function as its handler (got ${typeof handler})`);
  }
}

function namesOf(names: unknown, method: string): string[] {
  const list = Array.isArray(names) ? names : [names];
  if (list.length === 0) throw new TypeError(`mitpo-webhooks: ${method}() needs at least one event name`);
  for (const name of list) {
    if (!isMitpoEventName(name)) {
      throw new TypeError(
        `mitpo-webhooks: ${method}(${JSON.stringify(name)}): unknown event type; known types are ` +
          `${MITPO_EVENT_NAMES.join(', ')}. Use onAny() to receive types this version does not know yet.`,
      );
    }
  }
  return list as string[];
}
