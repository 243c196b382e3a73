import type { FastifyPluginAsync } from 'fastify'
import type { Migration } from 'kysely/migration'
import pg from 'pg'
import { ConfigError } from './config.js'
import { type RunOptions, runService, type ServiceIdentity } from './kit.js'
import { DatabaseUnreachableError, runMigrations } from './migrate.js'

/** sysexits' EX_CONFIG: a setting is missing or wrong; restarting will not help. */
export const EXIT_CONFIG = 78
/** sysexits' EX_UNAVAILABLE: the database did not answer within DATABASE_WAIT_MS. */
export const EXIT_UNAVAILABLE = 69

/**
 * Runs `start` the way every entry point does: a ConfigError ends the process with exit code 78, a database
 * that never answered with 69, an error PostgreSQL answered (a wrong password, a failing migration) with 1, each
 * as one line naming the service, not a stack trace. Anything else is a bug and keeps its stack trace.
 */
export async function exitOnStartFailure(service: string, start: () => Promise<void>): Promise<void> {
  try {
    await start()
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`${service}: ${error.message}`)
      process.exit(EXIT_CONFIG)
    }
    if (error instanceof DatabaseUnreachableError) {
      console.error(`${service}: ${error.message}`)
      process.exit(EXIT_UNAVAILABLE)
    }
    if (error instanceof pg.DatabaseError) {
      console.error(`${service}: PostgreSQL refused: ${error.code} ${error.message}`)
      process.exit(1)
    }
    throw error
  }
}

export interface ServiceMain<C extends RunOptions<object>['config']> {
  identity: ServiceIdentity
  /** The service's config.ts loader: the one place its settings are read and checked. */
  loadConfig: () => C
  /** The service's app plugin (src/app.ts), given `{ config }`. */
  plugin: FastifyPluginAsync<{ config: C }>
}

/** A service's whole `server.ts`: load and check the config, then `runService` (listen, drain on SIGTERM). */
export function main<C extends RunOptions<object>['config']>({
  identity,
  loadConfig,
  plugin,
}: ServiceMain<C>): Promise<void> {
  return exitOnStartFailure(identity.service, async () => {
    const config = loadConfig()
    await runService({ identity, config, plugin, pluginOptions: { config } })
  })
}

export interface MigrateMain {
  service: string
  /**
   * The service's config.ts loader, the same the server runs: a setting the service would refuse stops the
   * migration too (exit 78), so an init container names it before any pod starts serving.
   */
  loadConfig: () => { DATABASE_URL: string; DATABASE_WAIT_MS: number }
  migrations: Record<string, Migration>
}

/**
 * A service's whole `migrate.ts` (`node dist/migrate.js`, the charts' init container): loads the config, waits
 * for the database with a deadline and a line per attempt, applies pending migrations, exits 0.
 */
export function migrateMain({ service, loadConfig, migrations }: MigrateMain): Promise<void> {
  return exitOnStartFailure(service, () => runMigrations({ service, config: loadConfig(), migrations }))
}
