import { authPlugin, type Verifier } from '@task-manager/auth'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

/** Proxied routes anyone may call: registration, login and the public keys. */
const PUBLIC_ROUTES = new Set([
  'POST /users',
  'POST /auth/token',
  'GET /.well-known/jwks.json',
  'HEAD /.well-known/jwks.json',
])

export function isPublicRoute(method: string, url: string): boolean {
  const query = url.indexOf('?')
  let path = query === -1 ? url : url.slice(0, query)
  if (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1)
  return PUBLIC_ROUTES.has(`${method} ${path}`)
}

export interface EdgeAuthOptions {
  mode: 'required' | 'disabled'
  /** null when mode is `disabled`: then no token is looked at. */
  verifier: Verifier | null
}

/**
 * Token verification at the edge: a request to a protected upstream route without a valid access token gets
 * 401 here, before any service is called. The gateway's own routes (`/`, `/health*`, `/metrics`,
 * `/openapi.json`) and the public upstream routes need none. The Authorization header still goes upstream:
 * services verify tokens themselves too (defence in depth; the gateway is not a trust boundary for them).
 * Runs in onRequest, so the rate limiter after it can key by the verified subject.
 */
export const edgeAuthPlugin = fp<EdgeAuthOptions>(
  async (app: FastifyInstance, { mode, verifier }) => {
    await app.register(authPlugin, { mode, verifier })
    if (mode === 'disabled') return
    app.addHook('onRequest', (request, reply, done) => {
      // Callback-style with a synchronous fast path: a verified caller costs no promise here.
      if (request.principal || request.routeOptions.config?.upstream === undefined) return done()
      if (request.method === 'OPTIONS' || isPublicRoute(request.method, request.url)) return done()
      app.authenticate(request, reply).then(() => {
        if (!reply.sent) done()
      }, done)
    })
  },
  { name: 'gateway-edge-auth', fastify: '5.x' },
)
