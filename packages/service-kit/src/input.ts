import { AjvCompiler } from '@fastify/ajv-compiler'
import type { FastifyInstance, FastifyRequest, FastifyServerOptions } from 'fastify'
import fp from 'fastify-plugin'
import { type Static, type TSchema, Type } from 'typebox'
import { Compile } from 'typebox/compile'
import { type FieldError, HttpProblem, problemType } from './problem.js'

/**
 * The input rules every service shares: what the database (or the code) cannot take is refused with a
 * 422 naming the field, before any SQL runs. Schemas here feed both validation and the OpenAPI document,
 * so the document says exactly what is accepted.
 */

/** PostgreSQL `integer` (int4): every id and version column. */
export const INT4_MAX = 2_147_483_647

/** A row id: an integer in 1..2^31-1 (the `integer` identity columns). */
export function Id(options: { description?: string } = {}) {
  return Type.Integer({ minimum: 1, maximum: INT4_MAX, ...options })
}

/**
 * Text PostgreSQL stores as sent: no NUL (PostgreSQL's text types refuse U+0000: error 22021/22P05) and
 * no unpaired UTF-16 surrogate (it cannot be encoded as UTF-8: Node would silently store U+FFFD instead).
 *
 * Two keywords say it: the pattern refuses NUL, and `x-well-formed` (a keyword the kit gives its validator)
 * refuses unpaired surrogates. One pattern could say both only by naming surrogate code points, which regex
 * engines of other languages refuse: schema-driven tools (fuzzers, client generators in Rust or Python) would
 * drop the rule, or fail on it.
 */
export const STORABLE_TEXT_PATTERN = '^[^\\u0000]*$'
export const WELL_FORMED_KEYWORD = 'x-well-formed'
const NOT_BLANK_PATTERN = '\\S'
const storable = new RegExp(STORABLE_TEXT_PATTERN, 'u')

/** Messages for the kit's patterns, so a 422 says what is wrong rather than quoting a regular expression. */
const PATTERN_MESSAGES = new Map<string, string>([
  [STORABLE_TEXT_PATTERN, 'must not contain NUL characters'],
  [NOT_BLANK_PATTERN, 'must contain a non-space character'],
])

/** Gives a pattern a human message in validation errors (instead of `must match pattern "…"`). */
export function describePattern(pattern: string, message: string): string {
  PATTERN_MESSAGES.set(pattern, message)
  return pattern
}

export function patternMessage(pattern: unknown): string | undefined {
  return typeof pattern === 'string' ? PATTERN_MESSAGES.get(pattern) : undefined
}

export const WELL_FORMED_MESSAGE = 'must not contain unpaired UTF-16 surrogates'

/** The Ajv keyword `x-well-formed: true`: the string is well-formed Unicode (no unpaired surrogate). */
export const wellFormedKeyword = {
  keyword: WELL_FORMED_KEYWORD,
  type: 'string' as const,
  schemaType: 'boolean' as const,
  errors: false,
  validate: (enabled: boolean, data: string) => !enabled || data.isWellFormed(),
}

export interface TextOptions {
  minLength?: number
  maxLength: number
  description?: string
  /** Refuse text made only of white space. */
  notBlank?: boolean
  examples?: string[]
}

/** A string the database can store as sent (see STORABLE_TEXT_PATTERN), with a length bound. */
export function Text({ notBlank, ...options }: TextOptions) {
  return Type.String({
    ...options,
    pattern: STORABLE_TEXT_PATTERN,
    [WELL_FORMED_KEYWORD]: true,
    // Two patterns, two linear scans (one combined expression with a lookahead reads the same, but
    // is not understood by every schema-driven client generator).
    ...(notBlank ? { allOf: [{ pattern: NOT_BLANK_PATTERN }] } : {}),
  })
}

export function isStorableText(value: string): boolean {
  return storable.test(value) && value.isWellFormed()
}

// --- The validator --------------------------------------------------------------------------------------

type BuildValidator = NonNullable<
  NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>['buildValidator']
>

