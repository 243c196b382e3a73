// A real PostgreSQL for the consistency check (scripts/k8s/verify): the local launcher's server in a throw-away
// directory, one login role + database per `name:password` argument (as the chart's StatefulSets make them),
// prints `{"port": N}` on one line, and stops when its stdin closes or on SIGTERM.
// Run with Node 24 (TypeScript type stripping): node scripts/k8s/postgres.ts task_service:secret ...
import { provisionServiceDatabase, startLocalPostgres } from '../../packages/local-postgres/src/index.ts'

const server = await startLocalPostgres({ settings: { fsync: 'off' } })
let stopping: Promise<void> | undefined
const stop = () => {
  stopping ??= server.stop().then(() => process.exit(0))
  return stopping
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)

try {
  for (const spec of process.argv.slice(2)) {
    const [name, password] = spec.split(':')
    if (!name || !password || !/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`bad database spec ${spec}`)
    await provisionServiceDatabase(server.adminUrl, { database: name, role: name, password })
  }
} catch (error) {
  console.error(error)
  await server.stop()
  process.exit(1)
}

console.log(JSON.stringify({ port: server.port }))
process.stdin.resume()
process.stdin.on('end', stop)
