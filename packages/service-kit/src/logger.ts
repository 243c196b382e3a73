import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { FastifyServerOptions } from 'fastify'
import { traceLogMixin, tracingActive } from './telemetry.js'

/** Paths pino replaces with `[redacted]` wherever they appear in a log line. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'headers.authorization',
  'headers.cookie',
  '*.headers.authorization',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  'req.headers["x-api-key"]',
  'res.headers["set-cookie"]',
  'password',
  '*.password',
  '*.password_hash',
  '*.token',
  '*.access_token',
  '*.secret',
  'DATABASE_URL',
  '*.DATABASE_URL',
]

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** Takes the caller's `x-request-id` when it is a sane token, else makes a new one. */
export function requestIdFrom(req: IncomingMessage): string {
  const header = req.headers['x-request-id']
  const value = Array.isArray(header) ? header[0] : header
  return value && REQUEST_ID.test(value) ? value : randomUUID()
}

export function loggerOptions(service: string, level: string): FastifyServerOptions['logger'] {
  return {
    level,
    base: { service, pid: process.pid },
    messageKey: 'msg',
    timestamp: () => `,"time":"${new Date().toISOString()}"`,
    formatters: { level: (label: string) => ({ level: label }) },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    // With tracing on, every line written during a request carries its trace_id and span_id. Off, no mixin
    // runs at all.
    ...(tracingActive() ? { mixin: traceLogMixin } : {}),
  }
}
