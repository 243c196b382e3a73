// @fastify/http-proxy with default settings and nothing else: the reference the issue measured.
import proxy from '@fastify/http-proxy'
import Fastify from 'fastify'

const app = Fastify({ logger: false })
await app.register(proxy, { upstream: process.env.UPSTREAM, prefix: '/tasks', rewritePrefix: '/tasks' })
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT) })
process.stdout.write('listening\n')
