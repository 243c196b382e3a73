import formbody from '@fastify/formbody'
import rateLimit from '@fastify/rate-limit'
import { AuthError, authPlugin, createVerifier, tokenIssuedAt } from '@task-manager/auth'
import { Outbox, STREAMS, setUpServiceEvents } from '@task-manager/events'
import {
  type App,
  optionalRedis,
  serviceIdentity,
  serviceKit,
  setUpServiceDatabase,
} from '@task-manager/service-kit'
import fp from 'fastify-plugin'
import type { UserServiceConfig } from './config.js'
import { migrations } from './db/migrations/index.js'
import type { UserDatabase } from './db/schema.js'
import { type KeyRing, loadKeyRing } from './keys.js'
import { defaultHashConcurrency, PasswordHasher } from './passwords.js'
import { tokenRoutes } from './tokens/routes.js'
import { LoginLock } from './users/login-lock.js'
import { UserRepository } from './users/repository.js'
import { userRoutes } from './users/routes.js'

export const identity = serviceIdentity(
  'user-service',
  'Users of the Task Manager: registration, login, profiles; issues the access tokens (EdDSA, JWKS)',
)

export interface UserAppOptions {
  config: UserServiceConfig
  /** Signing keys already loaded (tests share one ring between apps); loaded from config otherwise. */
  keys?: KeyRing
}

/** The user-service as a plugin: server.ts runs it, tests register it on their own instance. */
async function userApp(app: App, { config, keys: givenKeys }: UserAppOptions) {
  const keys = givenKeys ?? (await loadKeyRing(config.JWT_PRIVATE_KEYS))
  if (keys.generated) {
    app.log.warn(
      { kid: keys.signing.kid },
      'JWT_PRIVATE_KEYS is not set: generated a signing key for this process only. Tokens will not survive a restart and replicas will not accept each other’s tokens; configure JWT_PRIVATE_KEYS outside development',
    )
  }

  await app.register(serviceKit, { ...identity, maxEventLoopDelayMs: config.MAX_EVENT_LOOP_DELAY_MS })

  const database = await setUpServiceDatabase<UserDatabase>(app, {
    service: identity.service,
    config,
    migrations,
  })

  // Password and role changes, logouts and deletions write their events in the same transaction (the
  // outbox); the relay publishes them to the USERS stream for the project-service and every verifier.
  const outbox = new Outbox(identity.service)
  const repository = new UserRepository(database.db, outbox)
  setUpServiceEvents(app, {
    service: identity.service,
    config,
    db: database.db,
    publishes: { stream: STREAMS.users, outbox },
  })
  const hashConcurrency = config.PASSWORD_HASH_CONCURRENCY || defaultHashConcurrency()
  const hasher = new PasswordHasher(
    { logN: config.PASSWORD_SCRYPT_LOG_N, r: 8, p: config.PASSWORD_SCRYPT_PARALLELISM },
    { concurrency: hashConcurrency, maxWaiting: config.PASSWORD_HASH_QUEUE_MAX || hashConcurrency * 4 },
  )

  if (config.ADMIN_EMAIL && config.ADMIN_PASSWORD) {
    const admin = await repository.ensureAdmin(
      config.ADMIN_EMAIL,
      'Administrator',
      await hasher.hash(config.ADMIN_PASSWORD),
    )
    app.log.info(
      { user_id: admin.id },
      admin.created ? 'admin account created from ADMIN_EMAIL' : 'ADMIN_EMAIL account is admin',
    )
  }

  // This service verifies the tokens it issued with its own public keys: no HTTP round trip to itself.
  const verifier = createVerifier({
    jwks: keys.jwks,
    issuer: config.JWT_ISSUER,
    audience: config.JWT_AUDIENCE,
  })
  // And refuses at once, whatever replica wrote it, a token issued before its user's `valid_after` or
  // whose user is gone: the database is the truth here (other verifiers learn it from the events).
  await app.register(authPlugin, {
    mode: config.AUTH_MODE,
    verifier,
    confirm: async (principal) => {
      let validAfter: Date | null | undefined
      try {
        validAfter = await repository.validAfter(principal.id)
      } catch (error) {
        return new AuthError(
          'unavailable',
          'The token could not be checked (database unavailable); retry shortly',
          {
            cause: error,
          },
        )
      }
      if (validAfter === undefined)
        return new AuthError('invalid', 'The account this access token belongs to no longer exists')
      if (validAfter !== null && (tokenIssuedAt(principal) ?? 0) < validAfter.getTime() / 1000)
        return new AuthError(
          'revoked',
          'The access token has been revoked (password or role changed, or signed out); sign in again',
        )
      return undefined
    },
  })

  await app.register(formbody)

  const redis = optionalRedis(app, config.REDIS_URL, 'rate-limit store')
  await app.register(rateLimit, {
    global: false,
    // Shared by every replica when REDIS_URL is set. If Redis fails, limits are skipped (logged) rather
    // than locking everyone out: an outage of the counter store must not become an outage of login.
    ...(redis ? { redis, nameSpace: 'user-service:rate-limit:', skipOnError: true } : {}),
    // Entries are a few dozen bytes: room for many clients and emails before the LRU forgets one.
    cache: 50_000,
    errorResponseBuilder: (_request, context) => {
      const error = new Error(`Too many requests; retry in ${Math.ceil(context.ttl / 1000)} s`) as Error & {
        statusCode: number
      }
      error.statusCode = 429
      return error
    },
  })

  const lock = new LoginLock(
    database.db,
    config.LOGIN_FAILURES_PER_EMAIL,
    config.LOGIN_RATE_LIMIT_WINDOW_SECONDS * 1000,
  )
  const purge = setInterval(() => {
    lock.purgeExpired().catch((error) => app.log.warn({ err: error }, 'purging login failures failed'))
  }, 600_000)
  purge.unref()
  app.addHook('onClose', async () => clearInterval(purge))

  await app.register(tokenRoutes, {
    lock,
    repository,
    hasher,
    keys,
    tokens: {
      issuer: config.JWT_ISSUER,
      audience: config.JWT_AUDIENCE,
      ttlSeconds: config.ACCESS_TOKEN_TTL_SECONDS,
    },
    limits: {
      perClient: config.LOGIN_RATE_LIMIT_PER_CLIENT,
      windowMs: config.LOGIN_RATE_LIMIT_WINDOW_SECONDS * 1000,
    },
  })
  await app.register(userRoutes, {
    repository,
    hasher,
    registrationsPerHour: config.REGISTRATION_RATE_LIMIT_PER_CLIENT,
  })
}

/**
 * Wrapped with fastify-plugin so what the kit decorates (`readiness`, `metrics`) lands on the server
 * itself, where runService's graceful shutdown reaches it.
 */
export default fp(userApp, { name: 'user-service', fastify: '5.x' })
