import type { Kysely } from 'kysely'
import { type Migration, Migrator } from 'kysely/migration'
import { createDatabase, isDatabaseUnavailable, pingDatabase } from './db.js'

/**
 * Applies pending migrations. Kysely's Migrator takes a PostgreSQL advisory lock for the run, so
 * several replicas starting at once apply each migration exactly once.
 */
export async function migrateToLatest(
  db: Kysely<any>,
  migrations: Record<string, Migration>,
  log: (message: string) => void = () => {},
): Promise<void> {
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations } })
  const { error, results } = await migrator.migrateToLatest()
  for (const result of results ?? []) {
    log(`migration ${result.migrationName}: ${result.status}`)
  }
  if (error) throw error instanceof Error ? error : new Error(String(error))
}

/** The database did not answer before the deadline; `message` says where and what the last attempt met. */
export class DatabaseUnreachableError extends Error {
  override name = 'DatabaseUnreachableError'
}

export interface WaitOptions {
  /** Give up this long after the first attempt; 0 makes one attempt. */
  deadlineMs: number
  /** One line per failed attempt. */
  log: (message: string) => void
  /** Where the database is, for the log lines (never the URL: it may carry a password). */
  target?: string
  /** First pause between attempts; it doubles up to `maxIntervalMs`. */
  intervalMs?: number
  maxIntervalMs?: number
}

/** `host:port/database` of a postgres:// URL, without credentials. */
export function databaseTarget(connectionString: string): string {
  try {
    const url = new URL(connectionString)
    return `${url.hostname}:${url.port || '5432'}${url.pathname}`
  } catch {
    return 'the database'
  }
}

/** Errors that end when the database comes up: unreachable, starting up, or its database not created yet. */
function isTransient(error: unknown): boolean {
  return isDatabaseUnavailable(error) || (error as { code?: unknown })?.code === '3D000'
}

function reasonOf(error: unknown): string {
  const { code, message } = error as { code?: unknown; message?: unknown }
  if (typeof code === 'string' && typeof message === 'string' && !message.includes(code))
    return `${code} ${message}`
  return typeof message === 'string' && message ? message : String(error)
}

/**
 * Waits until the database answers: a DNS name not resolving yet, a refused port, a server starting up or a
 * database not created yet are retried (one log line each, the pause doubling) until `deadlineMs` has passed,
 * then a DatabaseUnreachableError names the last reason. Any other error (a wrong password) is thrown at once.
 */
export async function waitForDatabase<DB>(db: Kysely<DB>, options: WaitOptions): Promise<void> {
  const started = Date.now()
  const maxInterval = options.maxIntervalMs ?? 5000
  let interval = options.intervalMs ?? 500
  const target = options.target ?? 'the database'
  for (let attempt = 1; ; attempt++) {
    try {
      await pingDatabase(db)
      return
    } catch (error) {
      if (!isTransient(error)) throw error
      const left = options.deadlineMs - (Date.now() - started)
      if (left <= 0) {
        throw new DatabaseUnreachableError(
          `${target} did not answer within ${options.deadlineMs / 1000} s (${attempt} attempts; last: ${reasonOf(error)})`,
        )
      }
      const pause = Math.min(interval, left)
      options.log(
        `waiting for ${target} (attempt ${attempt}: ${reasonOf(error)}); next attempt in ${(pause / 1000).toFixed(1)} s, giving up in ${Math.ceil(left / 1000)} s`,
      )
      await new Promise((resolve) => setTimeout(resolve, pause))
      interval = Math.min(interval * 2, maxInterval)
    }
  }
}

export interface MigrationRunOptions {
  /** pg's application_name and the prefix of every line. */
  service: string
  config: { DATABASE_URL: string; DATABASE_WAIT_MS: number }
  migrations: Record<string, Migration>
  log?: (line: string) => void
}

/** Waits for the database (DATABASE_WAIT_MS), applies pending migrations, closes the connection. */
export async function runMigrations({
  service,
  config,
  migrations,
  log = (line) => console.log(`${service}: ${line}`),
}: MigrationRunOptions): Promise<void> {
  const { db, close } = createDatabase({
    connectionString: config.DATABASE_URL,
    max: 1,
    applicationName: `${service}-migrate`,
  })
  try {
    await waitForDatabase(db, {
      deadlineMs: config.DATABASE_WAIT_MS,
      log,
      target: databaseTarget(config.DATABASE_URL),
    })
    await migrateToLatest(db, migrations, log)
    log('migrations up to date')
  } finally {
    await close()
  }
}
