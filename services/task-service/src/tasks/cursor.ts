import { HttpProblem, problemType } from '@task-manager/service-kit'

/** Where the previous page ended: the sort it belongs to, the last row's sort value and id. */
export interface Cursor {
  sort: string
  value: string | number | null
  id: number
}

export function encodeCursor(cursor: Cursor): string {
  return Buffer.from(JSON.stringify([cursor.sort, cursor.value, cursor.id])).toString('base64url')
}

export function decodeCursor(raw: string, sort: string): Cursor {
  let parsed: unknown
  try {
    parsed = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'))
  } catch {
    parsed = undefined
  }
  if (
    !Array.isArray(parsed) ||
    parsed.length !== 3 ||
    typeof parsed[0] !== 'string' ||
    !(typeof parsed[1] === 'string' || typeof parsed[1] === 'number' || parsed[1] === null) ||
    !Number.isSafeInteger(parsed[2])
  ) {
    throw new HttpProblem(422, 'The cursor is not valid; use the URL from the Link header', {
      type: problemType('validation-failed'),
      errors: [{ in: 'querystring', field: 'cursor', message: 'is not a cursor this service issued' }],
    })
  }
  if (parsed[0] !== sort) {
    throw new HttpProblem(422, `The cursor belongs to sort '${parsed[0]}', not '${sort}'`, {
      type: problemType('validation-failed'),
      errors: [{ in: 'querystring', field: 'cursor', message: 'does not match the sort parameter' }],
    })
  }
  return { sort: parsed[0], value: parsed[1], id: parsed[2] as number }
}
