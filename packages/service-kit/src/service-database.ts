import type { FastifyInstance } from 'fastify'
import type { Migration } from 'kysely/migration'
import { createDatabase, type Database, databasePlugin } from './db.js'
import { databaseTarget, migrateToLatest, waitForDatabase } from './migrate.js'

export interface ServiceDatabaseOptions {
  /** The service's name: pg's application_name. */
  service: string
  config: {
    DATABASE_URL: string
    DATABASE_POOL_MAX: number
    MIGRATE_ON_START: boolean
    DATABASE_WAIT_MS: number
  }
  migrations: Record<string, Migration>
}

/**
 * A service's own database, the way every service sets it up: the pool from its config (idle-connection
 * failures logged, never fatal), pending migrations when MIGRATE_ON_START (waiting for the database first, as
 * `dist/migrate.js` does), then `databasePlugin` (app.db, readiness check, pool closed with the app).
 */
export async function setUpServiceDatabase<DB>(
  app: FastifyInstance,
  { service, config, migrations }: ServiceDatabaseOptions,
): Promise<Database<DB>> {
  const database = createDatabase<DB>({
    connectionString: config.DATABASE_URL,
    max: config.DATABASE_POOL_MAX,
    applicationName: service,
    // Only code and message: pg's error carries the whole client object, which would flood the log.
    onPoolError: (error) =>
      app.log.warn(
        { code: (error as { code?: string }).code, reason: error.message },
        'database connection failed',
      ),
  })
  if (config.MIGRATE_ON_START) {
    try {
      await waitForDatabase(database.db, {
        deadlineMs: config.DATABASE_WAIT_MS,
        log: (line) => app.log.warn(line),
        target: databaseTarget(config.DATABASE_URL),
      })
      await migrateToLatest(database.db, migrations, (line) => app.log.info(line))
    } catch (error) {
      await database.close()
      throw error
    }
  }
  await app.register(databasePlugin, { database })
  return database
}