/**
 * Fastify's validator with one difference: JSON bodies are taken as typed. The path, the query string and the
 * headers are text, so their values are coerced to the schema's types (`?limit=5` is the integer 5); a JSON body
 * already says its types, and coercing it would accept what the document calls invalid (`"title": 5` as "5",
 * `null` as "", `"5"` as 5). A body with a wrong type is a 422 naming the field.
 */
export function buildValidator(): BuildValidator {
  const coercing = AjvCompiler()
  const typed = AjvCompiler()
  return ((externalSchemas: unknown, options: { customOptions?: Record<string, unknown> }) => {
    const parts = coercing(externalSchemas as never, options as never)
    const bodies = typed(
      externalSchemas as never,
      {
        ...options,
        customOptions: { ...options.customOptions, coerceTypes: false },
      } as never,
    )
    return (route: { httpPart?: string }) => (route.httpPart === 'body' ? bodies : parts)(route as never)
  }) as unknown as BuildValidator
}

// --- Calendar dates ----------------------------------------------------------------------------------

// A real calendar date (30-day months, February 29 only in leap years), then an optional time of day
// (00:00–23:59:59.fffffffff) and offset (Z or ±hh:mm / ±hhmm). Matching it means the date exists: the
// pattern in the OpenAPI document is the whole rule, nothing the service refuses matches it.
const MONTH_DAY =
  '(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\\d|30)|02-(?:0[1-9]|1\\d|2[0-8]))'
const LEAP_YEAR = '(?:\\d\\d(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)'
export const CALENDAR_DATE = `(?:\\d{4}-${MONTH_DAY}|${LEAP_YEAR}-02-29)`
const TIME = '(?:[01]\\d|2[0-3]):[0-5]\\d(?::[0-5]\\d(?:\\.\\d{1,9})?)?'
const OFFSET = '(?:[Zz]|[+-](?:[01]\\d|2[0-3]):?[0-5]\\d)'
export const DATE_OR_DATE_TIME_PATTERN = describePattern(
  `^${CALENDAR_DATE}(?:[Tt ]${TIME}${OFFSET}?)?$`,
  'must be an existing ISO 8601 date or date-time, e.g. 2026-12-01 or 2026-12-01T17:00:00Z',
)
const dateOrDateTime = new RegExp(DATE_OR_DATE_TIME_PATTERN)

/** ISO 8601 date or date-time (a date alone is midnight UTC; no offset means UTC). */
export function DateOrDateTime(options: { description?: string; examples?: string[] } = {}) {
  return Type.String({ ...options, pattern: DATE_OR_DATE_TIME_PATTERN })
}

/**
 * Parses what DateOrDateTime accepts; undefined for anything else (an impossible date such as
 * 2026-02-30 included: it is never rolled over into March).
 */
export function parseDateOrDateTime(value: string): Date | undefined {
  if (!dateOrDateTime.test(value)) return undefined
  let text = value.replace(' ', 'T').replace('t', 'T')
  if (!text.includes('T')) text += 'T00:00:00Z'
  else if (!/(?:[Zz]|[+-]\d\d:?\d\d)$/.test(text)) text += 'Z'
  const date = new Date(text)
  return Number.isNaN(date.getTime()) ? undefined : date
}

// --- Integers written in the URL ---------------------------------------------------------------------

// Digits only, an optional minus (so `-1` is told it must be >= 1); 300 digits keep Number() finite.
const DECIMAL_INTEGER = /^-?\d{1,300}$/

/** A decimal integer within 0..INT4_MAX written as digits only; undefined for anything else. */
export function parseInt4(text: string): number | undefined {
  if (!/^\d{1,10}$/.test(text)) return undefined
  const value = Number(text)
  return value <= INT4_MAX ? value : undefined
}

function integerProperties(schema: unknown): string[] {
  const properties = (schema as { properties?: Record<string, { type?: unknown }> } | undefined)?.properties
  if (!properties) return []
  return Object.entries(properties)
    .filter(([, property]) => property.type === 'integer')
    .map(([name]) => name)
}

function invalidInteger(where: 'params' | 'querystring', field: string): HttpProblem {
  const errors: FieldError[] = [{ in: where, field, message: 'must be an integer written in decimal digits' }]
  return new HttpProblem(
    422,
    `Invalid ${where} field '${field}': must be an integer written in decimal digits`,
    {
      type: problemType('validation-failed'),
      errors,
    },
  )
}

