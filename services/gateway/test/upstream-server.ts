import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'

/** What the upstream saw of one request. */
export interface SeenRequest {
  method: string
  url: string
  headers: IncomingMessage['headers']
  rawHeaders: string[]
  bodyBytes: number
}

export type Behaviour = (req: IncomingMessage, res: ServerResponse, seen: SeenRequest) => boolean | undefined

export interface TestUpstream {
  name: string
  host: string
  port: number
  url: string
  requests: SeenRequest[]
  /** Hits per path, every attempt counted (retries included). */
  hits(path: string): number
  /** Replace the behaviour; return true from it when it handled the request. */
  behave(behaviour: Behaviour | undefined): void
  /** Stops listening and destroys every connection (like a crashed process). */
  close(): Promise<void>
}

/**
 * A real HTTP server on 127.0.0.x standing in for a service. By default it answers every request with what it
 * saw, as JSON. Built-in paths:
 * - `…/stall`: never answers;
 * - `…/reset-once/<id>`: the first attempt per id has its socket destroyed after the request was read
 *   (a connection reset mid-request), later attempts are answered;
 * - `/health/ready`: 200 `{status: ready}` (the state can be set with `ready`).
 */
export async function startUpstream(
  name: string,
  { host = '127.0.0.1', port = 0 }: { host?: string; port?: number } = {},
): Promise<TestUpstream & { ready: number }> {
  const requests: SeenRequest[] = []
  const counts = new Map<string, number>()
  const sockets = new Set<Socket>()
  let behaviour: Behaviour | undefined
  const state = { ready: 200 }

  const server: Server = createServer((req, res) => {
    let bodyBytes = 0
    req.on('data', (chunk: Buffer) => {
      bodyBytes += chunk.length
    })
    req.on('end', () => {
      const url = req.url ?? '/'
      const path = url.split('?')[0] ?? url
      const seen: SeenRequest = {
        method: req.method ?? '',
        url,
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        bodyBytes,
      }
      requests.push(seen)
      counts.set(path, (counts.get(path) ?? 0) + 1)
      if (behaviour?.(req, res, seen)) return
      if (path.endsWith('/stall')) return
      if (path.includes('/reset-once/') && counts.get(path) === 1) {
        req.socket.destroy()
        return
      }
      if (path === '/health/ready') {
        res.writeHead(state.ready, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ status: state.ready === 200 ? 'ready' : 'not_ready' }))
        return
      }
      const body = JSON.stringify({
        service: name,
        host,
        method: seen.method,
        url,
        headers: req.headers,
        bodyBytes,
      })
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        // Hop-by-hop fields an upstream may send; the gateway must not forward them.
        'keep-alive': 'timeout=5',
        'x-upstream-private': 'secret',
        connection: 'keep-alive, x-upstream-private',
      })
      res.end(body)
    })
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => resolve())
  })
  const address = server.address()
  const actualPort = typeof address === 'object' && address ? address.port : port

  return {
    name,
    host,
    port: actualPort,
    url: `http://${host}:${actualPort}`,
    requests,
    get ready() {
      return state.ready
    },
    set ready(status: number) {
      state.ready = status
    },
    hits: (path) => counts.get(path) ?? 0,
    behave: (next) => {
      behaviour = next
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
}

export type TestServices = Awaited<ReturnType<typeof startServices>>

/**
 * The three services behind the gateway as test upstreams on 127.0.0.1; `env` gives a gateway their URLs. With `jwks`
 * the user-service one publishes it at /.well-known/jwks.json as the real one does (`jwksFetches` counts the fetches).
 */
export async function startServices(jwks?: object) {
  const tasks = await startUpstream('task-service')
  const users = await startUpstream('user-service')
  const projects = await startUpstream('project-service')
  let jwksFetches = 0
  if (jwks) {
    users.behave((req, res) => {
      if (req.url !== '/.well-known/jwks.json') return false
      jwksFetches += 1
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify(jwks))
      return true
    })
  }
  return {
    tasks,
    users,
    projects,
    env: { TASK_SERVICE_URL: tasks.url, USER_SERVICE_URL: users.url, PROJECT_SERVICE_URL: projects.url },
    jwksFetches: () => jwksFetches,
    close: async () => {
      await Promise.all([tasks.close(), users.close(), projects.close()])
    },
  }
}
