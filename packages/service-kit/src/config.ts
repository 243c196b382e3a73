import { envSchema } from 'env-schema'
import { type Static, type TObject, type TProperties, Type } from 'typebox'
import type { AjvError } from './errors.js'

/**
 * Settings every service shares. A service extends this with its own properties; the merged schema is
 * validated once at start and nothing else reads `process.env`.
 */
export const BaseConfigProperties = {
  HOST: Type.String({ default: '0.0.0.0', description: 'Interface to listen on' }),
  PORT: Type.Integer({ minimum: 1, maximum: 65535, description: 'HTTP port' }),
  LOG_LEVEL: Type.Union(
    [
      Type.Literal('fatal'),
      Type.Literal('error'),
      Type.Literal('warn'),
      Type.Literal('info'),
      Type.Literal('debug'),
      Type.Literal('trace'),
      Type.Literal('silent'),
    ],
    { default: 'info' },
  ),
  AUTH_MODE: Type.Union([Type.Literal('required'), Type.Literal('disabled')], {
    default: 'required',
    description: '`disabled` restores the original open API; never the default',
  }),
  TRUST_PROXY: Type.String({
    default: 'loopback',
    description:
      'Proxies whose X-Forwarded-For is believed (comma-separated IPs/CIDRs or loopback, linklocal, uniquelocal); "false" trusts none',
  }),
  REQUEST_HEADERS_TIMEOUT_MS: Type.Integer({
    minimum: 100,
    default: 10_000,
    description: 'A request’s headers must arrive within this, else 408 and the connection closes',
  }),
  REQUEST_TIMEOUT_MS: Type.Integer({
    minimum: 100,
    default: 30_000,
    description:
      'A whole request, body included, must arrive within this, else 408 and the connection closes',
  }),
  METRICS_PORT: Type.Integer({
    minimum: 0,
    maximum: 65535,
    default: 0,
    description:
      'Port of its own for /metrics (on HOST), so scrapes never share the service port an ingress exposes; ' +
      '0 = /metrics on the service port (local runs)',
  }),
  SHUTDOWN_DELAY_MS: Type.Integer({
    minimum: 0,
    default: 0,
    description:
      'Time between readiness turning 503 and the server closing, so load balancers stop routing here',
  }),
  SHUTDOWN_GRACE_MS: Type.Integer({
    minimum: 100,
    default: 20_000,
    description: 'Hard limit for a graceful shutdown; the process exits with code 1 past it',
  }),
  MAX_EVENT_LOOP_DELAY_MS: Type.Integer({
    minimum: 0,
    default: 1000,
    description: 'Load shedding: answer 503 + Retry-After while the event loop lags more than this (0 = off)',
  }),
}

export const DatabaseConfigProperties = {
  DATABASE_URL: Type.String({ minLength: 1, description: 'postgres:// URL of this service’s own database' }),
  DATABASE_POOL_MAX: Type.Integer({ minimum: 1, default: 10 }),
  MIGRATE_ON_START: Type.Boolean({ default: true, description: 'Run pending migrations before listening' }),
  DATABASE_WAIT_MS: Type.Integer({
    minimum: 0,
    default: 120_000,
    description:
      'How long migrations (dist/migrate.js, MIGRATE_ON_START) wait for the database to answer, one log line per attempt, before exiting 69',
  }),
}

export const BaseConfig = Type.Object(BaseConfigProperties)
export type BaseConfig = Static<typeof BaseConfig>

export class ConfigError extends Error {
  override name = 'ConfigError'
}

/**
 * One phrase per variable, never its value (a value may be a secret): `PORT is required`, `LOG_LEVEL must be one
 * of fatal, error, …` for a union of literals (Ajv reports each branch's `const` and the `anyOf` separately),
 * else Ajv's own message (`must be integer`, `must be >= 100`).
 */
function describeErrors(errors: AjvError[]): string {
  const byVariable = new Map<string, AjvError[]>()
  for (const error of errors) {
    const missing = error.params?.missingProperty
    const name = typeof missing === 'string' ? missing : error.instancePath.replace(/^\//, '')
    const own = byVariable.get(name)
    if (own) own.push(error)
    else byVariable.set(name, [error])
  }
  const phrases: string[] = []
  for (const [name, own] of byVariable) {
    if (own.some((error) => error.keyword === 'required')) {
      phrases.push(`${name} is required`)
      continue
    }
    const allowed = own.flatMap((error) =>
      error.keyword === 'const'
        ? [error.params?.allowedValue]
        : error.keyword === 'enum'
          ? ((error.params?.allowedValues as unknown[] | undefined) ?? [])
          : [],
    )
    if (allowed.length > 0) {
      phrases.push(`${name} must be one of ${allowed.join(', ')}`)
      continue
    }
    const messages = [
      ...new Set(own.filter((error) => error.keyword !== 'anyOf').map((error) => error.message)),
    ]
    phrases.push(`${name} ${messages.join(' and ') || 'is not valid'}`)
  }
  return phrases.join('; ')
}

/**
 * Validates the environment against `schema` (defaults applied, strings coerced to numbers/booleans), then
 * runs each cross-field `check` (a rule one property's schema cannot say, e.g. "both or neither"). A missing or
 * malformed variable, or a check that fails, throws a ConfigError whose message names the variables: every
 * service's config.ts is this one call, so a bad setting never gets as far as app.ts.
 */
export function loadConfig<P extends TProperties>(
  schema: TObject<P>,
  env: Record<string, string | undefined> = process.env,
  ...checks: Array<(config: Static<TObject<P>>) => void>
): Static<TObject<P>> {
  let config: Static<TObject<P>>
  try {
    config = envSchema<Static<TObject<P>>>({ schema, data: env, dotenv: false })
  } catch (error) {
    const errors = (error as { errors?: AjvError[] }).errors
    const message = errors?.length
      ? describeErrors(errors)
      : (error as Error).message.replaceAll('env/', '').replaceAll('env ', '')
    throw new ConfigError(`Invalid configuration: ${message}`)
  }
  for (const check of checks) check(config)
  return config
}
