import { performance } from 'node:perf_hooks'
import { BaseConfigProperties, loadConfig } from '@task-manager/service-kit'
import { Type } from 'typebox'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import {
  AuthConfigProperties,
  AuthError,
  createVerifier,
  TokenRevocations,
  tokenIssuedAt,
  type Verifier,
  verifierFromConfig,
} from '../src/index.js'
import { startTestIssuer, type TestIssuer } from '../src/testing.js'

let issuer: TestIssuer
let verifier: Verifier

beforeAll(async () => {
  issuer = await startTestIssuer()
  verifier = createVerifier({ jwksUrl: issuer.jwksUrl })
})
afterAll(async () => {
  await issuer.close()
})

async function reasonOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise
  } catch (error) {
    expect(error).toBeInstanceOf(AuthError)
    return (error as AuthError).reason
  }
  throw new Error('expected the token to be refused')
}

const now = () => Math.floor(Date.now() / 1000)

describe('accepted tokens', () => {
  test('a valid token yields the user id from sub and the role', async () => {
    expect(await verifier.verify(await issuer.sign({ sub: 42 }))).toEqual({ id: 42, role: 'user' })
    expect(await verifier.verify(await issuer.sign({ sub: '7', role: 'admin' }))).toEqual({
      id: 7,
      role: 'admin',
    })
  })

  test('exp a few seconds in the past is within the clock tolerance', async () => {
    expect(await verifier.verify(await issuer.sign({ sub: 1, exp: now() - 3 }))).toEqual({
      id: 1,
      role: 'user',
    })
  })
})

describe('refused tokens', () => {
  test('expired beyond the tolerance', async () => {
    expect(await reasonOf(verifier.verify(await issuer.sign({ sub: 1, exp: now() - 30 })))).toBe('expired')
  })

  test('wrong issuer', async () => {
    expect(await reasonOf(verifier.verify(await issuer.sign({ sub: 1, iss: 'someone-else' })))).toBe(
      'invalid',
    )
  })

  test('wrong audience', async () => {
    expect(await reasonOf(verifier.verify(await issuer.sign({ sub: 1, aud: 'another-api' })))).toBe('invalid')
  })

  test('alg none', async () => {
    expect(await reasonOf(verifier.verify(issuer.forgeUnsigned({ sub: 1, role: 'admin' })))).toBe('invalid')
  })

  test('HS256 signed with the public key as the HMAC secret', async () => {
    const forged = await issuer.forgeHmacWithPublicKey({ sub: 1, role: 'admin' })
    expect(await reasonOf(verifier.verify(forged))).toBe('invalid')
  })

  test('signed by a key the issuer never published', async () => {
    expect(await reasonOf(verifier.verify(await issuer.forgeWithForeignKey({ sub: 1 })))).toBe('invalid')
  })

  test('a token without exp, aud or iss', async () => {
    for (const claim of ['exp', 'aud', 'iss']) {
      expect(await reasonOf(verifier.verify(await issuer.sign({ sub: 1 }, { omit: [claim] })))).toBe(
        'invalid',
      )
    }
  })

  test('malformed strings never reach the crypto', async () => {
    for (const token of ['', 'abc', 'a.b', 'a.b.c.d', 'not a token', `${'a'.repeat(5000)}.b.c`]) {
      expect(await reasonOf(verifier.verify(token))).toBe('malformed')
    }
  })

  test('a subject that is not a user id, or an unknown role', async () => {
    expect(await reasonOf(verifier.verify(await issuer.sign({ sub: 'alice' })))).toBe('invalid')
    expect(await reasonOf(verifier.verify(await issuer.sign({ sub: 0 })))).toBe('invalid')
    expect(await reasonOf(verifier.verify(await issuer.sign({ sub: 1, role: 'superuser' })))).toBe('invalid')
  })

  test('the issuer unreachable is "unavailable", not a bad token', async () => {
    const gone = await startTestIssuer()
    const token = await gone.sign({ sub: 1 })
    const orphan = createVerifier({ jwksUrl: gone.jwksUrl, jwksTimeoutMs: 500 })
    await gone.close()
    expect(await reasonOf(orphan.verify(token))).toBe('unavailable')
  })
})

