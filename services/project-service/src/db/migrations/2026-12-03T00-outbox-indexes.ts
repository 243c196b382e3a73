import { restoreOutboxIndexes, slimOutboxIndexes } from '@task-manager/events'
import type { Kysely } from 'kysely'

// The outbox keeps only the indexes its queries use (packages/events, slimOutboxIndexes): no unique index
// on event_id, a BRIN on created_at for the purge of sent rows instead of a b-tree on sent_at.
export async function up(db: Kysely<any>): Promise<void> {
  await slimOutboxIndexes(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await restoreOutboxIndexes(db)
}
