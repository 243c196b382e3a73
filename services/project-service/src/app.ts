import { authPlugin, TokenRevocations, verifierFromConfig } from '@task-manager/auth'
import { Outbox, STREAMS, setUpServiceEvents } from '@task-manager/events'
import {
  type App,
  serviceIdentity,
  serviceKit,
  setUpServiceDatabase,
  Upstream,
  upstreamSettings,
} from '@task-manager/service-kit'
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { ProjectServiceConfig } from './config.js'
import { migrations } from './db/migrations/index.js'
import type { ProjectDatabase } from './db/schema.js'
import { onUserDeleted } from './events/user-deleted.js'
import type { Caller } from './projects/access.js'
import { memberRoutes } from './projects/member-routes.js'
import { ProjectRepository } from './projects/repository.js'
import { projectRoutes } from './projects/routes.js'
import { UserDirectory } from './users/client.js'

export const identity = serviceIdentity(
  'project-service',
  'Projects of the Task Manager, their members, and the membership lookup other services ask',
)

export interface ProjectAppOptions {
  config: ProjectServiceConfig
}

/**
 * The project-service as a plugin: server.ts runs it, tests register it on their own instance.
 * Wrapped with fastify-plugin so what the kit decorates (`readiness`, `metrics`) lands on the server
 * itself, where runService's graceful shutdown turns readiness to 503.
 */
export default fp(projectApp, { name: 'project-service', fastify: '5.x' })

async function projectApp(app: App, { config }: ProjectAppOptions) {
  // Revoked tokens (users.user.tokens_revoked, followed below) are refused, cached or not.
  const revocations = new TokenRevocations()
  const verifier = verifierFromConfig(config, { revocations })
  await app.register(serviceKit, { ...identity, maxEventLoopDelayMs: config.MAX_EVENT_LOOP_DELAY_MS })

  const database = await setUpServiceDatabase<ProjectDatabase>(app, {
    service: identity.service,
    config,
    migrations,
  })

  await app.register(authPlugin, { mode: config.AUTH_MODE, verifier })

  // Readiness deliberately ignores the user-service: only adding members needs it, and a user-service
  // outage must not take every project read (and the task-service's membership lookups) down with it.
  const userService = new Upstream({
    name: 'user-service',
    baseUrl: config.USER_SERVICE_URL,
    ...upstreamSettings(config, 'USER_SERVICE'),
    registry: app.metrics.registry,
  })
  app.addHook('onClose', async () => userService.shutdown())
  const users = new UserDirectory(userService)

  const callerOf = (request: FastifyRequest): Caller => {
    if (config.AUTH_MODE === 'disabled') return { open: true }
    const principal = request.principal
    // authenticate (preHandler below) has refused every request without a principal already.
    if (!principal) throw new Error('projectRoutes reached without a verified principal')
    return { open: false, id: principal.id, admin: principal.role === 'admin' }
  }

  // Every change to projects and members writes its events in its own transaction (the outbox); the
  // relay publishes them to the PROJECTS stream. Deleted users leave their projects (USERS stream).
  const outbox = new Outbox(identity.service)
  const repository = new ProjectRepository(database.db, database.pool, outbox)
  setUpServiceEvents(app, {
    service: identity.service,
    config,
    db: database.db,
    publishes: { stream: STREAMS.projects, outbox },
    consumes: [
      {
        stream: STREAMS.users,
        handlers: { 'users.user.deleted': onUserDeleted(repository) },
        onApplied: () => outbox.committed(),
      },
    ],
    revocations,
  })

  await app.register(async (routes) => {
    // On every route's own preHandler list (not as a hook of this scope), so each route's OpenAPI operation
    // documents the token it needs.
    routes.addHook('onRoute', (route) => {
      const own = route.preHandler === undefined ? [] : [route.preHandler].flat()
      route.preHandler = [routes.authenticate, ...own]
    })
    const options = { repository, users, callerOf, maxMembersPerProject: config.MAX_MEMBERS_PER_PROJECT }
    await routes.register(projectRoutes, options)
    await routes.register(memberRoutes, options)
  })
}
