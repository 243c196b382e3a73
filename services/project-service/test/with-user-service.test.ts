import { fileURLToPath } from 'node:url'
import { createTestDatabase, freePort, type TestDatabase, useTestDatabase } from '@task-manager/testing'
import { afterAll, beforeAll, expect, inject, test } from 'vitest'
import { type ServiceProcess, spawnEntry, startServiceProcess } from './helpers.js'

// The real user-service and the real project-service as two OS processes on their own databases:
// tokens the user-service issues are verified here through its JWKS, and member checks go to it.
const database = useTestDatabase()
let usersDatabase: TestDatabase
let userService: { url: string; stop: () => Promise<void> }
let projectService: ServiceProcess

const userServiceEntry = fileURLToPath(new URL('../../user-service/src/server.ts', import.meta.url))

async function startUserService(databaseUrl: string) {
  const port = await freePort()
  const run = spawnEntry(userServiceEntry, {
    PORT: String(port),
    DATABASE_URL: databaseUrl,
    PASSWORD_SCRYPT_LOG_N: '10',
    JWKS_URL: `http://127.0.0.1:${port}/.well-known/jwks.json`,
  })
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 20_000
  for (;;) {
    if (run.child.exitCode !== null) throw new Error(`user-service exited early:\n${run.output()}`)
    const ready = await fetch(`${url}/health/ready`).then(
      (r) => r.status === 200,
      () => false,
    )
    if (ready) break
    if (Date.now() > deadline) {
      run.child.kill('SIGKILL')
      throw new Error(`user-service did not become ready:\n${run.output()}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return {
    url,
    stop: async () => {
      run.child.kill('SIGTERM')
      await run.exited
    },
  }
}

async function json(response: Response) {
  const text = await response.text()
  return text ? JSON.parse(text) : undefined
}

async function register(name: string): Promise<{ id: number; token: string }> {
  const email = `${name.toLowerCase()}@example.com`
  const password = 'correct horse battery'
  const created = await fetch(`${userService.url}/users`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, name, password }),
  })
  expect(created.status).toBe(201)
  const login = await fetch(`${userService.url}/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password }),
  })
  expect(login.status).toBe(200)
  return { id: (await json(created)).id, token: (await json(login)).access_token }
}

beforeAll(async () => {
  usersDatabase = await createTestDatabase(inject('postgresAdminUrl'), 'users')
  userService = await startUserService(usersDatabase.url)
  projectService = await startServiceProcess({
    DATABASE_URL: database.url,
    JWKS_URL: `${userService.url}/.well-known/jwks.json`,
    USER_SERVICE_URL: userService.url,
  })
})
afterAll(async () => {
  projectService?.child.kill('SIGTERM')
  await projectService?.exited
  await userService?.stop()
  await usersDatabase?.drop()
})

test('user-service tokens work here; members are checked against the real user-service', async () => {
  const alice = await register('Alice')
  const bob = await register('Bob')
  const as = (user: { token: string }) => ({
    authorization: `Bearer ${user.token}`,
    'content-type': 'application/json',
  })
  const base = projectService.url

  const created = await fetch(`${base}/projects`, {
    method: 'POST',
    headers: as(alice),
    body: JSON.stringify({ name: 'Launch' }),
  })
  expect(created.status).toBe(201)
  const project = (await json(created)).id

  const addBob = await fetch(`${base}/projects/${project}/members`, {
    method: 'POST',
    headers: as(alice),
    body: JSON.stringify({ user_id: bob.id, role: 'viewer' }),
  })
  expect(addBob.status).toBe(201)
  const addGhost = await fetch(`${base}/projects/${project}/members`, {
    method: 'POST',
    headers: as(alice),
    body: JSON.stringify({ user_id: bob.id + 1000, role: 'viewer' }),
  })
  expect(addGhost.status).toBe(422)
  expect((await json(addGhost)).detail).toBe(`User ${bob.id + 1000} does not exist`)

  const lookup = await fetch(`${base}/projects/${project}/members/${bob.id}`, { headers: as(bob) })
  expect(await json(lookup)).toEqual({ project_id: project, user_id: bob.id, role: 'viewer' })
  const rename = await fetch(`${base}/projects/${project}`, {
    method: 'PATCH',
    headers: as(bob),
    body: JSON.stringify({ name: 'Mine' }),
  })
  expect(rename.status).toBe(403)
})
