import { readFileSync } from 'node:fs'
import { register } from 'node:module'
import { dirname, join } from 'node:path'
import { FastifyOtelInstrumentation } from '@fastify/otel'
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg'
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici'
import { NodeSDK } from '@opentelemetry/sdk-node'
import { register as registerImportHooks, supportsSyncHooks } from 'import-in-the-middle/register-hooks.mjs'
import { hasTraceparent, markTracingActive } from './telemetry.js'

/** Probes and scrapes: never traced (they would be most of the spans and tell nothing). */
const UNTRACED_PATH = /^\/(?:health|metrics|openapi\.json)(?:[/?]|$)/

/**
 * The service's name for the `service.name` resource attribute when OTEL_SERVICE_NAME is not set: the name of
 * the package whose entry runs (`@task-manager/task-service` → `task-service`).
 */
function serviceNameOf(entry: string | undefined): string | undefined {
  if (entry === undefined) return undefined
  let dir = dirname(entry)
  for (let i = 0; i < 4; i++) {
    try {
      const { name } = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string }
      if (typeof name === 'string') return name.replace(/^@[^/]+\//, '')
    } catch {
      // no package.json here: look one level up
    }
    dir = dirname(dir)
  }
  return undefined
}

/**
 * Starts OpenTelemetry tracing for this process. Configured by the standard variables:
 * OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL (http/protobuf by
 * default, http/json, grpc), OTEL_TRACES_SAMPLER (e.g. parentbased_traceidratio) and OTEL_TRACES_SAMPLER_ARG,
 * OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_BSP_* (batching).
 *
 * Spans: one server span per request (@fastify/otel; probes and /metrics excluded), one client span per
 * outgoing HTTP call (undici, which covers Node's fetch) carrying W3C traceparent/tracestate, one span per
 * database statement (pg: the statement's name or operation and the parameterised SQL, never the values).
 * Only traces are exported: metrics stay on Prometheus (/metrics), logs on stdout.
 */
export function startTracing(env: NodeJS.ProcessEnv): NodeSDK {
  // Metrics and logs are not sent over OTLP unless asked for explicitly.
  env.OTEL_METRICS_EXPORTER ??= 'none'
  env.OTEL_LOGS_EXPORTER ??= 'none'
  // W3C trace context only (the SDK's default adds W3C baggage, which no service reads or writes): one
  // propagator less to run on every request received and every call made.
  env.OTEL_PROPAGATORS ??= 'tracecontext'
  // The services are ES modules: `pg` is patched as it is imported, through import-in-the-middle's synchronous
  // module hooks (in-thread, no loader worker), limited to the modules instrumented here.
  // (Node releases before 24.11.1 get the same hook as a loader thread.)
  const include = ['pg', 'pg-pool']
  if (supportsSyncHooks()) registerImportHooks({ include })
  else register('import-in-the-middle/hook.mjs', import.meta.url, { data: { include } })
  const sdk = new NodeSDK({
    serviceName: env.OTEL_SERVICE_NAME ? undefined : serviceNameOf(process.argv[1]),
    metricReaders: [],
    instrumentations: [
      new FastifyOtelInstrumentation({
        registerOnInitialization: true,
        // One span per request and one for its handler; a span per lifecycle hook costs more than it tells.
        instrumentHooks: false,
        ignorePaths: (route: { url?: string; config?: { probe?: boolean } }) =>
          route.config?.probe === true || UNTRACED_PATH.test(route.url ?? ''),
        // The span name of HTTP server spans in the semantic conventions: method and route template.
        // (Not built for an unsampled request: its span records nothing.)
        requestHook: (span, request) => {
          if (span.isRecording())
            span.updateName(`${request.method} ${request.routeOptions.url ?? request.method}`)
        },
      }),
      new UndiciInstrumentation({
        // Calls made outside a traced request (the gateway's health checks) start no trace of their own.
        requireParentforSpans: true,
        // An unsampled request's calls carry its trace context already (injectUnsampledTraceContext, written by
        // the gateway's proxy and the kit's propagationHeaders): the instrumentation has nothing to record there.
        ignoreRequestHook: (request) => hasTraceparent(request.headers),
      }),
      new PgInstrumentation({
        requireParentSpan: true,
        enhancedDatabaseReporting: false,
        ignoreConnectSpans: true,
      }),
    ],
  })
  sdk.start()
  markTracingActive(() => sdk.shutdown())
  return sdk
}
