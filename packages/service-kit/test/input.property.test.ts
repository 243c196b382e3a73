import fc from 'fast-check'
import { Type } from 'typebox'
import { describe, expect, test } from 'vitest'
import {
  cursorCodec,
  DATE_OR_DATE_TIME_PATTERN,
  HttpProblem,
  Id,
  INT4_MAX,
  isStorableText,
  parseDateOrDateTime,
  parseInt4,
  versionsInIfMatch,
} from '../src/index.js'

// Property-based tests of the shared input rules: for any input fast-check makes up, the rule either
// accepts a value the database can take or refuses it as a client error — never anything in between.

const pad = (n: number, width = 2) => String(n).padStart(width, '0')
const isLeap = (year: number) => (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0
const daysIn = (year: number, month: number) =>
  month === 2 ? (isLeap(year) ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31
const pattern = new RegExp(DATE_OR_DATE_TIME_PATTERN, 'u')

describe('calendar dates', () => {
  const ymd = fc.record({
    year: fc.oneof(fc.integer({ min: 0, max: 9999 }), fc.constantFrom(0, 4, 100, 1900, 2000, 2100, 2400)),
    month: fc.integer({ min: 1, max: 12 }),
    day: fc.integer({ min: 1, max: 31 }),
  })

  test('a date parses exactly when it exists, and then to that day at midnight UTC', () => {
    fc.assert(
      fc.property(ymd, ({ year, month, day }) => {
        const text = `${pad(year, 4)}-${pad(month)}-${pad(day)}`
        const parsed = parseDateOrDateTime(text)
        if (day > daysIn(year, month)) {
          expect(parsed).toBeUndefined()
          expect(pattern.test(text)).toBe(false)
        } else {
          expect(parsed?.toISOString().slice(0, 10)).toBe(text)
          expect(pattern.test(text)).toBe(true)
        }
      }),
      { numRuns: 2000 },
    )
  })

  test('every instant written as an ISO 8601 date-time parses back to itself', () => {
    const instant = fc.date({
      min: new Date('0000-01-01T00:00:00Z'),
      max: new Date('9999-12-31T23:59:59Z'),
      noInvalidDate: true,
    })
    fc.assert(
      fc.property(instant, (date) => {
        expect(parseDateOrDateTime(date.toISOString())?.getTime()).toBe(date.getTime())
      }),
    )
  })

  test('the pattern in the OpenAPI document and the parser agree on every string', () => {
    const part = (values: string[]) => fc.constantFrom(...values)
    const candidate = fc
      .tuple(
        part(['2026', '2028', '1900', '2000', '0000', '99999', '26']),
        part(['-01-', '-02-', '-04-', '-12-', '-13-', '-00-', '/02/']),
        part(['01', '28', '29', '30', '31', '32', '00', '1']),
        part(['', 'T17:00', 'T23:59:59', 'T24:00', 't00:00:00.123456789', ' 12:30', 'T12:60', 'T12:00:61']),
        part(['', 'Z', 'z', '+05:30', '-0100', '+05', '+24:00', '+23:59', 'UTC']),
      )
      .map((parts) => parts.join(''))
    fc.assert(
      fc.property(candidate, (text) => {
        expect(parseDateOrDateTime(text) !== undefined).toBe(pattern.test(text))
      }),
      { numRuns: 3000 },
    )
  })
})

describe('integers', () => {
  test('decimal digits within int4 parse to their value; anything past it does not', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: INT4_MAX }), (n) => {
        expect(parseInt4(String(n))).toBe(n)
      }),
    )
    fc.assert(
      fc.property(fc.bigInt({ min: BigInt(INT4_MAX) + 1n, max: 10n ** 30n }), (n) => {
        expect(parseInt4(n.toString())).toBeUndefined()
      }),
    )
  })

  test('text that is not plain digits never parses', () => {
    fc.assert(
      fc.property(fc.string(), (text) => {
        const parsed = parseInt4(text)
        if (!/^\d+$/.test(text)) expect(parsed).toBeUndefined()
        else if (parsed !== undefined) expect(String(parsed)).toBe(String(Number(text)))
      }),
    )
  })

  test('If-Match keeps exactly the strong tags of this id with a possible version', () => {
    const tag = fc.record({
      id: fc.integer({ min: 1, max: 5 }),
      version: fc.bigInt({ min: 0n, max: 2n ** 40n }),
    })
    fc.assert(
      fc.property(fc.array(tag, { minLength: 1, maxLength: 5 }), (tags) => {
        const header = tags.map(({ id, version }) => `"${id}.${version}"`).join(', ')
        const expected = tags
          .filter(({ id, version }) => id === 3 && version <= BigInt(INT4_MAX))
          .map(({ version }) => Number(version))
        expect(versionsInIfMatch(header, 3)).toEqual(expected)
      }),
    )
  })
})

