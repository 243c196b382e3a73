import { natsServerBinary } from '@task-manager/local-nats'
import type { TestProject } from 'vitest/node'
import { startPostgres } from './postgres.js'

import './provided.js'

/** Vitest global setup: one PostgreSQL server per run; each test file makes its own database on it. */
export default async function setup(project: TestProject) {
  const started = Date.now()
  // Provisions the pinned nats-server once per run (no-op when present), before files start theirs.
  const nats = natsServerBinary()
  const server = await startPostgres((line) => console.log(`[test postgres] ${line}`))
  console.log(`[test postgres] ${server.source} ready in ${Date.now() - started} ms`)
  project.provide('postgresAdminUrl', server.adminUrl)
  console.log(`[test nats] ${await nats}`)
  return async () => {
    await server.stop()
  }
}
