import type pg from 'pg'
import { Counter, Gauge, type Registry } from 'prom-client'

/**
 * Saturation of a service's database pool, named after OpenTelemetry's `db.client.connection.*` conventions:
 *
 * - `db_client_connections{state="used"|"idle"}` — connections checked out by a query or transaction, and idle
 * - `db_client_connections_max` — the pool's size (DATABASE_POOL_MAX)
 * - `db_client_connections_pending_requests` — callers waiting for a connection (the pool is exhausted)
 * - `db_client_connection_timeouts_total` — callers that gave up waiting (connectionTimeoutMillis): each one
 *   answered 503
 *
 * The gauges are read from the pool at scrape time, so a request pays nothing for them.
 */
export function observePool(registry: Registry, pool: pg.Pool): void {
  const max = (pool.options as { max?: number }).max ?? 10
  new Gauge({
    name: 'db_client_connections',
    help: 'Connections of the database pool, by state (used: checked out; idle: open and free)',
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      this.set({ state: 'used' }, pool.totalCount - pool.idleCount)
      this.set({ state: 'idle' }, pool.idleCount)
    },
  })
  new Gauge({
    name: 'db_client_connections_max',
    help: 'Size of the database pool (DATABASE_POOL_MAX)',
    registers: [registry],
    collect() {
      this.set(max)
    },
  })
  new Gauge({
    name: 'db_client_connections_pending_requests',
    help: 'Callers waiting for a connection of the database pool',
    registers: [registry],
    collect() {
      this.set(pool.waitingCount)
    },
  })
  const timeouts = new Counter({
    name: 'db_client_connection_timeouts_total',
    help: 'Callers that gave up waiting for a database connection (the pool was exhausted or the database did not answer)',
    registers: [registry],
  })
  // pg's pool has no event for a connect timeout: it is seen as the error its connect() answers with. Every
  // caller (pool.query, Kysely's driver) goes through the instance's connect, in both its forms.
  const isTimeout = (error: unknown) =>
    error instanceof Error && error.message.includes('timeout exceeded when trying to connect')
  const connect = pool.connect.bind(pool) as (callback?: (...args: unknown[]) => void) => unknown
  ;(pool as { connect: unknown }).connect = (callback?: (error: unknown, ...rest: unknown[]) => void) => {
    if (typeof callback === 'function') {
      return connect((error: unknown, ...rest: unknown[]) => {
        if (isTimeout(error)) timeouts.inc()
        callback(error, ...rest)
      })
    }
    return (connect() as Promise<pg.PoolClient>).catch((error: unknown) => {
      if (isTimeout(error)) timeouts.inc()
      throw error
    })
  }
}
