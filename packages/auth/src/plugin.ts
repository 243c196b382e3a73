import { documents, problemType, sendProblem } from '@task-manager/service-kit'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { AuthError, type Principal } from './principal.js'
import type { Verifier } from './verifier.js'

export type AuthMode = 'required' | 'disabled'

declare module 'fastify' {
  interface FastifyRequest {
    /** The verified caller, or null (no token, a bad token, or AUTH_MODE=disabled without a token). */
    principal: Principal | null
  }
  interface FastifyInstance {
    /** preHandler: 401 (or 503 when the keys can't be fetched) unless the request carries a valid token. */
    authenticate: (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply | undefined>
    authMode: AuthMode
  }
}

export interface AuthPluginOptions {
  mode: AuthMode
  /** May be null only when mode is `disabled`: then every request has principal null. */
  verifier: Verifier | null
  /** `realm` of the WWW-Authenticate challenge. */
  realm?: string
  /**
   * A further check of every verified caller, e.g. the user-service asking its own database whether the
   * token predates the user's `valid_after`: an AuthError it resolves to refuses the token.
   */
  confirm?: (principal: Principal, request: FastifyRequest) => Promise<AuthError | undefined>
}

const BEARER = /^Bearer +(\S+) *$/i
const authErrors = new WeakMap<FastifyRequest, AuthError>()

/** A quoted-string for a challenge parameter: printable ASCII, no quotes or backslashes. */
const headerSafe = (text: string) => text.replace(/["\\]/g, "'").replace(/[^\x20-\x7e]/g, '')

/** The token of an `Authorization: Bearer` header value: undefined without one, null when malformed. */
export function bearerTokenOf(header: string | undefined): string | undefined | null {
  if (header === undefined) return undefined
  return BEARER.exec(header)?.[1] ?? null
}

/** The token of an `Authorization: Bearer` header. Tokens in URLs or bodies are never looked at. */
export function bearerToken(request: FastifyRequest): string | undefined | null {
  return bearerTokenOf(request.headers.authorization)
}

export const MALFORMED_AUTHORIZATION = () =>
  new AuthError('malformed', 'The Authorization header must be "Bearer <token>"')

/** The answer to a request that needed a caller: 401 (no or a bad token) or 503 (keys unavailable). */
export interface AuthRefusal {
  status: 401 | 503
  detail: string
  type: string
  headers: Record<string, string | number>
}

/** What to answer when a request needs a caller and has none; `error` says why the token failed, if one came. */
export function authRefusal(error: AuthError | undefined, realm = 'task-manager'): AuthRefusal {
  if (!error) {
    return {
      status: 401,
      detail: 'Authentication required: send "Authorization: Bearer <access token>"',
      type: problemType('authentication-required'),
      headers: { 'www-authenticate': `Bearer realm="${realm}"` },
    }
  }
  if (error.reason === 'unavailable') {
    return {
      status: 503,
      detail: error.message,
      type: problemType('dependency-unavailable'),
      headers: { 'retry-after': 5 },
    }
  }
  return {
    status: 401,
    detail: error.message,
    type: problemType('invalid-token'),
    headers: {
      'www-authenticate': `Bearer realm="${realm}", error="invalid_token", error_description="${headerSafe(error.message)}"`,
    },
  }
}

/** Any verification failure as an AuthError (unexpected errors become `invalid`, never leaking their text). */
export function asAuthError(error: unknown): AuthError {
  return error instanceof AuthError ? error : new AuthError('invalid', 'The access token is invalid')
}

/**
 * Reads `Authorization: Bearer <token>` on every request and sets `request.principal`; routes that need
 * a caller add `preHandler: app.authenticate`. With mode `disabled` nothing is ever refused, but a valid
 * token still identifies its caller (so "me" endpoints keep working for clients that log in).
 */
export const authPlugin = fp<AuthPluginOptions>(
  async (app: FastifyInstance, { mode, verifier, realm = 'task-manager', confirm }) => {
    if (mode === 'required' && !verifier) throw new Error('authPlugin: mode "required" needs a verifier')
    app.decorate('authMode', mode)
    app.decorateRequest('principal', null)

    if (verifier) {
      const refuse = (request: FastifyRequest, error: unknown) => {
        const authError = asAuthError(error)
        if (authError.reason === 'unavailable') request.log.warn({ err: authError.cause }, authError.message)
        authErrors.set(request, authError)
      }
      // Callback style with a synchronous path for tokens verified before: the gateway runs this on every
      // request, and a cache hit then costs no promise at all.
      app.addHook('onRequest', (request, _reply, done) => {
        const token = bearerToken(request)
        if (token === undefined) return done()
        if (token === null) {
          authErrors.set(request, MALFORMED_AUTHORIZATION())
          return done()
        }
        const known = verifier.peek?.(token)
        if (known && !confirm) {
          request.principal = known
          return done()
        }
        const accept = (principal: Principal) => {
          if (!confirm) {
            request.principal = principal
            return done()
          }
          confirm(principal, request).then(
            (error) => {
              if (error) refuse(request, error)
              else request.principal = principal
              done()
            },
            (error: unknown) => {
              refuse(request, error)
              done()
            },
          )
        }
        if (known) return accept(known)
        verifier.verify(token).then(
          (principal) => accept(principal),
          (error: unknown) => {
            refuse(request, error)
            done()
          },
        )
      })
    }

    const authenticate = async (request: FastifyRequest, reply: FastifyReply) => {
      if (request.principal || mode === 'disabled') return undefined
      const refusal = authRefusal(authErrors.get(request), realm)
      return sendProblem(reply, refusal.status, refusal.detail, {
        type: refusal.type,
        headers: refusal.headers,
      })
    }
    // Every route guarded by it documents the token it needs and the answers without one.
    app.decorate(
      'authenticate',
      documents(
        authenticate,
        mode === 'disabled'
          ? { security: [{}, { bearerAuth: [] }] }
          : {
              security: [{ bearerAuth: [] }],
              responses: {
                401: 'Authentication required: no token, or a bad or expired one',
                503: 'The token cannot be checked now (the signing keys are unavailable); retry shortly',
              },
            },
      ),
    )
  },
  { name: 'task-manager-auth', fastify: '5.x' },
)
