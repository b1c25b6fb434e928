import { toError } from '../errors';
import { isMitpoEventName, MITPO_EVENT_NAMES, type MitpoEvent, type UnknownMitpoEvent } from '../events/schemas';
import { Listeners } from '../listeners';
import type { AnyEventHandler, DeliveryContext, HandlerErrorHandler } from './types';

type Handler = (event: never, ctx: DeliveryContext) => unknown;

/** Wraps each handler run (telemetry's span and timing); must settle as the run does. */
export type HandlerRun = (run: () => unknown) => Promise<unknown>;

/** No handler failed: shared, since most deliveries end this way. */
const NO_FAILURES: readonly Error[] = Object.freeze([]);

/** Which handlers run for which event, and running them. */
export class EventRouter {
  private readonly byName = new Map<string, Handler[]>();
  private anyHandlers: AnyEventHandler[] = [];
  /** The named handlers then the onAny ones, per event name; rebuilt after every (un)registration. */
  private readonly forName = new Map<string, readonly Handler[]>();
  private readonly errorListeners = new Listeners<Parameters<HandlerErrorHandler>>('onError');

  on(names: unknown, handler: unknown): void {
    assertHandler(handler, 'on');
    // A function registered again for a name is registered once (as addEventListener): run
    // twice, one delivery's effect would be applied twice.
    for (const name of namesOf(names, 'on')) {
      const current = this.byName.get(name) ?? [];
      if (!current.includes(handler as Handler)) this.byName.set(name, [...current, handler as Handler]);
    }
    this.forName.clear();
  }

  onAny(handler: unknown): void {
    assertHandler(handler, 'onAny');
    if (!this.anyHandlers.includes(handler as AnyEventHandler)) this.anyHandlers = [...this.anyHandlers, handler as AnyEventHandler];
    this.forName.clear();
  }

  onError(handler: unknown): void {
    this.errorListeners.add(handler);
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
    this.forName.clear();
  }

  /**
   * Runs every handler for the event at once and waits for all of them. The
   * lists are replaced, never mutated, on registration, so a handler added or
   * removed while a delivery runs affects only later deliveries. Never rejects.
   *
   * @param around - wraps each run, e.g. in a span
   * @returns the errors of the handlers that failed (empty on success)
   */
  dispatch(event: MitpoEvent | UnknownMitpoEvent, ctx: DeliveryContext, around?: HandlerRun): Promise<readonly Error[]> {
    const handlers = this.handlersFor(event.event);
    if (handlers.length === 1) {
      return runHandler(handlers[0]!, event, ctx, around).then(
        () => NO_FAILURES,
        (error: unknown) => this.failed([toError(error)], event, ctx),
      );
    }
    return Promise.allSettled(handlers.map((handler) => runHandler(handler, event, ctx, around))).then((results) => {
      const failures = results.flatMap((result) => (result.status === 'rejected' ? [toError(result.reason)] : []));
      return failures.length === 0 ? NO_FAILURES : this.failed(failures, event, ctx);
    });
  }

  private handlersFor(name: string): readonly Handler[] {
    let handlers = this.forName.get(name);
    if (handlers === undefined) {
      handlers = [...(this.byName.get(name) ?? []), ...this.anyHandlers];
      this.forName.set(name, handlers);
    }
    return handlers;
  }

  private failed(failures: Error[], event: MitpoEvent | UnknownMitpoEvent, ctx: DeliveryContext): readonly Error[] {
    for (const failure of failures) this.errorListeners.emit(failure, event, ctx);
    return failures;
  }
}

/** One handler's run as a promise; a handler that throws synchronously rejects it like one that rejects. */
function runHandler(handler: Handler, event: MitpoEvent | UnknownMitpoEvent, ctx: DeliveryContext, around: HandlerRun | undefined): Promise<unknown> {
  try {
    return Promise.resolve(around === undefined ? handler(event as never, ctx) : around(() => handler(event as never, ctx)));
  } catch (error) {
    return Promise.reject(error);
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
