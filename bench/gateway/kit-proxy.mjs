// @fastify/http-proxy on a server built with the service kit (request ids, the access log at the chart's info, metrics, problem+json,
// load shedding) and nothing of the gateway: separates the kit's per-request cost from the gateway's own.
import proxy from '@fastify/http-proxy'
import { createServer, serviceKit } from '@task-manager/service-kit'

const app = createServer({ service: 'kit-proxy', version: '0' }, { LOG_LEVEL: 'info' })
await app.register(serviceKit, { service: 'kit-proxy', version: '0' })
await app.register(proxy, { upstream: process.env.UPSTREAM, prefix: '/tasks', rewritePrefix: '/tasks' })
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT) })
process.stdout.write('listening\n')
