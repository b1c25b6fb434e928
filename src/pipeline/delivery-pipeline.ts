import { outcomeName, refusal, type Outcome } from '../answers';
import { WebhookVerificationError } from '../errors';
import { isMitpoEventName, type MitpoEvent } from '../events/schemas';
import type { ResolvedOptions } from '../options';
import type { Platform } from '../platform/platform';
import type { QueuedRun } from '../queue/delivery-queue';
import type { EventRouter } from '../router/event-router';
import { Telemetry } from '../telemetry/telemetry';
import { sanitizeText } from '../text/sanitize-text';
import { FailureReport, type DeliveryTrace } from './failure-report';
import { InlineHandling } from './inline-handling';
import { QueuedRuns, type DeadLetterHandler } from './queued-runs';
import { Listeners } from '../listeners';
import { StaleEvents } from '../ordering/stale-events';
import { Shutdown, shuttingDown } from './shutdown';
import { asVerificationError, keyed, verified, type Checks, type DeliveryRequest } from './verified';

/**
 * The one path every delivery takes, under every adapter: the checks
 * (`verified`), then inline handling or the queue. Never rejects: every
 * failure is an answer.
 */
export class DeliveryPipeline {
  readonly failures: FailureReport;
  readonly shutdown = new Shutdown();
  private readonly telemetry: Telemetry;
  private readonly checks: Checks;
  private readonly inline: InlineHandling;
  private readonly queued: QueuedRuns | undefined;
  // Typed here, not inferred: an inferred type is written into the declarations through
  // the main entry, which would bring Node's types into `mitpo-webhooks/web`'s.
  readonly deadLetters: Listeners<Parameters<DeadLetterHandler>> = new Listeners('onDeadLetter');
  readonly stale: StaleEvents;

  constructor(options: ResolvedOptions, router: EventRouter, platform: Platform) {
    this.checks = { options, platform };
    const queue = options.queue;
    this.telemetry = new Telemetry(platform.openTelemetry(), queue?.depth === undefined ? undefined : () => queue.depth!());
    // The depth gauge stops reading the queue before its connection closes (and lets go of it).
    if (queue?.depth !== undefined) this.shutdown.beforeConnectionsClose(() => Promise.resolve(this.telemetry.stop()));
    this.failures = new FailureReport(options.logger, options.now);
    this.stale = new StaleEvents(this.failures);
    this.inline = new InlineHandling(options, router, this.shutdown, this.failures, platform, this.stale);
    this.queued =
      options.queue === undefined ? undefined : new QueuedRuns(options.queue, this.deadLetters, this.checks, router, this.failures, this.telemetry, this.stale);
  }

  /** The bounds on a body (`limit` bytes, `bodyTimeout`), for an adapter that hands a refusal on before it was read. */
  get bodyBounds(): { limit: number; timeoutMs: number } {
    return { limit: this.checks.options.limit, timeoutMs: this.checks.options.bodyTimeoutSeconds * 1000 };
  }

  /**
   * Verifies, then checks for replay and runs the handlers, or (with a queue)
   * queues the delivery for the workers.
   */
  process(request: DeliveryRequest): Promise<Outcome> {
    const telemetry = this.telemetry.startDelivery('mitpo.webhook.receive');
    const trace: DeliveryTrace = { headers: request.headers, startedAt: this.checks.options.now() };
    if (telemetry !== undefined) trace.telemetry = telemetry;
    // Refused before anything is read, so a shutdown is never held up by a new body.
    if (this.shutdown.closing) return Promise.resolve(this.answered(this.refuse(shuttingDown('it takes no new deliveries'), trace), trace));
    return telemetry === undefined ? this.underWay(request, trace) : telemetry.within(() => this.underWay(request, trace));
  }

  private async underWay(request: DeliveryRequest, trace: DeliveryTrace): Promise<Outcome> {
    this.shutdown.enter();
    let outcome: Outcome;
    try {
      const delivery = await keyed(await verified(request, this.checks, trace, 'arrival'), this.checks, trace);
      outcome = this.queued === undefined ? await this.inline.handle(delivery, trace) : await this.queued.enqueue(delivery, trace);
    } catch (error) {
      const refused = asVerificationError(error);
      if (refused.code === 'invalid_payload' && trace.rawBody !== undefined) await this.queued?.keepRefused(refused, trace);
      outcome = this.refuse(refused, trace);
    } finally {
      this.shutdown.leave();
    }
    return this.answered(outcome, trace);
  }

  private refuse(error: WebhookVerificationError, trace: DeliveryTrace): Outcome {
    this.failures.report(error, trace);
    return refusal(error);
  }

  /** Tells telemetry how the delivery was answered. */
  private answered(outcome: Outcome, trace: DeliveryTrace): Outcome {
    trace.telemetry?.end({ outcome: outcomeName(outcome), status: outcome.status, event: trace.event, deliveryKey: trace.deliveryKey });
    return outcome;
  }

  /** One run of a queued delivery, in a worker; `trace` as `startWorker()` was given it. */
  processQueued(run: QueuedRun, trace?: 'link' | 'child'): Promise<void> {
    return this.queued!.run(run, trace);
  }

  /** Every check but replay, for bytes in hand; no handler runs. @throws WebhookVerificationError */
  async verify(request: DeliveryRequest): Promise<MitpoEvent> {
    // The first check of the contract's table, as for a delivery the receiver is given.
    if (this.shutdown.closing) throw shuttingDown('it verifies no new deliveries');
    const trace: DeliveryTrace = { headers: request.headers, startedAt: this.checks.options.now() };
    const { event } = await verified(request, this.checks, trace, 'arrival');
    if (!isMitpoEventName(event.event)) {
      throw new WebhookVerificationError(
        'invalid_payload',
        `Event type "${sanitizeText(event.event, 64)}" is not one this version knows; receive() and the middleware pass such events to onAny()`,
      );
    }
    return event as MitpoEvent;
  }
}
