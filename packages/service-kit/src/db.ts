import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { Kysely, PostgresDialect, sql } from 'kysely'
import pg from 'pg'
import { observePool } from './pool-metrics.js'
import { registerPool } from './prepared.js'

// int8 (COUNT(*), bigserial) as a JS number: our ids and counts stay far below 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number.parseInt(value, 10))

const parseTimestamptzByPattern = pg.types.getTypeParser(pg.types.builtins.TIMESTAMPTZ)
const digit = (code: number) => code >= 48 && code <= 57

/**
 * A timestamptz as PostgreSQL sends it in a UTC session (`2026-12-03 05:44:00.123+00`), read by position; anything
 * else (another offset, BC, infinity, a year before 1000 or after 9999) goes to pg's own parser (postgres-date).
 * The same Date either way, milliseconds computed as postgres-date does: its regular expressions were about a tenth
 * of the task-service's CPU on a page of 50 tasks (three timestamps each; docs/benchmarks.md).
 */
export function parseTimestamptz(value: string): Date | number | null {
  const n = value.length
  if (
    n >= 22 &&
    n <= 29 &&
    value.charCodeAt(n - 3) === 43 /* + */ &&
    value.charCodeAt(n - 2) === 48 &&
    value.charCodeAt(n - 1) === 48 &&
    value.charCodeAt(4) === 45 /* - */ &&
    value.charCodeAt(7) === 45 &&
    value.charCodeAt(10) === 32 /* space */ &&
    value.charCodeAt(13) === 58 /* : */ &&
    value.charCodeAt(16) === 58 &&
    value.charCodeAt(0) !== 48 /* years 0-999: Date.UTC would read 0-99 as 1900-1999 */
  ) {
    let ok = true
    for (const i of [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]) ok &&= digit(value.charCodeAt(i))
    const fraction = n === 22 ? '' : value.slice(19, n - 3)
    if (fraction !== '') {
      ok &&= fraction.charCodeAt(0) === 46 /* . */ && fraction.length >= 2
      for (let i = 1; i < fraction.length; i++) ok &&= digit(fraction.charCodeAt(i))
    }
    if (ok) {
      const ms = fraction === '' ? 0 : 1000 * Number.parseFloat(fraction)
      return new Date(
        Date.UTC(
          Number(value.slice(0, 4)),
          Number(value.slice(5, 7)) - 1,
          Number(value.slice(8, 10)),
          Number(value.slice(11, 13)),
          Number(value.slice(14, 16)),
          Number(value.slice(17, 19)),
          ms,
        ),
      )
    }
  }
  return parseTimestamptzByPattern(value) as Date | number | null
}
pg.types.setTypeParser(pg.types.builtins.TIMESTAMPTZ, parseTimestamptz)

export interface DatabaseOptions {
  connectionString: string
  /** Pool size per process. */
  max?: number
  /** Shows in pg_stat_activity. */
  applicationName?: string
  /** Fail a connection attempt after this long, so a dead database answers 503 fast instead of hanging. */
  connectionTimeoutMs?: number
  /** Server-side limit for one statement. */
  statementTimeoutMs?: number
  /** A connection failed (idle or checked out); never fatal, the pool replaces it. */
  onPoolError?: (error: Error) => void
}

export interface Database<DB> {
  db: Kysely<DB>
  pool: pg.Pool
  close(): Promise<void>
}

export function createDatabase<DB>(options: DatabaseOptions): Database<DB> {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.max ?? 10,
    application_name: options.applicationName,
    connectionTimeoutMillis: options.connectionTimeoutMs ?? 2000,
    statement_timeout: options.statementTimeoutMs ?? 10_000,
    idleTimeoutMillis: 30_000,
  })
  // A connection whose server went away (a restart, a failover, a terminated backend) makes its client
  // emit 'error'; with no listener that event kills the process. The pool listens only while a client is
  // idle (re-emitting it as the pool's 'error'); a checked-out client — mid-query or mid-transaction — is
  // on its own. So every client gets a listener for its whole life: the failed query itself still rejects
  // (the request answers 503) and the pool discards the broken client when it is released.
  pool.on('error', (error) => options.onPoolError?.(error))
  pool.on('connect', (client) => {
    client.on('error', (error) => options.onPoolError?.(error))
  })
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) })
  registerPool(db, pool)
  return { db, pool, close: () => db.destroy() }
}

/** A cheap round trip proving the database answers. */
export async function pingDatabase(db: Kysely<any>): Promise<void> {
  await sql`select 1`.execute(db)
}

const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EPIPE',
  'EAI_AGAIN',
])

/**
 * True for errors meaning "the database can't be reached right now" (as opposed to a bad query):
 * refused or reset connections, pool connect timeouts, server shutting down (57P*), connection
 * exceptions (08*), too many connections (53300).
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  if (!error || typeof error !== 'object') return false
  const { code, message } = error as { code?: unknown; message?: unknown }
  if (typeof code === 'string') {
    if (UNAVAILABLE_CODES.has(code)) return true
    if (code.startsWith('57P') || code.startsWith('08') || code === '53300') return true
  }
  if (typeof message === 'string') {
    return (
      message.includes('timeout exceeded when trying to connect') ||
      message.includes('Connection terminated') ||
      message.includes('Client has encountered a connection error')
    )
  }
  return false
}

export interface DatabasePluginOptions {
  database: Database<any>
}

/**
 * Adds the database to readiness and closes the pool when the app closes. The typed `Kysely<DB>` itself is not
 * decorated on the app: each service hands it to its repository, the one place that queries it.
 */
export const databasePlugin = fp<DatabasePluginOptions>(
  async (app: FastifyInstance, { database }) => {
    app.readiness.addCheck('database', () => pingDatabase(database.db))
    if (app.hasDecorator('metrics')) observePool(app.metrics.registry, database.pool)
    app.addHook('onClose', async () => {
      await database.close()
    })
  },
  { name: 'task-manager-database', dependencies: ['task-manager-health'], fastify: '5.x' },
)