describe('key rotation', () => {
  test('a token from a newly added key is accepted after a refetch on its unknown kid', async () => {
    const own = await startTestIssuer()
    try {
      const rotating = createVerifier({ jwksUrl: own.jwksUrl, jwksCooldownMs: 0 })
      await rotating.verify(await own.sign({ sub: 1 }))
      expect(own.jwksRequests).toBe(1)
      await own.rotate()
      expect(await rotating.verify(await own.sign({ sub: 2 }))).toEqual({ id: 2, role: 'user' })
      expect(own.jwksRequests).toBe(2)
    } finally {
      await own.close()
    }
  })

  test('unknown kids refetch the JWKS at most once per cooldown', async () => {
    const own = await startTestIssuer()
    try {
      const cooling = createVerifier({ jwksUrl: own.jwksUrl, jwksCooldownMs: 60_000 })
      await cooling.verify(await own.sign({ sub: 1 }))
      expect(own.jwksRequests).toBe(1)
      // A new key inside the cooldown: its tokens are refused without hammering the issuer.
      await own.rotate()
      for (let i = 0; i < 5; i += 1) {
        expect(await reasonOf(cooling.verify(await own.sign({ sub: 10 + i })))).toBe('invalid')
      }
      expect(own.jwksRequests).toBe(1)
    } finally {
      await own.close()
    }
  })

  test('a token whose kid was removed from the JWKS is refused once the keys are refreshed', async () => {
    const own = await startTestIssuer()
    try {
      const oldKid = own.kid
      const oldToken = await own.sign({ sub: 5 })
      const strict = createVerifier({ jwksUrl: own.jwksUrl, jwksCacheMaxAgeMs: 100, cacheMaxEntries: 0 })
      expect(await strict.verify(oldToken)).toEqual({ id: 5, role: 'user' })
      await own.rotate()
      own.removeKey(oldKid)
      await new Promise((resolve) => setTimeout(resolve, 150))
      expect(await reasonOf(strict.verify(oldToken))).toBe('invalid')
      expect(await strict.verify(await own.sign({ sub: 6 }))).toEqual({ id: 6, role: 'user' })
    } finally {
      await own.close()
    }
  })
})

describe('verified-token cache', () => {
  test('remembers verified tokens, evicts the oldest past its bound', async () => {
    const own = await startTestIssuer()
    try {
      const cached = createVerifier({ jwksUrl: own.jwksUrl, jwksCacheMaxAgeMs: 100, cacheMaxEntries: 2 })
      const tokens = [await own.sign({ sub: 1 }), await own.sign({ sub: 2 }), await own.sign({ sub: 3 })]
      for (const token of tokens) await cached.verify(token)
      // The key disappears: only a re-verification would notice.
      own.removeKey(own.kid)
      await new Promise((resolve) => setTimeout(resolve, 150))
      expect(await cached.verify(tokens[2] as string)).toEqual({ id: 3, role: 'user' })
      expect(await reasonOf(cached.verify(tokens[0] as string))).toBe('invalid')
    } finally {
      await own.close()
    }
  })

  test('a cached token stops working at its exp', async () => {
    const exact = createVerifier({ jwksUrl: issuer.jwksUrl, clockToleranceSeconds: 0 })
    const token = await issuer.sign({ sub: 9, exp: now() + 2 })
    expect(await exact.verify(token)).toEqual({ id: 9, role: 'user' })
    await new Promise((resolve) => setTimeout(resolve, 2100))
    expect(await reasonOf(exact.verify(token))).toBe('expired')
  })

  test('a cached verification costs well under the gateway budget of 55 µs per request', async () => {
    const token = await issuer.sign({ sub: 11 })
    await verifier.verify(token)
    const rounds = 50_000
    const started = performance.now()
    for (let i = 0; i < rounds; i += 1) await verifier.verify(token)
    const cachedMicros = ((performance.now() - started) * 1000) / rounds

    const uncached = createVerifier({ jwksUrl: issuer.jwksUrl, cacheMaxEntries: 0 })
    await uncached.verify(token)
    const fullRounds = 500
    const fullStarted = performance.now()
    for (let i = 0; i < fullRounds; i += 1) await uncached.verify(token)
    const fullMicros = ((performance.now() - fullStarted) * 1000) / fullRounds

    console.log(
      `verify: cached ${cachedMicros.toFixed(2)} µs/op, full Ed25519 ${fullMicros.toFixed(1)} µs/op`,
    )
    expect(cachedMicros).toBeLessThan(10)
    expect(cachedMicros).toBeLessThan(fullMicros)
  })
})

