import type { ChildProcess } from 'node:child_process'
import { get } from 'node:http'
import { fileURLToPath } from 'node:url'
import { spawnEntry, startServiceProcess } from '@task-manager/testing'
import { afterEach, describe, expect, test } from 'vitest'
import { call, sleep } from './helpers.js'
import { spawnUpstream, type UpstreamProcess } from './process.js'

// The gateway as an OS process (src/server.ts through the kit's main), in front of services that are processes too.

const serverEntry = fileURLToPath(new URL('../src/server.ts', import.meta.url))
const running: Array<ChildProcess | UpstreamProcess> = []
afterEach(async () => {
  for (const each of running.splice(0)) {
    if ('kill' in each && typeof (each as UpstreamProcess).port === 'number')
      await (each as UpstreamProcess).kill()
    else (each as ChildProcess).kill('SIGKILL')
  }
})

function startGatewayProcess(env: Record<string, string>) {
  const gateway = spawnEntry(serverEntry, { AUTH_MODE: 'disabled', ...env })
  running.push(gateway.child)
  return gateway
}

async function readyGateway(env: Record<string, string>) {
  const gateway = await startServiceProcess(
    serverEntry,
    { AUTH_MODE: 'disabled', ...env },
    { name: 'gateway', readyPath: '/health/live' },
  )
  running.push(gateway.child)
  return gateway
}

/** GET on a new connection, so a refused connection shows (not a pooled keep-alive socket). */
function freshGet(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    get(url, { agent: false }, (response) => {
      response.resume()
      resolve(response.statusCode ?? 0)
    }).on('error', reject)
  })
}

describe('the gateway process', () => {
  test('a bad setting stops it at start with exit code 78, naming the variable', async () => {
    const gateway = startGatewayProcess({ PORT: '8006', TASK_SERVICE_URL: 'task-service-without-scheme' })
    expect(await gateway.exited).toBe(78)
    expect(gateway.output()).toContain('TASK_SERVICE_URL')
  })

  test('routes to service processes; a killed one answers 503 while the others keep answering', async () => {
    const tasks = await spawnUpstream('task-service')
    const users = await spawnUpstream('user-service')
    const projects = await spawnUpstream('project-service')
    running.push(tasks, users, projects)
    const gateway = await readyGateway({
      TASK_SERVICE_URL: tasks.url,
      USER_SERVICE_URL: users.url,
      PROJECT_SERVICE_URL: projects.url,
    })
    expect((await call(`${gateway.url}/tasks/1`)).json).toMatchObject({
      service: 'task-service',
      pid: tasks.child.pid,
    })
    await tasks.kill()
    const down = await call(`${gateway.url}/tasks/1`)
    expect(down.status).toBe(503)
    expect(down.json).toMatchObject({ service: 'task-service' })
    expect((await call(`${gateway.url}/projects/1`)).json).toMatchObject({ service: 'project-service' })
    expect((await call(`${gateway.url}/health`)).json.services).toEqual({
      'task-service': 'unreachable',
      'user-service': 'healthy',
      'project-service': 'healthy',
    })
  })

  test('SIGTERM drains: a request in flight on a keep-alive connection completes, then the process exits 0', async () => {
    const tasks = await spawnUpstream('task-service')
    running.push(tasks)
    const gateway = await readyGateway({
      TASK_SERVICE_URL: tasks.url,
      USER_SERVICE_URL: tasks.url,
      PROJECT_SERVICE_URL: tasks.url,
    })
    const inFlight = call(`${gateway.url}/tasks/slow`)
    await sleep(150)
    gateway.child.kill('SIGTERM')
    const res = await inFlight
    expect(res.status).toBe(200)
    expect(res.json.url).toBe('/tasks/slow')
    // The client's keep-alive connection is closed with the answer, so nothing holds the process open.
    expect(res.headers.connection).toBe('close')
    expect(await gateway.exited).toBe(0)
    await expect(freshGet(`${gateway.url}/health/live`)).rejects.toThrow(/ECONNREFUSED/)
    expect(gateway.output()).toContain('shutdown complete')
  })
})
