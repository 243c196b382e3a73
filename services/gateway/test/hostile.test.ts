import { connect, type Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import { type ServiceProcess, startServiceProcess } from '@task-manager/testing'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { call, sleep } from './helpers.js'
import { startServices, type TestServices } from './upstream-server.js'

// Slow and hostile clients against the gateway as an OS process (src/server.ts), over raw sockets: what they
// send is exactly what a hostile client would, and the gateway's event loop is not the test's.

const serverEntry = fileURLToPath(new URL('../src/server.ts', import.meta.url))

let services: TestServices
let gateway: ServiceProcess
const sockets: Socket[] = []

beforeAll(async () => {
  services = await startServices()
  gateway = await startServiceProcess(
    serverEntry,
    {
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      AUTH_MODE: 'disabled',
      RATE_LIMIT_ENABLED: 'false',
      REQUEST_HEADERS_TIMEOUT_MS: '1000',
      REQUEST_TIMEOUT_MS: '2000',
      // Few upstream connections, so that anything holding one would starve everyone else at once.
      UPSTREAM_CONNECTIONS: '4',
      // The slow-body crowd comes from one address here; the per-client bound has its own test below.
      MAX_IN_FLIGHT_PER_CLIENT: '1000',
      HEALTH_TIMEOUT_MS: '1500',
      ...services.env,
    },
    { name: 'gateway', readyPath: '/health/live' },
  )
})

afterAll(async () => {
  for (const socket of sockets) socket.destroy()
  await gateway?.stop()
  await services?.close()
})

/** A raw connection to the gateway: what it receives, and when it closed. */
function open() {
  const { hostname, port } = new URL(gateway.url)
  const socket = connect(Number(port), hostname)
  sockets.push(socket)
  const state = { data: '', closedAt: 0 }
  socket.setEncoding('utf8')
  socket.on('data', (chunk: string) => {
    state.data += chunk
  })
  socket.on('error', () => {})
  socket.on('close', () => {
    state.closedAt = performance.now()
  })
  const connected = new Promise<void>((resolve) => socket.once('connect', () => resolve()))
  return { socket, state, connected }
}

async function until(check: () => boolean, timeoutMs: number, what: string) {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

const statusOf = (data: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0)

describe('deadlines on what a client sends', () => {
  test('headers that never finish: 408 problem+json and the connection closed, never a hang', async () => {
    const client = open()
    await client.connected
    const started = performance.now()
    client.socket.write('GET /tasks/1 HTTP/1.1\r\nHost: gateway.test\r\nX-Slow: ')
    await until(() => client.state.closedAt > 0, 5000, 'the connection to close')
    expect(statusOf(client.state.data)).toBe(408)
    expect(client.state.data).toContain('application/problem+json')
    // REQUEST_HEADERS_TIMEOUT_MS is 1 s, checked every 0.5 s.
    expect(client.state.closedAt - started).toBeGreaterThanOrEqual(900)
    expect(client.state.closedAt - started).toBeLessThan(4000)
    expect(services.tasks.hits('/tasks/1')).toBe(0)
  })

  test('a body that never finishes: 408 and closed; the service never sees the request', async () => {
    const before = services.tasks.requests.length
    const client = open()
    await client.connected
    const started = performance.now()
    client.socket.write(
      'POST /tasks HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{',
    )
    await until(() => client.state.closedAt > 0, 6000, 'the connection to close')
    expect(statusOf(client.state.data)).toBe(408)
    expect(client.state.closedAt - started).toBeGreaterThanOrEqual(1900)
    expect(client.state.closedAt - started).toBeLessThan(5000)
    expect(services.tasks.requests.length).toBe(before)
  })

  test('150 slow bodies at once hold no upstream connection: other clients and /health are answered meanwhile', async () => {
    const crowd = Array.from({ length: 150 }, () => open())
    await Promise.all(crowd.map((client) => client.connected))
    for (const client of crowd) {
      client.socket.write(
        'PUT /tasks/7 HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{',
      )
    }
    await sleep(300)
    // With 4 upstream connections, any one of the 150 holding one would leave these waiting for its deadline.
    for (let i = 0; i < 5; i++) {
      const res = await call(`${gateway.url}/tasks/${i}`)
      expect(res.status).toBe(200)
      expect(res.ms).toBeLessThan(1000)
    }
    const health = await call(`${gateway.url}/health`)
    expect(health.status).toBe(200)
    expect(health.json.services['task-service']).toBe('healthy')
    expect(health.ms).toBeLessThan(1500)
    // Every slow client gets its 408 at the request deadline, and none reached the service.
    await until(
      () => crowd.every((client) => client.state.closedAt > 0),
      8000,
      'every slow client to be closed',
    )
    expect(crowd.every((client) => statusOf(client.state.data) === 408)).toBe(true)
    expect(services.tasks.hits('/tasks/7')).toBe(0)
  })

  test('/health answers within its bound while a service holds every request', async () => {
    services.projects.behave((req) => req.url !== '/health/ready')
    try {
      const hung = Array.from({ length: 10 }, () => call(`${gateway.url}/projects/1`).catch(() => undefined))
      await sleep(200)
      services.projects.behave(() => true)
      const health = await call(`${gateway.url}/health`)
      expect(health.status).toBe(200)
      expect(health.json.services['project-service']).toBe('unreachable')
      expect(health.json.services['task-service']).toBe('healthy')
      // HEALTH_TIMEOUT_MS is 1.5 s; generous room for a busy machine, far below the 10 s upstream timeout.
      expect(health.ms).toBeLessThan(3000)
      services.projects.behave(undefined)
      await Promise.all(hung)
    } finally {
      services.projects.behave(undefined)
    }
  }, 30_000)
})

describe('requests other HTTP clients send', () => {
  test('Expect: 100-continue: the gateway says continue, the body arrives whole, the service answers', async () => {
    const client = open()
    await client.connected
    const body = JSON.stringify({ title: 'x'.repeat(2000) })
    client.socket.write(
      `POST /tasks HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`,
    )
    await until(() => client.state.data.includes('100 Continue'), 3000, '100 Continue')
    client.socket.write(body)
    await until(() => client.state.closedAt > 0, 5000, 'the answer')
    const final = client.state.data.slice(client.state.data.indexOf('\r\n\r\n') + 4)
    expect(statusOf(final)).toBe(200)
    const seen = services.tasks.requests.at(-1)
    expect(seen?.bodyBytes).toBe(Buffer.byteLength(body))
    expect(seen?.headers.expect).toBeUndefined()
  })

  test('two Host headers: 400 problem+json, nothing proxied', async () => {
    const before = services.tasks.requests.length
    const client = open()
    await client.connected
    client.socket.write(
      'GET /tasks/1 HTTP/1.1\r\nHost: gateway.test\r\nHost: evil.example\r\nConnection: close\r\n\r\n',
    )
    await until(() => client.state.closedAt > 0, 5000, 'the answer')
    expect(statusOf(client.state.data)).toBe(400)
    expect(client.state.data).toContain('application/problem+json')
    expect(services.tasks.requests.length).toBe(before)
  })

  test('malformed HTTP: 400 problem+json', async () => {
    const client = open()
    await client.connected
    client.socket.write('GET /tasks/1 HTTP/1.1\r\nHost gateway.test\r\n\r\n')
    await until(() => client.state.closedAt > 0, 5000, 'the answer')
    expect(statusOf(client.state.data)).toBe(400)
    expect(client.state.data).toContain('application/problem+json')
  })
})
