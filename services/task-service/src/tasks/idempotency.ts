import { createHash } from 'node:crypto'
import { HttpProblem, problemType } from '@task-manager/service-kit'
import type { Kysely, Transaction } from 'kysely'
import { stringify } from 'safe-stable-stringify'
import type { TaskDatabase } from '../db/schema.js'

export interface StoredResponse {
  status: number
  body: unknown
}

export type IdempotentOutcome<T> =
  | { replayed: false; result: T }
  | { replayed: true; response: StoredResponse }

/** Who sent which key for which request body, and how long the key holds. */
export interface IdempotencyClaim {
  scope: string
  key: string
  hash: string
  ttlHours: number
}

/**
 * Fingerprint of a request body in a canonical form: object keys sorted at every level, so the same body
 * sent again with its keys in another order is the same request (a replay, not a reused key). The body is
 * the validated one: unknown properties already removed, defaults applied.
 */
export function requestHash(body: unknown): string {
  return createHash('sha256')
    .update(stringify(body) ?? 'null')
    .digest('hex')
}

/**
 * Runs `create` at most once per (scope, key) within the key's lifetime.
 *
 * The key row is inserted first, in the same transaction as the work: a concurrent request with the same
 * key blocks on the primary key until the first commits, then finds the stored response and replays it.
 * If the work fails the transaction rolls back and the key is free again. Same key with a different
 * body is a client error (422).
 */
export async function runIdempotent<T>(
  db: Kysely<TaskDatabase>,
  options: IdempotencyClaim,
  create: (trx: Transaction<TaskDatabase>) => Promise<{ result: T; response: StoredResponse }>,
): Promise<IdempotentOutcome<T>> {
  const { scope, key, hash, ttlHours } = options
  const outcome = await db.transaction().execute(async (trx) => {
    await trx
      .deleteFrom('idempotency_keys')
      .where('scope', '=', scope)
      .where('key', '=', key)
      .where('expires_at', '<', new Date())
      .execute()
    const claimed = await trx
      .insertInto('idempotency_keys')
      .values({
        scope,
        key,
        request_hash: hash,
        status_code: 0,
        response: 'null',
        expires_at: new Date(Date.now() + ttlHours * 3_600_000),
      })
      .onConflict((oc) => oc.columns(['scope', 'key']).doNothing())
      .returning('key')
      .executeTakeFirst()
    if (!claimed) return undefined
    const { result, response } = await create(trx)
    await trx
      .updateTable('idempotency_keys')
      .set({ status_code: response.status, response: JSON.stringify(response.body) })
      .where('scope', '=', scope)
      .where('key', '=', key)
      .execute()
    return { replayed: false as const, result }
  })
  if (outcome) return outcome

  const stored = await db
    .selectFrom('idempotency_keys')
    .select(['request_hash', 'status_code', 'response'])
    .where('scope', '=', scope)
    .where('key', '=', key)
    .executeTakeFirst()
  if (!stored) {
    // The first request's transaction rolled back between our insert attempt and this read.
    throw new HttpProblem(409, `A request with Idempotency-Key '${key}' failed; send it again`, {
      type: problemType('idempotency-retry'),
    })
  }
  if (stored.request_hash !== hash) {
    throw new HttpProblem(422, `Idempotency-Key '${key}' was already used with a different request body`, {
      type: problemType('idempotency-key-reused'),
    })
  }
  return { replayed: true, response: { status: stored.status_code, body: stored.response } }
}

/** Removes keys past their lifetime; run periodically. */
export async function purgeExpiredKeys(db: Kysely<TaskDatabase>): Promise<number> {
  const result = await db
    .deleteFrom('idempotency_keys')
    .where('expires_at', '<', new Date())
    .executeTakeFirst()
  return Number(result.numDeletedRows)
}
