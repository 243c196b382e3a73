import { traceparentOf } from '@task-manager/events'
import { type App, HttpProblem, problemType } from '@task-manager/service-kit'
import type { FastifyRequest } from 'fastify'
import { Counter } from 'prom-client'
import { Type } from 'typebox'
import { issueAccessToken, type KeyRing, type TokenSettings } from '../keys.js'
import type { PasswordHasher } from '../passwords.js'
import type { LoginLock } from '../users/login-lock.js'
import type { UserRepository } from '../users/repository.js'
import { Jwks, problems, TokenRequest, TokenResponse } from '../users/schemas.js'

export interface LoginLimits {
  perClient: number
  windowMs: number
}

export interface TokenRoutesOptions {
  lock: LoginLock
  repository: UserRepository
  hasher: PasswordHasher
  keys: KeyRing
  tokens: TokenSettings
  limits: LoginLimits
}

const INVALID_CREDENTIALS = 'Invalid email or password'

function loginEmail(request: FastifyRequest): string | undefined {
  const body = request.body as TokenRequest | undefined
  return (body?.email ?? body?.username)?.trim().toLowerCase()
}

export async function tokenRoutes(
  app: App,
  { lock, repository, hasher, keys, tokens, limits }: TokenRoutesOptions,
) {
  const attempts = new Counter({
    name: 'user_service_login_attempts_total',
    help: 'Login attempts at POST /auth/token by outcome (success, invalid_credentials, locked)',
    labelNames: ['outcome'] as const,
    registers: [app.metrics.registry],
  })

  app.post(
    '/auth/token',
    {
      // Every attempt per client (IP), checked before the body is even parsed: scrypt is expensive.
      config: { rateLimit: { max: limits.perClient, timeWindow: limits.windowMs } },
      schema: {
        summary: 'Log in: exchange email and password for an access token',
        description:
          'JSON `{email, password}`, or form-encoded `grant_type=password&username=…&password=…` (OAuth 2.0 password grant). ' +
          'An unknown email and a wrong password get the same 401. Limited per client and, for failures, per email.',
        tags: ['auth'],
        body: TokenRequest,
        response: { 200: TokenResponse, ...problems(401, 415, 422, 429, 503) },
      },
    },
    async (request, reply) => {
      const email = loginEmail(request)
      if (!email) {
        throw new HttpProblem(422, "Invalid body field 'email': email (or username) is required", {
          type: problemType('validation-failed'),
          errors: [{ in: 'body', field: 'email', message: 'is required' }],
        })
      }
      // Reserve a failure before the check (atomic in the database): of N concurrent guesses at most the
      // limit reach scrypt. Counted whether the email exists or not, so a lock reveals nothing.
      const reservation = await lock.reserve(email)
      if (!reservation.allowed) {
        attempts.inc({ outcome: 'locked' })
        const retryAfter = reservation.retryAfterSeconds
        throw new HttpProblem(429, `Too many failed logins for this email; retry in ${retryAfter} s`, {
          type: problemType('rate-limited'),
          headers: { 'retry-after': retryAfter },
        })
      }

      let user: Awaited<ReturnType<UserRepository['findByEmail']>>
      let valid: boolean
      try {
        user = await repository.findByEmail(email)
        // Unknown email: the hasher still runs a full scrypt against a decoy, so both answers take as long.
        valid = await hasher.verify(request.body.password, user?.password_hash ?? null)
      } catch (error) {
        // Not checked (the hasher is full, the database failed): the attempt does not count.
        await lock.release(email, reservation).catch(() => {})
        throw error
      }
      if (!user || !valid) {
        attempts.inc({ outcome: 'invalid_credentials' })
        request.log.info({ outcome: 'invalid_credentials' }, 'login refused')
        throw new HttpProblem(401, INVALID_CREDENTIALS, {
          type: problemType('invalid-credentials'),
          headers: { 'www-authenticate': 'Bearer realm="task-manager"' },
        })
      }
      await lock.release(email, reservation)

      if (hasher.needsRehash(user.password_hash)) {
        await repository.upgradeHash(user.id, user.password_hash, await hasher.hash(request.body.password))
      }
      const accessToken = await issueAccessToken(keys, tokens, user)
      attempts.inc({ outcome: 'success' })
      request.log.info({ user_id: user.id }, 'access token issued')
      // RFC 6749 §5.1: token responses must not be cached.
      reply.header('cache-control', 'no-store').header('pragma', 'no-cache')
      return { access_token: accessToken, token_type: 'Bearer' as const, expires_in: tokens.ttlSeconds }
    },
  )

  app.post(
    '/auth/logout',
    {
      preHandler: app.authenticate,
      schema: {
        summary: 'Log out: revoke every access token of the caller issued before now',
        description:
          'Sets the caller’s `valid_after` to now: this service refuses the caller’s older tokens at once, the ' +
          'gateway and the other services within the bounded delay of docs/events.md (users.user.tokens_revoked). ' +
          'Tokens issued afterwards (a new login) stay valid. No body.',
        tags: ['auth'],
        response: { 204: Type.Null(), ...problems(401) },
      },
    },
    async (request, reply) => {
      const caller = request.principal
      if (!caller) {
        throw new HttpProblem(401, 'Authentication required: send "Authorization: Bearer <access token>"', {
          type: problemType('authentication-required'),
          headers: { 'www-authenticate': 'Bearer realm="task-manager"' },
        })
      }
      if (!(await repository.revokeTokens(caller.id, 'logout', traceparentOf(request.headers.traceparent)))) {
        throw new HttpProblem(401, 'The account this access token belongs to no longer exists', {
          type: problemType('invalid-token'),
        })
      }
      request.log.info({ user_id: caller.id }, 'logged out: tokens revoked')
      return reply.code(204).send(null)
    },
  )

  app.get(
    '/.well-known/jwks.json',
    {
      schema: {
        summary: 'Public keys that verify the access tokens (JWKS)',
        tags: ['auth'],
        response: { 200: Jwks },
      },
    },
    async (_request, reply) => {
      // Verifiers cache keys themselves; a short HTTP max-age spares them nothing and slows rotation.
      reply.header('cache-control', 'public, max-age=60')
      return keys.jwks
    },
  )
}
