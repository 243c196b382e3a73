import rateLimit from '@fastify/rate-limit'
import { authPlugin, TokenRevocations, verifierFromConfig } from '@task-manager/auth'
import { STREAMS, setUpServiceEvents } from '@task-manager/events'
import {
  type App,
  Bulkhead,
  createDatabase,
  observePool,
  serviceIdentity,
  serviceKit,
  setUpServiceDatabase,
  Upstream,
  upstreamSettings,
} from '@task-manager/service-kit'
import fp from 'fastify-plugin'
import type { TaskServiceConfig } from './config.js'
import { migrations } from './db/migrations/index.js'
import type { TaskDatabase } from './db/schema.js'
import { projectEventHandlers } from './events/handlers.js'
import { TaskAccess } from './tasks/access.js'
import { MembershipReadModel } from './tasks/memberships.js'
import { SEARCH_REFUSAL, TaskRepository } from './tasks/repository.js'
import { taskRoutes } from './tasks/routes.js'

export const identity = serviceIdentity(
  'task-service',
  'Tasks of the Task Manager: CRUD, filters, keyset pagination, optimistic concurrency',
)

export interface TaskAppOptions {
  config: TaskServiceConfig
}

/** The task-service as a plugin: server.ts runs it, tests register it on their own instance. */
async function taskApp(app: App, { config }: TaskAppOptions) {
  await app.register(serviceKit, { ...identity, maxEventLoopDelayMs: config.MAX_EVENT_LOOP_DELAY_MS })

  const database = await setUpServiceDatabase<TaskDatabase>(app, {
    service: identity.service,
    config,
    migrations,
  })

  // Revoked tokens (users.user.tokens_revoked, followed below) are refused, cached or not.
  const revocations = new TokenRevocations()
  await app.register(authPlugin, {
    mode: config.AUTH_MODE,
    verifier: verifierFromConfig(config, { revocations }),
  })
  const projects = config.PROJECT_SERVICE_URL
    ? new Upstream({
        name: 'project-service',
        baseUrl: config.PROJECT_SERVICE_URL,
        ...upstreamSettings(config, 'PROJECT_SERVICE'),
        registry: app.metrics.registry,
      })
    : null
  app.addHook('onClose', async () => projects?.shutdown())

  // Project events keep the local membership read model and delete the tasks of deleted projects.
  const events = setUpServiceEvents(app, {
    service: identity.service,
    config,
    db: database.db,
    consumes: [{ stream: STREAMS.projects, handlers: projectEventHandlers }],
    revocations,
  })
  const readModel = events ? new MembershipReadModel(database.db) : null

  await app.register(rateLimit, {
    global: false,
    // Per real client: the token's subject when there is one, else the address (behind a trusted proxy,
    // the client's, from X-Forwarded-For; see TRUST_PROXY).
    keyGenerator: (request) => (request.principal ? `user:${request.principal.id}` : `ip:${request.ip}`),
    errorResponseBuilder: (_request, context) => {
      const error = new Error(
        `Rate limit exceeded: at most ${context.max} requests per ${context.after === '1 minute' ? 'minute' : context.after}; retry in ${Math.ceil(context.ttl / 1000)} s`,
      ) as Error & { statusCode: number }
      error.statusCode = 429
      return error
    },
  })

  // Lists and searches run on a pool of their own whose connections carry LIST_STATEMENT_TIMEOUT_MS: one round
  // trip per list instead of BEGIN, SET LOCAL, the SELECT and COMMIT. Opened lazily, like the main pool.
  const listPoolMax = config.LIST_DATABASE_POOL_MAX || config.DATABASE_POOL_MAX
  const lists = createDatabase<TaskDatabase>({
    connectionString: config.DATABASE_URL,
    max: listPoolMax,
    applicationName: `${identity.service}-lists`,
    statementTimeoutMs: config.LIST_STATEMENT_TIMEOUT_MS,
    onPoolError: (error) =>
      app.log.warn(
        { code: (error as { code?: string }).code, reason: error.message, pool: 'lists' },
        'database connection failed',
      ),
  })
  observePool(app.metrics.registry, lists.pool, 'lists')
  app.addHook('onClose', async () => lists.close())

  const repository = new TaskRepository(database.db, {
    db: lists.db,
    searches: new Bulkhead({
      concurrency: config.SEARCH_CONCURRENCY || Math.max(1, Math.floor(listPoolMax / 2)),
      maxWaiting: config.SEARCH_QUEUE_MAX,
      refusal: SEARCH_REFUSAL,
    }),
  })
  await app.register(taskRoutes, {
    repository,
    rateLimits: {
      enabled: config.RATE_LIMIT_ENABLED,
      readsPerMinute: config.RATE_LIMIT_READS_PER_MINUTE,
      writesPerMinute: config.RATE_LIMIT_WRITES_PER_MINUTE,
      createsPerMinute: config.RATE_LIMIT_CREATES_PER_MINUTE,
    },
    idempotencyKeyTtlHours: config.IDEMPOTENCY_KEY_TTL_HOURS,
    access: new TaskAccess(
      config.AUTH_MODE === 'disabled',
      projects,
      config.MEMBERSHIP_CACHE_TTL_MS,
      readModel,
    ),
  })

  const purge = setInterval(() => {
    repository
      .purgeExpiredKeys()
      .catch((error) => app.log.warn({ err: error }, 'purging idempotency keys failed'))
  }, 3_600_000)
  purge.unref()
  app.addHook('onClose', async () => clearInterval(purge))
}

/** Not encapsulated (fastify-plugin): the server's graceful shutdown reaches the kit's readiness. */
export default fp(taskApp, { name: 'task-service', fastify: '5.x' })
