import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { type App, createServer } from '@task-manager/service-kit'
import { type ServiceProcess, spawnEntry, startServiceProcess as startProcess } from '@task-manager/testing'
import Fastify, { type FastifyInstance } from 'fastify'
import projectApp, { identity } from '../src/app.js'
import { loadProjectServiceConfig } from '../src/config.js'

/** The project-service app on its own Fastify instance, for `app.inject` tests. */
export async function buildApp(databaseUrl: string, env: Record<string, string> = {}): Promise<App> {
  const config = loadProjectServiceConfig({
    DATABASE_URL: databaseUrl,
    LOG_LEVEL: 'silent',
    USER_SERVICE_URL: 'http://127.0.0.1:9',
    ...env,
  })
  const app = createServer(identity, config)
  await app.register(projectApp, { config })
  await app.ready()
  return app
}

export interface SeenRequest {
  url: string
  authorization: string | undefined
  requestId: string | undefined
}

export interface UserServiceStub {
  url: string
  /** Ids answering 200 at GET /users/{id}; everything else answers 404. */
  users: Set<number>
  /** `ok` answers by `users`; `slow` waits `delayMs` first; `error` answers 500; `refuse` answers 401. */
  mode: 'ok' | 'slow' | 'error' | 'refuse'
  delayMs: number
  readonly requests: SeenRequest[]
  close(): Promise<void>
}

/**
 * A stand-in for the user-service: a real HTTP server on 127.0.0.1 answering `GET /users/{id}` the way
 * the user-service does (200 with a public profile, 404 problem when unknown), and recording what it
 * was sent.
 */
export async function startUserServiceStub(users: number[] = []): Promise<UserServiceStub> {
  const server: FastifyInstance = Fastify({ logger: false })
  const stub = {
    users: new Set(users),
    mode: 'ok' as UserServiceStub['mode'],
    delayMs: 0,
    requests: [] as SeenRequest[],
  }
  server.get<{ Params: { id: string } }>('/users/:id', async (request, reply) => {
    stub.requests.push({
      url: request.url,
      authorization: request.headers.authorization,
      requestId: request.headers['x-request-id'] as string | undefined,
    })
    if (stub.mode === 'slow') await new Promise((resolve) => setTimeout(resolve, stub.delayMs))
    if (stub.mode === 'error') {
      return reply.code(500).type('application/problem+json').send({ status: 500, detail: 'boom' })
    }
    if (stub.mode === 'refuse') {
      return reply.code(401).type('application/problem+json').send({ status: 401, detail: 'Invalid token' })
    }
    const id = Number(request.params.id)
    if (!stub.users.has(id)) {
      return reply
        .code(404)
        .type('application/problem+json')
        .send({ status: 404, detail: `User ${id} not found` })
    }
    return { id, name: `User ${id}` }
  })
  await server.listen({ host: '127.0.0.1', port: 0 })
  const { port } = server.server.address() as AddressInfo
  return Object.assign(stub, {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      server.server.closeAllConnections()
      await server.close()
    },
  })
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

const serverEntry = fileURLToPath(new URL('../src/server.ts', import.meta.url))

export { type ServiceProcess, spawnEntry }

/** Spawns src/server.ts (through tsx) as its own OS process and waits until it is ready. */
export function startServiceProcess(env: Record<string, string>): Promise<ServiceProcess> {
  return startProcess(serverEntry, env, { name: 'project-service' })
}

export const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/
