import './provided.js'
import { afterAll, beforeAll, inject } from 'vitest'
import { createTestDatabase, type TestDatabase } from './database.js'

export { createTestDatabase, type TestDatabase } from './database.js'
export { type NatsServer, natsServerBinary, startTestNats, useNatsServer } from './nats.js'
export { freePort, type PostgresServer, startEmbeddedPostgres, startPostgres } from './postgres.js'

/**
 * Gives the calling test file its own fresh database for its lifetime. Read `.url` inside tests or
 * hooks (it is set in beforeAll).
 */
export function useTestDatabase(prefix = 'test'): { readonly url: string } {
  let database: TestDatabase | undefined
  beforeAll(async () => {
    database = await createTestDatabase(inject('postgresAdminUrl'), prefix)
  })
  afterAll(async () => {
    await database?.drop()
  })
  return {
    get url() {
      if (!database) throw new Error('useTestDatabase(): the database exists only inside tests and hooks')
      return database.url
    },
  }
}
export { type Answer, type Call, expectFieldRefused, jsonCaller, listenOnLoopback } from './http.js'
export { type ServiceProcess, type SpawnedEntry, spawnEntry, startServiceProcess } from './process.js'
export { type RedisServer, redisServerAvailable, startRedis } from './redis.js'
