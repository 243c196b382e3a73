import { cursorCodec, Id } from '@task-manager/service-kit'
import { type Static, Type } from 'typebox'

const timestampSorts = ['created_at', '-created_at', 'updated_at', '-updated_at'] as const
const Timestamp = Type.String({ format: 'date-time' })

/**
 * Where the previous page ended: `[sort, last row's sort value, last row's id]`, each sort with the value
 * type its column holds (a timestamp, `infinity` for a task without due date, a priority rank 1–3), so a
 * forged cursor is refused before it becomes a query.
 */
const CursorValue = Type.Union([
  Type.Tuple([Type.Union(timestampSorts.map((sort) => Type.Literal(sort))), Timestamp, Id()]),
  Type.Tuple([
    Type.Union([Type.Literal('due_date'), Type.Literal('-due_date')]),
    Type.Union([Timestamp, Type.Literal('infinity')]),
    Id(),
  ]),
  Type.Tuple([
    Type.Union([Type.Literal('priority'), Type.Literal('-priority')]),
    Type.Integer({ minimum: 1, maximum: 3 }),
    Id(),
  ]),
])
type CursorValue = Static<typeof CursorValue>

const codec = cursorCodec(CursorValue)

export interface Cursor {
  sort: string
  value: string | number
  id: number
}

export function encodeCursor(cursor: Cursor): string {
  return codec.encode([cursor.sort, cursor.value, cursor.id] as CursorValue)
}

/** The cursor for a list sorted by `sort`; 422 when it was not issued by this service for that sort. */
export function decodeCursor(raw: string, sort: string): Cursor {
  const [cursorSort, value, id] = codec.decode(raw)
  if (cursorSort !== sort) {
    throw codec.refused(`belongs to sort '${cursorSort}', not '${sort}'`)
  }
  return { sort: cursorSort, value, id }
}
