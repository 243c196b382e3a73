import {
  context,
  isSpanContextValid,
  propagation,
  type SpanContext,
  TraceFlags,
  trace,
} from '@opentelemetry/api'

/**
 * What the kit needs to know about tracing at run time, shared between the `--import` entry (instrument.ts,
 * which starts the SDK) and the kit's modules through a global, since the entry and the service may load the
 * kit as different module instances.
 */
interface TelemetryState {
  active: boolean
  shutdown?: () => Promise<void>
}

const STATE = Symbol.for('task-manager.telemetry')

function state(): TelemetryState {
  const holder = globalThis as { [STATE]?: TelemetryState }
  holder[STATE] ??= { active: false }
  return holder[STATE]
}

/** The exporters OTEL_TRACES_EXPORTER names (a comma-separated list; `otlp` when it is not set). */
export function traceExporters(env: Record<string, string | undefined>): string[] {
  const named = (env.OTEL_TRACES_EXPORTER ?? '')
    .split(',')
    .map((name) => name.trim().toLowerCase())
    .filter((name) => name !== '')
  return named.length > 0 ? named : ['otlp']
}

/**
 * True when the environment asks for traces and the SDK is not disabled: an OTLP endpoint is set, or
 * OTEL_TRACES_EXPORTER names an exporter that needs none (`zipkin`, to OTEL_EXPORTER_ZIPKIN_ENDPOINT or
 * Zipkin's default `http://localhost:9411/api/v2/spans`; `console`). `none` turns tracing off.
 */
export function tracingConfigured(env: Record<string, string | undefined>): boolean {
  if ((env.OTEL_SDK_DISABLED ?? '').trim().toLowerCase() === 'true') return false
  const exporters = traceExporters(env)
  if (exporters.includes('none')) return false
  if (exporters.includes('zipkin') || exporters.includes('console')) return true
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim())
}

/** True in a process whose OpenTelemetry SDK was started by the kit's instrument entry. */
export function tracingActive(): boolean {
  return state().active
}

/** Called by the instrument entry once the SDK runs. */
export function markTracingActive(shutdown: () => Promise<void>): void {
  const current = state()
  current.active = true
  current.shutdown = shutdown
}

/** Flushes the spans still buffered and stops the SDK (the last step of a graceful shutdown). */
export async function shutdownTracing(): Promise<void> {
  const current = state()
  if (!current.active || current.shutdown === undefined) return
  const shutdown = current.shutdown
  current.shutdown = undefined
  await shutdown()
}

/** Where a request's logger keeps the span of its request (set by the kit's onRequest hook). */
export const LOG_SPAN_CONTEXT = Symbol.for('task-manager.log-span-context')

type SpanHolder = { [LOG_SPAN_CONTEXT]?: SpanContext }

/**
 * The span a log line belongs to: the one its fields name (the access log line, written by a logger shared by
 * every request, names its request's span so), else the request's span for a request logger, else the
 * active span.
 */
function spanContextFor(merge: object, logger: object): SpanContext | undefined {
  return (
    (merge as SpanHolder)[LOG_SPAN_CONTEXT] ??
    (logger as SpanHolder)[LOG_SPAN_CONTEXT] ??
    trace.getActiveSpan()?.spanContext()
  )
}

/**
 * pino mixin adding `trace_id`, `span_id` and `trace_flags` (the OpenTelemetry log data model's names) to every
 * line written while a span is current, so a log search by trace id finds every line of a request.
 */
export function traceLogMixin(
  merge: object,
  _level: number,
  logger: object,
): { trace_id?: string; span_id?: string; trace_flags?: string } {
  const context = spanContextFor(merge, logger)
  if (context === undefined || !isSpanContextValid(context)) return {}
  return {
    trace_id: context.traceId,
    span_id: context.spanId,
    trace_flags: context.traceFlags.toString(16).padStart(2, '0'),
  }
}

/**
 * Names the request's span (bound to its logger by bindRequestSpan) in the fields of a line written by another
 * logger, as a symbol key pino does not write: the line then carries the request's trace and span ids, not
 * those of whatever span is active when it is written (the handler's, at onResponse).
 */
export function withRequestSpan<T extends object>(fields: T, requestLog: object): T {
  const context = (requestLog as SpanHolder)[LOG_SPAN_CONTEXT]
  if (context !== undefined) (fields as SpanHolder)[LOG_SPAN_CONTEXT] = context
  return fields
}

/** The trace id of a request's span when that span is sampled (an exemplar worth keeping), else undefined. */
export function requestTraceId(requestLog: object): string | undefined {
  const context = (requestLog as SpanHolder)[LOG_SPAN_CONTEXT]
  if (context === undefined || (context.traceFlags & TraceFlags.SAMPLED) === 0) return undefined
  return context.traceId
}

/** Ties a request's logger to the request's span (the active span when the kit's onRequest hook runs). */
export function bindRequestSpan(log: object): void {
  const span = trace.getActiveSpan()
  if (span !== undefined) (log as SpanHolder)[LOG_SPAN_CONTEXT] = span.spanContext()
}

/**
 * Writes the W3C trace context of the active span into an outgoing call's headers when that span is not recording
 * (the request was not sampled), so the callee makes the same decision (parent-based sampling) and starts no
 * trace of its own. A sampled request's calls are left to the HTTP client instrumentation, which writes its own
 * client span's context; for an unsampled one it is told to skip the call (`hasTraceparent`): on that path it
 * would only build the span's attributes (URL, headers) and its duration metric for a span nobody records, a
 * measured 5–7 % of the gateway's CPU at 10 % sampling (docs/benchmarks.md, Tracing cost).
 */
export function injectUnsampledTraceContext(headers: Record<string, unknown>): void {
  const span = trace.getActiveSpan()
  if (span === undefined || span.isRecording()) return
  propagation.inject(context.active(), headers)
}

/** True when an undici request's headers (an array of names and values, or one string) carry a traceparent. */
export function hasTraceparent(headers: unknown): boolean {
  if (Array.isArray(headers)) {
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]
      if (typeof name === 'string' && name.length === 11 && name.toLowerCase() === 'traceparent') return true
    }
    return false
  }
  return typeof headers === 'string' && /^traceparent:/im.test(headers)
}
