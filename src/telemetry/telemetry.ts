import type { Context, Counter, Histogram, Meter, ObservableCallback, ObservableGauge, Span, TracerProvider, UpDownCounter } from '@opentelemetry/api';
import { sanitizeText } from '../text/sanitize-text';
import type { DeliveryResult, DeliveryTelemetry } from './delivery-telemetry';

type OtelApi = typeof import('@opentelemetry/api');

const NAME = 'mitpo-webhooks';

/** Attribute names, as API.md's Telemetry section fixes them. */
const EVENT = 'mitpo.webhook.event';
const DELIVERY_KEY = 'mitpo.webhook.delivery_key';
const OUTCOME = 'mitpo.webhook.outcome';
const STATUS_CODE = 'http.response.status_code';
const ATTEMPT = 'mitpo.webhook.attempt';
const STATE = 'mitpo.webhook.state';

interface Instruments {
  deliveries: Counter;
  handlerDuration: Histogram;
  inFlight: UpDownCounter;
  deadLetters: Counter;
  /** With a queue: the depth gauge and its callback, taken off the gauge at `stop()`. */
  queueDepth?: { gauge: ObservableGauge; read: ObservableCallback } | undefined;
}

/** How a worker's run starts its telemetry. */
export interface RunStart {
  /** The receive span's W3C trace context, carried in the job. */
  traceparent: string | undefined;
  /** `'child'`: the run's span is a child of the receive span; `'link'`: linked to it. */
  trace: 'link' | 'child';
  attempt: number;
}


/**
 * OpenTelemetry, through `@opentelemetry/api`'s global providers, when the
 * package is installed: loaded when a receiver is built, through the platform's
 * `openTelemetry()` (not when `mitpo-webhooks` is imported), and a no-op when it
 * is absent. Whether an SDK is registered is checked per
 * delivery with two identity comparisons, so nothing is recorded (and nothing
 * measurable spent) without one, and an SDK registered after the receiver was
 * built is still picked up: the metrics API does not proxy like the tracing API
 * does, so instruments are made again when the meter provider changes.
 */
export class Telemetry {
  private readonly api: OtelApi | undefined;
  private readonly noopTracerProvider: TracerProvider | undefined;
  private meterProvider: unknown;
  private instruments: Instruments | undefined;
  private stopped = false;

  /**
   * @param api - the runtime's `@opentelemetry/api` module, or undefined where there is none (the platform's `openTelemetry()`)
   * @param depth - read for the queue depth gauge when a metric reader collects, with a queue
   */
  constructor(api: unknown, private readonly depth?: () => Promise<Partial<Record<string, number>>>) {
    this.api = api as OtelApi | undefined;
    // The proxy's delegate before any SDK is registered: the API's own no-op.
    this.noopTracerProvider = this.api === undefined ? undefined : new this.api.ProxyTracerProvider().getDelegate();
    // Made now when an SDK is registered already, so every instrument (the queue depth
    // above all, dead letters included) is there from the start, not from the first delivery.
    if (this.api !== undefined) this.currentInstruments(this.api);
  }

  /** When the receiver closes: its queue's depth is no longer read. */
  stop(): void {
    this.stopped = true;
    const depth = this.instruments?.queueDepth;
    if (depth !== undefined) recording(() => depth.gauge.removeCallback(depth.read));
  }

  /**
   * Starts a delivery's telemetry in the active context (a child of the HTTP
   * span), or a worker's run of it (`run`), or undefined when nothing records.
   */
  startDelivery(name: 'mitpo.webhook.receive' | 'mitpo.webhook.process', run?: RunStart): DeliveryTelemetry | undefined {
    const api = this.api;
    if (api === undefined) return undefined;
    const tracing = (api.trace.getTracerProvider() as InstanceType<OtelApi['ProxyTracerProvider']>).getDelegate() !== this.noopTracerProvider;
    const instruments = this.currentInstruments(api);
    if (!tracing && instruments === undefined) return undefined;
    let span: Span | undefined;
    if (tracing) {
      const received = run?.traceparent === undefined ? undefined : spanContextOf(api, run.traceparent);
      const parent = received !== undefined && run?.trace === 'child' ? api.trace.setSpanContext(api.context.active(), received) : undefined;
      const options = {
        kind: name === 'mitpo.webhook.process' ? api.SpanKind.CONSUMER : api.SpanKind.INTERNAL,
        ...(received !== undefined && parent === undefined ? { links: [{ context: received }] } : {}),
        ...(run === undefined ? {} : { attributes: { [ATTEMPT]: run.attempt } }),
      };
      recording(() => (span = api.trace.getTracer(NAME).startSpan(name, options, parent)));
    }
    // Taken back when the delivery ends only if counted now, so an SDK that throws cannot unbalance it.
    const counted = instruments !== undefined && recording(() => instruments.inFlight.add(1));
    return new OtelDeliveryTelemetry(api, span, instruments, counted);
  }

  /** Counts a dead letter (a no-op without an SDK). */
  deadLetter(event: string | undefined): void {
    const api = this.api;
    if (api === undefined) return;
    recording(() => this.currentInstruments(api)?.deadLetters.add(1, event === undefined ? {} : { [EVENT]: safe(event) }));
  }

  private currentInstruments(api: OtelApi): Instruments | undefined {
    const provider = api.metrics.getMeterProvider();
    if (provider !== this.meterProvider) {
      this.meterProvider = provider;
      this.instruments = undefined;
      // The provider is the app's: one that throws here records nothing, and is not asked again.
      recording(() => {
        const meter = provider.getMeter(NAME);
        if (meter !== api.createNoopMeter()) this.instruments = instrumentsOf(meter, this.stopped ? undefined : this.depth);
      });
    }
    return this.instruments;
  }
}

