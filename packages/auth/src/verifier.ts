import {
  createLocalJWKSet,
  createRemoteJWKSet,
  errors,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
} from 'jose'
import { LRUCache } from 'lru-cache'
import { DEFAULT_AUDIENCE, DEFAULT_ISSUER, requireJwksUrl } from './config.js'
import { AuthError, type Principal, ROLES, type Role } from './principal.js'
import type { RevocationList } from './revocations.js'

/** The one signature algorithm we accept. Pinning it is what rejects `alg: none` and HS256-with-the-public-key. */
export const ALGORITHMS = ['EdDSA']

export interface VerifierOptions {
  /** URL of the issuer's JWKS (the user-service's /.well-known/jwks.json). Give this or `jwks`. */
  jwksUrl?: string | URL
  /** A fixed key set instead of a URL (tests, or keys mounted from a Secret). */
  jwks?: JSONWebKeySet
  issuer?: string
  audience?: string
  /** Clock skew allowed on `exp`/`nbf`/`iat`, in seconds. Default 5. */
  clockToleranceSeconds?: number
  /** After a fetch, an unknown `kid` triggers another fetch only once this has passed. Default 30 s. */
  jwksCooldownMs?: number
  /** Keys are refetched when older than this, so a removed key stops working. Default 5 min. */
  jwksCacheMaxAgeMs?: number
  /** Timeout of one JWKS fetch. Default 2 s. */
  jwksTimeoutMs?: number
  /** Verified tokens remembered (0 turns the cache off). Default 10 000. */
  cacheMaxEntries?: number
  /** A verified token is re-verified at the latest after this long (and never past its `exp`). Default 60 s. */
  cacheMaxAgeMs?: number
  /**
   * Per-user revocations (TokenRevocations, fed by `users.user.tokens_revoked` events): a token issued
   * before its user's `valid_after` is refused, cached or not.
   */
  revocations?: RevocationList
}

export interface Verifier {
  /** Resolves the token's principal, or rejects with an AuthError saying why not. */
  verify(token: string): Promise<Principal>
  /** The principal of an already verified, still valid token, synchronously; undefined otherwise. */
  peek?(token: string): Principal | undefined
  /** As `peek`, with the epoch milliseconds until which the answer holds. */
  peekEntry?(token: string): VerifiedToken | undefined
}

/** A verified token's caller and how long that verdict may be reused. */
export interface VerifiedToken {
  readonly principal: Principal
  /** Epoch milliseconds after which the token must be verified again. */
  readonly until: number
  /** The token's `iat` in epoch seconds (fractional when the issuer wrote milliseconds; 0 without one). */
  readonly issuedAt: number
}

const issuedAtOf = new WeakMap<Principal, number>()

/** The `iat` (epoch seconds) of the token a principal came from, if this package's verifier verified it. */
export function tokenIssuedAt(principal: Principal): number | undefined {
  return issuedAtOf.get(principal)
}

const revokedError = () =>
  new AuthError(
    'revoked',
    'The access token has been revoked (password or role changed, signed out, or account deleted); sign in again',
  )

// A compact JWS: three base64url segments. Checked before any crypto so junk is refused for nothing.
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/
export const MAX_TOKEN_LENGTH = 4096
const USER_ID = /^[1-9][0-9]{0,15}$/

class KeySetUnavailable extends Error {
  override name = 'KeySetUnavailable'
}

/**
 * Wraps a remote key set so "the issuer could not be reached" can be told apart from "this token is
 * bad": the first is our outage (503), the second the client's fault (401).
 */
function distinguishOutages(getKey: JWTVerifyGetKey): JWTVerifyGetKey {
  return async (header, token) => {
    try {
      return await getKey(header, token)
    } catch (error) {
      if (
        error instanceof errors.JWKSNoMatchingKey ||
        error instanceof errors.JWKSMultipleMatchingKeys ||
        error instanceof errors.JOSENotSupported ||
        error instanceof errors.JWKInvalid
      ) {
        throw error
      }
      throw new KeySetUnavailable('The signing keys could not be fetched', { cause: error })
    }
  }
}

function principalFrom(payload: JWTPayload): Principal {
  const { sub, role } = payload
  if (typeof sub !== 'string' || !USER_ID.test(sub)) {
    throw new AuthError('invalid', 'The access token has no valid subject')
  }
  const id = Number(sub)
  if (!Number.isSafeInteger(id)) throw new AuthError('invalid', 'The access token has no valid subject')
  if (typeof role !== 'string' || !ROLES.includes(role as Role)) {
    throw new AuthError('invalid', 'The access token has no valid role')
  }
  // Frozen: cached principals are shared by every request carrying the same token.
  return Object.freeze({ id, role: role as Role })
}

