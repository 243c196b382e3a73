import { type App, createServer, serviceKit } from '@task-manager/service-kit'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { type AuthMode, authPlugin, createVerifier, type Verifier } from '../src/index.js'
import { startTestIssuer, type TestIssuer } from '../src/testing.js'

let issuer: TestIssuer

async function buildApp(mode: AuthMode, verifier: Verifier | null): Promise<App> {
  const app = createServer({ service: 'auth-test', version: '0' }, { LOG_LEVEL: 'silent' } as Parameters<
    typeof createServer
  >[1])
  await app.register(serviceKit, { service: 'auth-test', version: '0', maxEventLoopDelayMs: 0 })
  await app.register(authPlugin, { mode, verifier })
  app.get('/me', { preHandler: app.authenticate }, async (request) => ({ principal: request.principal }))
  app.get('/open', async (request) => ({ principal: request.principal }))
  await app.ready()
  return app
}

let required: App
let disabled: App

beforeAll(async () => {
  issuer = await startTestIssuer()
  required = await buildApp('required', createVerifier({ jwksUrl: issuer.jwksUrl }))
  disabled = await buildApp('disabled', createVerifier({ jwksUrl: issuer.jwksUrl }))
})
afterAll(async () => {
  await required.close()
  await disabled.close()
  await issuer.close()
})

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

function expectChallenge(response: {
  statusCode: number
  headers: Record<string, unknown>
  json(): unknown
}) {
  expect(response.statusCode).toBe(401)
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
  expect(String(response.headers['www-authenticate'])).toMatch(/^Bearer realm="task-manager"/)
  expect(response.json()).toMatchObject({ status: 401, title: 'Unauthorized' })
}

