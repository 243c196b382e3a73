import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { WEB_CSP } from '../src/web.js'
import { call, startGateway, type TestGateway } from './helpers.js'

// The gateway serving a built web app from WEB_ROOT: the files are written here, shaped like Vite's output.
const env = {
  AUTH_MODE: 'disabled',
  RATE_LIMIT_ENABLED: 'false',
  TASK_SERVICE_URL: 'http://127.0.0.1:9',
  USER_SERVICE_URL: 'http://127.0.0.1:9',
  PROJECT_SERVICE_URL: 'http://127.0.0.1:9',
}
const BROWSER_ACCEPT = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'

let root: string
let gateway: TestGateway

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gateway-web-'))
  await mkdir(join(root, 'assets'))
  await writeFile(
    join(root, 'index.html'),
    '<!doctype html><title>Task Manager</title><script type="module" src="/app/assets/index-Ab12Cd34.js"></script>',
  )
  await writeFile(join(root, 'assets', 'index-Ab12Cd34.js'), 'console.log("app")\n')
  await writeFile(join(root, 'favicon.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>')
  await writeFile(join(root, '.env'), 'SECRET=1')
  gateway = await startGateway({ ...env, WEB_ROOT: root })
})

afterAll(async () => {
  await gateway?.close()
  await rm(root, { recursive: true, force: true })
})

describe('the web app under /app/', () => {
  test('index.html is revalidated on every load and carries a strict CSP', async () => {
    const res = await call(`${gateway.url}/app/`)
    expect(res.status).toBe(200)
    expect(res.headers['content-type']).toMatch(/^text\/html/)
    expect(res.text).toContain('<title>Task Manager</title>')
    expect(res.headers['cache-control']).toBe('no-cache')
    expect(res.headers.etag).toBeTruthy()
    expect(res.headers['content-security-policy']).toBe(WEB_CSP)
    expect(WEB_CSP).toContain("script-src 'self'")
    expect(WEB_CSP).not.toMatch(/unsafe-inline|unsafe-eval|\*/)
    expect(res.headers['x-content-type-options']).toBe('nosniff')

    const again = await call(`${gateway.url}/app/`, {
      headers: { 'if-none-match': String(res.headers.etag) },
    })
    expect(again.status).toBe(304)
  })

  test('hashed assets are cached for a year as immutable', async () => {
    const res = await call(`${gateway.url}/app/assets/index-Ab12Cd34.js`)
    expect(res.status).toBe(200)
    expect(res.headers['content-type']).toMatch(/javascript/)
    expect(res.headers['cache-control']).toBe('public, max-age=31536000, immutable')
  })

  test('files outside assets/ are not immutable', async () => {
    const res = await call(`${gateway.url}/app/favicon.svg`)
    expect(res.status).toBe(200)
    expect(res.headers['cache-control']).toBe('no-cache')
  })

  test('/app without the slash is the app too', async () => {
    const res = await call(`${gateway.url}/app`)
    expect(res.status).toBe(200)
    expect(res.text).toContain('<title>Task Manager</title>')
  })

  test('a file added after start is not served', async () => {
    await writeFile(join(root, 'assets', 'late-Zz99.js'), 'late')
    expect((await call(`${gateway.url}/app/assets/late-Zz99.js`)).status).toBe(404)
  })

  test('unknown files, dotfiles and paths out of the root are 404 problems', async () => {
    for (const path of [
      '/app/assets/nope.js',
      '/app/.env',
      '/app/../package.json',
      '/app/%2e%2e/package.json',
    ]) {
      const res = await call(`${gateway.url}${path}`)
      expect(res.status, path).toBeGreaterThanOrEqual(400)
      expect(res.status, path).toBeLessThan(500)
      expect(res.text, path).not.toContain('SECRET')
    }
  })
})

describe('GET / keeps the original JSON for API clients', () => {
  test('a browser navigating to / is sent to /app/', async () => {
    const res = await call(`${gateway.url}/`, { headers: { accept: BROWSER_ACCEPT } })
    expect(res.status).toBe(302)
    expect(res.headers.location).toBe('/app/')
    expect(res.headers.vary).toMatch(/accept/i)
  })

  test.each([undefined, '*/*', 'application/json'])(
    'Accept %s gets the gateway information',
    async (accept) => {
      const res = await call(`${gateway.url}/`, { headers: accept ? { accept } : {} })
      expect(res.status).toBe(200)
      expect(res.json).toMatchObject({ service: expect.any(String), services: expect.any(Object) })
      expect(Object.keys(res.json).sort()).toEqual(['architecture', 'service', 'services', 'version'])
      expect(res.headers.vary).toMatch(/accept/i)
    },
  )
})

describe('without a build', () => {
  test('/app/ is a 404 and / stays JSON even for browsers', async () => {
    const bare = await startGateway({ ...env, WEB_ROOT: join(root, 'missing') })
    try {
      expect((await call(`${bare.url}/app/`)).status).toBe(404)
      const home = await call(`${bare.url}/`, { headers: { accept: BROWSER_ACCEPT } })
      expect(home.status).toBe(200)
      expect(home.json.services).toBeDefined()
    } finally {
      await bare.close()
    }
  })
})
