import { RequestHistogram } from '@task-manager/service-kit'
import { Counter, Gauge, type Registry } from 'prom-client'
import { BREAKER_STATE_VALUE } from './breaker.js'
import type { Upstream } from './upstream.js'

export interface GatewayMetrics {
  upstreamDuration: RequestHistogram<'upstream' | 'route' | 'method' | 'status_code'>
  rateLimited: Counter<'budget'>
  retries: Counter<'upstream'>
  breakerRejections: Counter<'upstream'>
}

/**
 * The gateway's own series, on the kit's registry (so /metrics serves them with the `service` label).
 * Breaker state and endpoint counts are read at scrape time: nothing is done per request for them.
 */
export function gatewayMetrics(registry: Registry, upstreams: Upstream[]): GatewayMetrics {
  new Gauge({
    name: 'gateway_circuit_breaker_state',
    help: 'Circuit breaker state per upstream: 0 closed, 1 half-open, 2 open',
    labelNames: ['upstream'] as const,
    registers: [registry],
    collect() {
      for (const upstream of upstreams)
        this.set({ upstream: upstream.name }, BREAKER_STATE_VALUE[upstream.breaker.state])
    },
  })
  new Gauge({
    name: 'gateway_upstream_endpoints',
    help: 'Endpoints known per upstream (pods in dns mode), by state',
    labelNames: ['upstream', 'state'] as const,
    registers: [registry],
    collect() {
      const now = Date.now()
      for (const upstream of upstreams) {
        const ejected = upstream.ejectedCount(now)
        this.set({ upstream: upstream.name, state: 'active' }, upstream.endpoints.length - ejected)
        this.set({ upstream: upstream.name, state: 'ejected' }, ejected)
      }
    },
  })
  return {
    upstreamDuration: new RequestHistogram({
      name: 'gateway_upstream_request_duration_seconds',
      help: 'Duration of proxied requests by upstream, route template, method and status (gateway answers included)',
      labelNames: ['upstream', 'route', 'method', 'status_code'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    rateLimited: new Counter({
      name: 'gateway_rate_limited_total',
      help: 'Requests answered 429 by the gateway, by budget',
      labelNames: ['budget'] as const,
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
      help: 'Requests answered 503 at once because the upstream’s circuit was open',
      labelNames: ['upstream'] as const,
      registers: [registry],
    }),
  }
}