/** One delivery's span and metrics, from its start until it is answered. */
class OtelDeliveryTelemetry implements DeliveryTelemetry {
  /** The context handlers run in: the delivery's span active, when there is one. */
  readonly context: Context;

  constructor(
    private readonly api: OtelApi,
    private readonly span: Span | undefined,
    private readonly instruments: Instruments | undefined,
    private readonly counted: boolean,
  ) {
    const active = api.context.active();
    this.context = span === undefined ? active : api.trace.setSpan(active, span);
  }

  /** Runs `work` with the delivery's span active, so the handlers' spans are its children. */
  within<T>(work: () => T): T {
    return this.api.context.with(this.context, work);
  }

  /** The W3C `traceparent` of the delivery's span, to link a worker's span to it. */
  traceparent(): string | undefined {
    const context = this.span?.spanContext();
    if (context === undefined || !this.api.isSpanContextValid(context)) return undefined;
    return `00-${context.traceId}-${context.spanId}-0${(context.traceFlags & 1).toString(16)}`;
  }

  /** One handler run, as a child span `mitpo.webhook.handle`, timed in the handler duration histogram. */
  async handle(event: string, run: () => unknown): Promise<void> {
    const started = performance.now();
    let span: Span | undefined;
    if (this.span !== undefined) {
      recording(() => (span = this.api.trace.getTracer(NAME).startSpan('mitpo.webhook.handle', { attributes: { [EVENT]: safe(event) } }, this.context)));
    }
    let outcome = 'success';
    try {
      await (span === undefined ? run() : this.api.context.with(this.api.trace.setSpan(this.context, span), run));
    } catch (error) {
      outcome = 'handler_failed';
      recording(() => {
        span?.recordException(error as Error);
        span?.setStatus({ code: this.api.SpanStatusCode.ERROR });
      });
      throw error;
    } finally {
      // Never the handler's outcome: a handler that succeeded is not failed by the SDK.
      recording(() => {
        span?.setAttribute(OUTCOME, outcome);
        span?.end();
      });
      recording(() => this.instruments?.handlerDuration.record((performance.now() - started) / 1000, { [EVENT]: safe(event), [OUTCOME]: outcome }));
    }
  }

  /** Records the answer (or the run's end) and ends the span. */
  end(result: DeliveryResult): void {
    const attributes = {
      ...(result.event === undefined ? {} : { [EVENT]: safe(result.event) }),
      [OUTCOME]: result.outcome,
      ...(result.status === undefined ? {} : { [STATUS_CODE]: result.status }),
    };
    const span = this.span;
    if (span !== undefined) {
      recording(() => {
        span.setAttributes(attributes);
        if (result.deliveryKey !== undefined) span.setAttribute(DELIVERY_KEY, sanitizeText(result.deliveryKey, 200));
        // A 5xx answer, or a worker's run that did not succeed.
        if (result.status === undefined ? result.failed === true : result.status >= 500) {
          span.setStatus({ code: this.api.SpanStatusCode.ERROR, message: result.outcome });
        }
        span.end();
      });
    }
    if (this.counted) recording(() => this.instruments?.inFlight.add(-1));
    recording(() => this.instruments?.deliveries.add(1, attributes));
  }
}

function instrumentsOf(meter: Meter, depth: (() => Promise<Partial<Record<string, number>>>) | undefined): Instruments {
  let queueDepth: Instruments['queueDepth'];
  if (depth !== undefined) {
    // Read from the queue only when a metric reader collects; a queue that cannot answer reports nothing.
    const gauge = meter.createObservableGauge('mitpo.webhook.queue.depth', { description: 'Deliveries the queue holds, by state' });
    const read: ObservableCallback = async (result) => {
      const counts = await depth().catch(() => ({}) as Partial<Record<string, number>>);
      for (const [state, count] of Object.entries(counts)) if (typeof count === 'number') result.observe(count, { [STATE]: state });
    };
    gauge.addCallback(read);
    queueDepth = { gauge, read };
  }
  return {
    queueDepth,
    deadLetters: meter.createCounter('mitpo.webhook.dead_letters', { description: 'Queued deliveries kept as dead letters, by event' }),
    deliveries: meter.createCounter('mitpo.webhook.deliveries', { description: 'Deliveries answered, by event, outcome and status' }),
    handlerDuration: meter.createHistogram('mitpo.webhook.handler.duration', {
      description: 'Handler runs',
      unit: 's',
      // In seconds: the SDK's default boundaries (0, 5, 10, 25...) suit milliseconds.
      advice: { explicitBucketBoundaries: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] },
    }),
    inFlight: meter.createUpDownCounter('mitpo.webhook.in_flight', { description: 'Deliveries being processed now' }),
  };
}

function spanContextOf(api: OtelApi, traceparent: string) {
  const match = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(traceparent);
  if (match === null) return undefined;
  const context = { traceId: match[1]!, spanId: match[2]!, traceFlags: Number.parseInt(match[3]!, 16), isRemote: true };
  return api.isSpanContextValid(context) ? context : undefined;
}

/**
 * Runs what records into the SDK. Its span processors and exporters are the
 * app's code, run inside these calls, and the SDK lets what they throw through:
 * telemetry is lost then, never an answer or a handler's success.
 */
function recording(record: () => void): boolean {
  try {
    record();
    return true;
  } catch {
    // Nothing to tell: the logger is not telemetry's, and an exporter that throws once throws again.
    return false;
  }
}

function safe(event: string): string {
  return sanitizeText(event, 64);
}
