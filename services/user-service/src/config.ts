import { AuthConfigProperties } from '@task-manager/auth'
import { EventsConfigProperties } from '@task-manager/events'
import {
  BaseConfigProperties,
  ConfigError,
  DatabaseConfigProperties,
  loadConfig,
} from '@task-manager/service-kit'
import { type Static, Type } from 'typebox'

export const UserServiceConfig = Type.Object({
  ...BaseConfigProperties,
  ...DatabaseConfigProperties,
  ...EventsConfigProperties,
  JWT_ISSUER: AuthConfigProperties.JWT_ISSUER,
  JWT_AUDIENCE: AuthConfigProperties.JWT_AUDIENCE,
  PORT: Type.Integer({ minimum: 1, maximum: 65535, default: 8004 }),
  JWT_PRIVATE_KEYS: Type.Optional(
    Type.String({
      description:
        'JSON array of private Ed25519 JWKs, each with a kid: the first signs, all are published. Unset: a key is generated at start (development only)',
    }),
  ),
  ACCESS_TOKEN_TTL_SECONDS: Type.Integer({ minimum: 60, maximum: 3600, default: 900 }),
  ADMIN_EMAIL: Type.Optional(
    Type.String({ minLength: 3, description: 'The first admin: created or promoted at start' }),
  ),
  ADMIN_PASSWORD: Type.Optional(
    Type.String({ minLength: 12, description: 'Password of ADMIN_EMAIL when it is created' }),
  ),
  PASSWORD_SCRYPT_LOG_N: Type.Integer({
    minimum: 10,
    maximum: 20,
    default: 15,
    description: 'scrypt cost: N = 2^this (memory = 128·N·r bytes; 15 → 32 MiB)',
  }),
  PASSWORD_SCRYPT_PARALLELISM: Type.Integer({ minimum: 1, maximum: 16, default: 3 }),
  PASSWORD_HASH_CONCURRENCY: Type.Integer({
    minimum: 0,
    maximum: 64,
    default: 0,
    description:
      'scrypt runs at once; 0 = the CPUs, at most UV_THREADPOOL_SIZE - 1 (one worker thread stays free for DNS and the database)',
  }),
  PASSWORD_HASH_QUEUE_MAX: Type.Integer({
    minimum: 0,
    default: 0,
    description:
      'scrypt runs waiting for a turn; past this, logins and registrations get 503 + Retry-After at once; 0 = 4 × PASSWORD_HASH_CONCURRENCY',
  }),
  LOGIN_RATE_LIMIT_PER_CLIENT: Type.Integer({
    minimum: 1,
    default: 20,
    description: 'Login attempts one client (IP) may make per LOGIN_RATE_LIMIT_WINDOW_SECONDS',
  }),
  LOGIN_FAILURES_PER_EMAIL: Type.Integer({
    minimum: 1,
    default: 5,
    description:
      'Failed logins for one email per LOGIN_RATE_LIMIT_WINDOW_SECONDS before it is locked for the rest of the window',
  }),
  LOGIN_RATE_LIMIT_WINDOW_SECONDS: Type.Integer({ minimum: 1, default: 900 }),
  REDIS_URL: Type.String({
    default: '',
    description:
      'redis:// URL; when set, login and registration limits are counted across all replicas (unset: per pod)',
  }),
  REGISTRATION_RATE_LIMIT_PER_CLIENT: Type.Integer({
    minimum: 1,
    default: 10,
    description: 'Registrations one client (IP) may make per hour',
  }),
})
export type UserServiceConfig = Static<typeof UserServiceConfig>

/** The first admin is an email and its password: one without the other is a mistake. */
function requireAdminPair(config: UserServiceConfig): void {
  if ((config.ADMIN_EMAIL === undefined) !== (config.ADMIN_PASSWORD === undefined)) {
    throw new ConfigError('Invalid configuration: set both ADMIN_EMAIL and ADMIN_PASSWORD, or neither')
  }
}

export const loadUserServiceConfig = (env?: Record<string, string | undefined>) =>
  loadConfig(UserServiceConfig, env, requireAdminPair)
