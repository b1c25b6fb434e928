// OpenTelemetry: the Node SDK with HTTP instrumentation, exporting spans and
// metrics to the console, around a receiver that takes three deliveries.
//   npm run example:telemetry
// Each delivery is a span mitpo.webhook.receive, a child of the HTTP server span,
// with a mitpo.webhook.handle span per handler run; the meter mitpo-webhooks
// counts deliveries, times handlers and tracks deliveries in flight.
import { ConsoleMetricExporter, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { ConsoleSpanExporter } from '@opentelemetry/sdk-trace-base';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';

const sdk = new NodeSDK({
  serviceName: 'mitpo-webhooks-example',
  traceExporter: new ConsoleSpanExporter(),
  metricReader: new PeriodicExportingMetricReader({ exporter: new ConsoleMetricExporter(), exportIntervalMillis: 60_000 }),
  instrumentations: [new HttpInstrumentation()],
});
sdk.start();

async function main(): Promise<number> {
  // Loaded after sdk.start(), so node:http is instrumented before the app uses it.
  const { default: express } = await import('express');
  const { MitpoWebhooks } = await import('mitpo-webhooks');
  const { sendDelivery } = await import('mitpo-webhooks/testing');
  const secret = 'whsec_telemetry_example';

  const webhooks = new MitpoWebhooks({ secret, logger: console });
  webhooks.on('dispatch.completed', async (event) => console.log(`handled ${event.data.dispatch_id}`));
  const app = express();
  app.post('/webhooks/mitpo', webhooks.middleware());

  const delivery = { event: 'dispatch.completed' as const, secret };
  console.log('accepted:', (await sendDelivery(app, delivery)).status);
  console.log('forged:', (await sendDelivery(app, { ...delivery, secret: 'whsec_someone_else' })).status);
  await sdk.shutdown(); // flushes the spans and the metrics to the console
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
