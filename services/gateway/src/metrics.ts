import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { ServiceBackend } from './backend.js'

export interface GatewayMetrics {
  upstreamDuration: Histogram<'upstream' | 'route' | 'method' | 'status_code'>
  rateLimited: Counter<'budget'>
  concurrencyLimited: Counter
  retries: Counter<'upstream'>
  breakerRejections: Counter<'upstream' | 'route_class'>
  circuitState: Gauge<'upstream' | 'route_class'>
}

/**
 * The gateway's own series, on the kit's registry (so /metrics serves them with the `service` label).
 * Endpoint counts are read at scrape time; circuit states are set on each transition.
 */
export function gatewayMetrics(registry: Registry, backends: () => ServiceBackend[]): GatewayMetrics {
  new Gauge({
    name: 'gateway_upstream_endpoints',
    help: 'Endpoints known per upstream (pods in dns mode), by state',
    labelNames: ['upstream', 'state'] as const,
    registers: [registry],
    collect() {
      const now = Date.now()
      for (const backend of backends()) {
        const ejected = backend.ejectedCount(now)
        this.set({ upstream: backend.name, state: 'active' }, backend.endpoints.length - ejected)
        this.set({ upstream: backend.name, state: 'ejected' }, ejected)
      }
    },
  })
  return {
    circuitState: new Gauge({
      name: 'gateway_circuit_breaker_state',
      help: 'Circuit state per upstream and route class: 0 closed, 1 half-open, 2 open',
      labelNames: ['upstream', 'route_class'] as const,
      registers: [registry],
    }),
    upstreamDuration: new Histogram({
      name: 'gateway_upstream_request_duration_seconds',
      help: 'Duration of proxied requests by upstream, route template, method and status (gateway answers included)',
      labelNames: ['upstream', 'route', 'method', 'status_code'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    rateLimited: new Counter({
      name: 'gateway_rate_limited_total',
      help: 'Requests answered 429 by the gateway’s rate limits, by budget',
      labelNames: ['budget'] as const,
      registers: [registry],
    }),
    concurrencyLimited: new Counter({
      name: 'gateway_concurrency_limited_total',
      help: 'Requests answered 429 because their client already had MAX_IN_FLIGHT_PER_CLIENT in flight',
      registers: [registry],
    }),
    retries: new Counter({
      name: 'gateway_upstream_retries_total',
      help: 'Idempotent requests re-sent after a connection failure, by upstream',
      labelNames: ['upstream'] as const,
      registers: [registry],
    }),
    breakerRejections: new Counter({
      name: 'gateway_circuit_breaker_rejections_total',
      help: 'Requests answered 503 at once because the circuit of their upstream and route class was open',
      labelNames: ['upstream', 'route_class'] as const,
      registers: [registry],
    }),
  }
}