function authErrorFrom(error: unknown): AuthError {
  if (error instanceof AuthError) return error
  if (error instanceof KeySetUnavailable) {
    return new AuthError('unavailable', 'The token issuer’s keys are unavailable; retry shortly', {
      cause: error.cause,
    })
  }
  if (error instanceof errors.JWTExpired)
    return new AuthError('expired', 'The access token has expired', { cause: error })
  if (error instanceof errors.JWSInvalid || error instanceof errors.JWTInvalid) {
    return new AuthError('malformed', 'The access token is malformed', { cause: error })
  }
  return new AuthError('invalid', 'The access token is invalid', { cause: error })
}

/**
 * Verifies EdDSA access tokens against the issuer's JWKS: `iss`, `aud` and `exp` required and checked
 * with a small clock tolerance; keys cached and refetched on an unknown `kid` at most once per cooldown.
 *
 * Verified tokens are remembered in a bounded cache (lru-cache, each entry living until the earlier of
 * its `exp` and `cacheMaxAgeMs`): the gateway verifies every request and an Ed25519 verification costs
 * more than its whole per-request CPU budget. jose caches keys, not verdicts.
 */
export function createVerifier(options: VerifierOptions): Verifier {
  let keys: JWTVerifyGetKey
  if (options.jwks) {
    keys = createLocalJWKSet(options.jwks)
  } else if (options.jwksUrl) {
    keys = distinguishOutages(
      createRemoteJWKSet(new URL(options.jwksUrl), {
        cooldownDuration: options.jwksCooldownMs ?? 30_000,
        cacheMaxAge: options.jwksCacheMaxAgeMs ?? 300_000,
        timeoutDuration: options.jwksTimeoutMs ?? 2_000,
      }),
    )
  } else {
    throw new TypeError('createVerifier needs jwksUrl or jwks')
  }
  const verifyOptions = {
    algorithms: ALGORITHMS,
    issuer: options.issuer ?? DEFAULT_ISSUER,
    audience: options.audience ?? DEFAULT_AUDIENCE,
    clockTolerance: options.clockToleranceSeconds ?? 5,
    requiredClaims: ['iss', 'aud', 'exp', 'sub'],
  }
  const maxEntries = options.cacheMaxEntries ?? 10_000
  const maxAgeMs = options.cacheMaxAgeMs ?? 60_000
  const revocations = options.revocations
  const cache = maxEntries > 0 ? new LRUCache<string, VerifiedToken>({ max: maxEntries }) : null
  const inFlight = new Map<string, Promise<Principal>>()

  async function verifyUncached(token: string): Promise<Principal> {
    try {
      const { payload } = await jwtVerify(token, keys, verifyOptions)
      const principal = principalFrom(payload)
      const issuedAt = typeof payload.iat === 'number' ? payload.iat : 0
      if (revocations?.isRevoked(principal.id, issuedAt)) throw revokedError()
      issuedAtOf.set(principal, issuedAt)
      const now = Date.now()
      const until = Math.min((payload.exp as number) * 1000, now + maxAgeMs)
      if (cache && until > now) cache.set(token, { principal, until, issuedAt }, { ttl: until - now })
      return principal
    } catch (error) {
      throw authErrorFrom(error)
    }
  }

  function peekEntry(token: string): VerifiedToken | undefined {
    const cached = cache?.get(token)
    if (!cached) return undefined
    // A revocation applies to cached verdicts at once: the cache never lets a revoked token through.
    if (!revocations?.isRevoked(cached.principal.id, cached.issuedAt)) return cached
    cache?.delete(token)
    return undefined
  }

  function peek(token: string): Principal | undefined {
    return peekEntry(token)?.principal
  }

  return {
    peek,
    peekEntry,
    verify(token: string): Promise<Principal> {
      const cached = peek(token)
      if (cached) return Promise.resolve(cached)
      if (token.length > MAX_TOKEN_LENGTH || !COMPACT_JWS.test(token)) {
        return Promise.reject(new AuthError('malformed', 'The access token is malformed'))
      }
      // Concurrent requests carrying the same new token share one verification.
      let pending = inFlight.get(token)
      if (!pending) {
        pending = verifyUncached(token).finally(() => inFlight.delete(token))
        inFlight.set(token, pending)
      }
      return pending
    },
  }
}

/** The verifier a service's config asks for, or null when auth is disabled and no JWKS_URL is set. */
export function verifierFromConfig(
  config: { AUTH_MODE: 'required' | 'disabled'; JWKS_URL?: string; JWT_ISSUER: string; JWT_AUDIENCE: string },
  overrides: Omit<VerifierOptions, 'jwksUrl' | 'issuer' | 'audience'> = {},
): Verifier | null {
  requireJwksUrl(config)
  if (!config.JWKS_URL) return null
  return createVerifier({
    ...overrides,
    jwksUrl: config.JWKS_URL,
    issuer: config.JWT_ISSUER,
    audience: config.JWT_AUDIENCE,
  })
}
