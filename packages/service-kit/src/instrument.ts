// The kit's tracing entry: `node --import @task-manager/service-kit/instrument dist/server.js`.
//
// It runs before the service's own modules, as instrumentation must (it patches `pg` as it is loaded).
// With no OTLP endpoint configured it does nothing at all: no SDK is loaded, no module is hooked, so tracing
// off costs nothing. With OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) set it starts
// OpenTelemetry (tracing.ts), configured by the standard OTEL_* variables.
import { tracingConfigured } from './telemetry.js'

if (tracingConfigured(process.env)) {
  const { startTracing } = await import('./tracing.js')
  startTracing(process.env)
}
