import { defineConfig } from 'vite'

// Built to static files in dist/ (index.html + content-hashed assets/), served by the gateway under /app/.
// `pnpm --filter @task-manager/web dev` serves it with hot reload and forwards the API to a running gateway.
const gateway = process.env.GATEWAY_URL ?? 'http://127.0.0.1:8006'
const api = ['/users', '/auth', '/projects', '/tasks', '/memberships']

export default defineConfig({
  base: '/app/',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // Everything is a file with a hash in its name (no inline data: scripts), so the CSP can be strict.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: true,
  },
  server: { proxy: Object.fromEntries(api.map((path) => [path, gateway])) },
})
