import { AuthConfigProperties, requireJwksUrl } from '@task-manager/auth'
import { EventsConfigProperties } from '@task-manager/events'
import {
  BaseConfigProperties,
  DatabaseConfigProperties,
  loadConfig,
  upstreamConfigProperties,
} from '@task-manager/service-kit'
import { type Static, Type } from 'typebox'

export const ProjectServiceConfig = Type.Object({
  ...BaseConfigProperties,
  ...DatabaseConfigProperties,
  ...AuthConfigProperties,
  ...EventsConfigProperties,
  PORT: Type.Integer({ minimum: 1, maximum: 65535, default: 8005 }),
  MAX_MEMBERS_PER_PROJECT: Type.Integer({
    minimum: 1,
    default: 1000,
    description: 'Bounds what one project (and its unpaginated member list) can grow to',
  }),
  USER_SERVICE_URL: Type.String({
    pattern: '^https?://',
    default: 'http://127.0.0.1:8004',
    description: 'Base URL of the user-service, asked whether a new member exists',
  }),
  ...upstreamConfigProperties('USER_SERVICE', {
    timeoutMs: 2000,
    resetTimeoutMs: 10_000,
    errorThresholdPercentage: 50,
    volumeThreshold: 5,
  }),
})
export type ProjectServiceConfig = Static<typeof ProjectServiceConfig>

export const loadProjectServiceConfig = (env?: Record<string, string | undefined>) =>
  loadConfig(ProjectServiceConfig, env, requireJwksUrl)
