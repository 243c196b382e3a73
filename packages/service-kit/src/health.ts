import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

type Check = () => Promise<unknown>

export class Readiness {
  shuttingDown = false
  readonly checks = new Map<string, Check>()

  addCheck(name: string, check: Check): void {
    this.checks.set(name, check)
  }

  /** Runs every check at once, each bounded by `timeoutMs`. */
  async evaluate(timeoutMs = 1000): Promise<{ ready: boolean; checks: Record<string, string> }> {
    const names = [...this.checks.keys()]
    const outcomes = await Promise.allSettled(
      [...this.checks.values()].map((check) =>
        Promise.race([
          check(),
          new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), timeoutMs).unref()),
        ]),
      ),
    )
    const checks: Record<string, string> = {}
    outcomes.forEach((outcome, i) => {
      checks[names[i] as string] = outcome.status === 'fulfilled' ? 'ok' : 'down'
    })
    const ready = !this.shuttingDown && outcomes.every((outcome) => outcome.status === 'fulfilled')
    return { ready, checks }
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    readiness: Readiness
  }
  interface FastifyContextConfig {
    /** Probe and scrape routes: logged at debug, not counted against rate limits. */
    probe?: boolean
  }
}

export interface HealthOptions {
  service: string
  /** Register the `/health` summary route (default true); a service with its own `/health` shape turns it off. */
  healthRoute?: boolean
}

/**
 * Kubernetes probes plus the original sample's `/health`:
 * - `/health/live`: the process answers; never depends on anything else.
 * - `/health/ready`: every registered check passes and we are not shutting down; 503 otherwise.
 * - `/health`: `{status: healthy|unhealthy, service}` with the readiness verdict.
 */
export const healthPlugin = fp<HealthOptions>(
  async (app: FastifyInstance, { service, healthRoute = true }) => {
    app.decorate('readiness', new Readiness())
    const hide = { hide: true }
    const config = { probe: true }

    app.get('/health/live', { schema: hide, config }, async () => ({ status: 'ok' }))

    app.get('/health/ready', { schema: hide, config }, async (_request, reply) => {
      const { ready, checks } = await app.readiness.evaluate()
      const status = app.readiness.shuttingDown ? 'shutting_down' : ready ? 'ready' : 'not_ready'
      return reply.code(ready ? 200 : 503).send({ status, checks })
    })

    if (!healthRoute) return
    app.get('/health', { schema: hide, config }, async (_request, reply) => {
      const { ready, checks } = await app.readiness.evaluate()
      return reply.code(ready ? 200 : 503).send({ status: ready ? 'healthy' : 'unhealthy', service, checks })
    })
  },
  { name: 'task-manager-health', fastify: '5.x' },
)