describe('verifierFromConfig', () => {
  const base = { JWT_ISSUER: 'task-manager', JWT_AUDIENCE: 'task-manager-api' }
  test('refuses AUTH_MODE=required without JWKS_URL', () => {
    expect(() => verifierFromConfig({ ...base, AUTH_MODE: 'required' })).toThrow(/JWKS_URL/)
  })
  test('disabled without JWKS_URL has no verifier; with one it has', () => {
    expect(verifierFromConfig({ ...base, AUTH_MODE: 'disabled' })).toBeNull()
    expect(verifierFromConfig({ ...base, AUTH_MODE: 'disabled', JWKS_URL: issuer.jwksUrl })).not.toBeNull()
  })
})

describe('AuthConfigProperties', () => {
  const schema = Type.Object({ ...BaseConfigProperties, ...AuthConfigProperties })
  test('defaults iss and aud; JWKS_URL is optional but must be an http(s) URL', () => {
    const config = loadConfig(schema, { PORT: '1' })
    expect(config).toMatchObject({ JWT_ISSUER: 'task-manager', JWT_AUDIENCE: 'task-manager-api' })
    expect(config.JWKS_URL).toBeUndefined()
    const url = 'http://user-service:8004/.well-known/jwks.json'
    expect(loadConfig(schema, { PORT: '1', JWKS_URL: url }).JWKS_URL).toBe(url)
    expect(() => loadConfig(schema, { PORT: '1', JWKS_URL: 'file:///etc/keys' })).toThrow(/JWKS_URL/)
  })
})

describe('peek', () => {
  test('answers synchronously for verified tokens only, and not past exp', async () => {
    const exact = createVerifier({ jwksUrl: issuer.jwksUrl, clockToleranceSeconds: 0 })
    const token = await issuer.sign({ sub: 21, exp: Math.floor(Date.now() / 1000) + 2 })
    expect(exact.peek?.(token)).toBeUndefined()
    await exact.verify(token)
    expect(exact.peek?.(token)).toEqual({ id: 21, role: 'user' })
    expect(exact.peek?.(issuer.forgeUnsigned({ sub: 21 }))).toBeUndefined()
    await new Promise((resolve) => setTimeout(resolve, 2100))
    expect(exact.peek?.(token)).toBeUndefined()
  })
})

describe('revocations', () => {
  test('a token issued before its user’s valid_after is refused, even when it was verified and cached before', async () => {
    const revocations = new TokenRevocations()
    const revoking = createVerifier({ jwksUrl: issuer.jwksUrl, revocations })
    const issuedAt = now() - 10
    const old = await issuer.sign({ sub: 31, iat: issuedAt })
    const other = await issuer.sign({ sub: 32, iat: issuedAt })
    const principal = await revoking.verify(old)
    expect(tokenIssuedAt(principal)).toBe(issuedAt)
    expect(revoking.peek?.(old)).toEqual({ id: 31, role: 'user' })

    revocations.revoke(31, issuedAt + 1)
    expect(revoking.peek?.(old)).toBeUndefined()
    expect(await reasonOf(revoking.verify(old))).toBe('revoked')
    // Other users' tokens, and this user's newer ones, are untouched.
    expect(await revoking.verify(other)).toEqual({ id: 32, role: 'user' })
    expect(await revoking.verify(await issuer.sign({ sub: 31, iat: issuedAt + 1 }))).toEqual({
      id: 31,
      role: 'user',
    })
  })

  test('valid_after keeps milliseconds: a token from the same second but after it stays valid', async () => {
    const revocations = new TokenRevocations()
    const revoking = createVerifier({ jwksUrl: issuer.jwksUrl, revocations })
    const second = now()
    revocations.revoke(33, second + 0.5)
    expect(await reasonOf(revoking.verify(await issuer.sign({ sub: 33, iat: second + 0.25 })))).toBe(
      'revoked',
    )
    expect(await revoking.verify(await issuer.sign({ sub: 33, iat: second + 0.75 }))).toEqual({
      id: 33,
      role: 'user',
    })
    // A later revocation never moves valid_after back.
    revocations.revoke(33, second)
    expect(await reasonOf(revoking.verify(await issuer.sign({ sub: 33, iat: second + 0.25 })))).toBe(
      'revoked',
    )
  })
})
