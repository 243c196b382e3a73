import { propagationHeaders } from '@task-manager/service-kit'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import type { Upstream } from './upstream.js'

export type ServiceHealth = 'healthy' | 'unhealthy' | 'unreachable'

/** Asks one upstream's readiness probe; never takes longer than `timeoutMs`. */
function check(upstream: Upstream, request: FastifyRequest, timeoutMs: number): Promise<ServiceHealth> {
  return new Promise((resolve) => {
    const signal = AbortSignal.timeout(timeoutMs)
    upstream.request(
      {
        path: '/health/ready',
        method: 'GET',
        headers: { ...propagationHeaders(request), host: upstream.url.host },
        signal,
      },
      (err, data) => {
        if (err || !data) return resolve('unreachable')
        data.body.resume()
        resolve(data.statusCode === 200 ? 'healthy' : 'unhealthy')
      },
    )
  })
}

export interface HealthRoutesOptions {
  version: string
  upstreams: { tasks: Upstream; users: Upstream; projects: Upstream }
  timeoutMs: number
}

/** `GET /` and `GET /health` in the original gateway's shapes. */
export async function healthRoutes(
  app: FastifyInstance,
  { version, upstreams, timeoutMs }: HealthRoutesOptions,
) {
  const ServiceState = Type.Union([
    Type.Literal('healthy'),
    Type.Literal('unhealthy'),
    Type.Literal('unreachable'),
  ])

  app.get(
    '/',
    {
      schema: {
        summary: 'Gateway information',
        response: {
          200: Type.Object({
            service: Type.String(),
            version: Type.String(),
            architecture: Type.String(),
            services: Type.Object({ tasks: Type.String(), users: Type.String(), projects: Type.String() }),
          }),
        },
      },
    },
    async () => ({
      service: 'api-gateway',
      version,
      architecture: 'microservices',
      services: {
        tasks: upstreams.tasks.url.origin,
        users: upstreams.users.url.origin,
        projects: upstreams.projects.url.origin,
      },
    }),
  )

  app.get(
    '/health',
    {
      schema: {
        summary: 'Health of the gateway and of every service, checked in parallel',
        response: {
          200: Type.Object({
            gateway: Type.Literal('healthy'),
            services: Type.Record(Type.String(), ServiceState),
          }),
        },
      },
    },
    async (request) => {
      const list = [upstreams.tasks, upstreams.users, upstreams.projects]
      const states = await Promise.all(list.map((upstream) => check(upstream, request, timeoutMs)))
      const services: Record<string, ServiceHealth> = {}
      list.forEach((upstream, i) => {
        services[upstream.name] = states[i] as ServiceHealth
      })
      return { gateway: 'healthy' as const, services }
    },
  )
}
