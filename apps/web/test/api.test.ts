import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { Api, ApiError, nextCursor } from '../src/api.js'
import { describe as describeError } from '../src/messages.js'

// The app's HTTP client against a real HTTP server on 127.0.0.1 answering as the gateway does: what each
// refusal becomes, and the sentence a person reads for it.

type Handler = (request: IncomingMessage, response: ServerResponse) => void
const routes = new Map<string, Handler>()
let server: Server
let base: string
const seen: IncomingMessage[] = []

const problem =
  (status: number, body: object, headers: Record<string, string> = {}): Handler =>
  (_, res) => {
    res.writeHead(status, { 'content-type': 'application/problem+json', ...headers })
    res.end(JSON.stringify({ status, ...body }))
  }

beforeAll(async () => {
  server = createServer((request, response) => {
    seen.push(request)
    const handler = routes.get(`${request.method} ${request.url?.split('?')[0]}`)
    if (handler) return handler(request, response)
    problem(404, { title: 'Not Found', detail: `Route ${request.method}:${request.url} not found` })(
      request,
      response,
    )
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

  routes.set('GET /tasks', (_, res) => {
    res.writeHead(200, {
      'content-type': 'application/json',
      link: '</tasks?project_id=3&limit=10&cursor=eyJrIjoxfQ>; rel="next"',
    })
    res.end('[]')
  })
  routes.set('GET /tasks/7', (_, res) => {
    res.writeHead(200, { 'content-type': 'application/json', etag: '"7.3"' })
    res.end(JSON.stringify({ id: 7, version: 3 }))
  })
  routes.set(
    'POST /tasks',
    problem(422, {
      detail: "Invalid body field 'title': must NOT have fewer than 1 characters",
      errors: [
        { in: 'body', field: 'title', message: 'must NOT have fewer than 1 characters' },
        { in: 'body', field: 'tags.3', message: 'must NOT have more than 50 characters' },
        { in: 'body', field: 'tags.4', message: 'a second message for the same field' },
      ],
    }),
  )
  routes.set(
    'PATCH /tasks/7/status',
    problem(403, { detail: 'Role viewer may not change tasks in project 3' }),
  )
  routes.set('PUT /tasks/7', problem(412, { detail: 'Task 7 was changed since "7.3"' }))
  routes.set('GET /projects', problem(429, { detail: 'Rate limit exceeded' }, { 'retry-after': '7' }))
  routes.set(
    'GET /users/me',
    problem(
      503,
      { detail: 'user-service is unavailable' },
      {
        'retry-after': new Date(Date.now() + 30_000).toUTCString(),
      },
    ),
  )
  routes.set('GET /slow', () => {
    // never answers: the client's deadline must end the call
  })
  routes.set('POST /auth/logout', problem(401, { detail: 'Invalid token' }))
})

afterAll(async () => {
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
})

async function refusal(call: Promise<unknown>): Promise<ApiError> {
  const error = await call.then(
    () => null,
    (caught: unknown) => caught,
  )
  expect(error).toBeInstanceOf(ApiError)
  return error as ApiError
}

describe('the app’s API client', () => {
  test('sends the token as a Bearer header (never in the URL) and If-Match when given', async () => {
    const api = new Api(base)
    api.setToken('the-token')
    seen.length = 0
    await api.call('GET', '/tasks', { query: { project_id: 3, status: undefined, q: '' }, ifMatch: '"7.3"' })
    const request = seen[0]
    expect(request?.headers.authorization).toBe('Bearer the-token')
    expect(request?.headers['if-match']).toBe('"7.3"')
    expect(request?.url).toBe('/tasks?project_id=3')
  })

  test('reads the ETag and the keyset cursor of the Link header', async () => {
    const api = new Api(base)
    expect((await api.call('GET', '/tasks/7')).etag).toBe('"7.3"')
    expect((await api.call('GET', '/tasks')).next).toBe('eyJrIjoxfQ')
    expect(nextCursor('</tasks?cursor=a>; rel="prev", </tasks?cursor=b%3D>; rel="next"')).toBe('b=')
    expect(nextCursor(null)).toBeNull()
  })

  test('a 422 gives one message per field, by its top-level name', async () => {
    const error = await refusal(new Api(base).call('POST', '/tasks', { body: { title: '' } }))
    expect(error.status).toBe(422)
    expect(error.fieldErrors).toEqual({
      title: 'must NOT have fewer than 1 characters',
      tags: 'must NOT have more than 50 characters',
    })
    expect(describeError(error)).toMatch(/^Please correct the highlighted fields/)
  })

  test('403, 404 and 412 keep the service’s detail where it helps', async () => {
    const api = new Api(base)
    expect(describeError(await refusal(api.call('PATCH', '/tasks/7/status', { body: {} })))).toBe(
      "You don't have permission to do that: Role viewer may not change tasks in project 3",
    )
    expect(describeError(await refusal(api.call('GET', '/nowhere')))).toMatch(
      /^Not found: Route GET:\/nowhere not found .*no longer a member/,
    )
    expect(describeError(await refusal(api.call('PUT', '/tasks/7', { body: {} })))).toBe(
      'Someone else changed this since you opened it.',
    )
  })

  test('429 and 503 say when to try again, from Retry-After in seconds or as a date', async () => {
    const api = new Api(base)
    const limited = await refusal(api.call('GET', '/projects'))
    expect(limited.retryAfter).toBe(7)
    expect(describeError(limited)).toBe('Too many requests. Try again in 7 s.')
    const down = await refusal(api.call('GET', '/users/me'))
    expect(down.retryAfter).toBeGreaterThanOrEqual(28)
    expect(down.retryAfter).toBeLessThanOrEqual(31)
    expect(describeError(down)).toMatch(/^The service is unavailable right now\. Try again in \d+ s\.$/)
  })

  test('a 401 on a signed-in call ends the session; without a token it does not', async () => {
    const api = new Api(base)
    const ended: ApiError[] = []
    api.onUnauthorized = (error) => ended.push(error)
    await refusal(api.call('POST', '/auth/logout'))
    expect(ended).toHaveLength(0)
    api.setToken('expired')
    const error = await refusal(api.call('POST', '/auth/logout'))
    expect(ended).toEqual([error])
    expect(describeError(error)).toBe('Your session has ended. Please sign in again.')
  })

  test('every call has a deadline; an unreachable server is its own message', async () => {
    const slow = await refusal(new Api(base).call('GET', '/slow', { timeoutMs: 300 }))
    expect(slow.status).toBe(0)
    expect(describeError(slow, 'Loading')).toBe('Loading failed: The server did not answer within 0.3 s.')

    const closed = await refusal(new Api('http://127.0.0.1:9').call('GET', '/tasks'))
    expect(closed.status).toBe(0)
    expect(describeError(closed, 'Loading')).toMatch(/could not be reached/)
  })
})
