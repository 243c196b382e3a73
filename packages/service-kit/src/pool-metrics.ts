import type pg from 'pg'
import { Counter, Gauge, type Registry } from 'prom-client'

interface PoolSeries {
  pools: Map<string, pg.Pool>
  timeouts: Counter<'pool'>
}
const observed = new WeakMap<Registry, PoolSeries>()

/**
 * Saturation of a service's database pool, named after OpenTelemetry's `db.client.connection.*` conventions:
 *
 * - `db_client_connections{state="used"|"idle"}` — connections checked out by a query or transaction, and idle
 * - `db_client_connections_max` — the pool's size (DATABASE_POOL_MAX)
 * - `db_client_connections_pending_requests` — callers waiting for a connection (the pool is exhausted)
 * - `db_client_connection_timeouts_total` — callers that gave up waiting (connectionTimeoutMillis): each one
 *   answered 503
 *
 * The gauges are read from the pool at scrape time, so a request pays nothing for them. Every series carries
 * `pool`: `main` for the service's pool, or the name given to a second one (the task-service's `lists`); the
 * metrics are registered once per registry, each pool observed adds its series.
 */
export function observePool(registry: Registry, pool: pg.Pool, name = 'main'): void {
  let series = observed.get(registry)
  if (!series) series = registerPoolMetrics(registry)
  series.pools.set(name, pool)
  const timeouts = series.timeouts
  // pg's pool has no event for a connect timeout: it is seen as the error its connect() answers with. Every
  // caller (pool.query, Kysely's driver) goes through the instance's connect, in both its forms.
  const isTimeout = (error: unknown) =>
    error instanceof Error && error.message.includes('timeout exceeded when trying to connect')
  const connect = pool.connect.bind(pool) as (callback?: (...args: unknown[]) => void) => unknown
  ;(pool as { connect: unknown }).connect = (callback?: (error: unknown, ...rest: unknown[]) => void) => {
    if (typeof callback === 'function') {
      return connect((error: unknown, ...rest: unknown[]) => {
        if (isTimeout(error)) timeouts.inc({ pool: name })
        callback(error, ...rest)
      })
    }
    return (connect() as Promise<pg.PoolClient>).catch((error: unknown) => {
      if (isTimeout(error)) timeouts.inc({ pool: name })
      throw error
    })
  }
}

function registerPoolMetrics(registry: Registry): PoolSeries {
  const pools = new Map<string, pg.Pool>()
  new Gauge({
    name: 'db_client_connections',
    help: 'Connections of the database pool, by state (used: checked out; idle: open and free)',
    labelNames: ['state', 'pool'] as const,
    registers: [registry],
    collect() {
      for (const [name, pool] of pools) {
        this.set({ state: 'used', pool: name }, pool.totalCount - pool.idleCount)
        this.set({ state: 'idle', pool: name }, pool.idleCount)
      }
    },
  })
  new Gauge({
    name: 'db_client_connections_max',
    help: 'Size of the database pool (DATABASE_POOL_MAX)',
    labelNames: ['pool'] as const,
    registers: [registry],
    collect() {
      for (const [name, pool] of pools) this.set({ pool: name }, (pool.options as { max?: number }).max ?? 10)
    },
  })
  new Gauge({
    name: 'db_client_connections_pending_requests',
    help: 'Callers waiting for a connection of the database pool',
    labelNames: ['pool'] as const,
    registers: [registry],
    collect() {
      for (const [name, pool] of pools) this.set({ pool: name }, pool.waitingCount)
    },
  })
  const timeouts = new Counter({
    name: 'db_client_connection_timeouts_total',
    help: 'Callers that gave up waiting for a database connection (the pool was exhausted or the database did not answer)',
    labelNames: ['pool'] as const,
    registers: [registry],
  })
  const series = { pools, timeouts }
  observed.set(registry, series)
  return series
}
