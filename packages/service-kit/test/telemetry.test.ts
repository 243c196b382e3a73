import {
  type Context,
  type ContextManager,
  context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  TraceFlags,
  trace,
} from '@opentelemetry/api'
import { describe, expect, test } from 'vitest'
import {
  createServer,
  propagationHeaders,
  traceExporters,
  tracingActive,
  tracingConfigured,
} from '../src/index.js'
import {
  hasTraceparent,
  injectUnsampledTraceContext,
  LOG_SPAN_CONTEXT,
  traceLogMixin,
  withRequestSpan,
} from '../src/telemetry.js'

describe('tracing configuration', () => {
  test('on only with an OTLP endpoint, and off again with OTEL_SDK_DISABLED or OTEL_TRACES_EXPORTER=none', () => {
    expect(tracingConfigured({})).toBe(false)
    expect(tracingConfigured({ OTEL_EXPORTER_OTLP_ENDPOINT: ' ' })).toBe(false)
    expect(tracingConfigured({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).toBe(true)
    expect(tracingConfigured({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces' })).toBe(
      true,
    )
    expect(
      tracingConfigured({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_SDK_DISABLED: 'TRUE' }),
    ).toBe(false)
    expect(
      tracingConfigured({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
        OTEL_TRACES_EXPORTER: 'none',
      }),
    ).toBe(false)
  })

  test('OTEL_TRACES_EXPORTER=zipkin or console needs no OTLP endpoint; none among the exporters wins', () => {
    expect(traceExporters({})).toEqual(['otlp'])
    expect(traceExporters({ OTEL_TRACES_EXPORTER: ' Zipkin, console ' })).toEqual(['zipkin', 'console'])
    expect(tracingConfigured({ OTEL_TRACES_EXPORTER: 'zipkin' })).toBe(true)
    expect(tracingConfigured({ OTEL_TRACES_EXPORTER: 'console' })).toBe(true)
    expect(tracingConfigured({ OTEL_TRACES_EXPORTER: 'otlp' })).toBe(false)
    expect(tracingConfigured({ OTEL_TRACES_EXPORTER: 'zipkin,none' })).toBe(false)
    expect(tracingConfigured({ OTEL_TRACES_EXPORTER: 'zipkin', OTEL_SDK_DISABLED: 'true' })).toBe(false)
  })

  test('a process started without the instrument entry has tracing off', () => {
    expect(tracingActive()).toBe(false)
  })
})

describe('log lines and trace context', () => {
  test("the mixin writes the request span's trace_id, span_id and flags, and nothing without a span", () => {
    const logger = {
      [LOG_SPAN_CONTEXT]: {
        traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
        spanId: '00f067aa0ba902b7',
        traceFlags: TraceFlags.SAMPLED,
      },
    }
    expect(traceLogMixin({}, 30, logger)).toEqual({
      trace_id: '4bf92f3577b34da6a3ce929d0e0e4736',
      span_id: '00f067aa0ba902b7',
      trace_flags: '01',
    })
    expect(traceLogMixin({}, 30, {})).toEqual({})
    // An invalid context (all zeros) is not written.
    const invalid = { [LOG_SPAN_CONTEXT]: { traceId: '0'.repeat(32), spanId: '0'.repeat(16), traceFlags: 0 } }
    expect(traceLogMixin({}, 30, invalid)).toEqual({})
  })

  test("a line of a shared logger (the access log) names its request's span in its fields, and that wins", () => {
    const request = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 1 }
    const other = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '1111111111111111', traceFlags: 1 }
    const fields = withRequestSpan({ status: 200 }, { [LOG_SPAN_CONTEXT]: request })
    // pino writes no symbol key: the line's own fields stay as they were.
    expect(JSON.stringify(fields)).toBe('{"status":200}')
    expect(traceLogMixin(fields, 30, { [LOG_SPAN_CONTEXT]: other }).span_id).toBe('00f067aa0ba902b7')
    // A request logger with no span bound (tracing off) adds nothing.
    expect(Object.getOwnPropertySymbols(withRequestSpan({}, {}))).toEqual([])
  })

  test('with tracing off, a call to another service passes the caller’s traceparent and tracestate on', async () => {
    const app = createServer({ service: 'probe', version: '0' }, { LOG_LEVEL: 'silent' })
    app.get('/', async (request) => propagationHeaders(request))
    const response = await app.inject({
      url: '/',
      headers: {
        'x-request-id': 'req-1',
        traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
        tracestate: 'vendor=value',
      },
    })
    expect(response.json()).toEqual({
      'x-request-id': 'req-1',
      traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      tracestate: 'vendor=value',
    })
    await app.close()
  })

  test('an unsampled span’s context is written into a call’s headers, a sampled one’s is left to the instrumentation', () => {
    // A synchronous context manager and a traceparent-only propagator stand in for the SDK's.
    let active: Context = ROOT_CONTEXT
    const manager: ContextManager = {
      active: () => active,
      with: (ctx, fn, thisArg, ...args) => {
        const previous = active
        active = ctx
        try {
          return fn.call(thisArg, ...args)
        } finally {
          active = previous
        }
      },
      bind: (_ctx, target) => target,
      enable: () => manager,
      disable: () => manager,
    }
    context.setGlobalContextManager(manager)
    propagation.setGlobalPropagator({
      inject: (ctx, carrier: Record<string, string>) => {
        const span = trace.getSpanContext(ctx)
        if (span) carrier.traceparent = `00-${span.traceId}-${span.spanId}-0${span.traceFlags}`
      },
      extract: (ctx) => ctx,
      fields: () => ['traceparent'],
    })
    try {
      const ids = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' }
      const unsampled = trace.wrapSpanContext({ ...ids, traceFlags: TraceFlags.NONE })
      const sampled = { ...unsampled, isRecording: () => true } as Span
      const headersIn = (span: Span | undefined) => {
        const headers: Record<string, unknown> = { 'x-request-id': 'req-1' }
        const ctx = span ? trace.setSpan(ROOT_CONTEXT, span) : ROOT_CONTEXT
        context.with(ctx, () => injectUnsampledTraceContext(headers))
        return headers
      }
      expect(headersIn(unsampled)).toEqual({
        'x-request-id': 'req-1',
        traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00',
      })
      expect(headersIn(sampled)).toEqual({ 'x-request-id': 'req-1' })
      expect(headersIn(undefined)).toEqual({ 'x-request-id': 'req-1' })
    } finally {
      context.disable()
      propagation.disable()
    }
    // What the undici instrumentation is told to skip: a request that carries a traceparent already.
    expect(hasTraceparent(['x-request-id', 'req-1', 'traceparent', '00-…-00'])).toBe(true)
    expect(hasTraceparent(['Traceparent', '00-…-00'])).toBe(true)
    expect(hasTraceparent(['x-request-id', 'traceparent'])).toBe(false)
    expect(hasTraceparent('host: a\r\ntraceparent: 00-…-00\r\n')).toBe(true)
    expect(hasTraceparent('host: a\r\n')).toBe(false)
  })
})
