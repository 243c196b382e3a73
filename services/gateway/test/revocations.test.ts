import { EventBus, newEvent } from '@task-manager/events'
import { useNatsServer } from '@task-manager/testing'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { call, sleep, startGateway, type TestGateway, testIssuer } from './helpers.js'
import { startServices, type TestServices } from './upstream-server.js'

// The gateway against a real nats-server: it follows users.user.tokens_revoked / users.user.deleted
// into its revocation list, and refuses a revoked token (401 problem+json) even though it verified and
// cached that token before. A gateway started after the revocation replays it.
const nats = useNatsServer()
let services: TestServices
let gateway: TestGateway
let late: TestGateway | undefined
let bus: EventBus
let issuer: Awaited<ReturnType<typeof testIssuer>>
let env: Record<string, string>

beforeAll(async () => {
  issuer = await testIssuer()
  // The user-service publishes the issuer's keys; the gateway finds them at USER_SERVICE_URL/.well-known/jwks.json.
  services = await startServices(issuer.jwks)
  env = {
    AUTH_MODE: 'required',
    RATE_LIMIT_ENABLED: 'false',
    ...services.env,
    NATS_URL: nats.url,
  }
  gateway = await startGateway(env)
  bus = new EventBus({ url: nats.url, name: 'test-user-service' })
})

afterAll(async () => {
  await late?.close()
  await gateway?.close()
  await bus?.close()
  await services?.close()
})

const get = (base: string, token: string) =>
  call(`${base}/tasks`, { headers: { authorization: `Bearer ${token}` } })

/** Polls until the gateway's /health/ready answers 200, or 10 s pass; returns how long it took. */
async function ready(base: string): Promise<number> {
  const started = Date.now()
  while ((await call(`${base}/health/ready`)).status !== 200) {
    if (Date.now() - started > 10_000) throw new Error('not ready after 10 s')
    await sleep(20)
  }
  return Date.now() - started
}

/** Polls until the gateway answers `status` for this token, or 10 s pass; returns how long it took. */
async function until(base: string, token: string, status: number): Promise<number> {
  const started = Date.now()
  for (;;) {
    const res = await get(base, token)
    if (res.status === status) return Date.now() - started
    if (Date.now() - started > 10_000) throw new Error(`still ${res.status} after 10 s`)
    await sleep(20)
  }
}

describe('token revocation at the gateway (real nats-server)', () => {
  test('a revoked token is refused although its verdict was cached; newer tokens and other users pass', async () => {
    const old = await issuer.sign('41')
    const other = await issuer.sign('42')
    expect((await get(gateway.url, old)).status).toBe(200)
    expect((await get(gateway.url, other)).status).toBe(200)
    await sleep(1100) // the next token is issued a second later (whole-second iat here)

    await bus.publish(
      newEvent(
        'users.user.tokens_revoked',
        { user_id: 41, valid_after: Date.now() / 1000, reason: 'password_changed' },
        { producer: 'user-service' },
      ),
    )
    const delay = await until(gateway.url, old, 401)
    expect(delay).toBeLessThan(5_000)
    const refused = await get(gateway.url, old)
    expect(refused.headers['content-type']).toMatch(/application\/problem\+json/)
    expect(refused.json).toMatchObject({ status: 401, detail: expect.stringMatching(/revoked/) })
    expect(refused.headers['www-authenticate']).toMatch(/invalid_token/)
    expect((await get(gateway.url, other)).status).toBe(200)
    await sleep(1100)
    expect((await get(gateway.url, await issuer.sign('41'))).status).toBe(200)
  })

  test('users.user.deleted refuses the deleted user’s tokens; a gateway started afterwards replays it', async () => {
    const token = await issuer.sign('43')
    expect((await get(gateway.url, token)).status).toBe(200)
    await sleep(1100)
    await bus.publish(
      newEvent(
        'users.user.deleted',
        { user_id: 43, valid_after: Date.now() / 1000 },
        { producer: 'user-service' },
      ),
    )
    await until(gateway.url, token, 401)

    late = await startGateway(env)
    // Ready only once it has replayed the revocations: its very first answer to the token is 401.
    const readyIn = await ready(late.url)
    console.log(`a new gateway was ready ${readyIn} ms after its start, with the revocations replayed`)
    expect(readyIn).toBeLessThan(5_000)
    expect((await get(late.url, token)).status).toBe(401)
    expect((await get(late.url, await issuer.sign('44'))).status).toBe(200)
  })
})
