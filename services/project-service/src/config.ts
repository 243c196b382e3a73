import { AuthConfigProperties } from '@task-manager/auth'
import { EventsConfigProperties } from '@task-manager/events'
import { BaseConfigProperties, DatabaseConfigProperties, loadConfig } from '@task-manager/service-kit'
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
  USER_SERVICE_TIMEOUT_MS: Type.Integer({
    minimum: 1,
    default: 2000,
    description: 'Timeout of one user-service call',
  }),
  USER_SERVICE_BREAKER_RESET_MS: Type.Integer({
    minimum: 1,
    default: 10_000,
    description: 'How long the circuit breaker stays open before one trial call',
  }),
  USER_SERVICE_BREAKER_ERROR_PERCENT: Type.Integer({
    minimum: 1,
    maximum: 100,
    default: 50,
    description: 'The breaker opens when more than this share of calls in the last 10 s failed…',
  }),
  USER_SERVICE_BREAKER_MIN_CALLS: Type.Integer({
    minimum: 1,
    default: 5,
    description: '…and at least this many calls were made in them',
  }),
})
export type ProjectServiceConfig = Static<typeof ProjectServiceConfig>

export const loadProjectServiceConfig = (env?: Record<string, string | undefined>) =>
  loadConfig(ProjectServiceConfig, env)
