import { type TInteger, Type } from 'typebox'
import type { UpstreamOptions } from './upstream.js'

/** The settings of one service this one calls, all named after it: `USER_SERVICE_TIMEOUT_MS`, … */
export type UpstreamSettingKey<P extends string> =
  | `${P}_TIMEOUT_MS`
  | `${P}_BREAKER_RESET_MS`
  | `${P}_BREAKER_ERROR_PERCENT`
  | `${P}_BREAKER_MIN_CALLS`

export interface UpstreamDefaults {
  timeoutMs: number
  resetTimeoutMs: number
  errorThresholdPercentage: number
  volumeThreshold: number
}

/**
 * The config properties of a kit `Upstream` to `prefix` (e.g. `USER_SERVICE`), with this service's defaults:
 * every service declares the clients it needs the same way, and `upstreamSettings` reads them back.
 */
export function upstreamConfigProperties<P extends string>(
  prefix: P,
  defaults: UpstreamDefaults,
): Record<UpstreamSettingKey<P>, TInteger> {
  return {
    [`${prefix}_TIMEOUT_MS`]: Type.Integer({
      minimum: 50,
      default: defaults.timeoutMs,
      description: 'Timeout of one call',
    }),
    [`${prefix}_BREAKER_RESET_MS`]: Type.Integer({
      minimum: 100,
      default: defaults.resetTimeoutMs,
      description: 'How long the circuit breaker stays open before one trial call',
    }),
    [`${prefix}_BREAKER_ERROR_PERCENT`]: Type.Integer({
      minimum: 1,
      maximum: 100,
      default: defaults.errorThresholdPercentage,
      description: 'The breaker opens when more than this share of calls in the last 10 s failed…',
    }),
    [`${prefix}_BREAKER_MIN_CALLS`]: Type.Integer({
      minimum: 1,
      default: defaults.volumeThreshold,
      description: '…and at least this many calls were made in them',
    }),
  } as Record<UpstreamSettingKey<P>, TInteger>
}

/** The `Upstream` options held by the properties `upstreamConfigProperties(prefix)` declared. */
export function upstreamSettings<P extends string>(
  config: Record<UpstreamSettingKey<P>, number>,
  prefix: P,
): Pick<UpstreamOptions, 'timeoutMs' | 'resetTimeoutMs' | 'errorThresholdPercentage' | 'volumeThreshold'> {
  return {
    timeoutMs: config[`${prefix}_TIMEOUT_MS`],
    resetTimeoutMs: config[`${prefix}_BREAKER_RESET_MS`],
    errorThresholdPercentage: config[`${prefix}_BREAKER_ERROR_PERCENT`],
    volumeThreshold: config[`${prefix}_BREAKER_MIN_CALLS`],
  }
}