describe('text', () => {
  test('text without NUL or unpaired surrogates is storable; any with one is not', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (text) => {
        const hasNul = text.includes('\u0000')
        const hasLoneSurrogate = /[\uD800-\uDFFF]/u.test(text)
        expect(isStorableText(text)).toBe(!hasNul && !hasLoneSurrogate)
        // What is storable survives the trip to UTF-8 unchanged (what PostgreSQL receives).
        if (isStorableText(text)) expect(Buffer.from(text, 'utf8').toString('utf8')).toBe(text)
      }),
      { numRuns: 2000 },
    )
  })

  test('a NUL anywhere makes text unstorable', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), (a, b) => {
        expect(isStorableText(`${a}\u0000${b}`)).toBe(false)
      }),
    )
  })
})

describe('the cursor codec', () => {
  const codec = cursorCodec(
    Type.Tuple([
      Type.Union([Type.Literal('a'), Type.Literal('b')]),
      Type.String({ format: 'date-time' }),
      Id(),
    ]),
  )
  const value = fc.tuple(
    fc.constantFrom('a' as const, 'b' as const),
    fc
      .date({
        min: new Date('1970-01-01T00:00:00Z'),
        max: new Date('9999-12-31T00:00:00Z'),
        noInvalidDate: true,
      })
      .map((d) => d.toISOString()),
    fc.integer({ min: 1, max: INT4_MAX }),
  )

  test('whatever it encodes it decodes to the same value', () => {
    fc.assert(
      fc.property(value, (cursor) => {
        const encoded = codec.encode(cursor)
        expect(encoded).toMatch(/^[A-Za-z0-9_-]*$/)
        expect(codec.decode(encoded)).toEqual(cursor)
      }),
    )
  })

  function decodesOrRefuses(raw: string) {
    try {
      const decoded = codec.decode(raw)
      // Accepted: then it is a value of the schema, with an id the column can hold.
      expect(['a', 'b']).toContain(decoded[0])
      expect(Number.isInteger(decoded[2]) && decoded[2] >= 1 && decoded[2] <= INT4_MAX).toBe(true)
    } catch (error) {
      expect(error).toBeInstanceOf(HttpProblem)
      expect((error as HttpProblem).status).toBe(422)
      expect((error as HttpProblem).options.errors?.[0]?.field).toBe('cursor')
    }
  }

  test('any string either decodes to a valid value or is a 422 naming the cursor', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary' }), decodesOrRefuses), { numRuns: 2000 })
  })

  test('any JSON value, encoded, either decodes to a valid value or is a 422', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (json) =>
        decodesOrRefuses(Buffer.from(JSON.stringify(json) ?? '').toString('base64url')),
      ),
      { numRuns: 2000 },
    )
  })

  test('forged tuples with values out of range are refused', () => {
    const forged = fc.tuple(
      fc.oneof(fc.string(), fc.integer()),
      fc.oneof(fc.string(), fc.double(), fc.constant(null)),
      fc.oneof(fc.double(), fc.bigInt().map(Number), fc.string()),
    )
    fc.assert(
      fc.property(forged, (tuple) =>
        decodesOrRefuses(Buffer.from(JSON.stringify(tuple)).toString('base64url')),
      ),
    )
  })
})
