// A real PostgreSQL for the consistency check (scripts/k8s/verify): starts the embedded server of the test
// harness, creates one login role + database per `name:password` argument (as the chart's StatefulSets
// would), prints `{"port": N}` on one line, and stops when its stdin closes or on SIGTERM.
// Run with Node 24 (TypeScript type stripping): node scripts/k8s/postgres.ts task_service:secret ...
import { createRequire } from 'node:module'
import { startEmbeddedPostgres } from '../../packages/testing/src/postgres.ts'

// pg is a dependency of the test harness, not of the workspace root.
const require = createRequire(new URL('../../packages/testing/package.json', import.meta.url))
const pg = require('pg') as typeof import('pg')

const server = await startEmbeddedPostgres()
let stopping: Promise<void> | undefined
const stop = () => {
  stopping ??= server.stop().then(() => process.exit(0))
  return stopping
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)

try {
  const client = new pg.Client({ connectionString: server.adminUrl })
  await client.connect()
  for (const spec of process.argv.slice(2)) {
    const [name, password] = spec.split(':')
    if (!name || !password || !/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`bad database spec ${spec}`)
    await client.query(`CREATE ROLE ${name} LOGIN PASSWORD ${client.escapeLiteral(password)}`)
    await client.query(`CREATE DATABASE ${name} OWNER ${name}`)
  }
  await client.end()
} catch (error) {
  console.error(error)
  await server.stop()
  process.exit(1)
}

console.log(JSON.stringify({ port: server.port }))
process.stdin.resume()
process.stdin.on('end', stop)