describe('AUTH_MODE=required', () => {
  test('a valid bearer token passes and sets request.principal', async () => {
    const response = await required.inject({
      url: '/me',
      headers: bearer(await issuer.sign({ sub: 3, role: 'admin' })),
    })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual({ principal: { id: 3, role: 'admin' } })
  })

  test('the scheme is case-insensitive', async () => {
    const token = await issuer.sign({ sub: 3 })
    const response = await required.inject({ url: '/me', headers: { authorization: `bearer ${token}` } })
    expect(response.statusCode).toBe(200)
  })

  test('no token: 401 with a plain Bearer challenge', async () => {
    const response = await required.inject({ url: '/me' })
    expectChallenge(response)
    expect(response.headers['www-authenticate']).toBe('Bearer realm="task-manager"')
    expect(response.json()).toMatchObject({ detail: expect.stringContaining('Authentication required') })
  })

  test('tokens in the URL are never accepted', async () => {
    const token = await issuer.sign({ sub: 3 })
    expectChallenge(await required.inject({ url: `/me?access_token=${token}` }))
    expectChallenge(await required.inject({ url: `/me?token=${token}` }))
  })

  test('another scheme or a malformed header: 401 invalid_token', async () => {
    for (const authorization of ['Basic dXNlcjpwYXNz', 'Bearer', 'Bearer a b', 'Bearer not-a-jwt']) {
      const response = await required.inject({ url: '/me', headers: { authorization } })
      expectChallenge(response)
      expect(response.headers['www-authenticate']).toContain('error="invalid_token"')
    }
  })

  test.each([
    ['expired', () => issuer.sign({ sub: 3, exp: Math.floor(Date.now() / 1000) - 60 }), 'expired'],
    ['wrong issuer', () => issuer.sign({ sub: 3, iss: 'evil' }), 'invalid'],
    ['wrong audience', () => issuer.sign({ sub: 3, aud: 'other' }), 'invalid'],
    ['alg none', async () => issuer.forgeUnsigned({ sub: 3, role: 'admin' }), 'invalid'],
    [
      'HS256 with the public key as secret',
      () => issuer.forgeHmacWithPublicKey({ sub: 3, role: 'admin' }),
      'invalid',
    ],
    ['a foreign signing key', () => issuer.forgeWithForeignKey({ sub: 3 }), 'invalid'],
  ])('%s: 401 invalid_token', async (_name, makeToken, word) => {
    const response = await required.inject({ url: '/me', headers: bearer(await makeToken()) })
    expectChallenge(response)
    expect(response.headers['www-authenticate']).toContain('error="invalid_token"')
    expect(response.json()).toMatchObject({ detail: expect.stringContaining(word) })
  })

  test('a token for a key removed from the JWKS: 401', async () => {
    const own = await startTestIssuer()
    const app = await buildApp(
      'required',
      createVerifier({ jwksUrl: own.jwksUrl, jwksCacheMaxAgeMs: 50, cacheMaxEntries: 0 }),
    )
    try {
      const token = await own.sign({ sub: 8 })
      expect((await app.inject({ url: '/me', headers: bearer(token) })).statusCode).toBe(200)
      const removed = own.kid
      await own.rotate()
      own.removeKey(removed)
      await new Promise((resolve) => setTimeout(resolve, 100))
      expectChallenge(await app.inject({ url: '/me', headers: bearer(token) }))
    } finally {
      await app.close()
      await own.close()
    }
  })

  test('routes without authenticate stay open; a bad token there just means no principal', async () => {
    const response = await required.inject({ url: '/open', headers: bearer('x.y.z') })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual({ principal: null })
  })

  test('health probes need no token', async () => {
    expect((await required.inject({ url: '/health/live' })).statusCode).toBe(200)
  })

  test('keys that cannot be fetched: 503 with Retry-After, not 401', async () => {
    const gone = await startTestIssuer()
    const token = await gone.sign({ sub: 1 })
    const app = await buildApp('required', createVerifier({ jwksUrl: gone.jwksUrl, jwksTimeoutMs: 300 }))
    await gone.close()
    try {
      const response = await app.inject({ url: '/me', headers: bearer(token) })
      expect(response.statusCode).toBe(503)
      expect(response.headers['retry-after']).toBe('5')
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
    } finally {
      await app.close()
    }
  })

  test('over real HTTP the challenge header and problem body arrive intact', async () => {
    const app = await buildApp('required', createVerifier({ jwksUrl: issuer.jwksUrl }))
    try {
      const base = await app.listen({ host: '127.0.0.1', port: 0 })
      const refused = await fetch(`${base}/me`, { headers: { authorization: 'Bearer a.b.c' } })
      expect(refused.status).toBe(401)
      expect(refused.headers.get('www-authenticate')).toContain('error="invalid_token"')
      const accepted = await fetch(`${base}/me`, { headers: bearer(await issuer.sign({ sub: 12 })) })
      expect(await accepted.json()).toEqual({ principal: { id: 12, role: 'user' } })
    } finally {
      await app.close()
    }
  })

  test('mode required without a verifier refuses to start', async () => {
    await expect(buildApp('required', null)).rejects.toThrow(/needs a verifier/)
  })
})

describe('AUTH_MODE=disabled', () => {
  test('no token: let through with principal null', async () => {
    const response = await disabled.inject({ url: '/me' })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual({ principal: null })
  })

  test('a bad token is ignored, never refused', async () => {
    const response = await disabled.inject({
      url: '/me',
      headers: bearer(issuer.forgeUnsigned({ sub: 1, role: 'admin' })),
    })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual({ principal: null })
  })

  test('a valid token still identifies its caller', async () => {
    const response = await disabled.inject({ url: '/me', headers: bearer(await issuer.sign({ sub: 4 })) })
    expect(response.json()).toEqual({ principal: { id: 4, role: 'user' } })
  })

  test('without any verifier every request is anonymous', async () => {
    const app = await buildApp('disabled', null)
    try {
      const response = await app.inject({ url: '/me', headers: bearer(await issuer.sign({ sub: 4 })) })
      expect(response.json()).toEqual({ principal: null })
    } finally {
      await app.close()
    }
  })
})