/**
 * Integers in the path and the query string must be written as decimal digits. The validator's type
 * coercion alone would take `1e3` as 1000, `0x10` as 16, `1.0` as 1 and `Infinity` as a number, and the
 * last reaches the database as an error. Ranges stay the schema's job (`Id()`).
 */
export const integerFormsPlugin = fp(
  async (app: FastifyInstance) => {
    app.addHook('onRoute', (route) => {
      const schema = route.schema as { params?: unknown; querystring?: unknown } | undefined
      const fields = {
        params: integerProperties(schema?.params),
        querystring: integerProperties(schema?.querystring),
      }
      if (fields.params.length === 0 && fields.querystring.length === 0) return
      const check = (request: FastifyRequest, _reply: unknown, done: (error?: Error) => void) => {
        for (const where of ['params', 'querystring'] as const) {
          const values = (where === 'params' ? request.params : request.query) as Record<string, unknown>
          for (const field of fields[where]) {
            const value = values?.[field]
            if (typeof value === 'string' && !DECIMAL_INTEGER.test(value)) {
              return done(invalidInteger(where, field))
            }
          }
        }
        done()
      }
      const existing = route.preValidation
      route.preValidation =
        existing === undefined ? [check] : [check, ...(Array.isArray(existing) ? existing : [existing])]
    })
  },
  { name: 'task-manager-integer-forms', fastify: '5.x' },
)

// --- Entity tags --------------------------------------------------------------------------------------

/**
 * The versions an `If-Match` header names for the resource `id`, from strong tags `"<id>.<version>"`.
 * Tags of other resources, weak tags and versions out of the column's range can never match: they are
 * left out (so a header naming only such tags matches nothing and answers 412).
 */
export function versionsInIfMatch(ifMatch: string, id: number): number[] {
  const versions: number[] = []
  for (const raw of ifMatch.split(',')) {
    const match = /^"(\d{1,20})\.(\d{1,20})"$/.exec(raw.trim())
    if (!match) continue
    const tagId = parseInt4(match[1] as string)
    const version = parseInt4(match[2] as string)
    if (tagId === id && version !== undefined) versions.push(version)
  }
  return versions
}

// --- Cursors --------------------------------------------------------------------------------------------

export interface CursorCodec<T> {
  encode(value: T): string
  /** The value in `raw`, or a 422 naming the `cursor` query field when it is not one this service issued. */
  decode(raw: string): T
  /** The 422 problem for a cursor that decodes but does not fit the request (another sort, say). */
  refused(message: string): HttpProblem
}

/**
 * The one cursor format of every list: base64url of a JSON value checked against `schema` on the way in.
 * A cursor that does not decode, or whose value has the wrong types or ranges (an id past int4, a
 * timestamp that is no date), is a client error, never a query: forged cursors answer 422.
 */
export function cursorCodec<S extends TSchema>(schema: S, field = 'cursor'): CursorCodec<Static<S>> {
  const validator = Compile(schema)
  const refused = (message: string) =>
    new HttpProblem(422, `Invalid querystring field '${field}': ${message}`, {
      type: problemType('validation-failed'),
      errors: [{ in: 'querystring', field, message }],
    })
  return {
    refused,
    encode: (value) => Buffer.from(JSON.stringify(value)).toString('base64url'),
    decode(raw) {
      if (!/^[A-Za-z0-9_-]*$/.test(raw)) throw refused('is not a cursor this service issued')
      let value: unknown
      try {
        value = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'))
      } catch {
        throw refused('is not a cursor this service issued')
      }
      if (!validator.Check(value)) throw refused('is not a cursor this service issued')
      return value as Static<S>
    },
  }
}

/** A cursor query parameter: opaque, base64url, bounded. */
export function CursorParameter(maxLength = 500) {
  return Type.String({
    maxLength,
    pattern: describePattern('^[A-Za-z0-9_-]*$', 'is not a cursor this service issued'),
    description: 'Opaque; from the `Link: rel="next"` header of the previous page',
  })
}
