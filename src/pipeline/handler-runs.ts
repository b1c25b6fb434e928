import { WebhookVerificationError } from '../errors';
import type { HandlerRun } from '../router/event-router';
import type { DeliveryTelemetry } from '../telemetry/delivery-telemetry';

/** Each handler run in its own span, when telemetry records. */
export function aroundHandlers(telemetry: DeliveryTelemetry | undefined, event: string): HandlerRun | undefined {
  return telemetry === undefined ? undefined : (run) => telemetry.handle(event, run);
}

/** The 500 for handlers that failed; the handler's own error, stack and all, is its `cause`. */
export function handlerFailed(failures: readonly Error[]): WebhookVerificationError {
  const cause = failures.length === 1 ? failures[0] : new AggregateError(failures, `${failures.length} handlers failed`);
  return new WebhookVerificationError('handler_failed', 'A handler failed; the delivery was not marked as handled and can be retried', {
    cause,
  });
}
