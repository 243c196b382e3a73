import { propagationHeaders } from '@task-manager/service-kit'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import type { ServiceBackend } from './backend.js'

export type ServiceHealth = 'healthy' | 'unhealthy' | 'unreachable'

/** One service's readiness, bounded by `timeoutMs` whatever the service (or the connection to it) does. */
function check(backend: ServiceBackend, request: FastifyRequest, timeoutMs: number): Promise<ServiceHealth> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<ServiceHealth>((resolve) => {
    timer = setTimeout(() => resolve('unreachable'), timeoutMs)
  })
  return Promise.race([backend.ready(propagationHeaders(request), timeoutMs), late]).finally(() =>
    clearTimeout(timer),
  )
}

export interface HealthRoutesOptions {
  version: string
  upstreams: { tasks: ServiceBackend; users: ServiceBackend; projects: ServiceBackend }
  timeoutMs: number
}

/** `GET /` and `GET /health` in the original gateway's shapes; `/health` answers within `timeoutMs`. */
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
      // Where each service is reached through this gateway (its addresses inside the cluster are not published).
      services: { tasks: '/tasks', users: '/users', projects: '/projects' },
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
