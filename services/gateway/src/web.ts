import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import fastifyStatic from '@fastify/static'
import type { FastifyInstance, FastifyReply } from 'fastify'
import fp from 'fastify-plugin'

/** Where the browser app lives: `/app/`. */
export const WEB_PREFIX = '/app/'

/**
 * Where the app is looked for when WEB_ROOT is empty, found from this file in src/ (tsx) and dist/ alike:
 * `web/` beside the gateway's dist/ (the production install and the image: scripts/k8s/prod-install.sh),
 * else the workspace's build of `apps/web`.
 */
export const DEFAULT_WEB_ROOTS = [
  fileURLToPath(new URL('../web/', import.meta.url)),
  fileURLToPath(new URL('../../../apps/web/dist/', import.meta.url)),
]

/**
 * The app's Content-Security-Policy: scripts, styles, images and API calls from this origin only; no
 * inline script or style, no eval, no plugins, no framing, no <base> rewriting, forms post here only.
 */
export const WEB_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "font-src 'self'",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "object-src 'none'",
].join('; ')

/** A year, the most RFC 9111 caches honour: Vite names every built asset after a hash of its content. */
const IMMUTABLE = 'public, max-age=31536000, immutable'

export interface WebOptions {
  /** Directory of the built app (index.html + assets/); empty = the first of DEFAULT_WEB_ROOTS that has one. */
  root: string
}

function securityHeaders(reply: FastifyReply) {
  reply.header('content-security-policy', WEB_CSP)
  reply.header('x-content-type-options', 'nosniff')
  reply.header('referrer-policy', 'no-referrer')
  reply.header('cross-origin-opener-policy', 'same-origin')
  reply.header('cross-origin-resource-policy', 'same-origin')
  reply.header('permissions-policy', 'camera=(), microphone=(), geolocation=()')
}

/**
 * The web app (apps/web, built to static files) served under /app/ with @fastify/static: hashed assets
 * cached for a year as immutable, everything else (index.html) revalidated on every load (`no-cache` with
 * its ETag), and a strict CSP on every answer. A browser navigating to `/` (it asks for `text/html`) is
 * redirected to /app/; API clients asking `GET /` keep the original JSON (they ask for JSON or `*\/*`).
 * Without a build (`pnpm build` not run) nothing is registered and /app/ answers 404, with a warning.
 */
async function web(app: FastifyInstance, options: WebOptions) {
  const candidates = options.root ? [options.root] : DEFAULT_WEB_ROOTS
  const root = resolve(
    candidates.find((dir) => existsSync(join(dir, 'index.html'))) ?? (candidates[0] as string),
  )
  if (!existsSync(join(root, 'index.html'))) {
    app.log.warn({ root }, `web app not built (no index.html in ${root}): ${WEB_PREFIX} answers 404`)
    return
  }

  app.addHook('onRequest', (request, reply, done) => {
    if (request.url !== '/' || (request.method !== 'GET' && request.method !== 'HEAD')) return done()
    // `/` answers JSON or a redirect depending on Accept: shared caches must keep them apart.
    reply.header('vary', 'accept')
    if (!(request.headers.accept ?? '').includes('text/html')) return done()
    reply.redirect(WEB_PREFIX, 302)
  })

  await app.register(
    async (scope) => {
      await scope.register(fastifyStatic, {
        root,
        prefix: WEB_PREFIX,
        // One route per file the build wrote, listed at start (a deploy never adds files to a running pod):
        // nothing else under the root can be reached, and no path is resolved against the disk per request.
        wildcard: false,
        index: 'index.html',
        // No dotfiles, no directory listings.
        dotfiles: 'deny',
        list: false,
        decorateReply: false,
        cacheControl: false,
        setHeaders: (reply, path) => {
          securityHeaders(reply)
          const asset = path.startsWith(join(root, 'assets'))
          reply.header('cache-control', asset ? IMMUTABLE : 'no-cache')
        },
      })
    },
    { name: 'web-static' },
  )
}

export const webApp = fp(web, { name: 'web', fastify: '5.x' })
