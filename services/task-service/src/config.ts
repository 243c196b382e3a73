import { AuthConfigProperties, requireJwksUrl } from '@task-manager/auth'
import { EventsConfigProperties } from '@task-manager/events'
import {
  BaseConfigProperties,
  ConfigError,
  DatabaseConfigProperties,
  loadConfig,
  upstreamConfigProperties,
} from '@task-manager/service-kit'
import { type Static, Type } from 'typebox'

export const TaskServiceConfig = Type.Object({
  ...BaseConfigProperties,
  ...DatabaseConfigProperties,
  ...AuthConfigProperties,
  ...EventsConfigProperties,
  PORT: Type.Integer({ minimum: 1, maximum: 65535, default: 8003 }),
  PROJECT_SERVICE_URL: Type.Optional(
    Type.String({
      pattern: '^https?://',
      description: 'Base URL of the project-service; required with AUTH_MODE=required',
    }),
  ),
  ...upstreamConfigProperties('PROJECT_SERVICE', {
    timeoutMs: 2000,
    resetTimeoutMs: 5000,
    errorThresholdPercentage: 50,
    volumeThreshold: 10,
  }),
  MEMBERSHIP_CACHE_TTL_MS: Type.Integer({
    minimum: 0,
    default: 2000,
    description:
      'How long a confirmed project membership is reused (a removed member keeps access this long); 0 = ask every time',
  }),
  // A guard per replica for calls that do not come through the gateway, whose limits (reads 100, writes 30,
  // creates 20 a minute per client) are the API's contract: ten times those, so they never bite first.
  RATE_LIMIT_ENABLED: Type.Boolean({ default: true }),
  RATE_LIMIT_READS_PER_MINUTE: Type.Integer({ minimum: 1, default: 1000 }),
  RATE_LIMIT_WRITES_PER_MINUTE: Type.Integer({ minimum: 1, default: 300 }),
  RATE_LIMIT_CREATES_PER_MINUTE: Type.Integer({ minimum: 1, default: 200 }),
  IDEMPOTENCY_KEY_TTL_HOURS: Type.Integer({ minimum: 1, default: 24 }),
  LIST_STATEMENT_TIMEOUT_MS: Type.Integer({
    minimum: 50,
    default: 2000,
    description: 'Server-side limit for one GET /tasks query; past it the request answers 503',
  }),
  LIST_DATABASE_POOL_MAX: Type.Integer({
    minimum: 0,
    default: 0,
    description:
      'connections of the pool GET /tasks queries run on (each carries LIST_STATEMENT_TIMEOUT_MS); 0 = DATABASE_POOL_MAX',
  }),
  SEARCH_CONCURRENCY: Type.Integer({
    minimum: 0,
    default: 0,
    description:
      'GET /tasks?q= queries run at once; 0 = half of the list pool, so searches never hold all of it',
  }),
  SEARCH_QUEUE_MAX: Type.Integer({
    minimum: 0,
    default: 20,
    description: 'searches waiting for a turn; past this, 503 + Retry-After at once',
  }),
})
export type TaskServiceConfig = Static<typeof TaskServiceConfig>

/** Task access follows project membership: with authentication on, the project-service must be known. */
function requireProjectServiceUrl(config: TaskServiceConfig): void {
  if (config.AUTH_MODE === 'required' && !config.PROJECT_SERVICE_URL) {
    throw new ConfigError(
      'PROJECT_SERVICE_URL is required when AUTH_MODE=required (task access follows project membership)',
    )
  }
}

export const loadTaskServiceConfig = (env?: Record<string, string | undefined>) =>
  loadConfig(TaskServiceConfig, env, requireProjectServiceUrl, requireJwksUrl)
