import { type EventEnvelope, STREAMS } from '@task-manager/events'
import { type EventRecorder, startEventRecorder } from '@task-manager/events/testing'
import type { App } from '@task-manager/service-kit'
import { useNatsServer, useTestDatabase } from '@task-manager/testing'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import {
  buildApp,
  login,
  newKeyRing,
  PASSWORD,
  patchMe,
  putRole,
  query,
  register,
  uniqueEmail,
} from './helpers.js'

// The user-service against a real nats-server: a password change, a role change, a logout and a
// deletion each set the user's valid_after (this service refuses older tokens at once, whichever replica
// changed it) and leave as an event on the USERS stream, through the outbox and the relay.
const database = useTestDatabase('users_events')
const nats = useNatsServer()
let app: App
let replica: App
let recorder: EventRecorder
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
const adminEmail = uniqueEmail('admin')

beforeAll(async () => {
  const { ring } = await newKeyRing()
  const env = {
    NATS_URL: nats.url,
    EVENTS_RELAY_POLL_MS: '50',
    ADMIN_EMAIL: adminEmail,
    ADMIN_PASSWORD: PASSWORD,
  }
  app = await buildApp(database.url, env, ring)
  // A second replica on the same database and keys: revocations written by one hold at the other.
  replica = await buildApp(database.url, env, ring)
  recorder = startEventRecorder({
    url: nats.url,
    stream: STREAMS.users,
    types: ['users.user.tokens_revoked', 'users.user.deleted'],
  })
})

afterAll(async () => {
  await recorder?.close()
  await replica?.close()
  await app?.close()
})

/** The next event about `userId`, waiting up to 15 s. */
async function eventFor(userId: number, type: EventEnvelope['type']): Promise<EventEnvelope> {
  const deadline = Date.now() + 15_000
  for (;;) {
    const found = recorder.seen.find(
      (event) => event.type === type && (event.data as { user_id: number }).user_id === userId,
    )
    if (found) return found
    if (Date.now() > deadline)
      throw new Error(`no ${type} for user ${userId}; saw ${recorder.seen.length} events`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

const me = (target: App, token: string) =>
  target.inject({ url: '/users/me', headers: { authorization: `Bearer ${token}` } })

describe('user events and token revocation', () => {
  test('POST /auth/logout: 204, older tokens refused at once by every replica, a new login works', async () => {
    const user = await register(app)
    const before = Date.now() / 1000
    const logout = await app.inject({
      method: 'POST',
      url: '/auth/logout',
      headers: { ...user.auth, traceparent: TRACEPARENT },
    })
    expect(logout.statusCode).toBe(204)
    for (const target of [app, replica]) {
      const refused = await me(target, user.token)
      expect(refused.statusCode).toBe(401)
      expect(refused.headers['content-type']).toMatch(/application\/problem\+json/)
      expect(refused.json().detail).toMatch(/revoked/)
    }
    // Logging in again at once (same second) gives a token that works.
    const fresh = await login(app, user.email, PASSWORD)
    expect((await me(replica, fresh)).statusCode).toBe(200)

    const event = await eventFor(user.id, 'users.user.tokens_revoked')
    expect(event).toMatchObject({
      producer: 'user-service',
      aggregate_type: 'user',
      aggregate_id: String(user.id),
      traceparent: TRACEPARENT,
      data: { user_id: user.id, reason: 'logout' },
    })
    const validAfter = (event.data as { valid_after: number }).valid_after
    expect(validAfter).toBeGreaterThanOrEqual(before - 1)
    expect(validAfter).toBeLessThanOrEqual(Date.now() / 1000)
    const [row] = await query<{ valid_after: Date }>(
      database.url,
      'select valid_after from users where id = $1',
      [user.id],
    )
    expect(row?.valid_after.getTime()).toBe(Math.round(validAfter * 1000))
  })

  test('a password change revokes the older tokens; a name change does not', async () => {
    const user = await register(app)
    const renamed = await patchMe(app, user, { name: 'Renamed' })
    expect(renamed.statusCode).toBe(200)
    expect((await me(replica, user.token)).statusCode).toBe(200)

    const changed = await patchMe(app, user, {
      password: 'a brand new passphrase',
      current_password: PASSWORD,
    })
    expect(changed.statusCode).toBe(200)
    expect((await me(replica, user.token)).statusCode).toBe(401)
    const fresh = await login(app, user.email, 'a brand new passphrase')
    expect((await me(app, fresh)).statusCode).toBe(200)
    expect((await eventFor(user.id, 'users.user.tokens_revoked')).data).toMatchObject({
      reason: 'password_changed',
    })
  })

  test('a role change revokes the user’s tokens (they carry the old role); setting the same role does not', async () => {
    const admin = await login(app, adminEmail, PASSWORD)
    const user = await register(app)
    const same = await putRole(app, user.id, 'user', { authorization: `Bearer ${admin}` })
    expect(same.statusCode).toBe(200)
    expect((await me(app, user.token)).statusCode).toBe(200)
    const promoted = await putRole(app, user.id, 'admin', { authorization: `Bearer ${admin}` })
    expect(promoted.statusCode).toBe(200)
    expect((await me(replica, user.token)).statusCode).toBe(401)
    expect((await eventFor(user.id, 'users.user.tokens_revoked')).data).toMatchObject({
      reason: 'role_changed',
    })
    const events = recorder.seen.filter(
      (event) =>
        event.type === 'users.user.tokens_revoked' && (event.data as { user_id: number }).user_id === user.id,
    )
    expect(events).toHaveLength(1)
  })

  test('a deletion: users.user.deleted, and the token is refused (the account is gone)', async () => {
    const user = await register(app)
    const deleted = await app.inject({ method: 'DELETE', url: '/users/me', headers: user.auth })
    expect(deleted.statusCode).toBe(204)
    const refused = await app.inject({ url: `/users/${user.id}`, headers: user.auth })
    expect(refused.statusCode).toBe(401)
    const event = await eventFor(user.id, 'users.user.deleted')
    expect(event.data).toEqual({ user_id: user.id, valid_after: expect.any(Number) })
  })

  test('a refused change (wrong current password) writes no event and keeps the token; the outbox drains', async () => {
    const user = await register(app)
    const refused = await patchMe(app, user, {
      password: 'a brand new passphrase',
      current_password: 'not the password at all',
    })
    expect(refused.statusCode).toBe(403)
    expect((await me(replica, user.token)).statusCode).toBe(200)
    const deadline = Date.now() + 15_000
    let pending = 1
    while (pending > 0 && Date.now() < deadline) {
      const [row] = await query<{ count: string }>(
        database.url,
        'select count(*) from event_outbox where sent_at is null',
      )
      pending = Number(row?.count)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect(pending).toBe(0)
    const [row] = await query<{ count: string }>(
      database.url,
      'select count(*) from event_outbox where aggregate_id = $1',
      [String(user.id)],
    )
    expect(Number(row?.count)).toBe(0)
  })
})
