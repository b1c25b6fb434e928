import { toError } from '../errors';
import { isMitpoEventName, MITPO_EVENT_NAMES, type MitpoEvent, type UnknownMitpoEvent } from '../events/schemas';
import type { AnyEventHandler, DeliveryContext, HandlerErrorHandler } from './types';

type Handler = (event: never, ctx: DeliveryContext) => unknown;

/** Wraps each handler run (telemetry's span and timing); must settle as the run does. */
export type HandlerRun = (run: () => unknown) => Promise<unknown>;

/** Which handlers run for which event, and running them. */
export class EventRouter {
  private readonly byName = new Map<string, Handler[]>();
  private anyHandlers: AnyEventHandler[] = [];
  private errorHandlers: HandlerErrorHandler[] = [];

  on(names: unknown, handler: unknown): void {
    assertHandler(handler, 'on');
    for (const name of namesOf(names, 'on')) {
      this.byName.set(name, [...(this.byName.get(name) ?? []), handler as Handler]);
    }
  }

  onAny(handler: unknown): void {
    assertHandler(handler, 'onAny');
    this.anyHandlers = [...this.anyHandlers, handler as AnyEventHandler];
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
  }

  /**
   * Runs every handler for the event at once and waits for all of them. The
   * arrays are replaced, never mutated, on registration, so a handler added or
   * removed while a delivery runs affects only later deliveries.
   *
   * @param around - wraps each run, e.g. in a span
   * @returns the errors of the handlers that failed (empty on success)
   */
  async dispatch(event: MitpoEvent | UnknownMitpoEvent, ctx: DeliveryContext, around?: HandlerRun): Promise<Error[]> {
    const runs = this.handlersFor(event.event).map(async (handler) => {
      const run = () => handler(event as never, ctx);
      return around === undefined ? run() : around(run);
    });
    const results = await Promise.allSettled(runs);
    const failures = results.flatMap((result) => (result.status === 'rejected' ? [toError(result.reason)] : []));
    for (const failure of failures) this.reportHandlerError(failure, event, ctx);
    return failures;
  }

  /** The named handlers, then the onAny ones. */
  private handlersFor(name: string): readonly Handler[] {
    return [...(this.byName.get(name) ?? []), ...this.anyHandlers];
  }

  private reportHandlerError(error: Error, event: MitpoEvent | UnknownMitpoEvent, ctx: DeliveryContext): void {
    for (const handler of this.errorHandlers) {
      try {
        // An onError that rejects must not become an unhandled rejection that kills the process.
        Promise.resolve(handler(error, event, ctx)).catch(() => undefined);
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

/** The event names given to `on()` (or `@OnMitpoEvent`), checked: one or more, each a type this version knows. */
export function namesOf(names: unknown, method: string): string[] {
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
