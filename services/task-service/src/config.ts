import { BaseConfigProperties, DatabaseConfigProperties, loadConfig } from '@task-manager/service-kit'
import { type Static, Type } from 'typebox'

export const TaskServiceConfig = Type.Object({
  ...BaseConfigProperties,
  ...DatabaseConfigProperties,
  PORT: Type.Integer({ minimum: 1, maximum: 65535, default: 8003 }),
  RATE_LIMIT_ENABLED: Type.Boolean({ default: true }),
  RATE_LIMIT_READS_PER_MINUTE: Type.Integer({ minimum: 1, default: 100 }),
  RATE_LIMIT_WRITES_PER_MINUTE: Type.Integer({ minimum: 1, default: 30 }),
  RATE_LIMIT_CREATES_PER_MINUTE: Type.Integer({ minimum: 1, default: 20 }),
  IDEMPOTENCY_KEY_TTL_HOURS: Type.Integer({ minimum: 1, default: 24 }),
})
export type TaskServiceConfig = Static<typeof TaskServiceConfig>

export const loadTaskServiceConfig = (env?: Record<string, string | undefined>) => loadConfig(TaskServiceConfig, env)
