import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { collectDefaultMetrics, Histogram, Registry, type RegistryContentType } from 'prom-client'
import type { ServerSettings } from './kit.js'
import { requestTraceId, tracingActive } from './telemetry.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** performance.now() when the request arrived (for requests that end without a response). */
    arrivedAt: number
  }
  interface FastifyInstance {
    /** The server of `/metrics` when METRICS_PORT gives it a port of its own. */
    metricsServer?: Server
    metrics: {
      registry: Registry
      /** `http_server_request_duration_seconds`, observed for every request by the kit's onResponse hook. */
      requestDuration: Histogram<'method' | 'route' | 'status_code'>
    }
  }
}

export interface MetricsOptions {
  service: string
}

/** A scraper that lists OpenMetrics in its Accept header gets it (Prometheus does when exemplars are on). */
export function wantsOpenMetrics(accept: string | string[] | undefined): boolean {
  const value = Array.isArray(accept) ? accept.join(',') : (accept ?? '')
  return /application\/openmetrics-text/i.test(value)
}

/**
 * The registry's metrics in the format the scraper asked for: the Prometheus text format (0.0.4) by default,
 * OpenMetrics 1.0 — the only format that carries exemplars — when its Accept header names it.
 *
 * prom-client keeps the format on the registry and, rendering OpenMetrics, renames counters in place (it
 * strips `_total`, which that format adds back to the samples only). So one exposition at a time, and the
 * names are put back after an OpenMetrics one; a Prometheus scrape never sees the renamed counters.
 */
export function metricsExposition(
  registry: Registry,
): (accept: string | string[] | undefined) => Promise<{ contentType: string; text: string }> {
  let queue: Promise<unknown> = Promise.resolve()
  const formats = registry as unknown as Registry<RegistryContentType>
  const render = async (openMetrics: boolean) => {
    const contentType = openMetrics ? Registry.OPENMETRICS_CONTENT_TYPE : Registry.PROMETHEUS_CONTENT_TYPE
    formats.setContentType(contentType)
    if (!openMetrics) return { contentType, text: await registry.metrics() }
    const names = registry
      .getMetricsAsArray()
      .map((metric) => [metric as { name: string }, metric.name] as const)
    try {
      return { contentType, text: await registry.metrics() }
    } finally {
      for (const [metric, name] of names) metric.name = name
    }
  }
  return (accept) => {
    const next = queue.then(() => render(wantsOpenMetrics(accept)))
    queue = next.catch(() => undefined)
    return next
  }
}

/**
 * Prometheus metrics on the app's own registry (never prom-client's global one, so several apps can
 * live in one test process) with a `service` default label.
 *
 * The request histogram is a single onResponse hook rather than fastify-metrics: that plugin registers
 * on the global registry by default and adds per-request work we do not need; this keeps the labels
 * bounded (`route` is the route template, `unmatched` for 404s).
 */
export const metricsPlugin = fp<MetricsOptions>(
  async (app: FastifyInstance, { service }) => {
    // With tracing on, each bucket of the request histogram keeps as exemplar the trace id of the last sampled
    // request it counted, so a latency spike on a dashboard opens a trace of it (OpenMetrics scrapes only;
    // prom-client wants such a registry created as OpenMetrics). Off, the registry and the histogram are
    // exactly as they were before exemplars: the hook observes labels and a value, nothing else runs.
    const exemplars = tracingActive()
    const registry = new Registry()
    if (exemplars) {
      ;(registry as unknown as Registry<RegistryContentType>).setContentType(
        Registry.OPENMETRICS_CONTENT_TYPE,
      )
    }
    registry.setDefaultLabels({ service })
    collectDefaultMetrics({ register: registry })
    // prom-client names these gauges `*_total`, which the Prometheus naming rules (and `promtool check
    // metrics`) reserve for counters; the same facts are in nodejs_active_{handles,requests,resources}.
    for (const name of [
      'nodejs_active_handles_total',
      'nodejs_active_requests_total',
      'nodejs_active_resources_total',
    ]) {
      registry.removeSingleMetric(name)
    }
    const duration = new Histogram({
      name: 'http_server_request_duration_seconds',
      help: 'Duration of HTTP requests served, by method, route template and status code',
      labelNames: ['method', 'route', 'status_code'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
      enableExemplars: exemplars,
    })
    app.decorate('metrics', { registry, requestDuration: duration })
    const exposition = metricsExposition(registry)

    // A client that leaves before its answer is complete gets no onResponse: it is counted here as 499, nginx's
    // "client closed request", timed from its arrival.
    app.decorateRequest('arrivedAt', 0)
    app.addHook('onRequest', (request, _reply, done) => {
      request.arrivedAt = performance.now()
      done()
    })
    const observe = (request: FastifyRequest, statusCode: string, seconds: number) => {
      const labels = {
        method: request.method,
        route: request.routeOptions.url ?? 'unmatched',
        status_code: statusCode,
      }
      if (!exemplars) return duration.observe(labels, seconds)
      const traceId = requestTraceId(request.log)
      // (prom-client types exemplar labels as the metric's own label names; they are any names.)
      const exemplarLabels: Record<string, string> = traceId ? { trace_id: traceId } : {}
      duration.observe({ labels, value: seconds, exemplarLabels })
    }
    app.addHook('onRequestAbort', (request, done) => {
      observe(request, '499', (performance.now() - request.arrivedAt) / 1000)
      done()
    })

    app.addHook('onResponse', (request, reply, done) => {
      observe(request, String(reply.statusCode), reply.elapsedTime / 1000)
      done()
    })

    const settings = (app as FastifyInstance & { serverSettings?: ServerSettings }).serverSettings
    const port = settings?.METRICS_PORT ?? 0
    if (port === 0) {
      app.get('/metrics', { schema: { hide: true }, config: { probe: true } }, async (request, reply) => {
        const { contentType, text } = await exposition(request.headers.accept)
        reply.type(contentType)
        return text
      })
      return
    }
    // A port of its own: a bare node:http server that answers GET /metrics and nothing else, with its own
    // deadlines, so the service port (the one an ingress exposes) serves no metrics at all.
    const server = createServer({ headersTimeout: 5000, requestTimeout: 10_000 }, (req, res) => {
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n')
        return
      }
      exposition(req.headers.accept).then(
        ({ contentType, text }) => res.writeHead(200, { 'content-type': contentType }).end(text),
        (error: unknown) => {
          app.log.error({ err: error }, 'metrics collection failed')
          res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics collection failed\n')
        },
      )
    })
    app.decorate('metricsServer', server)
    app.addHook('onListen', (done) => {
      server.once('error', done)
      server.listen(port, settings?.HOST ?? '0.0.0.0', () => {
        server.off('error', done)
        app.log.info(
          { port: (server.address() as AddressInfo).port },
          'metrics listening on a port of their own',
        )
        done()
      })
    })
    app.addHook('onClose', (_instance, done) => {
      if (!server.listening) return done()
      server.close(() => done())
      server.closeAllConnections()
    })
  },
  { name: 'task-manager-metrics', fastify: '5.x' },
)
