import { fileURLToPath } from 'node:url'
import { type App, createServer } from '@task-manager/service-kit'
import { type ServiceProcess, startServiceProcess as startProcess } from '@task-manager/testing'
import type { LightMyRequestResponse } from 'fastify'
import { type CryptoKey, exportSPKI, importJWK, SignJWT } from 'jose'
import pg from 'pg'
import userApp, { identity } from '../src/app.js'
import { loadUserServiceConfig } from '../src/config.js'
import { generatePrivateJwk, type KeyRing, loadKeyRing } from '../src/keys.js'

export const PASSWORD = 'correct horse battery staple'

/** Test settings: a cheap scrypt (the parameters are config; the code path is the same) and roomy limits. */
export const TEST_ENV: Record<string, string> = {
  LOG_LEVEL: 'silent',
  PASSWORD_SCRYPT_LOG_N: '10',
  PASSWORD_SCRYPT_PARALLELISM: '1',
  LOGIN_RATE_LIMIT_PER_CLIENT: '1000',
  LOGIN_FAILURES_PER_EMAIL: '1000',
  REGISTRATION_RATE_LIMIT_PER_CLIENT: '1000',
}

export async function newKeyRing(...kids: string[]): Promise<{ ring: KeyRing; jwks: string }> {
  const jwks = JSON.stringify(
    await Promise.all((kids.length ? kids : ['test-key']).map((kid) => generatePrivateJwk(kid))),
  )
  return { ring: await loadKeyRing(jwks), jwks }
}

/** The user-service app on its own Fastify instance, for `app.inject` tests. */
export async function buildApp(
  databaseUrl: string,
  env: Record<string, string> = {},
  keys?: KeyRing,
): Promise<App> {
  const config = loadUserServiceConfig({ DATABASE_URL: databaseUrl, ...TEST_ENV, ...env })
  const app = createServer(identity, config)
  await app.register(userApp, { config, keys })
  await app.ready()
  return app
}

let counter = 0
/** A unique email per call, so tests in one database never collide. */
export const uniqueEmail = (prefix = 'user') =>
  `${prefix}-${process.pid}-${Date.now()}-${counter++}@example.test`

export interface TestUser {
  id: number
  email: string
  token: string
  auth: { authorization: string }
}

export async function register(app: App, overrides: Record<string, unknown> = {}): Promise<TestUser> {
  const email = (overrides.email as string) ?? uniqueEmail()
  const created = await app.inject({
    method: 'POST',
    url: '/users',
    payload: { email, name: 'Test User', password: PASSWORD, ...overrides },
  })
  if (created.statusCode !== 201) throw new Error(`register failed: ${created.statusCode} ${created.body}`)
  const token = await login(app, email, (overrides.password as string) ?? PASSWORD)
  return { id: created.json().id, email, token, auth: { authorization: `Bearer ${token}` } }
}

export async function login(app: App, email: string, password: string): Promise<string> {
  const response = await app.inject({ method: 'POST', url: '/auth/token', payload: { email, password } })
  if (response.statusCode !== 200) throw new Error(`login failed: ${response.statusCode} ${response.body}`)
  return response.json().access_token
}

/** PATCH /users/me as `user`. */
export const patchMe = (
  app: App,
  user: TestUser,
  payload: Record<string, unknown>,
): Promise<LightMyRequestResponse> =>
  app.inject({ method: 'PATCH', url: '/users/me', headers: user.auth, payload })

/** PUT /users/{id}/role with these headers (none: no token). */
export const putRole = (
  app: App,
  userId: number,
  role: string,
  headers: Record<string, string> = {},
): Promise<LightMyRequestResponse> =>
  app.inject({ method: 'PUT', url: `/users/${userId}/role`, headers, payload: { role } })

export interface ForgeClaims {
  sub: string
  role?: string
  iss?: string
  aud?: string
  exp?: number
  iat?: number
}

/** The claims of a valid 15-minute access token, with `claims` on top. */
function accessClaims(claims: ForgeClaims) {
  const now = Math.floor(Date.now() / 1000)
  return { role: 'user', iss: 'task-manager', aud: 'task-manager-api', iat: now, exp: now + 900, ...claims }
}

/** Signs arbitrary claims with one of the service's own keys (for expired / wrong-audience tokens). */
export async function signWith(ring: KeyRing, claims: ForgeClaims, kid = ring.signing.kid): Promise<string> {
  const key = ring.all.find((candidate) => candidate.kid === kid)
  if (!key) throw new Error(`no key ${kid}`)
  return new SignJWT(accessClaims(claims)).setProtectedHeader({ alg: 'EdDSA', kid }).sign(key.privateKey)
}

/** HS256 with the service's published public key (PEM) as the HMAC secret: the algorithm-confusion attack. */
export async function forgeHmac(ring: KeyRing, claims: ForgeClaims): Promise<string> {
  const publicKey = await importJWK(ring.signing.publicJwk, 'EdDSA', { extractable: true })
  const secret = new TextEncoder().encode(await exportSPKI(publicKey as CryptoKey))
  return new SignJWT(accessClaims(claims))
    .setProtectedHeader({ alg: 'HS256', kid: ring.signing.kid })
    .sign(secret)
}

export function forgeUnsigned(claims: ForgeClaims, kid: string): string {
  const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
  const now = Math.floor(Date.now() / 1000)
  return `${encode({ alg: 'none', kid })}.${encode({ role: 'user', iss: 'task-manager', aud: 'task-manager-api', exp: now + 900, ...claims })}.`
}

export async function query<T = Record<string, unknown>>(
  databaseUrl: string,
  text: string,
  values: unknown[] = [],
) {
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  try {
    return (await client.query(text, values)).rows as T[]
  } finally {
    await client.end()
  }
}

const serverEntry = fileURLToPath(new URL('../src/server.ts', import.meta.url))

/** The real user-service as its own OS process (TypeScript sources through tsx), ready to serve. */
export function startServiceProcess(env: Record<string, string>): Promise<ServiceProcess> {
  return startProcess(serverEntry, { ...TEST_ENV, LOG_LEVEL: 'info', ...env }, { name: 'user-service' })
}
