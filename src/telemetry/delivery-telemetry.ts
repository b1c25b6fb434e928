/**
 * A delivery's telemetry as the pipeline uses it. Declared apart from the
 * OpenTelemetry implementation so that no public type refers to
 * `@opentelemetry/api`, which an app need not install.
 */
export interface DeliveryTelemetry {
  /** Runs `work` with the delivery's span active, so the handlers' spans are its children. */
  within<T>(work: () => T): T;
  /** The W3C `traceparent` of the delivery's span, to link a worker's span to it. */
  traceparent(): string | undefined;
  /** One handler run, as a child span, timed in the handler duration histogram. */
  handle(event: string, run: () => unknown): Promise<void>;
  /** Records the answer and ends the span. */
  end(result: DeliveryResult): void;
}

/** What a delivery's telemetry is told when it is answered (or, in a worker, when its run ends). */
export interface DeliveryResult {
  outcome: string;
  /** The HTTP status answered; none for a worker's run, which answers no request. */
  status: number | undefined;
  /** Only a verified event's name: the header is the sender's, and must not multiply metric series. */
  event: string | undefined;
  deliveryKey: string | undefined;
  /** A worker's run that did not succeed (its span's status is ERROR); unset for a receive, whose status decides. */
  failed?: boolean | undefined;
}
