export * from './breaker.js'
export * from './bulkhead.js'
export * from './config.js'
export * from './db.js'
export { errorsPlugin } from './errors.js'
export { healthPlugin, Readiness } from './health.js'
export * from './input.js'
export * from './kit.js'
export { loggerOptions, REDACT_PATHS, requestIdFrom } from './logger.js'
export * from './main.js'
export { metricsPlugin } from './metrics.js'
export * from './migrate.js'
export * from './openapi.js'
export * from './pool-metrics.js'
export { type PreparedQuery, poolOf, prepareQuery } from './prepared.js'
export * from './problem.js'
export { optionalRedis } from './redis.js'
export * from './service-database.js'
export {
  injectUnsampledTraceContext,
  shutdownTracing,
  traceExporters,
  traceLogMixin,
  tracingActive,
  tracingConfigured,
} from './telemetry.js'
export * from './upstream.js'
export * from './upstream-config.js'
